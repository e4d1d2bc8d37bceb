"""bazel run //features:consume -- --defs F.feat
        [--log events.jsonl | --redis-stream KEY]     (transport; default: local log)
        [--store memory --snapshot state.snapshot | --store redis --namespace NS]
        [--redis-url URL] [--follow] [--batch N] [--poll S]
        [--archive DIR_OR_S3_URL [--archive-max-events N] [--archive-max-seconds S]]

Tails the event log and keeps the online state store current, committing the log position
together with the state. Other processes (the scorer) read features from the store.

With --archive, the events read are also written as Parquet files in the events format to a
local directory or s3://bucket/prefix, a file per N events or per S seconds (whichever comes
first) and at the end; each event exactly once across restarts, resuming from the archive's
last file (features/transport/archive.py). `--store none` runs an archiver alone. The archive
is an input of materialize and replay (`--events DIR`).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from roundhouse.features.commands import cli
from roundhouse.features.language import loader
from roundhouse.features.language.errors import FeatureError
from roundhouse.features.targets.online import stores
from roundhouse.features.targets.online.program import OnlineProgram
from roundhouse.features.transport import archive as archive_mod
from roundhouse.features.transport import consume, eventlog


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="consume", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--defs", required=True)
    ap.add_argument("--log", default="events.jsonl", help="local append-only log (JSON lines)")
    ap.add_argument("--redis-stream", default=None, help="read this Redis stream instead")
    ap.add_argument("--store", choices=["memory", "redis", "none"], default="memory",
                    help="online state store (none: only archive)")
    ap.add_argument("--snapshot", default="features.snapshot", help="memory store snapshot")
    ap.add_argument("--namespace", default=None, help="redis store key prefix")
    ap.add_argument("--redis-url", default=cli.default_redis_url())
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--follow", action="store_true", help="keep tailing (default: stop at end)")
    ap.add_argument("--poll", type=float, default=0.5, help="seconds between reads of a quiet log")
    ap.add_argument("--archive", default=None, metavar="DIR_OR_S3_URL",
                    help="also write the events as Parquet files here (local dir or s3://)")
    ap.add_argument("--archive-max-events", type=int, default=100_000,
                    help="events per archive file (default 100000)")
    ap.add_argument("--archive-max-seconds", type=float, default=None,
                    help="write a file once its oldest event has waited this long")
    args = ap.parse_args(argv)
    if args.store == "none" and not args.archive:
        return cli.fail("consume: --store none needs --archive (nothing else to write)")
    if args.archive_max_events < 1:
        return cli.fail("consume: --archive-max-events must be at least 1")
    if args.archive_max_seconds is not None and args.archive_max_seconds <= 0:
        return cli.fail("consume: --archive-max-seconds must be positive")
    try:
        program = loader.load(cli.path(args.defs))
    except FeatureError as exc:
        return cli.fail(str(exc))
    ev = OnlineProgram(program)
    if args.redis_stream:
        log = eventlog.RedisStreamLog(args.redis_url, args.redis_stream)
        source = f"redis-stream:{args.redis_stream}"
    else:
        log = eventlog.LocalLog(cli.path(args.log))
        source = f"log:{log.path}"
    archive = None
    if args.archive:
        uri = args.archive if "://" in args.archive else str(cli.path(args.archive))
        try:
            archive = archive_mod.Archive(program, uri, max_events=args.archive_max_events,
                                          max_seconds=args.archive_max_seconds, source=source)
        except (archive_mod.ArchiveError, ValueError, OSError) as exc:
            return cli.fail(f"consume: --archive {args.archive}: {exc}")
    if args.store == "memory":
        store = stores.MemoryStore(ev, cli.path(args.snapshot))
    elif args.store == "redis":
        store = stores.RedisStore(ev, args.redis_url, namespace=args.namespace)
    else:
        store = None
    start = time.monotonic()

    def report(p):
        line = {"msg": "batch committed", "events": p.events, "batches": p.batches}
        if store is not None:
            line.update(position=store.position, last_seq=store.meta[1])
        if archive is not None:
            line.update(archive_files=archive.files, archive_last_seq=archive.last_seq,
                        archive_buffered=archive.buffered)
        line["elapsed_s"] = round(time.monotonic() - start, 3)
        print(json.dumps(line), flush=True)

    def stop(signum, frame):
        raise KeyboardInterrupt  # SIGTERM: write the archive's buffer, then exit

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        progress = consume.run(store, log, batch=args.batch, follow=args.follow,
                               poll=args.poll, on_batch=report, archive=archive)
    except KeyboardInterrupt:
        if archive is not None:
            archive.flush()
        return 0
    except archive_mod.ArchiveError as exc:
        return cli.fail(f"consume: --archive {args.archive}: {exc}")
    finally:
        signal.signal(signal.SIGTERM, previous)
        if store is not None:
            store.close()
        if archive is not None:
            archive.close()
    done = {"msg": "caught up", "events": progress.events}
    if store is not None:
        done["position"] = store.position
    if archive is not None:
        done.update(archived=progress.archived, archive_files=archive.files,
                    archive_last_seq=archive.last_seq)
    print(json.dumps(done), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
