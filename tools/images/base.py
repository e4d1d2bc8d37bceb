"""Builds the Debian base layer of every image with mmdebstrap, once per machine.

    base.py --suite bookworm --include python3,libstdc++6 --out DIR

Writes DIR/layer.tar.gz and DIR/layer.json (the descriptor layout.py reads). The layer is
kept in $XDG_CACHE_HOME/roundhouse/image-base/<key>/ (default ~/.cache), the key being a
digest of everything that goes into it, so a new checkout or output base reuses it instead
of bootstrapping Debian again. mmdebstrap with SOURCE_DATE_EPOCH=0 gives the same tar for
the same package versions; the cache keeps the digest stable between point releases too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import layer  # noqa: E402  (run as a script by a repository rule, beside layer.py)

VARIANT = "essential"


def cache_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "roundhouse", "image-base")


def key(suite: str, mirror: str, packages: list[str]) -> str:
    spec = {"suite": suite, "mirror": mirror, "variant": VARIANT, "include": sorted(packages),
            "compress_level": layer.COMPRESS_LEVEL}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def bootstrap(suite: str, mirror: str, packages: list[str], into: str) -> None:
    """mmdebstrap into a private folder, then rename it into the cache (atomic for readers)."""
    if shutil.which("mmdebstrap") is None:
        raise SystemExit("base.py: mmdebstrap is not installed; run ./tools/bazel once (it "
                         "installs Debian's mmdebstrap) or apt-get install mmdebstrap")
    os.makedirs(os.path.dirname(into), exist_ok=True)
    work = tempfile.mkdtemp(prefix=".build-", dir=os.path.dirname(into))
    try:
        rootfs = os.path.join(work, "rootfs.tar")
        command = ["mmdebstrap", f"--variant={VARIANT}", "--mode=root", "--quiet",
                   "--include=" + ",".join(sorted(packages)), suite, rootfs] + ([mirror] if mirror else [])
        print(f"base.py: bootstrapping Debian {suite} ({' '.join(sorted(packages))}); "
              "this happens once per machine", file=sys.stderr, flush=True)
        env = {**os.environ, "SOURCE_DATE_EPOCH": "0"}
        result = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        if result.returncode:
            raise SystemExit(f"base.py: {' '.join(command)} failed ({result.returncode}):\n"
                             + result.stdout[-4000:])
        def copy(stream):
            with open(rootfs, "rb") as f:
                shutil.copyfileobj(f, stream, 1 << 20)
        descriptor = layer.write_layer(os.path.join(work, "layer.tar.gz"), copy)
        os.remove(rootfs)
        with open(os.path.join(work, "layer.json"), "w", encoding="utf-8") as f:
            json.dump({**descriptor, "created_by": " ".join(command[:-1 - bool(mirror)])}, f,
                      sort_keys=True)
        os.rename(work, into)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", required=True)
    parser.add_argument("--mirror", default="", help="default: mmdebstrap's (deb.debian.org)")
    parser.add_argument("--include", required=True, help="comma-separated Debian packages")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    packages = [p for p in args.include.split(",") if p]
    cached = os.path.join(cache_root(), key(args.suite, args.mirror, packages))
    if not os.path.isdir(cached):
        try:
            bootstrap(args.suite, args.mirror, packages, cached)
        except OSError:
            if not os.path.isdir(cached):  # else another build won the rename
                raise
    for name in ("layer.tar.gz", "layer.json"):
        target = os.path.join(args.out, name)
        if os.path.lexists(target):
            os.remove(target)
        try:  # a hard link: the repository stays whole if the cache is cleared later
            os.link(os.path.join(cached, name), target)
        except OSError:
            shutil.copyfile(os.path.join(cached, name), target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
