"""materialize --engine spark writes the same training table as DuckDB: in local mode and on a
standalone cluster of two workers, as a Parquet dataset in seq order across its part files."""
import pathlib

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from roundhouse.features.commands import materialize_main
from roundhouse.features.language import loader
from roundhouse.features.targets.batch import spark_target
from roundhouse.features.testing import gen
from roundhouse.features.testing.compare import assert_rows_equal
from roundhouse.testing.spark_cluster import spark_master  # noqa: F401 (a fixture)

FEATURES = pathlib.Path(__file__).parents[2]
DEFS = str(FEATURES / "defs" / "fraud.feat")
# Without AQE's coalescing, a small table still spreads over spark.sql.shuffle.partitions (4)
# part files, so the order across files is tested too.
SPREAD = ["--spark-conf", "spark.sql.adaptive.coalescePartitions.enabled=false"]


def _events(tmp_path, n: int, seed: int) -> pathlib.Path:
    src = tmp_path / "events.parquet"
    pq.write_table(gen.generate(loader.load(DEFS), n, seed), src)
    return src


def _materialize(src, out, *extra) -> None:
    assert materialize_main.main(["--defs", DEFS, "--events", str(src), "--out", str(out),
                                  *extra]) == 0


def _dataset_in_file_order(out: pathlib.Path) -> tuple[pa.Table, list[str]]:
    """The dataset read file by file in name order, as a reader without pyarrow would."""
    parts = sorted(p.name for p in out.iterdir() if p.name.startswith("part-"))
    return pa.concat_tables([pq.read_table(out / p) for p in parts]), parts


def _assert_same_table(spark: pa.Table, duck: pa.Table) -> None:
    assert [(f.name, f.type) for f in spark.schema] == [(f.name, f.type) for f in duck.schema]
    assert duck.num_rows > 100
    assert_rows_equal(spark.to_pylist(), duck.to_pylist())


def test_spark_local_writes_the_duckdb_table_as_a_dataset_in_seq_order(tmp_path):
    src = _events(tmp_path, 300, 17)
    _materialize(src, tmp_path / "duckdb.parquet")
    _materialize(src, tmp_path / "spark", "--engine", "spark", *SPREAD)
    duck = pq.read_table(tmp_path / "duckdb.parquet")
    table, parts = _dataset_in_file_order(tmp_path / "spark")
    assert len(parts) > 1
    _assert_same_table(table, duck)
    # pyarrow.dataset (the training service's Parquet source) reads the folder the same way.
    assert ds.dataset(str(tmp_path / "spark"), format="parquet").to_table().equals(table)
    # A second run replaces the dataset; a folder holding anything else is refused.
    _materialize(src, tmp_path / "spark", "--engine", "spark")
    assert _dataset_in_file_order(tmp_path / "spark")[0].equals(table)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert materialize_main.main(["--defs", DEFS, "--events", str(src), "--out",
                                  str(tmp_path / "other"), "--engine", "spark"]) == 1
    assert (tmp_path / "other" / "notes.txt").exists()


def test_spark_on_a_two_worker_cluster_matches_duckdb(tmp_path, spark_master):
    src = _events(tmp_path, 600, 23)
    _materialize(src, tmp_path / "duckdb.parquet")
    _materialize(src, tmp_path / "spark", "--engine", "spark", "--spark-master", spark_master,
                 *SPREAD)
    # It ran there: the process's session is the cluster's, with one executor per worker.
    sc = spark_target.session(spark_master, dict([SPREAD[1].split("=")])).sparkContext
    assert sc.master == spark_master
    assert sc._jsc.sc().getExecutorMemoryStatus().size() == 3  # two executors and the driver
    table, parts = _dataset_in_file_order(tmp_path / "spark")
    assert len(parts) > 1
    seqs = table.column("seq").to_pylist()
    assert seqs == sorted(seqs)
    _assert_same_table(table, pq.read_table(tmp_path / "duckdb.parquet"))


def test_an_in_order_log_takes_the_frames_alone_and_gives_the_same_table(tmp_path):
    program = loader.load(DEFS)
    log = gen.generate(program, 400, 29)
    # the same events with seqs in event_time order: nothing late, nothing too late
    log = log.sort_by([("event_time", "ascending"), ("seq", "ascending")])
    log = log.set_column(log.schema.get_field_index("seq"), "seq",
                         pa.array(range(log.num_rows), pa.int64()))
    pq.write_table(log, tmp_path / "in_order.parquet")
    shuffled = _events(tmp_path, 400, 29)
    spark = spark_target.session()
    for path, in_order in ((tmp_path / "in_order.parquet", True), (shuffled, False)):
        spark.read.parquet(str(path)).createOrReplaceTempView("order_check")
        assert spark_target.is_in_order(spark, "order_check") is in_order
    _materialize(tmp_path / "in_order.parquet", tmp_path / "duckdb.parquet")
    _materialize(tmp_path / "in_order.parquet", tmp_path / "spark", "--engine", "spark")
    _assert_same_table(_dataset_in_file_order(tmp_path / "spark")[0],
                       pq.read_table(tmp_path / "duckdb.parquet"))
    in_order = spark_target.SparkCompiler(program, in_order=True).sql("events")
    assert "`g0_lp`" not in in_order and "`g0_lp`" in spark_target.SparkCompiler(program).sql("events")


@pytest.mark.parametrize("table, words", [
    (pa.table({"seq": [1], "stream": ["charge"]}), "missing column 'event_time'"),
    (pa.table({"seq": [True], "event_time": [1], "stream": ["charge"]}),
     "column 'seq' is bool, expected int64"),
])
def test_a_wrong_schema_gets_the_duckdb_error_before_spark_starts(tmp_path, capsys, table,
                                                                 words):
    src = tmp_path / "bad.parquet"
    pq.write_table(table, src)
    errors = {}
    for engine in ("duckdb", "spark"):
        code = materialize_main.main(["--defs", DEFS, "--events", str(src), "--out",
                                      str(tmp_path / engine), "--engine", engine])
        assert code == 1
        errors[engine] = capsys.readouterr().err
    assert words in errors["spark"]
    assert errors["spark"] == errors["duckdb"]
