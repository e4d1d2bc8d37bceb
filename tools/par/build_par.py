"""Builds a .par: one zip holding a py_binary's runfiles plus the par_main.py start-up.

Byte-identical for identical inputs: entries sorted, fixed timestamps and modes, no
__pycache__. The content digest (also the extraction cache key) is stored in
__par__.json inside the zip.
"""

import argparse
import hashlib
import json
import os
import zipfile

EPOCH = (1980, 1, 1, 0, 0, 0)


def entry(name, executable=False):
    info = zipfile.ZipInfo(name, date_time=EPOCH)
    info.create_system = 3  # unix, so external_attr carries the mode
    info.external_attr = (0o100755 if executable else 0o100644) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--manifest", required=True, help="lines of <path in zip>\\t<file on disk>")
    parser.add_argument("--main", required=True, help="path of the program's main in the zip")
    parser.add_argument("--imports", default="", help="':'-separated import roots in the zip")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    files = {}
    with open(args.manifest) as f:
        for line in f:
            name, path = line.rstrip("\n").split("\t")
            if "__pycache__" not in name and not name.endswith(".pyc"):
                files[name] = path
    if args.main not in files:
        raise SystemExit(f"build_par: main {args.main} is not among the binary's runfiles")

    digest = hashlib.sha256()
    with zipfile.ZipFile(args.out, "w", compresslevel=6) as zf:
        for name in sorted(files):
            with open(files[name], "rb") as src:
                data = src.read()
            digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
            zf.writestr(entry(name, os.access(files[name], os.X_OK)), data)
        with open(args.bootstrap, "rb") as src:
            zf.writestr(entry("__main__.py"), src.read())
        imports = [p for p in args.imports.split(":") if p]
        meta = {"digest": digest.hexdigest(), "main": args.main, "imports": sorted(set(imports))}
        zf.writestr(entry("__par__.json"), json.dumps(meta, sort_keys=True))


if __name__ == "__main__":
    main()
