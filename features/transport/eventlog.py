"""Event transports for the consumer: a local append-only log (the embedded default) and Redis
Streams (the real transport). Both hand out events in order together with an opaque position
to resume from; an event is a dict with seq, event_time (ISO-8601 or microseconds), stream and
fields.

The local log is a file of JSON lines; its position is a byte offset, and only complete lines
(ending in a newline) are read, so a writer caught mid-append is never half-consumed.
"""
from __future__ import annotations

import datetime
import json
import os
import pathlib

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def micros(value) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, datetime.datetime):
        dt = value
    else:
        dt = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    delta = dt - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _jsonable(event: dict) -> dict:
    out = dict(event)
    t = out.pop("t", None)
    out["event_time"] = micros(out.get("event_time", t))
    return out


class LocalLog:
    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)

    def append(self, events) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            for e in events:
                fh.write(json.dumps(_jsonable(e), separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def read(self, position, limit: int) -> tuple[list[dict], object]:
        offset = int(position or 0)
        if not self.path.exists():
            return [], offset
        out = []
        with self.path.open("rb") as fh:
            fh.seek(offset)
            while len(out) < limit:
                line = fh.readline()
                if not line.endswith(b"\n"):
                    break  # end of file, or a line still being written
                offset += len(line)
                if line.strip():
                    out.append(json.loads(line))
        return out, offset


class RedisStreamLog:
    """Events as entries of a Redis stream (field `e`: the event JSON); position: entry id."""

    def __init__(self, url: str, key: str):
        import redis

        self.r = redis.Redis.from_url(url)
        self.key = key

    def append(self, events) -> None:
        pipe = self.r.pipeline(transaction=False)
        for e in events:
            pipe.xadd(self.key, {"e": json.dumps(_jsonable(e), separators=(",", ":"))})
        pipe.execute()

    def read(self, position, limit: int, block_ms: int | None = None) -> tuple[list[dict], object]:
        start = position or "0-0"
        reply = self.r.xread({self.key: start}, count=limit, block=block_ms)
        if not reply:
            return [], start
        entries = reply[0][1]
        return [json.loads(fields[b"e"]) for _, fields in entries], entries[-1][0].decode()
