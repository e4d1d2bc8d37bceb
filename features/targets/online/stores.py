"""State stores for the online target.

Both stores run the same generated evaluator over batches of events and commit the batch's
state together with the log position it reached, so a restart resumes exactly after the last
committed event (nothing lost, nothing counted twice; events at or before the committed seq
are skipped).

* MemoryStore: the state dicts are the store; `commit` writes an atomic snapshot (temp file +
  rename) holding state, max event_time, last seq and the log position.
* RedisStore: a batch first fetches the states of every key its events touch, runs on that
  cache, then writes the touched states, the meta (max event_time, last seq, position) and the
  evictions in one MULTI/EXEC transaction. A sorted set per window group indexes keys by their
  newest event_time so expired keys are deleted, not just forgotten.
"""
from __future__ import annotations

import json
import os
import pathlib
import pickle

from roundhouse.features.language.printer import fingerprint as program_fingerprint
from roundhouse.features.targets.online.layout import STATE_LAYOUT
from roundhouse.features.targets.online.program import OnlineProgram

SWEEP_EVERY = 50_000  # events between full eviction sweeps of the memory store


class StoreMismatch(RuntimeError):
    pass


def fingerprint(program) -> str:
    """The definitions' fingerprint and the state layout: state written by other definitions,
    or by an evaluator keeping its state in another shape, is never read."""
    return f"{program_fingerprint(program)}-s{STATE_LAYOUT}"


def _columns(rows, last, width: int) -> list:
    """Row tuples -> columns, without the rows at or before seq `last` (already applied)."""
    if last is not None:
        rows = [r for r in rows if r[0] > last]
    return [list(c) for c in zip(*rows)] if rows else [[] for _ in range(width)]


def _skip_applied(cols: list, last) -> list:
    """Columns without the events at or before seq `last` (a replay after a restart)."""
    seqs = cols[0]
    if last is None or not len(seqs) or min(seqs) > last:
        return cols
    keep = [i for i, q in enumerate(seqs) if q > last]
    return [None if c is None else [c[i] for i in keep] for c in cols]


class MemoryStore:
    kind = "memory"

    def __init__(self, online: OnlineProgram, snapshot: str | os.PathLike | None = None):
        self.online = online
        self.path = pathlib.Path(snapshot) if snapshot else None
        self.fingerprint = fingerprint(online.program)
        self.states = online.new_states()
        self.meta: list = [None, None]  # [max event_time, last seq]
        self.position = None
        self._since_sweep = 0
        if self.path is not None and self.path.exists():
            with self.path.open("rb") as fh:
                snap = pickle.load(fh)
            if snap["fingerprint"] != self.fingerprint:
                raise StoreMismatch(f"snapshot {self.path} was written by other definitions "
                                    f"({snap['fingerprint']} != {self.fingerprint}); start "
                                    "from an empty snapshot and replay the log")
            self.states, self.meta, self.position = snap["states"], snap["meta"], snap["position"]

    def process_batch(self, rows, out: list | None = None) -> None:
        """Apply row tuples in order; the values served to drivers go to `out` as tuples."""
        cols = _columns(rows, self.meta[1], len(self.online.columns))
        outs = self.online.new_outputs()
        self.process_columns(cols, outs)
        if out is not None:
            out.extend(zip(*outs))

    def process_columns(self, cols: list, out: list) -> None:
        """Apply a batch given as columns (OnlineProgram.columns); the values served to drivers
        are appended to the output columns `out` (OnlineProgram.new_outputs)."""
        cols = _skip_applied(cols, self.meta[1])
        self.online.run(cols, self.states, self.meta, out)
        self._since_sweep += len(cols[0])
        # A sweep visits every key: at most one visit per event on average.
        if self._since_sweep >= SWEEP_EVERY and self._since_sweep >= self.key_count():
            self.online.sweep(self.states, self.meta)
            self._since_sweep = 0

    def serve(self, event: dict) -> dict:
        row = self.online.row(event)
        values = self.online.compiled.serve(row, self.states, self.meta)
        return dict(zip(["seq", "too_late"] + self.online.outputs, values))

    def commit(self, position=None) -> None:
        if position is not None:
            self.position = position
        if self.path is None:
            return
        self.online.sweep(self.states, self.meta)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("wb") as fh:
            pickle.dump({"fingerprint": self.fingerprint, "states": self.states,
                         "meta": self.meta, "position": self.position}, fh,
                        protocol=pickle.HIGHEST_PROTOCOL)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def key_count(self) -> int:
        return sum(len(t) for t in self.states.values())

    def close(self) -> None:
        pass


