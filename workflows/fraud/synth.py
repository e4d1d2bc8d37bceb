"""Synthetic payments: a deterministic event log of charges and disputes with fraud in it.

The log is in the events format of DESIGN.md: `seq` (arrival order), `event_time` (UTC,
microseconds), `stream` ("charge" or "dispute"), then the fields of both streams. Fraud
comes in the shapes a payments team sees: card-testing bursts of small charges, stolen cards
spending at many merchants within hours, risky IPs shared across cards, and merchants whose
customers dispute far more than others. Disputes arrive 1 to 90 days after their charge; a
small share of events arrive late (up to 3 hours), some beyond the 1-hour allowed lateness.
"""

import dataclasses

import numpy as np
import pyarrow as pa

START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
SECOND_US = 1_000_000
DAY_US = 86_400 * SECOND_US
COUNTRIES = np.array(["US", "GB", "DE", "FR", "BR", "IN", "NG", "CA"])
CURRENCY = {"US": "usd", "GB": "gbp", "DE": "eur", "FR": "eur", "BR": "brl", "IN": "inr", "NG": "ngn", "CA": "cad"}
OTHER_REASONS = np.array(["product_not_received", "duplicate", "subscription_canceled", "credit_not_processed"])

SCHEMA = pa.schema([
    ("seq", pa.int64()),
    ("event_time", pa.timestamp("us", tz="UTC")),
    ("stream", pa.string()),
    ("charge_id", pa.string()),
    ("card_id", pa.string()),
    ("merchant_id", pa.string()),
    ("ip", pa.string()),
    ("amount", pa.int64()),
    ("currency", pa.string()),
    ("country", pa.string()),
    ("reason", pa.string()),
])


@dataclasses.dataclass(frozen=True)
class Config:
    charges: int = 200_000  # legitimate and fraudulent charges together (approximately)
    days: int = 120  # charges span this many days; disputes may follow for 90 more
    seed: int = 7
    late_fraction: float = 0.015


class _Charges:
    """Column lists of charges being generated; each pattern appends a batch."""

    def __init__(self):
        self.cols = {k: [] for k in ("t", "card", "merchant", "ip", "amount", "country", "fraud")}

    def add(self, **cols):
        n = len(cols["t"])
        for k, v in cols.items():
            self.cols[k].append(np.broadcast_to(np.asarray(v), (n,)))

    def arrays(self):
        return {k: np.concatenate(v) for k, v in self.cols.items()}


