"""Benchmark: from submitting a training job to the workflow's train starting, against
starting the same workflow binary directly with the same request.

    bazel run //tools/bench:training_overhead -- [--runs 5]

Both paths end in the same runner, which logs the wall-clock time it started; the figures
are that time minus the moment of the POST (service) or of the exec (direct).
"""

import argparse
import json
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from roundhouse.platform.training.service_testlib import Service, call
from roundhouse.workflows.fraud.features import FEATURES, LABEL

RUNFILES = pathlib.Path(__file__).parents[2]  # runfiles root (not resolved: that is the source tree)
TRAIN = RUNFILES / "workflows" / "fraud" / "train"
STARTED = re.compile(r"run started at unix time ([0-9.]+)")


def small_table(path):
    rng = np.random.default_rng(0)
    n = 2000
    cols = {name: rng.integers(0, 10, size=n) for name in FEATURES}
    cols[LABEL] = rng.random(n) < 0.1
    pq.write_table(pa.table(cols), path)
    return path


def request(table):
    return {"metadata": {"owner": "bench"}, "workflow": "fraud",
            "data": {"parquet": {"uri": str(table), "columns": FEATURES, "label_columns": [LABEL]}},
            "holdout": {"random": {"fraction": 0.25, "seed": 1}}, "params": {"n_estimators": 5}}


def direct(tmp, req_path):
    t0 = time.time()
    proc = subprocess.run([str(TRAIN), "--request", str(req_path), "--store", str(tmp / "direct-models")],
                          capture_output=True, text=True, check=True)
    return float(STARTED.search(proc.stderr).group(1)) - t0


def via_service(svc, body):
    t0 = time.time()
    job_id = call(svc.base, "POST", "/v1/jobs", body)[1]["job_id"]
    job = svc.wait(job_id)
    assert job["state"] == "SUCCEEDED", job
    logs = call(svc.base, "GET", f"/v1/jobs/{job_id}/logs")[1]["text"]
    return float(STARTED.search(logs).group(1)) - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = pathlib.Path(d)
        body = request(small_table(tmp / "table.parquet"))
        req_path = tmp / "request.json"
        req_path.write_text(json.dumps(body))
        svc = Service(tmp, str(tmp / "jobs.sqlite"))
        svc.start()
        try:
            direct(tmp, req_path)  # warm the page cache for both paths alike
            d_times, s_times = [], []
            for _ in range(args.runs):
                d_times.append(direct(tmp, req_path))
                s_times.append(via_service(svc, body))
        finally:
            svc.stop()
    print(f"{'path':<34}{'median s':>10}{'min s':>8}{'max s':>8}   (n={args.runs})")
    for name, xs in [("direct: exec -> train starts", d_times), ("service: POST -> train starts", s_times)]:
        print(f"{name:<34}{statistics.median(xs):>10.3f}{min(xs):>8.3f}{max(xs):>8.3f}")
    print(f"{'overhead of the service (median)':<34}{statistics.median(s_times) - statistics.median(d_times):>10.3f}")


if __name__ == "__main__":
    sys.exit(main())
