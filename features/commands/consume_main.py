"""bazel run //features:consume -- --defs F.feat
        [--log events.jsonl | --redis-stream KEY]     (transport; default: local log)
        [--store memory --snapshot state.snapshot | --store redis --namespace NS]
        [--redis-url URL] [--follow] [--batch N]

Tails the event log and keeps the online state store current, committing the log position
together with the state. Other processes (the scorer) read features from the store.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from roundhouse.features.commands import cli
from roundhouse.features.language import loader
from roundhouse.features.language.errors import FeatureError
from roundhouse.features.targets.online import stores
from roundhouse.features.targets.online.program import OnlineProgram
from roundhouse.features.transport import consume, eventlog


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="consume", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--defs", required=True)
    ap.add_argument("--log", default="events.jsonl", help="local append-only log (JSON lines)")
    ap.add_argument("--redis-stream", default=None, help="read this Redis stream instead")
    ap.add_argument("--store", choices=["memory", "redis"], default="memory")
    ap.add_argument("--snapshot", default="features.snapshot", help="memory store snapshot")
    ap.add_argument("--namespace", default=None, help="redis store key prefix")
    ap.add_argument("--redis-url", default=cli.default_redis_url())
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--follow", action="store_true", help="keep tailing (default: stop at end)")
    args = ap.parse_args(argv)
    try:
        program = loader.load(cli.path(args.defs))
    except FeatureError as exc:
        return cli.fail(str(exc))
    ev = OnlineProgram(program)
    if args.store == "memory":
        store = stores.MemoryStore(ev, cli.path(args.snapshot))
    else:
        store = stores.RedisStore(ev, args.redis_url, namespace=args.namespace)
    log = eventlog.RedisStreamLog(args.redis_url, args.redis_stream) if args.redis_stream \
        else eventlog.LocalLog(cli.path(args.log))
    start = time.monotonic()

    def report(p):
        print(json.dumps({"msg": "batch committed", "events": p.events, "batches": p.batches,
                          "position": store.position, "last_seq": store.meta[1],
                          "elapsed_s": round(time.monotonic() - start, 3)}), flush=True)

    try:
        progress = consume.run(store, log, batch=args.batch, follow=args.follow,
                               on_batch=report)
    except KeyboardInterrupt:
        return 0
    finally:
        store.close()
    print(json.dumps({"msg": "caught up", "events": progress.events,
                      "position": store.position}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
