"""The .par runs with no site-packages, from any directory, and trains the same model."""

import concurrent.futures
import pathlib

from roundhouse.workflows.fraud.train_testlib import run

HERE = pathlib.Path(__file__).parent


def test_par_runs_without_site_packages_from_anywhere_and_trains_the_same_model(tmp_path):
    par = (HERE / "train.par").resolve()
    home = tmp_path / "home"
    cache = tmp_path / "par-cache"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    env = {"ROUNDHOUSE_PAR_CACHE": str(cache)}
    # Two first starts at once: both must work and leave one extracted copy.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda i: run(["/usr/bin/python3", "-S", str(par)], home / str(i), elsewhere, env),
                             range(2)))
    extracted = sorted(p.name for p in cache.iterdir())
    assert len(extracted) == 1 and not extracted[0].startswith("."), extracted
    mtime = (cache / extracted[0]).stat().st_mtime_ns

    direct = run([str(HERE / "train")], home / "0")
    assert outs[0]["model_id"] == direct["model_id"]  # the zip trains the same model
    again = run(["/usr/bin/python3", "-S", str(par)], home / "0", elsewhere, env)
    assert again["model_id"] == direct["model_id"]
    assert (cache / extracted[0]).stat().st_mtime_ns == mtime  # reused, not re-extracted
