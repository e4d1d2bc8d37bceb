"""The online features of one definition file inside the scorer: serve, then ingest.

Each event gets the next seq (arrival order), is served the features as of just before it
(features.online), and is then ingested as `--ingest` says: applied to the state (`store`),
appended to the event log or Redis Stream for `//features:consume` (`stream`), or neither
(`none`: another process feeds the state). Serving and ingesting one event is one critical
section, so concurrent requests are numbered, served and applied in the same order: nothing
is lost or counted twice, and the state always equals a replay of the accepted events.

* LocalFeatureState (the embedded default): the features library's MemoryStore, owned by
  this process alone (a lock file refuses a second owner: with several worker processes each
  would otherwise keep its own state). Every event is first appended to a write-ahead log;
  the state is snapshotted every few seconds with the log position it covers, and a restart
  loads the snapshot and re-applies the log after it, so a killed scorer loses nothing. The
  log is a series of segments (events.<n>.jsonl); each snapshot starts a new one and, once
  it is on disk, deletes those it covers, so the log holds only what the last snapshot lacks.
* RedisFeatureState: the features library's RedisStore, shared by every worker of every
  scorer and by the consumer; a Redis lock orders the critical sections of all processes
  and a Redis counter numbers their events.
"""

from __future__ import annotations

import abc
import enum
import fcntl
import json
import logging
import os
import pathlib
import threading

from roundhouse.features.language import syntax as ast
from roundhouse.features.targets.online import stores
from roundhouse.features.targets.online.program import OnlineProgram
from roundhouse.features.transport import eventlog
from roundhouse.scoring.events import Event

log = logging.getLogger("roundhouse.scoring.state")


class Ingest(enum.Enum):
    STORE = "store"
    STREAM = "stream"
    NONE = "none"


class StateError(RuntimeError):
    """The state cannot be opened as configured (a second owner, a state of other definitions)."""


class FeatureState(abc.ABC):
    def __init__(self, program: ast.Program):
        self.program = program
        self.online = OnlineProgram(program)
        self.names = ["seq", "too_late"] + self.online.outputs

    @abc.abstractmethod
    def apply(self, event: Event) -> tuple[int, dict | None]:
        """Numbers, serves (driver events only; else None) and ingests one event."""

    def close(self) -> None:
        pass

    def _served(self, values) -> dict:
        return dict(zip(self.names, values))


def _segment_path(folder: pathlib.Path, n: int) -> pathlib.Path:
    return folder / f"events.{n:08d}.jsonl"


def _segments(folder: pathlib.Path) -> list[int]:
    """The numbers of the write-ahead log's segments in `folder`, oldest first."""
    found = []
    for path in folder.glob("events.*.jsonl"):
        number = path.name[len("events."):-len(".jsonl")]
        if number.isdigit():
            found.append(int(number))
    return sorted(found)


