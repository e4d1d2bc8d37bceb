"""The event archive: the events the consumer reads, kept as Parquet files for backfills.

The consumer (consume.py) hands every batch it reads to an Archive, which buffers it and
writes the buffer out as one file in the events format (events.py: seq, event_time, stream, a
column per declared field) when it holds `max_events` events or its oldest event has waited
`max_seconds`, and when the consumer stops. The archive is a directory, local or s3://; a
directory of these files is an input of materialize and replay as it is (events.read).

Files. Each file is named by the seqs it covers, `events-<first>-<last>.parquet` (zero-padded
to 20 digits, so names sort in seq order), and carries in its Parquet metadata (key
`roundhouse.archive`) its first and last seq, its event count, the transport it was read
from and the transport position just after its last event. Files never overlap.

Atomicity. A file is complete or absent. Locally it is written to a hidden temp file in the
same directory (`.events-....parquet.tmp`), fsynced, renamed into place and the directory
fsynced; a start deletes leftover temp files. On S3 the file is built in memory and sent as
one object (a single PUT, or a multipart upload, which is invisible until completed), so a
reader never sees part of one. Rewriting a file whose range already exists writes the same
name and content.

Resume. The archive is its own checkpoint: a start lists the files and reads the metadata of
the last one (the greatest seqs); the consumer resumes the transport at that file's position,
and events at or before its last seq are skipped (seqs strictly increase along the log). So
after a SIGKILL anywhere, the events of the buffer (at most one file's worth, never written)
are read again and written once, and nothing in a written file is written again. Nothing
else records the archive's progress, so nothing can disagree with it. One archiver per
archive: a local archive holds a lock file (`.archive.lock`, released by the kernel when the
process dies); on S3 nothing stops two, and two would write overlapping files (a reader
rejects those, naming both).

The online state's checkpoint and the archive's are independent: the store commits its
position with every batch, the archive with every file. The consumer reads from the earlier
of the two (by last seq) and each side skips what it already holds, so the archive lags the
store by at most one unwritten file, a restart re-reads at most that much, and a consumer
that gains `--archive` later archives the log from its beginning while the store skips
everything it has. Neither waits for the other, and a crash between the two commits is
harmless in either order.

Only declared fields are archived (the events format); a field declared later is absent from
older files.
"""
from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import re
import time

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from roundhouse.features.language import syntax as ast
from roundhouse.features.transport import events as events_mod
from roundhouse.features.transport import location
from roundhouse.features.transport.eventlog import micros

META_KEY = b"roundhouse.archive"
NAME = re.compile(r"^events-(-?\d+)-(-?\d+)\.parquet$")
TEMP_SUFFIX = ".tmp"
LOCK = ".archive.lock"


class ArchiveError(RuntimeError):
    pass


def file_name(first: int, last: int) -> str:
    return f"events-{first:020d}-{last:020d}.parquet"


@dataclasses.dataclass(frozen=True)
class Part:
    first: int
    last: int
    path: str  # inside the filesystem


def parts(fs: pafs.FileSystem, root: str, shown: str) -> list[Part]:
    """The archive's files in seq order; overlapping files are an error naming both."""
    found = []
    for info in events_mod.part_files(fs, root):
        m = NAME.match(info.base_name)
        if m:
            found.append(Part(int(m.group(1)), int(m.group(2)), info.path))
    found.sort(key=lambda p: p.first)
    for a, b in zip(found, found[1:]):
        if b.first <= a.last:
            raise ArchiveError(f"{shown}: {os.path.basename(b.path)} overlaps "
                               f"{os.path.basename(a.path)}; two archivers wrote this archive? "
                               "Move one file's events out before archiving here again")
    return found


def read_meta(fs: pafs.FileSystem, path: str) -> dict:
    with fs.open_input_file(path) as fh:
        meta = pq.ParquetFile(fh).schema_arrow.metadata or {}
    if META_KEY not in meta:
        raise ArchiveError(f"{location.display(fs, path)}: no {META_KEY.decode()} metadata; "
                           "the archive's last file must be one the archiver wrote")
    return json.loads(meta[META_KEY])


def to_table(program: ast.Program, evs: list[dict]) -> pa.Table:
    """Event dicts (as the transports give them) -> an events table (events.schema)."""
    schema = events_mod.schema(program)
    cols = {f.name: [] for f in schema}
    fields = [f.name for f in schema][3:]
    for e in evs:
        cols["seq"].append(e["seq"])
        cols["event_time"].append(micros(e["event_time"]))
        cols["stream"].append(e["stream"])
        for name in fields:
            cols[name].append(e.get(name))
    try:
        arrays = [pa.array(cols[f.name], type=f.type) for f in schema]
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
        raise ArchiveError(f"events {evs[0]['seq']}..{evs[-1]['seq']} do not fit the events "
                           f"format: {exc}") from None
    return pa.Table.from_arrays(arrays, schema=schema)


