"""`bazel run //scoring:server -- --port N`: the scorer.

Embedded defaults: models and tags from the model store the training side writes
($ROUNDHOUSE_HOME, or --store s3://bucket/prefix), online feature state in this process
(snapshotted under $ROUNDHOUSE_HOME/scoring/state; a restart resumes), every tag served.
Real parts by flag: --features-store redis://HOST:PORT/DB shares the state among worker
processes (--workers) and scorers and with //features:consume; --ingest stream hands events
to the consumer through --redis-stream KEY or --event-log FILE; --shard NAME serves one shard
of scoring/shards.yaml.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import logging
import os
import pathlib
import signal
import sys
import tempfile
import threading
import time

from granian.constants import Interfaces
from granian.log import LogLevels
from granian.server import MPServer

from roundhouse.features.transport import eventlog
from roundhouse.platform.home import default_home
from roundhouse.platform.registry.store import open_store
from roundhouse.scoring import metrics, shards as shards_lib
from roundhouse.scoring.app import create_app
from roundhouse.scoring.feature_state import Ingest, LocalFeatureState, RedisFeatureState, StateError
from roundhouse.scoring.service import Scorer, load_definitions

_HERE = pathlib.Path(__file__).parent  # in runfiles: not resolve(), which leads to the source tree
DEFAULT_DEFS = _HERE.parent / "features" / "defs"
DEFAULT_SHARDS = _HERE / "shards.yaml"


def parse_args(argv):
    home = default_home()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--store", default=os.environ.get("ROUNDHOUSE_STORE", str(home)),
                   help="model store: a directory or s3://bucket/prefix")
    p.add_argument("--defs", type=pathlib.Path, default=DEFAULT_DEFS, help="folder of feature definitions")
    p.add_argument("--features-store", default="memory",
                   help="online state: memory (this process) or redis://HOST:PORT/DB")
    p.add_argument("--state-dir", type=pathlib.Path, default=home / "scoring" / "state",
                   help="snapshots and write-ahead log of the in-process state")
    p.add_argument("--ingest", choices=[i.value for i in Ingest], default=Ingest.STORE.value)
    p.add_argument("--redis-stream", help="with --ingest stream: the Redis Stream key (on --features-store)")
    p.add_argument("--event-log", type=pathlib.Path, help="with --ingest stream: a local event log file")
    p.add_argument("--namespace", help="Redis key prefix of the state (default: by definitions)")
    p.add_argument("--shards", type=pathlib.Path, default=DEFAULT_SHARDS)
    p.add_argument("--shard", help="serve only this shard's tags")
    p.add_argument("--threads", type=int,
                   help="Python threads running requests in each worker process (default: the "
                        "shard's tier, else 1). Python runs one at a time, so more cost thread "
                        "switches; a concurrency limit answers 429 only below the thread count")
    p.add_argument("--workers", type=int, default=1, help="worker processes (needs --features-store redis://)")
    p.add_argument("--max-concurrency", type=int,
                   help="requests at once per process before 429 (default: the shard's tier)")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between tag checks")
    args = p.parse_args(argv)
    memory = args.features_store == "memory"
    if not memory and not args.features_store.startswith("redis://"):
        p.error(f"--features-store {args.features_store!r}: expected memory or redis://HOST:PORT/DB")
    if memory and args.workers > 1:
        p.error("--workers > 1 with the in-process feature state would keep one state per process; "
                "use --threads, or share the state with --features-store redis://...")
    if memory and args.ingest != Ingest.STORE.value:
        p.error(f"--ingest {args.ingest} leaves the in-process state to another process, which cannot "
                "reach it; use --features-store redis://... (the consumer's store)")
    if args.ingest == Ingest.STREAM.value and not (args.redis_stream or args.event_log):
        p.error("--ingest stream needs --redis-stream KEY or --event-log FILE")
    return args


def state_opener(args):
    if args.features_store == "memory":
        return lambda program: LocalFeatureState(program, args.state_dir)
    log = None
    if args.ingest == Ingest.STREAM.value:
        log = (eventlog.RedisStreamLog(args.features_store, args.redis_stream) if args.redis_stream
               else eventlog.LocalLog(args.event_log))
    return lambda program: RedisFeatureState(program, args.features_store, Ingest(args.ingest), log,
                                             namespace=args.namespace)


def _keep_heap_frozen(every: float = 1.0, full_every: float = 600.0) -> None:
    """Moves what survived the young collections out of the collector's sight every second.

    The online state is millions of small lists, ints and strings that never form cycles, but a
    full collection scans all of them: tens of ms stopping every request (p99 at one client
    33 ms with the collector as it comes, 2 ms with this). What is frozen while still in use and
    later becomes cyclic garbage would never be collected, so every `full_every` seconds the
    heap is unfrozen and collected once in full.
    """
    def run():
        last_full = time.monotonic()
        while True:
            time.sleep(every)
            if time.monotonic() - last_full >= full_every:
                gc.unfreeze()
                gc.collect()
                last_full = time.monotonic()
            else:
                gc.collect(1)  # the young generations' garbage goes first, not into the freeze
            gc.freeze()
    threading.Thread(target=run, name="heap-freezer", daemon=True).start()


def _end_with_parent() -> None:
    """The worker dies with its supervisor, even when that is SIGKILLed (Linux prctl): a kill
    of the scorer is then a crash of the whole scorer, and a restart resumes from the log."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class _Worker:
    """What one granian worker process runs: its own scorer (models, tag watcher, state) and
    the application over it, made in the worker after the fork and closed when it stops."""

    def __init__(self, args, routing: shards_lib.Routing, shard: shards_lib.Shard | None, limit: int):
        self.args, self.routing, self.shard, self.limit = args, routing, shard, limit
        self.scorer: Scorer | None = None

    def app(self):
        _end_with_parent()
        args = self.args
        self.scorer = Scorer(open_store(args.store), load_definitions(args.defs), state_opener(args),
                             self.routing, self.shard, poll_seconds=args.poll)
        try:
            self.scorer.start()
        except StateError as e:
            raise SystemExit(f"scorer: {e}") from None
        _keep_heap_frozen()
        return create_app(self.scorer, max_concurrency=self.limit)

    def run(self, *spawn_args, **spawn_kwargs):
        try:
            MPServer._spawn_wsgi_worker(*spawn_args, **spawn_kwargs)
        finally:
            if self.scorer is not None:
                self.scorer.close()  # the in-process state is snapshotted on the way out


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(process)d %(name)s %(message)s")
    routing = shards_lib.load(args.shards)
    shard = None
    if args.shard:
        shard = routing.shards.get(args.shard)
        if shard is None:
            raise SystemExit(f"scorer: --shard {args.shard!r} is not in {args.shards} "
                             f"(it has {', '.join(routing.shards)})")
    limit = args.max_concurrency or (shard.tier.max_concurrency if shard else 64)
    threads = args.threads or (shard.tier.threads if shard else 1)
    counts = None
    if args.workers > 1:
        counts = tempfile.TemporaryDirectory(prefix="rh-scorer-metrics-")
        metrics.share_between_processes(counts.name)
    logging.info("scorer on http://%s:%d (models %s, features %s, ingest %s, shard %s, %d worker(s))",
                 args.host, args.port, args.store, args.features_store, args.ingest,
                 args.shard or "(all tags)", args.workers)
    # granian: HTTP in Rust, the Flask app in `--threads` Python threads of each worker process
    # (a worker process even with --workers 1, so the state's owner is always a worker). Past
    # `limit` requests in the app the app answers 429; granian holds no more than that waiting.
    server = MPServer("roundhouse.scoring.server", address=args.host, port=args.port,
                      interface=Interfaces.WSGI, workers=args.workers, blocking_threads=threads,
                      backpressure=limit + threads, backlog=1024, log_level=LogLevels.warning)
    worker = _Worker(args, routing, shard, limit)
    try:
        server.serve(spawn_target=worker.run, target_loader=worker.app, wrap_loader=False)
    finally:
        if counts is not None:
            counts.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