class RedisStore:
    kind = "redis"

    def __init__(self, online: OnlineProgram, url: str, namespace: str | None = None,
                 fresh: bool = False):
        import redis  # only this store needs redis-py

        self.online = online
        self.fingerprint = fingerprint(online.program)
        self.ns = namespace or f"rh:features:{self.fingerprint}"
        self.r = redis.Redis.from_url(url)
        self.k_state, self.k_meta = f"{self.ns}:state", f"{self.ns}:meta"
        if fresh:
            self.clear()
        self.reload()

    def reload(self) -> None:
        """Re-read the meta (max event_time, last seq, position): another process sharing the
        namespace (a consumer, another scorer) may have moved it since."""
        meta = {k.decode(): v.decode() for k, v in self.r.hgetall(self.k_meta).items()}
        if meta and meta.get("fingerprint") != self.fingerprint:
            raise StoreMismatch(f"redis namespace {self.ns} holds state of other definitions; "
                                "use another --namespace or clear it")
        self.meta = [int(meta["max_t"]) if meta.get("max_t") else None,
                     int(meta["last_seq"]) if meta.get("last_seq") else None]
        self.position = json.loads(meta["position"]) if meta.get("position") else None

    def clear(self) -> None:
        keys = [self.k_state, self.k_meta] + [self._idx(g.id) for g in self.online.groups]
        self.r.delete(*keys)

    def _idx(self, gid: str) -> str:
        return f"{self.ns}:idx:{gid}"

    @staticmethod
    def _field(gid: str, key) -> str:
        return gid + "|" + json.dumps(key if not isinstance(key, tuple) else list(key))

    def _fetch(self, pairs) -> dict:
        states = self.online.new_states()
        pairs = list(pairs)
        if pairs:
            blobs = self.r.hmget(self.k_state, [self._field(g, k) for g, k in pairs])
            for (g, k), blob in zip(pairs, blobs):
                if blob is not None:
                    states[g][k] = pickle.loads(blob)
        return states

    def process_batch(self, rows, out: list | None = None) -> None:
        """Apply row tuples in order (one transaction); served values go to `out` as tuples."""
        outs = self.online.new_outputs()
        self._apply(_columns(rows, self.meta[1], len(self.online.columns)), outs)
        if out is not None:
            out.extend(zip(*outs))

    def process_columns(self, cols: list, out: list, batch: int = 2000) -> None:
        """Apply a batch given as columns, one transaction per `batch` events; served values
        are appended to the output columns `out` (OnlineProgram.new_outputs)."""
        cols = _skip_applied(cols, self.meta[1])
        for lo in range(0, len(cols[0]), batch):
            self._apply([None if c is None else c[lo:lo + batch] for c in cols], out)

    def _apply(self, cols: list, out: list, position=None) -> None:
        if not len(cols[0]) and position is None:
            return
        pairs: set = set()
        self.online.compiled.keys_run(cols, pairs)
        states = self._fetch(pairs)
        dirty: set = set()
        meta = list(self.meta)
        self.online.run(cols, states, meta, out, dirty)
        self._write(states, dirty, meta, position)
        self.meta = meta

    def _write(self, states, dirty, meta, position=None) -> None:
        lateness = self.online.program.lateness_micros
        kinds = {g.id: g for g in self.online.groups}
        evict = {}
        if meta[0] is not None and self.online.window_groups:
            # One round trip for every group's expired keys, not one per group.
            query = self.r.pipeline(transaction=False)
            for g in self.online.window_groups:
                query.zrangebyscore(self._idx(g.id), "-inf", f"({meta[0] - lateness - g.max_window}")
            for g, old in zip(self.online.window_groups, query.execute()):
                if old:
                    evict[g.id] = [m.decode() for m in old]
        pipe = self.r.pipeline(transaction=True)
        mapping, scores = {}, {}
        for gid, key in dirty:
            st = states[gid].get(key)
            field = self._field(gid, key)
            if st is None:
                pipe.hdel(self.k_state, field)
                continue
            mapping[field] = pickle.dumps(st, protocol=pickle.HIGHEST_PROTOCOL)
            if kinds[gid].kind == "window":
                # the newest event_time
                scores.setdefault(gid, {})[field] = self.online.times(kinds[gid], st)[-1]
        if mapping:
            pipe.hset(self.k_state, mapping=mapping)
        for gid, sc in scores.items():
            pipe.zadd(self._idx(gid), sc)
        for gid, members in evict.items():
            members = [m for m in members if m not in mapping]
            if members:
                pipe.hdel(self.k_state, *members)
                pipe.zrem(self._idx(gid), *members)
        fields = {"fingerprint": self.fingerprint,
                  "max_t": "" if meta[0] is None else str(meta[0]),
                  "last_seq": "" if meta[1] is None else str(meta[1])}
        if position is not None:
            fields["position"] = json.dumps(position)
        pipe.hset(self.k_meta, mapping=fields)
        pipe.execute()

    def serve(self, event: dict) -> dict:
        row = self.online.row(event)
        fn = self.online.compiled.keys.get(self.online.program.driver)
        states = self._fetch(fn(row))
        values = self.online.compiled.serve(row, states, self.meta)
        return dict(zip(["seq", "too_late"] + self.online.outputs, values))

    def commit(self, position=None) -> None:
        """State is committed with every batch; this records the log position too (atomically
        with the meta, in its own transaction when called without a batch)."""
        if position is not None:
            self.position = position
            self.r.hset(self.k_meta, mapping={"position": json.dumps(position),
                                              "fingerprint": self.fingerprint})

    def process_and_commit(self, rows, position, out: list | None = None) -> None:
        """One transaction for the batch's state and the position after it (the consumer)."""
        outs = self.online.new_outputs()
        self._apply(_columns(rows, self.meta[1], len(self.online.columns)), outs, position)
        if out is not None:
            out.extend(zip(*outs))
        self.position = position

    def key_count(self) -> int:
        return int(self.r.hlen(self.k_state))

    def close(self) -> None:
        self.r.close()
