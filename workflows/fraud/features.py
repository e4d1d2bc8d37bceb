"""Point-in-time-correct fraud features and the is_fraud label, in DuckDB SQL.

An earlier event x counts toward a window w at charge e exactly when seq(x) < seq(e) and
event_time(x) >= event_time(e) - w (DESIGN.md, "Feature semantics"): what was known when e
arrived. Interim hand-written SQL; the feature language (features/) replaces it.
"""

import duckdb
import pyarrow as pa

FEATURES = [
    "amount",
    "card_charges_1h",
    "card_charges_24h",
    "card_amount_avg_30d",
    "card_distinct_merchants_24h",
    "merchant_charges_1h",
    "ip_distinct_cards_24h",
    "merchant_disputes_30d",
]
LABEL = "is_fraud"

_SQL = """
WITH c AS (SELECT seq, event_time, charge_id, card_id, merchant_id, ip, amount
           FROM events WHERE stream = 'charge'),
     d AS (SELECT seq, event_time, charge_id, merchant_id, reason
           FROM events WHERE stream = 'dispute'),
card AS (
  SELECT e.seq,
    count(x.seq) FILTER (WHERE x.event_time >= e.event_time - INTERVAL 1 HOUR) AS card_charges_1h,
    count(x.seq) FILTER (WHERE x.event_time >= e.event_time - INTERVAL 24 HOUR) AS card_charges_24h,
    avg(x.amount) AS card_amount_avg_30d,
    count(DISTINCT x.merchant_id) FILTER (WHERE x.event_time >= e.event_time - INTERVAL 24 HOUR)
      AS card_distinct_merchants_24h
  FROM c e LEFT JOIN c x ON x.card_id = e.card_id AND x.seq < e.seq
                        AND x.event_time >= e.event_time - INTERVAL 30 DAY
  GROUP BY e.seq),
merchant AS (
  SELECT e.seq, count(x.seq) AS merchant_charges_1h
  FROM c e LEFT JOIN c x ON x.merchant_id = e.merchant_id AND x.seq < e.seq
                        AND x.event_time >= e.event_time - INTERVAL 1 HOUR
  GROUP BY e.seq),
ip AS (
  SELECT e.seq, count(DISTINCT x.card_id) AS ip_distinct_cards_24h
  FROM c e LEFT JOIN c x ON x.ip = e.ip AND x.seq < e.seq
                        AND x.event_time >= e.event_time - INTERVAL 24 HOUR
  GROUP BY e.seq),
disputes AS (
  SELECT e.seq, count(x.seq) AS merchant_disputes_30d
  FROM c e LEFT JOIN d x ON x.merchant_id = e.merchant_id AND x.seq < e.seq
                        AND x.event_time >= e.event_time - INTERVAL 30 DAY
  GROUP BY e.seq),
label AS (
  SELECT e.seq, count(x.seq) > 0 AS is_fraud
  FROM c e LEFT JOIN d x ON x.charge_id = e.charge_id AND x.reason = 'fraudulent'
                        AND x.event_time BETWEEN e.event_time AND e.event_time + INTERVAL 90 DAY
  GROUP BY e.seq)
SELECT c.seq, c.event_time, c.charge_id, c.amount,
       card.* EXCLUDE (seq), merchant.* EXCLUDE (seq), ip.* EXCLUDE (seq),
       disputes.* EXCLUDE (seq), label.is_fraud
FROM c JOIN card USING (seq) JOIN merchant USING (seq) JOIN ip USING (seq)
       JOIN disputes USING (seq) JOIN label USING (seq)
ORDER BY c.seq
"""


def training_table(events: pa.Table) -> pa.Table:
    """One row per charge: seq, event_time, charge_id, the FEATURES and the LABEL."""
    con = duckdb.connect()
    try:
        con.register("events", events)
        return con.sql(_SQL).to_arrow_table()
    finally:
        con.close()
