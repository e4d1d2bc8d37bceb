"""The status page in a real browser: the real training service retrains a tag on a schedule
(the toy workflow's binary), a second schedule's challenger goes through the gate against the
first's model and is promoted, and headless Chromium (Debian's `chromium`, /usr/bin/chromium)
opens /status?token=... (the cookie flow) and renders the runs' decisions, the promoted model
and the gate's figures. A screenshot of the page is kept as a test output
($TEST_UNDECLARED_OUTPUTS_DIR/status_page.png)."""

import datetime as dt
import os
import pathlib
import subprocess
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from roundhouse.platform.training.service_testlib import Service, call

CHROMIUM = pathlib.Path("/usr/bin/chromium")


def chromium(profile: pathlib.Path, *args) -> subprocess.CompletedProcess:
    assert CHROMIUM.exists(), (f"{CHROMIUM} is missing: this test needs Debian's chromium package "
                               "(apt-get install chromium; tools/bazel installs it)")
    return subprocess.run([str(CHROMIUM), "--headless=new", "--no-sandbox", "--disable-gpu",
                           "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
                           f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": str(profile)})


def events(path: pathlib.Path) -> pathlib.Path:
    rng = np.random.default_rng(0)
    n = 800
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    now = dt.datetime.now(dt.timezone.utc).timestamp()
    times = now - 3600 - rng.uniform(0, 80 * 86400, size=n)
    y = (x1 + 0.3 * x2 + 0.3 * rng.normal(size=n) > 0).astype(int)
    pq.write_table(pa.table({"event_time": pa.array((times * 1e6).astype("int64"), pa.timestamp("us", tz="UTC")),
                             "x1": x1, "x2": x2, "y": y}), path)
    return path


def schedule(data, min_improvement, description, **params):
    return {"tag": "toy-prod", "cron": "0 3 * * *", "description": description,
            "template": {"metadata": {"owner": "ana"},
                         "data": {"parquet": {"uri": str(data), "label_columns": ["y"]}},
                         "workflow": "toy", "params": params, "resources": {"type": "CPU", "cpu": 1}},
            "window": {"column": "event_time", "days": 90, "holdout_days": 30},
            "gate": {"metric": "roc_auc", "min_improvement": min_improvement, "bootstrap": {"resamples": 100}}}


def run_now(svc, schedule_id, timeout=240):
    status, run = call(svc.base, "POST", f"/v1/schedules/{schedule_id}/run")
    assert status == 202, run
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = call(svc.base, "GET", f"/v1/schedules/{schedule_id}/runs")
        [found] = [r for r in body["runs"] if r["id"] == run["id"]]
        if found["state"] == "DECIDED":
            return found
        time.sleep(0.3)
    raise AssertionError(f"run {run['id']} still {found['state']}")


def outputs(tmp_path) -> pathlib.Path:
    out = pathlib.Path(os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR") or tmp_path / "outputs")
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_the_status_page_shows_a_promoted_run_in_chromium(tmp_path):
    data = events(tmp_path / "events.parquet")
    svc = Service(tmp_path, str(tmp_path / "jobs.sqlite")).start()
    try:
        first = call(svc.base, "POST", "/v1/schedules", schedule(data, 0.0, "first retrain"))[1]["id"]
        run = run_now(svc, first)
        assert run["decision"] == "promoted", run
        second = call(svc.base, "POST", "/v1/schedules", schedule(data, -1.0, "second retrain", C=0.05))[1]["id"]
        promoted = run_now(svc, second)
        assert promoted["decision"] == "promoted" and promoted["champion_id"] == run["challenger_id"], promoted
        gate = promoted["details"]["gate"]

        url = f"{svc.base}/status?token={svc.token}"
        dom = chromium(tmp_path / "profile", "--dump-dom", url)
        assert dom.returncode == 0, dom.stderr
        page = dom.stdout
        assert "<h1>Status</h1>" in page, page[:2000]
        for schedule_id, r in ((first, run), (second, promoted)):
            assert schedule_id in page and f'id="run-{r["id"]}"' in page
        row = page[page.index(f'id="run-{promoted["id"]}"'):]
        row = row[:row.index("</tr>")]
        assert 'class="decision promoted">promoted<' in row, row
        assert promoted["challenger_id"] in row and promoted["champion_id"] in row, row
        assert f'{gate["challenger"]:.4f}' in row and f'{gate["improvement"]:+.4f}' in row and "passed" in row, row
        # the tag points at the promoted model, and the models table lists it
        tag_row = page[page.index('id="tag-toy-prod"'):]
        assert promoted["challenger_id"] in tag_row[:tag_row.index("</tr>")]
        assert f'id="model-{promoted["challenger_id"]}"' in page
        assert svc.token not in page  # the cookie carried it; the page never echoes it

        # the tag's page: its history names both runs
        history = chromium(tmp_path / "profile", "--dump-dom", f"{svc.base}/status/tags/toy-prod?token={svc.token}")
        assert f"schedule {second} run {promoted['id']}" in history.stdout, history.stdout[:2000]
        assert f"schedule {first} run {run['id']}" in history.stdout

        # a screenshot, for people
        shot = outputs(tmp_path) / "status_page.png"
        taken = chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1400,2200", url)
        assert taken.returncode == 0 and shot.exists() and shot.stat().st_size > 10_000, taken.stderr
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        # without the token the browser gets the explanation, not the page
        bare = chromium(tmp_path / "fresh-profile", "--dump-dom", f"{svc.base}/status")
        assert "needs a Roundhouse token" in bare.stdout and promoted["challenger_id"] not in bare.stdout
    finally:
        svc.stop()
