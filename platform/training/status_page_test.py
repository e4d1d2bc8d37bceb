"""The status page on the training app (Flask's test client): 401 in HTML without a token, the
?token= cookie flow, each team's own rows only (an admin's: all), and escaped user text."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from roundhouse.platform.api.validate import ResourceLimits
from roundhouse.platform.auth.sql_tokens import SqliteTokenStore
from roundhouse.platform.data.sources import DataAccess
from roundhouse.platform.jobs.sqlite_store import SqliteJobStore
from roundhouse.platform.registry.store import open_store
from roundhouse.platform.schedules.store import ScheduleStore
from roundhouse.platform.training.app import create_app
from roundhouse.platform.tuning.store import TuningStore

LIMITS = ResourceLimits(max_cpu=4, max_memory_bytes=16 * 2**30, max_gpu=0)
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def site(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"event_time": pa.array([0, 1], pa.timestamp("us", tz="UTC")),
                             "x1": [0.1, 0.2], "y": [0, 1]}), data / "toy.parquet")
    db = str(tmp_path / "jobs.sqlite")
    jobs, tokens = SqliteJobStore(db), SqliteTokenStore(db)
    models = open_store(str(tmp_path / "models"))
    schedules, tuning = ScheduleStore(jobs), TuningStore(jobs)
    app = create_app(jobs, models, workflows={"toy"}, limits=LIMITS,
                     data=DataAccess(roots=(data,), read_files=True), tokens=tokens,
                     schedules=schedules, tuning=tuning)

    class Site:
        pass
    s = Site()
    s.client, s.jobs, s.schedules, s.tuning, s.data = app.test_client(), jobs, schedules, tuning, data
    s.as_ = {team: tokens.create(team, admin=team == "admin")[1] for team in ("risk", "growth", "admin")}

    def api(who, method, path, body=None):
        resp = s.client.open(path, method=method, headers={"Authorization": f"Bearer {s.as_[who]}"},
                             data=None if body is None else json.dumps(body))
        return resp.status_code, resp.get_json()
    s.api = api
    yield s
    tokens.close()
    jobs.close()


def job(site, who, description="toy"):
    body = {"metadata": {"owner": "ana", "description": description},
            "data": {"parquet": {"uri": str(site.data / "toy.parquet"), "label_columns": ["y"]}},
            "holdout": {"random": {"fraction": 0.25, "seed": 3}},
            "workflow": "toy", "resources": {"type": "CPU", "cpu": 1}}
    status, out = site.api(who, "POST", "/v1/jobs", body)
    assert status == 202, out
    return out["job_id"]


def schedule(site, who, description="toy retrain", tag="toy-prod"):
    body = {"tag": tag, "cron": "0 3 * * *", "description": description,
            "template": {"metadata": {"owner": "ana"},
                         "data": {"parquet": {"uri": str(site.data / "toy.parquet"), "label_columns": ["y"]}},
                         "workflow": "toy", "resources": {"type": "CPU", "cpu": 1}},
            "window": {"column": "event_time", "days": 30, "holdout_days": 3},
            "gate": {"metric": "roc_auc", "min_improvement": 0.001}}
    status, out = site.api(who, "POST", "/v1/schedules", body)
    assert status == 201, out
    return out["id"]


def page(site, path, who):
    return site.client.get(path, headers={"Authorization": f"Bearer {site.as_[who]}"})


def test_without_a_token_the_page_answers_401_in_html(site):
    for path in ("/", "/status", "/status/jobs/j-1", "/status?token=nope"):
        resp = site.client.get(path)
        assert resp.status_code == 401, path
        assert resp.mimetype == "text/html"
        text = resp.get_data(as_text=True)
        assert "needs a Roundhouse token" in text and "?token=" in text
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert "malformed token" in site.client.get("/status?token=nope").get_data(as_text=True)
    # the API stays JSON, and does not read the cookie
    site.client.set_cookie("roundhouse_token", site.as_["risk"])
    resp = site.client.get("/v1/jobs")
    assert resp.status_code == 401 and resp.get_json()["reason"] == "missing"


def test_token_in_the_query_sets_an_httponly_cookie_and_redirects_without_it(site):
    resp = site.client.get(f"/status?token={site.as_['risk']}&x=1")
    assert resp.status_code == 303
    assert resp.headers["Location"].endswith("/status?x=1")
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(f"roundhouse_token={site.as_['risk']};")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    followed = site.client.get("/status?x=1")  # the client keeps the cookie, as a browser does
    assert followed.status_code == 200 and "team <code>risk</code>" in followed.get_data(as_text=True)
    assert site.client.get("/").headers["Location"].endswith("/status")
    # a revoked or wrong cookie is a 401 page again
    site.client.set_cookie("roundhouse_token", "rh_wrong")
    assert site.client.get("/status").status_code == 401


def test_a_team_sees_only_its_own_rows_and_an_admin_all(site):
    risk_job, growth_job = job(site, "risk", "risk nightly"), job(site, "growth", "growth nightly")
    risk_sched = schedule(site, "risk", "risk retrain", tag="risk-prod")
    growth_sched = schedule(site, "growth", "growth retrain", tag="growth-prod")
    run = site.schedules.create_run(risk_sched, "manual-1", kind="manual", at=1_700_000_000)
    site.schedules.update_run(run.id, expect_state="PENDING", state="DECIDED", decision="promoted",
                              challenger_id="m-challenger1", champion_id="m-champion1", reason="better",
                              details={"gate": {"metric": "roc_auc", "min_improvement": 0.001, "champion": 0.81,
                                                "challenger": 0.84, "improvement": 0.03, "passed": True,
                                                "rows": 120}})
    risk = page(site, "/status", "risk").get_data(as_text=True)
    assert risk_job in risk and risk_sched in risk and "risk nightly" in risk
    assert growth_job not in risk and growth_sched not in risk and "growth nightly" not in risk
    assert "promoted" in risk and "m-challenger1" in risk and "m-champion1" in risk
    assert "0.8400" in risk and "0.8100" in risk and "+0.0300" in risk and "120 rows" in risk
    admin = page(site, "/status", "admin").get_data(as_text=True)
    assert all(x in admin for x in (risk_job, growth_job, risk_sched, growth_sched))
    # the detail pages: one's own, not another team's (404, nothing said about it)
    assert page(site, f"/status/jobs/{risk_job}", "risk").status_code == 200
    assert page(site, f"/status/jobs/{risk_job}", "growth").status_code == 404
    assert page(site, f"/status/schedules/{risk_sched}", "growth").status_code == 404
    detail = page(site, f"/status/schedules/{risk_sched}", "risk").get_data(as_text=True)
    assert run.id in detail and "promoted" in detail
    assert page(site, "/status/jobs/j-nope", "admin").status_code == 404
    assert page(site, "/status/tags/no-such-tag", "admin").status_code == 404
    # tuning searches and their trials
    spec = {"metric": "roc_auc", "direction": "maximize", "budget": 4, "parallelism": 1}
    search = site.tuning.create(spec, owner="ana", team="risk")
    [held] = site.tuning.acquire("w", 60)
    site.tuning.add_trial(held, "w", 0, {"C": 0.5}, risk_job)
    site.tuning.finish_trial(held, "w", 0, "COMPLETE", value=0.91, model_id="m-trial0")
    assert search.id in page(site, "/status", "risk").get_data(as_text=True)
    assert search.id not in page(site, "/status", "growth").get_data(as_text=True)
    trials = page(site, f"/status/tuning/{search.id}", "risk").get_data(as_text=True)
    assert "C=0.5" in trials and "0.9100" in trials and "m-trial0" in trials and "COMPLETE" in trials
    assert page(site, f"/status/tuning/{search.id}", "growth").status_code == 404


def test_user_text_is_escaped(site):
    job_id = job(site, "risk", HOSTILE)
    schedule(site, "risk", HOSTILE)
    site.jobs.append_logs(job_id, HOSTILE + "\n")
    for path in ("/status", f"/status/jobs/{job_id}"):
        text = page(site, path, "risk").get_data(as_text=True)
        assert "<script>" not in text and "<img" not in text, path
        assert "&lt;script&gt;alert(" in text, path
    resp = page(site, "/status", "risk")
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
