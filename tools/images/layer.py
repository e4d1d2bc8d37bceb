"""Writes one OCI image layer: a deterministic tar, gzip-compressed, and its descriptor.

    layer.py --manifest FILE --out layer.tar.gz --descriptor layer.json
        FILE lines are `PATH_IN_IMAGE<TAB>FILE_ON_DISK[<TAB>MODE]`; the files become regular
        files (symlinks followed), their parent folders are added, and entries are sorted.
        MODE (octal) overrides the mode taken from the file (an entry point must be 0755
        whatever mode its source has).
    layer.py --tar rootfs.tar --out layer.tar.gz --descriptor layer.json
        an existing tar (the Debian base from mmdebstrap) compressed as it is.

Deterministic: sorted entries, mtime 0, uid/gid 0 without names, modes 0755 for folders and
executables and 0644 for the rest, PAX headers, gzip without a name or timestamp. The same
files give the same bytes, so the same digest. The descriptor is the JSON
{"digest": "sha256:...", "diff_id": "sha256:...", "size": N} that layout.py reads.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

# Compression level: smaller pushes against a slower build; 6 is gzip's own default.
COMPRESS_LEVEL = 6
_CHUNK = 1 << 20


class _Digesting(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through it."""

    def __init__(self, sink):
        self._sink = sink
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self):
        return True

    def write(self, data):
        self._sink.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)


@dataclasses.dataclass(frozen=True)
class Entry:
    src: str
    mode: int | None = None  # None: 0755 if the file is executable, else 0644


def read_manifest(path: str) -> dict[str, Entry]:
    """PATH_IN_IMAGE -> Entry; two different files for one path is an error."""
    entries: dict[str, Entry] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            dest, *rest = line.split("\t")
            dest = dest.strip("/")
            if len(rest) not in (1, 2) or not dest or ".." in dest.split("/"):
                raise SystemExit(f"{path}:{lineno}: expected PATH_IN_IMAGE<TAB>FILE[<TAB>MODE], "
                                 f"got {line!r}")
            entry = Entry(rest[0], int(rest[1], 8) if len(rest) == 2 else None)
            if dest in entries and os.path.realpath(entries[dest].src) != os.path.realpath(entry.src):
                raise SystemExit(f"{path}:{lineno}: {dest} is given twice "
                                 f"({entries[dest].src} and {entry.src})")
            entries[dest] = entry
    return entries


def _info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size = kind, mode, size
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


def write_files(entries: dict[str, Entry], stream) -> None:
    folders = sorted({"/".join(d.split("/")[:i]) for d in entries for i in range(1, d.count("/") + 1)})
    names = sorted([(f, None) for f in folders] + list(entries.items()), key=lambda item: item[0])
    with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name, entry in names:
            if entry is None:
                tar.addfile(_info(name, tarfile.DIRTYPE, 0o755))
                continue
            st = os.stat(entry.src)
            mode = entry.mode if entry.mode is not None else 0o755 if st.st_mode & 0o111 else 0o644
            with open(entry.src, "rb") as f:
                tar.addfile(_info(name, tarfile.REGTYPE, mode, st.st_size), f)


def write_layer(out: str, fill) -> dict:
    """Runs fill(stream) with an uncompressed stream; returns the layer's descriptor."""
    with open(out, "wb") as raw:
        compressed = _Digesting(raw)
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed,
                           compresslevel=COMPRESS_LEVEL, mtime=0) as gz:
            uncompressed = _Digesting(gz)
            fill(uncompressed)
    return {"digest": "sha256:" + compressed.sha256.hexdigest(),
            "diff_id": "sha256:" + uncompressed.sha256.hexdigest(),
            "size": compressed.size}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", help="PATH_IN_IMAGE<TAB>FILE lines")
    source.add_argument("--tar", help="an existing tar to compress as it is")
    parser.add_argument("--out", required=True)
    parser.add_argument("--descriptor", required=True)
    args = parser.parse_args(argv)
    if args.manifest:
        entries = read_manifest(args.manifest)
        descriptor = write_layer(args.out, lambda s: write_files(entries, s))
    else:
        def copy(stream):
            with open(args.tar, "rb") as f:
                shutil.copyfileobj(f, stream, _CHUNK)
        descriptor = write_layer(args.out, copy)
    with open(args.descriptor, "w", encoding="utf-8") as f:
        json.dump(descriptor, f, sort_keys=True)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
