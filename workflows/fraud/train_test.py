"""End to end: the train binary and its .par train, stamp and store the same model."""

import concurrent.futures
import json
import os
import pathlib
import re
import subprocess

from roundhouse.platform.registry import store as store_lib

HERE = pathlib.Path(__file__).parent
ARGS = ["--charges", "20000", "--days", "30"]


def run(cmd, home, cwd=None, env=None):
    proc = subprocess.run(cmd + ARGS + ["--home", str(home)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "[train]" in proc.stderr  # progress is shown
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_train_prints_one_json_line_and_stores_a_stamped_model(tmp_path):
    out = run([str(HERE / "train")], tmp_path)
    assert set(out) == {"model_id", "git_sha", "git_dirty", "metrics", "model_path"}
    assert re.fullmatch(r"[0-9a-f]{40}", out["git_sha"]) and out["git_dirty"] in (True, False)
    assert 0.5 < out["metrics"]["roc_auc"] <= 1.0
    assert {"pr_auc", "recall_at_1pct_fpr"} <= set(out["metrics"])
    assert pathlib.Path(out["model_path"]).is_file()

    record = store_lib.open_store(str(tmp_path)).get(out["model_id"])
    assert record.git_sha == out["git_sha"] and record.bazel_target == "//workflows/fraud:train"
    assert record.params["random_state"] == 7 and record.params["n_estimators"] == 200
    assert record.data.digest and record.data.files[0].sha256 and record.data.files[0].size > 0
    assert {"numpy", "xgboost-cpu", "python"} <= set(record.library_versions)
    assert record.request.workflow == "fraud" and record.request.holdout.time_cutoff.column == "event_time"

    # Same commit and data: the same model ID, and the store keeps the first copy.
    again = run([str(HERE / "train")], tmp_path)
    assert again["model_id"] == out["model_id"]
    assert store_lib.open_store(str(tmp_path)).list() == [out["model_id"]]


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
