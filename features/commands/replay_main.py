"""bazel run //features:replay -- --defs F.feat --events E.parquet --out O.parquet
                                 [--store memory|redis] [--redis-url URL]

Feeds the events in seq order through the online target and writes, for every driver event,
the values served just before that event was ingested.
"""
from __future__ import annotations

import argparse
import sys
import time
import uuid

from roundhouse.features.commands import cli
from roundhouse.features.language import loader
from roundhouse.features.language.errors import FeatureError
from roundhouse.features.targets.online import replay, stores
from roundhouse.features.targets.online.program import OnlineProgram
from roundhouse.features.transport.events import EventsError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="replay", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--defs", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--store", choices=["memory", "redis"], default="memory")
    ap.add_argument("--redis-url", default=cli.default_redis_url())
    args = ap.parse_args(argv)
    try:
        program = loader.load(cli.path(args.defs))
    except FeatureError as exc:
        return cli.fail(str(exc))
    ev = OnlineProgram(program)
    if args.store == "memory":
        store = stores.MemoryStore(ev)
    else:
        # A replay starts from empty state: its own namespace, removed afterwards.
        store = stores.RedisStore(ev, args.redis_url, namespace=f"rh:replay:{uuid.uuid4().hex}",
                                  fresh=True)
    start = time.monotonic()
    try:
        result = replay.replay(program, str(cli.path(args.events)), str(cli.path(args.out)),
                               store)
    except (EventsError, OSError) as exc:
        return cli.fail(f"replay: {exc}")
    finally:
        if args.store == "redis":
            store.clear()
        store.close()
    print(f"replay: {result.num_rows} driver rows to {cli.path(args.out)} "
          f"({args.store} store, {time.monotonic() - start:.2f}s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
