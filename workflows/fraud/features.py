"""The fraud workflow's training table: features/defs/fraud.feat, materialized by the
feature language's batch target (DuckDB), so training sees exactly what the online target
serves in production (the parity tests in features/ hold the two together).
"""

import pathlib
import tempfile

import duckdb
import pyarrow as pa

from roundhouse.features.language import loader
from roundhouse.features.targets.batch import duckdb_target

# In runfiles (and in the .par) the definitions sit at the same place as in the source tree.
DEFS = pathlib.Path(__file__).parents[2] / "features" / "defs" / "fraud.feat"

# The published features (features/defs/features.lock) this workflow trains on.
FEATURES = [
    "amount",
    "card_charges_1h",
    "card_charges_24h",
    "card_charges_7d",
    "card_amount_sum_7d",
    "card_amount_avg_7d",
    "card_amount_avg_30d",
    "card_amount_max_30d",
    "card_distinct_merchants_24h",
    "card_distinct_merchants_30d",
    "merchant_charges_1h",
    "ip_distinct_cards_24h",
    "merchant_disputes_30d",
    "amount_to_card_avg_30d",
]
LABEL = "is_fraud"


def training_table(events_path: str | pathlib.Path) -> pa.Table:
    """One row per charge, ordered by seq: seq, too_late, the features, the label, and the
    charge's event_time and charge_id (for time-based holdouts and for looking rows up)."""
    program = loader.load(DEFS)
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "table.parquet"
        duckdb_target.materialize(program, str(events_path), str(out))
        con = duckdb.connect()
        try:
            return con.sql(
                "SELECT t.*, e.event_time, e.charge_id FROM read_parquet($1) t "
                "JOIN read_parquet($2) e USING (seq) ORDER BY seq", params=[str(out), str(events_path)],
            ).to_arrow_table()
        finally:
            con.close()