class LocalFeatureState(FeatureState):
    def __init__(self, program: ast.Program, state_dir: pathlib.Path, snapshot_every: float = 10.0):
        super().__init__(program)
        folder = pathlib.Path(state_dir) / stores.fingerprint(program)
        folder.mkdir(parents=True, exist_ok=True)
        self._owner = open(folder / "owner.lock", "a")
        try:
            fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._owner.close()
            raise StateError(f"another scorer process owns the in-process feature state at {folder}; "
                             "run one process with --threads, or share the state through "
                             "--features-store redis://...") from None
        try:
            self.store = stores.MemoryStore(self.online, snapshot=folder / "state.snapshot")
        except stores.StoreMismatch as e:
            raise StateError(str(e)) from None
        self.folder = folder
        self._segment = self._catch_up()
        self._wal = open(_segment_path(folder, self._segment), "ab")
        self._lock = threading.Lock()
        self._seq = self.store.meta[1] or 0
        self._unsaved = False
        self._stop = threading.Event()
        self._saver = threading.Thread(target=self._save_every, args=(snapshot_every,),
                                       name="feature-snapshots", daemon=True)
        self._saver.start()

    def _catch_up(self) -> int:
        """Re-applies the log after the snapshot's position (events of a killed process);
        returns the segment to append to."""
        legacy = self.folder / "events.jsonl"  # one log, positions as byte offsets in it
        if legacy.exists() and not _segments(self.folder):
            legacy.rename(_segment_path(self.folder, 0))
        position = self.store.position
        first, offset = (0, position) if isinstance(position, int) else position or (0, 0)
        segment = first
        for segment in [n for n in _segments(self.folder) if n >= first]:
            log = eventlog.LocalLog(_segment_path(self.folder, segment))
            position = offset if segment == first else 0
            while True:
                events, position = log.read(position, 10_000)
                if not events:
                    break
                self.store.process_batch([self.online.row({**e, "t": eventlog.micros(e["event_time"])})
                                          for e in events])
        path = _segment_path(self.folder, segment)
        self.store.commit((segment, path.stat().st_size if path.exists() else 0))
        self._drop_segments_before(first)
        return segment

    def _drop_segments_before(self, segment: int) -> None:
        """Deletes the segments a snapshot on disk covers entirely."""
        for n in _segments(self.folder):
            if n < segment:
                _segment_path(self.folder, n).unlink(missing_ok=True)

    def _next_segment(self) -> tuple[int, int]:
        """Closes the segment being written and opens the next; returns the position of its
        start, which a snapshot taken now covers up to."""
        os.fsync(self._wal.fileno())
        self._wal.close()
        self._segment += 1
        self._wal = open(_segment_path(self.folder, self._segment), "ab")
        return self._segment, 0

    def apply(self, event):
        with self._lock:
            self._seq += 1
            seq = self._seq
            record = {**event.fields, "seq": seq, "event_time": event.t, "stream": event.stream}
            # Written ahead of the state and flushed to the OS: a killed process loses nothing.
            self._wal.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
            self._wal.flush()
            out: list = []
            self.store.process_batch([self.online.row(event.as_dict(seq))], out)
            self._unsaved = True
        return seq, (self._served(out[0]) if out else None)

    def save(self) -> None:
        """Snapshots the state with the log offset it covers (atomic: temp file + rename)."""
        with self._lock:
            if self._unsaved:
                covered = self._next_segment()
                self.store.commit(covered)
                self._drop_segments_before(covered[0])
                self._unsaved = False

    def save_in_background(self) -> None:
        """Like save, but the snapshot is written by a forked child from its copy-on-write
        image of the state, as Redis's BGSAVE does: requests wait only for the fork, not for
        pickling the whole state."""
        with self._lock:
            if not self._unsaved:
                return
            covered = self._next_segment()
            pid = os.fork()
            if pid == 0:  # the child: only this thread exists; write the snapshot and leave
                code = 1
                try:
                    self.store.commit(covered)
                    code = 0
                finally:
                    os._exit(code)
            self._unsaved = False
        if os.waitpid(pid, 0)[1] != 0:
            log.error("snapshot of %s failed in pid %d; the write-ahead log still has every event",
                      self.folder, pid)
            self._unsaved = True
        else:
            self._drop_segments_before(covered[0])

    def _save_every(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            self.save_in_background()

    def close(self):
        self._stop.set()
        self._saver.join()
        self.save()
        self._wal.close()
        self._owner.close()


class RedisFeatureState(FeatureState):
    def __init__(self, program: ast.Program, url: str, ingest: Ingest, stream_log=None,
                 namespace: str | None = None):
        super().__init__(program)
        import redis  # only this state needs redis-py

        if ingest is Ingest.STREAM and stream_log is None:
            raise StateError("--ingest stream needs an event log or a Redis Stream to append to")
        try:
            self.store = stores.RedisStore(self.online, url, namespace=namespace)
        except stores.StoreMismatch as e:
            raise StateError(str(e)) from None
        except redis.RedisError as e:
            raise StateError(f"cannot reach the feature store at {url}: {e}") from None
        self.ingest = ingest
        self.stream_log = stream_log
        self.r = self.store.r
        self._seq_key = f"{self.store.ns}:seq"
        self._local = threading.Lock()  # this process's threads queue here, not on Redis
        self._shared = self.r.lock(f"{self.store.ns}:lock", timeout=30, sleep=0.0005)

    def apply(self, event):
        with self._local, self._shared:
            self.store.reload()
            # Numbered after every event already applied, whoever applied it.
            seq = self.r.incr(self._seq_key)
            if seq <= (self.store.meta[1] or 0):
                seq = self.store.meta[1] + 1
                self.r.set(self._seq_key, seq)
            row = self.online.row(event.as_dict(seq))
            if self.ingest is Ingest.STORE:
                out: list = []
                self.store.process_batch([row], out)
                served = out[0] if out else None
            else:
                served = None
                if event.stream == self.program.driver:
                    s = self.store.serve(event.as_dict(seq))
                    served = [s[n] for n in self.names]
                if self.ingest is Ingest.STREAM:
                    self.stream_log.append([event.as_dict(seq)])
        return seq, (None if served is None else self._served(served))

    def close(self):
        self.store.close()