def _write_temp(path: str, data) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: str, final: str) -> None:
    os.replace(tmp, final)
    fd = os.open(os.path.dirname(final), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _put(fs: pafs.FileSystem, path: str, data) -> None:
    with fs.open_output_stream(path) as out:
        out.write(data)


class Archive:
    def __init__(self, program: ast.Program, uri: str, max_events: int = 100_000,
                 max_seconds: float | None = None, source: str | None = None, clock=time.monotonic):
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        if max_seconds is not None and max_seconds <= 0:
            raise ValueError("max_seconds must be positive")
        self.program = program
        self.uri = str(uri)
        self.max_events, self.max_seconds = max_events, max_seconds
        self.source = source
        self.clock = clock
        self.fs, self.root = location.resolve(self.uri)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self._lock = None
        if self.local:
            os.makedirs(self.root, exist_ok=True)
            self._take_lock()
            self._remove_temp_files()
        else:
            self._check_bucket()
        existing = parts(self.fs, self.root, self.uri)
        self.files = len(existing)
        self.last_seq: int | None = None
        self.position = None  # the transport position after last_seq; None: the beginning
        if existing:
            meta = read_meta(self.fs, existing[-1].path)
            if meta.get("last_seq") != existing[-1].last:
                raise ArchiveError(f"{location.display(self.fs, existing[-1].path)}: its "
                                   f"metadata says last seq {meta.get('last_seq')}, its name "
                                   f"{existing[-1].last}")
            kind = lambda src: (src or "").split(":", 1)[0]  # noqa: E731
            if source and meta.get("source") and kind(meta["source"]) != kind(source):
                raise ArchiveError(f"{self.uri}: written from {meta['source']}, whose positions "
                                   f"mean nothing to {source}; archive it to a new directory")
            self.last_seq, self.position = existing[-1].last, meta.get("position")
        self._buf: list[dict] = []
        self._buf_position = None
        self._since = None

    # -- the consumer's side --------------------------------------------------------------

    def room(self) -> int:
        """Events the buffer takes before it is written (read at most this many next)."""
        return max(1, self.max_events - len(self._buf))

    def add(self, evs: list[dict], position) -> int:
        """Buffer the events after the archive's last seq; `position` is the transport's
        position after the last of `evs`. Writes a file when the buffer is full."""
        last = self._buf[-1]["seq"] if self._buf else self.last_seq
        new = evs if last is None else [e for e in evs if e["seq"] > last]
        if new:
            if self._since is None:
                self._since = self.clock()
            # Events first, then the position: a position behind the buffer is only re-read
            # (and skipped by seq); one ahead of it would lose events.
            self._buf.extend(new)
            self._buf_position = position
        self.maybe_flush()
        return len(new)

    def due(self) -> bool:
        if not self._buf:
            return False
        return len(self._buf) >= self.max_events or (
            self.max_seconds is not None and self.clock() - self._since >= self.max_seconds)

    def maybe_flush(self) -> str | None:
        return self.flush() if self.due() else None

    def flush(self) -> str | None:
        """Write the buffer as one file (atomically); returns its name, None if empty."""
        if not self._buf:
            return None
        evs, position = self._buf, self._buf_position
        first, last = evs[0]["seq"], evs[-1]["seq"]
        table = to_table(self.program, evs)
        meta = {"first_seq": first, "last_seq": last, "events": len(evs),
                "position": position, "source": self.source, "format": 1}
        table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        data = sink.getvalue()
        name = file_name(first, last)
        final = f"{self.root}/{name}"
        if self.local:
            tmp = f"{self.root}/.{name}{TEMP_SUFFIX}"
            _write_temp(tmp, data)
            _publish(tmp, final)
        else:
            _put(self.fs, final, data)
        self.last_seq, self.position = last, position
        self.files += 1
        self._buf, self._buf_position, self._since = [], None, None
        return name

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def close(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    # -- start ----------------------------------------------------------------------------

    def _take_lock(self) -> None:
        fd = os.open(os.path.join(self.root, LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise ArchiveError(f"{self.uri}: another archiver is writing this archive "
                                   f"(it holds {LOCK}); run one archiver per archive") from None
            raise
        self._lock = fd

    def _remove_temp_files(self) -> None:
        for name in os.listdir(self.root):
            if name.startswith(".events-") and name.endswith(TEMP_SUFFIX):
                os.unlink(os.path.join(self.root, name))

    def _check_bucket(self) -> None:
        bucket = self.root.split("/", 1)[0]
        if self.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise ArchiveError(f"{self.uri}: bucket {bucket!r} does not exist; create it first")
