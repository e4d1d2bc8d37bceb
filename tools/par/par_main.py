"""Start-up of a Roundhouse .par file (a self-contained Python zip), run as `python3 -S FILE`.

Unpacks the program once into a cache folder named by the zip's content digest, then runs
it from there: the first start pays the extraction, later starts only open the zip's index.
Concurrent first starts each extract into a private temporary folder and rename it into
place; the first rename wins and the others discard their copy.
"""

import json
import os
import runpy
import shutil
import sys
import tempfile
import zipfile


def _cache_root():
    if os.environ.get("ROUNDHOUSE_PAR_CACHE"):
        return os.environ["ROUNDHOUSE_PAR_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "roundhouse", "par")


def _extract(zf, cache, target):
    os.makedirs(cache, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".extract-", dir=cache)
    try:
        zf.extractall(tmp)
        for info in zf.infolist():  # zipfile drops permission bits; keep executables runnable
            if (info.external_attr >> 16) & 0o111:
                os.chmod(os.path.join(tmp, info.filename), 0o755)
        try:
            os.rename(tmp, target)
        except OSError:
            if not os.path.isdir(target):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another start won the race
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def main():
    archive = os.path.abspath(sys.argv[0])
    with zipfile.ZipFile(archive) as zf:
        meta = json.loads(zf.read("__par__.json"))
        cache = _cache_root()
        root = os.path.join(cache, meta["digest"])
        if not os.path.isdir(root):
            _extract(zf, cache, root)
    # Hermetic: the program's runfiles and the standard library, never site-packages.
    stdlib = [p for p in sys.path
              if p and not p.startswith(archive) and "site-packages" not in p and "dist-packages" not in p]
    sys.path[:] = [root] + [os.path.join(root, p) for p in meta["imports"]] + stdlib
    # The cache folder is ours: let imports leave .pyc files there (even under
    # PYTHONDONTWRITEBYTECODE), so later starts skip compiling the libraries' sources.
    sys.dont_write_bytecode = False
    main_path = os.path.join(root, meta["main"])
    sys.argv[0] = main_path
    runpy.run_path(main_path, run_name="__main__")


main()
