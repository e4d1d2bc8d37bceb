"""The yardstick of the batch target: one hand-written DuckDB query computing the fraud
definitions' columns (features/defs/fraud.feat), right only for in-order logs without ties (the
benchmarks' generated charges). `{events}` is the events Parquet path.

Used by tools/bench/features.py and tools/bench/batch_engines.py.
"""

HAND_WRITTEN = """
WITH ev AS (SELECT seq, event_time, stream, charge_id, card_id, merchant_id, ip, amount, reason
            FROM read_parquet('{events}')),
c AS (SELECT *, coalesce(event_time < max(event_time) OVER (ORDER BY seq ROWS BETWEEN UNBOUNDED
             PRECEDING AND 1 PRECEDING) - INTERVAL 1 HOUR, false) AS too_late
      FROM ev),
m AS (SELECT seq, stream, merchant_id, count(*) FILTER (WHERE stream = 'dispute') OVER (
             PARTITION BY merchant_id ORDER BY event_time RANGE BETWEEN INTERVAL 30 DAY PRECEDING
             AND INTERVAL 1 MICROSECOND PRECEDING) AS merchant_disputes_30d
      FROM ev WHERE merchant_id IS NOT NULL QUALIFY stream = 'charge'),
f AS (SELECT seq, too_late, amount,
  count(*) OVER (PARTITION BY card_id ORDER BY event_time RANGE BETWEEN INTERVAL 1 HOUR PRECEDING
        AND INTERVAL 1 MICROSECOND PRECEDING) AS card_charges_1h,
  count(*) OVER (PARTITION BY card_id ORDER BY event_time RANGE BETWEEN INTERVAL 24 HOUR
        PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING) AS card_charges_24h,
  count(*) OVER w7 AS card_charges_7d,
  coalesce(sum(amount) OVER w7, 0) AS card_amount_sum_7d,
  avg(amount) OVER w7 AS card_amount_avg_7d,
  avg(amount) OVER w30 AS card_amount_avg_30d,
  count(DISTINCT merchant_id) OVER w30 AS card_distinct_merchants_30d,
  max(amount) OVER w30 AS card_amount_max_30d,
  count(DISTINCT merchant_id) OVER (PARTITION BY card_id ORDER BY event_time RANGE BETWEEN
        INTERVAL 24 HOUR PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING)
        AS card_distinct_merchants_24h,
  count(*) OVER (PARTITION BY merchant_id ORDER BY event_time RANGE BETWEEN INTERVAL 1 HOUR
        PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING) AS merchant_charges_1h,
  CASE WHEN ip IS NOT NULL THEN count(DISTINCT card_id) OVER (PARTITION BY ip ORDER BY event_time RANGE BETWEEN INTERVAL 24 HOUR
        PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING) END AS ip_distinct_cards_24h
  FROM c WHERE stream = 'charge'
  WINDOW w7 AS (PARTITION BY card_id ORDER BY event_time RANGE BETWEEN INTERVAL 7 DAY PRECEDING
                AND INTERVAL 1 MICROSECOND PRECEDING),
         w30 AS (PARTITION BY card_id ORDER BY event_time RANGE BETWEEN INTERVAL 30 DAY PRECEDING
                AND INTERVAL 1 MICROSECOND PRECEDING)),
l AS (SELECT c.seq, bool_or(d.reason = 'fraudulent') AS is_fraud FROM c
      JOIN ev d ON d.stream = 'dispute' AND d.charge_id = c.charge_id
       AND d.event_time BETWEEN c.event_time AND c.event_time + INTERVAL 90 DAY
      WHERE c.stream = 'charge' GROUP BY c.seq)
SELECT f.seq, f.too_late, card_charges_1h, card_charges_24h, card_charges_7d, card_amount_sum_7d,
  card_amount_avg_7d, card_amount_avg_30d, card_distinct_merchants_30d, card_amount_max_30d,
  merchant_charges_1h, ip_distinct_cards_24h, coalesce(merchant_disputes_30d, 0),
  card_distinct_merchants_24h, amount,
  amount / nullif(card_amount_avg_30d, 0) AS amount_to_card_avg_30d, coalesce(is_fraud, false)
FROM f LEFT JOIN m USING (seq) LEFT JOIN l USING (seq) ORDER BY seq
"""
