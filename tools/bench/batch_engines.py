"""Benchmark (prints figures; asserts nothing): the batch target's engines side by side on N
in-order charges (plus 1% disputes) of the fraud definitions, each run in a child process of
its own, with its wall time and peak memory:

  duckdb        materialize --engine duckdb (the compiled query, within --memory-limit)
  hand-written  the hand-written DuckDB query (tools/bench/hand_written.py), same settings
  spark-local   materialize --engine spark, local[2]
  spark-cluster materialize --engine spark on a standalone cluster of two workers (1 core
                each) started on loopback from pyspark's launcher (testing/spark_cluster.py)

Peak memory: the child's peak RSS (os.wait4's ru_maxrss; DuckDB runs in it), plus for Spark
the peak RSS (VmHWM) of the driver JVM and of each executor JVM, read from /proc just before
the session stops. The events are generated in a child too, a million rows at a time (one
Parquet row group each), so the generator's memory does not grow with N.

    bazel run //tools/bench:batch_engines -- [--events 2000000]
        [--engines duckdb,hand-written,spark-local,spark-cluster] [--memory-limit 2GB]
        [--threads N] [--spark-driver-memory 2g] [--worker-memory 2g] [--spark-partitions 8]
        [--workdir DIR]
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

FEATURES = pathlib.Path(__file__).parents[2] / "features"
DEFS = FEATURES / "defs" / "fraud.feat"
DAY = 86_400_000_000
CHUNK = 1_000_000
ENGINES = ("duckdb", "hand-written", "spark-local", "spark-cluster")


# ---------------------------------------------------------------------------- children
def generate(path: str, n_charges: int, seed: int = 7) -> int:
    """In-order charges over 60 days (100k cards, a thousand busy ones with 10% of the charges;
    5k merchants; 200k IPs, 5% null) and 1% disputes of earlier charges (half fraudulent),
    the distribution of tools/bench/features.py's synth, written CHUNK rows at a time."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from roundhouse.features.language import loader
    from roundhouse.features.transport import events

    program = loader.load(DEFS)
    schema = events.schema(program)
    rng = np.random.default_rng(seed)
    n_disputes = n_charges // 100
    n = n_charges + n_disputes
    t0 = int(datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc).timestamp()) * 10**6
    charges_before = 0
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, n, CHUNK):
            m = min(CHUNK, n - start)
            lo, hi = 60 * DAY * start // n, 60 * DAY * (start + m) // n
            t = np.sort(rng.integers(lo, max(hi, lo + 1), m)) + t0
            k = n_disputes * (start + m) // n - n_disputes * start // n
            is_dispute = np.zeros(m, bool)
            is_dispute[rng.choice(m, k, replace=False)] = True
            charge_no = charges_before + np.cumsum(~is_dispute) - 1
            ids = np.where(is_dispute, rng.integers(0, np.maximum(charge_no, 1)), charge_no)
            charges_before += int((~is_dispute).sum())

            def strs(prefix, values, mask=None):
                arr = pc.binary_join_element_wise(prefix, pa.array(values).cast(pa.string()), "")
                return arr if mask is None else pc.if_else(pa.array(mask), pa.nulls(m, pa.string()),
                                                           arr)

            cards = np.where(rng.random(m) < 0.1, rng.integers(0, 1000, m),
                             rng.integers(0, 100_000, m))
            d = pa.array(is_dispute)
            cols = {
                "seq": pa.array(np.arange(start, start + m, dtype=np.int64)),
                "event_time": pa.array(t, pa.int64()).cast(events.TIME),
                "stream": pc.if_else(d, "dispute", "charge"),
                "charge_id": strs("ch", ids),
                "card_id": strs("card", cards, is_dispute),
                "merchant_id": strs("m", rng.integers(0, 5000, m)),
                "ip": strs("ip", rng.integers(0, 200_000, m),
                           is_dispute | (rng.random(m) < 0.05)),
                "amount": pc.if_else(d, pa.nulls(m, pa.int64()),
                                     pa.array(rng.integers(100, 100_000, m))),
                "currency": pc.if_else(d, pa.nulls(m, pa.string()), "usd"),
                "country": pc.if_else(d, pa.nulls(m, pa.string()), "US"),
                "reason": pc.if_else(pa.array(is_dispute & (rng.random(m) < 0.5)), "fraudulent",
                                     pc.if_else(d, "other", pa.nulls(m, pa.string()))),
            }
            writer.write_table(pa.Table.from_pydict(cols, schema=schema), row_group_size=CHUNK)
    return n