def generate(cfg: Config = Config()) -> pa.Table:
    rng = np.random.default_rng(cfg.seed)
    n_cards = max(cfg.charges // 10, 50)
    n_merchants = max(cfg.charges // 100, 20)
    n_ips = max(cfg.charges // 8, 50)
    span_us = cfg.days * DAY_US

    card_country = rng.choice(COUNTRIES, size=n_cards, p=[.45, .12, .1, .08, .08, .07, .03, .07])
    card_ip = rng.integers(0, n_ips, size=n_cards)
    card_favorites = rng.integers(0, n_merchants, size=(n_cards, 3))
    merchant_scale = rng.lognormal(8.0, 0.7, size=n_merchants)  # typical amount, minor units
    risky_merchants = rng.choice(n_merchants, size=max(n_merchants // 50, 1), replace=False)
    risky_ips = rng.choice(n_ips, size=max(n_ips // 200, 5), replace=False)
    charges = _Charges()

    # Legitimate spending: cards buy mostly at their favourite merchants, from home.
    n_legit = int(cfg.charges * 0.975)
    activity = rng.lognormal(0.0, 1.0, size=n_cards)  # some cards are used far more than others
    card = rng.choice(n_cards, size=n_legit, p=activity / activity.sum())
    fav = card_favorites[card, rng.integers(0, 3, size=n_legit)]
    merchant = np.where(rng.random(n_legit) < 0.85, fav, rng.integers(0, n_merchants, size=n_legit))
    ip = np.where(rng.random(n_legit) < 0.9, card_ip[card], rng.integers(0, n_ips, size=n_legit))
    charges.add(t=rng.integers(0, span_us, size=n_legit), card=card, merchant=merchant, ip=ip,
                amount=(merchant_scale[merchant] * rng.lognormal(0, 0.5, size=n_legit)).astype(np.int64),
                country=card_country[card], fraud=False)

    budget = cfg.charges - n_legit
    # Card testing: a risky IP runs a few stolen cards through one merchant, small amounts,
    # minutes apart; some cards then take a large charge within the hour.
    while budget > 0:
        t0 = rng.integers(0, span_us)
        cards = rng.integers(0, n_cards, size=rng.integers(3, 9))
        ip_ = rng.choice(risky_ips)
        m = rng.integers(0, n_merchants)
        for c in cards:
            k = int(rng.integers(2, 6))
            charges.add(t=t0 + rng.integers(0, 600 * SECOND_US, size=k), card=c, merchant=m, ip=ip_,
                        amount=rng.integers(50, 300, size=k), country=rng.choice(COUNTRIES), fraud=True)
            budget -= k
            if rng.random() < 0.3:
                charges.add(t=[t0 + rng.integers(600, 3600) * SECOND_US], card=c,
                            merchant=rng.integers(0, n_merchants), ip=ip_,
                            amount=[int(rng.lognormal(10.5, 0.5))], country=rng.choice(COUNTRIES), fraud=True)
                budget -= 1
        # Stolen card spree: one card, many merchants, large amounts, within hours.
        c = rng.integers(0, n_cards)
        k = int(rng.integers(5, 13))
        spree_ip = rng.choice(risky_ips) if rng.random() < 0.5 else rng.integers(0, n_ips)
        charges.add(t=rng.integers(0, span_us) + rng.integers(0, 6 * 3600 * SECOND_US, size=k), card=c,
                    merchant=rng.choice(n_merchants, size=k, replace=False), ip=spree_ip,
                    amount=rng.lognormal(10.0, 0.6, size=k).astype(np.int64),
                    country=rng.choice(COUNTRIES), fraud=True)
        budget -= k
        # Risky merchants: fraud that looks ordinary, except where it happens.
        k = 4
        charges.add(t=rng.integers(0, span_us, size=k), card=rng.integers(0, n_cards, size=k),
                    merchant=rng.choice(risky_merchants, size=k), ip=rng.integers(0, n_ips, size=k),
                    amount=rng.lognormal(9.0, 0.7, size=k).astype(np.int64),
                    country=card_country[rng.integers(0, n_cards, size=k)], fraud=True)
        budget -= k

    ch = charges.arrays()
    order = np.argsort(ch["t"], kind="stable")
    ch = {k: v[order] for k, v in ch.items()}
    n = len(ch["t"])
    t = START_US + ch["t"].astype(np.int64)
    charge_id = np.char.add("ch_", np.char.zfill(np.arange(n).astype(str), 8))

    # Disputes: most fraud is disputed as "fraudulent"; a little legit spend is disputed for
    # other reasons, more of it at risky merchants, and a sliver as (friendly) fraud.
    fraud = ch["fraud"].astype(bool)
    risky_m = np.isin(ch["merchant"], risky_merchants)
    p_dispute = np.where(fraud, 0.85, np.where(risky_m, 0.03, 0.004))
    disputed = rng.random(n) < p_dispute
    reason = np.where(fraud | (rng.random(n) < 0.1), "fraudulent", rng.choice(OTHER_REASONS, size=n))
    d_idx = np.flatnonzero(disputed)
    d_time = t[d_idx] + rng.integers(DAY_US, 90 * DAY_US + 1, size=len(d_idx))

    m_ids = np.char.add("m_", np.char.zfill(ch["merchant"].astype(str), 5))
    event_time = np.concatenate([t, d_time])
    stream = np.concatenate([np.full(n, "charge"), np.full(len(d_idx), "dispute")])
    # Arrival = event time + a small delay; a few events arrive minutes to hours late.
    delay = rng.exponential(2 * SECOND_US, size=len(event_time)).astype(np.int64)
    late = rng.random(len(event_time)) < cfg.late_fraction
    delay[late] = rng.integers(5 * 60 * SECOND_US, 3 * 3600 * SECOND_US, size=int(late.sum()))
    arrival = np.lexsort((np.arange(len(event_time)), event_time + delay))

    def both(charge_values, dispute_values):
        return np.concatenate([charge_values, dispute_values]).astype(object)[arrival]

    none = np.full(len(d_idx), None, dtype=object)
    table = pa.table({
        "seq": np.arange(1, len(arrival) + 1, dtype=np.int64),
        "event_time": pa.array(event_time[arrival], type=pa.timestamp("us", tz="UTC")),
        "stream": stream[arrival],
        "charge_id": both(charge_id, charge_id[d_idx]),
        "card_id": both(np.char.add("card_", ch["card"].astype(str)), none),
        "merchant_id": both(m_ids, m_ids[d_idx]),
        "ip": both(np.char.add("ip_", ch["ip"].astype(str)), none),
        "amount": pa.array(both(ch["amount"], none), type=pa.int64()),
        "currency": both(np.vectorize(CURRENCY.get)(ch["country"]), none),
        "country": both(ch["country"], none),
        "reason": both(np.full(n, None, dtype=object), reason[d_idx]),
    }, schema=SCHEMA)
    return table
