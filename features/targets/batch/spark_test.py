"""materialize --engine spark writes the same training table as DuckDB."""
import pathlib

import pyarrow.parquet as pq

from roundhouse.features.commands import materialize_main
from roundhouse.features.language import loader
from roundhouse.features.testing import gen

FEATURES = pathlib.Path(__file__).parents[2]


def test_spark_and_duckdb_write_the_same_training_table(tmp_path):
    defs = str(FEATURES / "defs" / "fraud.feat")
    src = tmp_path / "events.parquet"
    pq.write_table(gen.generate(loader.load(defs), 300, 17), src)
    outs = {}
    for engine in ("duckdb", "spark"):
        outs[engine] = tmp_path / f"{engine}.parquet"
        assert materialize_main.main(["--defs", defs, "--events", str(src), "--out",
                                      str(outs[engine]), "--engine", engine]) == 0
    a, b = pq.read_table(outs["duckdb"]), pq.read_table(outs["spark"])
    assert a.schema == b.schema
    assert a.num_rows > 100
    assert a.equals(b)