def _hwm_mb(pid: int) -> float | None:
    """Peak RSS (VmHWM) of a live process, in MB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _executor_pids(app_id: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if b"org.apache.spark.executor.CoarseGrainedExecutorBackend" in cmd and \
                app_id.encode() in cmd:
            pids.append(int(entry))
    return pids


def child(args) -> dict:
    from roundhouse.features.language import loader

    program = loader.load(DEFS)
    out = {}
    start = time.perf_counter()
    if args.child == "generate":
        out["rows"] = generate(args.events_path, args.events)
    elif args.child == "duckdb":
        from roundhouse.features.targets.batch import duckdb_target
        duckdb_target.materialize(program, args.events_path, args.out, threads=args.threads,
                                  memory_limit=args.memory_limit)
    elif args.child == "hand-written":
        import duckdb

        from roundhouse.tools.bench.hand_written import HAND_WRITTEN
        con = duckdb.connect()
        spill = tempfile.mkdtemp(prefix=".hand-spill-", dir=os.path.dirname(args.out))
        if args.threads:
            con.execute(f"SET threads = {args.threads}")
        if args.memory_limit:
            con.execute(f"SET memory_limit = '{args.memory_limit}'")
        con.execute(f"SET temp_directory = '{spill}'")
        con.execute("SET preserve_insertion_order = false")
        con.execute(f"COPY ({HAND_WRITTEN.format(events=args.events_path)}) TO '{args.out}' "
                    "(FORMAT parquet)")
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    else:
        from pyspark import SparkContext

        from roundhouse.features.targets.batch import spark_target
        os.environ["ROUNDHOUSE_SPARK_MEMORY"] = args.spark_driver_memory
        conf = {"spark.sql.shuffle.partitions": str(args.spark_partitions)}
        if args.master.startswith("spark://"):
            conf["spark.executor.memory"] = args.worker_memory
        spark_target.materialize(program, args.events_path, args.out, master=args.master,
                                 conf=conf)
        spark = spark_target.session(args.master, conf)
        out["seconds"] = time.perf_counter() - start
        executors = [_hwm_mb(p) for p in _executor_pids(spark.sparkContext.applicationId)]
        out["executors_mb"] = [round(x) for x in executors if x]
        jvm = SparkContext._gateway.proc.pid
        spark.stop()
        out["jvm_mb"] = _hwm_mb(jvm)
    out.setdefault("seconds", time.perf_counter() - start)
    out["self_mb"] = _hwm_mb(os.getpid())
    return out


# ---------------------------------------------------------------------------- parent
def run_child(role: str, args, **kw) -> dict:
    """Run one role in a child process; returns its report plus wall time and ru_maxrss."""
    cmd = [sys.executable, "-S", os.path.abspath(__file__), "--child", role,
           "--events", str(args.events), "--events-path", args.events_path,
           "--memory-limit", args.memory_limit or "none", "--threads", str(args.threads or 0),
           "--spark-driver-memory", args.spark_driver_memory,
           "--worker-memory", args.worker_memory,
           "--spark-partitions", str(args.spark_partitions)]
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    start = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env)
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        if proc.returncode:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:]
            return {"error": f"exit {proc.returncode}: {tail}", "wall": wall}
    report = json.loads(stdout.decode().strip().splitlines()[-1])
    report.update(wall=wall, maxrss_mb=usage.ru_maxrss / 1024)
    return report


def _rows(path: str) -> int | str:
    import pyarrow.dataset as ds
    try:
        return ds.dataset(path, format="parquet").count_rows()
    except Exception as exc:  # noqa: BLE001 (a figure, not a check)
        return f"? ({exc})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2_000_000, help="charges (plus 1%% disputes)")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--memory-limit", default="2GB", help="DuckDB memory_limit ('none': 80%% "
                                                          "of RAM), for both DuckDB queries")
    ap.add_argument("--threads", type=int, default=0, help="DuckDB threads (0: all)")
    ap.add_argument("--spark-driver-memory", default="2g")
    ap.add_argument("--worker-memory", default="2g",
                    help="each cluster worker's memory, and spark.executor.memory")
    ap.add_argument("--spark-partitions", type=int, default=8,
                    help="spark.sql.shuffle.partitions")
    ap.add_argument("--workdir", default=None, help="default: a temporary folder, removed")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--events-path", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--master", default="local[2]", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.memory_limit = None if args.memory_limit.lower() == "none" else args.memory_limit
    args.threads = args.threads or None
    if args.child:
        print(json.dumps(child(args)))
        return 0

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        ap.error(f"unknown engines {sorted(unknown)}; choose from {', '.join(ENGINES)}")
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or stack.enter_context(
            tempfile.TemporaryDirectory(prefix="rh-bench-engines-"))
        os.makedirs(workdir, exist_ok=True)
        args.events_path = os.path.join(workdir, "events.parquet")
        g = run_child("generate", args)
        if "error" in g:
            print(f"generate failed: {g['error']}")
            return 1
        size = os.path.getsize(args.events_path) / 2**20
        print(f"data   {g['rows']} events ({args.events} in-order charges + 1% disputes, "
              f"{size:.0f} MB Parquet) generated in {g['wall']:.1f} s, peak RSS "
              f"{g['maxrss_mb']:.0f} MB")
        print(f"settings: DuckDB memory_limit {args.memory_limit or 'default (80% of RAM)'}, "
              f"threads {args.threads or 'all'}; Spark driver {args.spark_driver_memory}, "
              f"{args.spark_partitions} shuffle partitions, cluster: 2 workers x 1 core x "
              f"{args.worker_memory}")
        results = {}
        for engine in engines:
            out = os.path.join(workdir, f"out-{engine}" + ("" if engine.startswith("spark")
                                                           else ".parquet"))
            if engine == "spark-cluster":
                from roundhouse.testing.spark_cluster import spark_cluster
                with spark_cluster(workers=2, cores=1, memory=args.worker_memory) as master:
                    r = run_child("spark", args, out=out, master=master)
            elif engine == "spark-local":
                r = run_child("spark", args, out=out, master="local[2]")
            else:
                r = run_child(engine, args, out=out)
            r["rows"] = _rows(out) if "error" not in r else "-"
            results[engine] = r
            _print(engine, r)
            if os.path.isdir(out):
                shutil.rmtree(out, ignore_errors=True)
            elif os.path.exists(out):
                os.remove(out)
        print()
        print(f"{'engine':14s} {'wall s':>8s} {'work s':>8s} {'driver peak MB':>15s} "
              f"{'executors peak MB':>18s} {'rows':>10s}")
        for engine, r in results.items():
            if "error" in r:
                print(f"{engine:14s} failed after {r['wall']:.0f} s")
                continue
            driver = r["maxrss_mb"] + (r.get("jvm_mb") or 0)
            ex = "+".join(str(x) for x in r.get("executors_mb", [])) or "-"
            print(f"{engine:14s} {r['wall']:8.1f} {r['seconds']:8.1f} {driver:15.0f} {ex:>18s} "
                  f"{r['rows']:>10}")
        print("wall s: the child process start to exit (Spark: JVM start included); work s: "
              "the materialize call (or query) alone. driver peak: the child's peak RSS (for "
              "Spark plus its driver JVM's).")
    return 0


def _print(engine: str, r: dict) -> None:
    if "error" in r:
        print(f"{engine}: failed: {r['error']}")
        return
    jvm = f", driver JVM {r['jvm_mb']:.0f} MB" if r.get("jvm_mb") else ""
    ex = f", executors {r['executors_mb']} MB" if r.get("executors_mb") else ""
    print(f"{engine}: {r['wall']:.1f} s wall ({r['seconds']:.1f} s in materialize), python "
          f"process {r['maxrss_mb']:.0f} MB{jvm}{ex}, {r['rows']} rows", flush=True)


if __name__ == "__main__":
    sys.exit(main())
