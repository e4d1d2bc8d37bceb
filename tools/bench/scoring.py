"""Benchmark: single-event scoring latency (p50, p99) and throughput at 1 and 8 concurrent
clients on loopback, side by side for

    floor                          the scorer's HTTP stack (Flask under granian, same thread
                                   count) answering a constant JSON: tools/bench/floor_server.py
    roundhouse (memory)            //scoring:server, a 500-tree (--trees) depth-6 XGBoost model
                                   behind a tag, online features in process
    roundhouse (redis)             the same with --features-store redis://, one worker process
    roundhouse (redis, 2 workers)  and with --workers 2
    MLflow                         the same model, `mlflow models serve --env-manager local`
    MLServer                       the same model, MLServer with mlserver-xgboost (V2 protocol)

    bazel run //tools/bench:scoring -- [--seconds 10] [--trees 500] [--skip-mlflow] [--skip-mlserver]

One load generator for every server: wrk (Debian's, installed with apt-get if missing), one
thread, keep-alive connections, a Lua script making each request's body. Each measurement
follows a warm-up at the same concurrency, and only the server measured is running. The
scorer gets a new charge every request (its charge ID, and event time 0.1 s after the last;
10,000 cards, 1,000 merchants and 5,000 IPs taken in turn), so its online state grows as in
production; the floor gets the same bodies. MLflow and MLServer, which compute no features,
get one feature row of the model's columns every request. Each runs as it comes (MLflow with
one uvicorn worker, MLServer with one inference worker process) but for MLServer's access log,
turned off as in production. They run from virtual environments of their own under
~/.cache/roundhouse, made from PyPI on the first run (pinned in VENVS) and reused after: they
never enter the repository's locked dependencies. Everything listens on 127.0.0.1 and is
stopped at the end, also on Ctrl-C. It prints figures and asserts nothing.
"""

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from roundhouse.platform.registry import artifacts
from roundhouse.platform.registry.store import open_store
from roundhouse.platform.registry.tags import TagStore
from roundhouse.scoring import testlib
from roundhouse.testing.ports import free_port
from roundhouse.testing.redis_server import redis_server

RUNFILES = pathlib.Path(__file__).parents[2]  # runfiles root (not resolved: that is the source tree)
FLOOR = RUNFILES / "tools" / "bench" / "floor_server"
CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "roundhouse"

CONCURRENCY = (1, 8)
THREADS = 1  # Python request threads of the scorer (its default) and of the floor alike
WARMUP_SECONDS = 3
DEPTH = 6
TAG = "fraud-bench"
MODEL_NAME = "fraud"  # MLServer's name for the model

# pip install steps of each virtual environment. mlserver-xgboost requires `xgboost`, the CUDA
# build (hundreds of MB of NCCL); xgboost-cpu, the build the repository uses, provides the same
# module, so mlserver-xgboost goes in without its requirements, which the first step installs.
# MLServer 1.7.1's inference workers die at start with uvloop 0.22 and later (SeldonIO/MLServer
# issue 2286, "no current event loop"), hence uvloop 0.21.
VENVS = {
    "mlflow": [["mlflow==3.17.2", "xgboost-cpu==3.2.0"]],
    "mlserver": [["mlserver==1.7.1", "uvloop==0.21.0", "xgboost-cpu==3.2.0", "scikit-learn==1.9.1"],
                 ["--no-deps", "mlserver-xgboost==1.7.1"]],
}

# Saves the model file as an MLflow model (xgboost flavour, served through pyfunc); runs in
# the MLflow environment.
MLFLOW_SAVE = """
import sys
import mlflow.xgboost
import xgboost
model = xgboost.XGBClassifier()
model.load_model(sys.argv[1])
mlflow.xgboost.save_model(model, sys.argv[2])
"""

# One realistic feature row for the model-only servers, by column.
ROW = {"amount": 1200, "card_charges_1h": 1, "card_charges_24h": 3, "card_amount_avg_30d": 1500.0,
       "card_distinct_merchants_24h": 2, "merchant_charges_1h": 40, "ip_distinct_cards_24h": 1,
       "merchant_disputes_30d": 0, "amount_to_card_avg_30d": 0.8}

T0 = 1_704_067_200_000_000  # 2024-01-01, microseconds
CHECK_CHARGE = {"event_time": T0, "charge_id": "check", "card_id": "k1", "merchant_id": "m1", "ip": "10.0.0.1",
                "amount": 1200, "currency": "EUR", "country": "DE"}

# wrk's script. args: mode ("charge" or "static"), the last charge number used before, body
# file (static). Charges are numbered on from there; done() prints one RESULT line of JSON with
# the last number used, so that the next run's charges are new ones and later in event time.
LUA = """
local threads = {}
local headers = {["Content-Type"] = "application/json"}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  n = tonumber(args[2])
  if args[1] == "static" then
    local f = assert(io.open(args[3], "rb"))
    static = wrk.format("POST", wrk.path, headers, f:read("*a"))
    f:close()
  end
end

function request()
  if static then
    return static
  end
  n = n + 1
  local ip = (n * 31) % 5000
  local body = string.format(
    '{"event_time": %.0f, "charge_id": "bench-%d", "card_id": "card-%d", "merchant_id": "mx-%d", '
    .. '"ip": "10.0.%d.%d", "amount": %d, "currency": "EUR", "country": "DE"}',
    T0 + n * 100000, n, (n * 7919) % 10000, (n * 104729) % 1000, math.floor(ip / 250), ip % 250,
    100 + (n * 7907) % 50000)
  return wrk.format("POST", wrk.path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "p50_us": %.1f, "p99_us": %.1f, "errors": %d, "last": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout, threads[1]:get("n")))
end
""".replace("T0", str(T0))


@dataclasses.dataclass
class Result:
    p50_ms: float
    p99_ms: float
    rps: float
    errors: int  # non-2xx answers, timeouts and socket errors


def clean_env(venv: pathlib.Path | None = None) -> dict:
    """This environment without Bazel's Python paths, which must not leak into another
    interpreter; with `venv` first on PATH, as an activated environment has it (MLflow starts
    uvicorn from PATH)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "RUNFILES"))}
    if venv is not None:
        env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', os.defpath)}"
        env["VIRTUAL_ENV"] = str(venv)
    return env


def ensure_wrk() -> str:
    """Debian's wrk, installed on first use: the benchmark is its only user."""
    found = shutil.which("wrk")
    if found:
        return found
    print("installing Debian's wrk (once) ...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        # A machine whose package lists are not there yet.
        subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
        subprocess.run(install, env=env, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is missing and apt-get could not install it; as root: apt-get install -y wrk")
    return found


def ensure_venv(name: str) -> pathlib.Path:
    """The virtual environment of VENVS[name], made once; a marker written after the last step
    tells a finished one (with these steps) from one to make again."""
    path = CACHE / f"bench-venv-{name}"
    marker = path / "roundhouse-bench-steps.json"
    steps = json.dumps(VENVS[name])
    if marker.exists() and marker.read_text() == steps:
        return path
    shutil.rmtree(path, ignore_errors=True)
    print(f"installing {name} into {path} (once; later runs reuse it) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(path)], env=clean_env(), check=True)
    log = path / "install.log"
    for step in VENVS[name]:
        with open(log, "ab") as out:
            done = subprocess.run([str(path / "bin" / "pip"), "install", "--disable-pip-version-check", *step],
                                  stdout=out, stderr=subprocess.STDOUT, env=clean_env(path))
        if done.returncode != 0:
            raise SystemExit(f"pip install {' '.join(step)} failed in {path}:\n{tail(log)}")
    marker.write_text(steps)
    return path


def tail(path: pathlib.Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def http(url: str, body: bytes | None = None, timeout: float = 10) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Server:
    """A server process on 127.0.0.1, in a process group of its own so that stopping it also
    stops what it started (the scorer's workers, MLflow's uvicorn, MLServer's inference pool)."""

    def __init__(self, name: str, argv: list, port: int, ready_path: str, tmp: pathlib.Path,
                 env: dict | None = None):
        self.name, self.argv, self.ready_path, self.env = name, argv, ready_path, env
        self.base = f"http://127.0.0.1:{port}"
        self.log = tmp / (re.sub(r"\W+", "-", name).strip("-") + ".log")
        self.cwd = tmp
        self.proc = None

    def __enter__(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([str(a) for a in self.argv], stdout=log, stderr=subprocess.STDOUT,
                                         env=self.env, cwd=self.cwd, start_new_session=True)
        try:
            self._wait_ready(timeout=300)  # MLServer's and MLflow's imports take a while
        except BaseException:  # not running past a failed start or a Ctrl-C meanwhile
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.proc.returncode}:\n{tail(self.log)}")
            try:
                if http(self.base + self.ready_path, timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{self.name} not ready in {timeout} s:\n{tail(self.log)}")

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> None:
        # SIGTERM to the server alone, which stops its own workers (MLServer hangs when they
        # get it too); the scorer saves its state meanwhile. Then whatever is left of the group.
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def check(self, path: str, body: bytes) -> None:
        """One request before the load, so that a server that answers errors is not measured."""
        status, answer = http(self.base + path, body, timeout=60)
        if status != 200:
            raise SystemExit(f"{self.name}: POST {path} answered {status}: {answer[:500]!r}\n{tail(self.log)}")


class Load:
    """wrk with one thread: it takes about a tenth of a core at the floor's rate (1,900
    requests/s at 8 clients), leaving the rest to the server. Charge numbers go on across
    every run of the benchmark."""

    def __init__(self, wrk: str, tmp: pathlib.Path):
        self.wrk = wrk
        self.script = tmp / "bench.lua"
        self.script.write_text(LUA)
        self.last_charge = 0

    def run(self, url: str, clients: int, seconds: int, body_file: pathlib.Path | None) -> Result:
        mode = ["static", "0", str(body_file)] if body_file else ["charge", str(self.last_charge)]
        done = subprocess.run([self.wrk, "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "30s",
                               "-s", str(self.script), url, "--", *mode], capture_output=True, text=True)
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if done.returncode != 0 or line is None:
            raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        r = json.loads(line.removeprefix("RESULT "))
        if not body_file:
            self.last_charge = r["last"]
        return Result(r["p50_us"] / 1000, r["p99_us"] / 1000, r["requests"] / (r["duration_us"] / 1e6),
                      r["errors"])


def measure(load: Load, server: Server, path: str, body_file: pathlib.Path | None, seconds: int,
            results: dict) -> None:
    for clients in CONCURRENCY:
        load.run(server.base + path, clients, WARMUP_SECONDS, body_file)
        r = results[server.name, clients] = load.run(server.base + path, clients, seconds, body_file)
        print(f"  {server.name}, {clients} client(s): p50 {r.p50_ms:.3f} ms, p99 {r.p99_ms:.3f} ms, "
              f"{r.rps:.0f} requests/s", file=sys.stderr)


def bench_scorers(load, tmp, store_dir, seconds, results) -> list[str]:
    """The floor, then the scorer in each of its configurations; their names."""
    charge = json.dumps(CHECK_CHARGE).encode()
    port = free_port()
    with Server("floor", [FLOOR, "--port", port, "--threads", THREADS], port, "/healthz", tmp) as s:
        s.check(f"/v1/score/{TAG}", charge)
        measure(load, s, f"/v1/score/{TAG}", None, seconds, results)
    names = []
    for name, redis, workers in [("roundhouse (memory)", False, 1), ("roundhouse (redis)", True, 1),
                                 ("roundhouse (redis, 2 workers)", True, 2)]:
        with redis_server() if redis else contextlib.nullcontext() as url:
            # A home of its own each: in-process state from nothing, as Redis's is.
            home = tmp / f"home-{len(names)}"
            env = {**os.environ, "ROUNDHOUSE_HOME": str(home)}
            port = free_port()
            argv = [testlib.SERVER, "--port", port, "--store", store_dir, "--threads", THREADS,
                    "--workers", workers, *(["--features-store", url] if redis else [])]
            with Server(name, argv, port, "/healthz", tmp, env=env) as s:
                s.check(f"/v1/score/{TAG}", charge)
                measure(load, s, f"/v1/score/{TAG}", None, seconds, results)
        names.append(name)
    return names


def bench_mlflow(load, tmp, venv, model_file, columns, seconds, results) -> None:
    model_dir = tmp / "mlflow-model"
    saved = subprocess.run([str(venv / "bin" / "python"), "-c", MLFLOW_SAVE, str(model_file), str(model_dir)],
                           env=clean_env(venv), cwd=tmp, capture_output=True, text=True)
    if saved.returncode != 0:
        raise SystemExit(f"saving the MLflow model failed:\n{saved.stderr}")
    body = tmp / "mlflow-body.json"
    body.write_text(json.dumps({"dataframe_split": {"columns": columns, "data": [[ROW[c] for c in columns]]}}))
    port = free_port()
    argv = [venv / "bin" / "mlflow", "models", "serve", "-m", model_dir, "--env-manager", "local",
            "--host", "127.0.0.1", "--port", port]
    with Server("MLflow", argv, port, "/ping", tmp, env=clean_env(venv)) as s:
        s.check("/invocations", body.read_bytes())
        measure(load, s, "/invocations", body, seconds, results)


def bench_mlserver(load, tmp, venv, model_file, columns, seconds, results) -> None:
    repo = tmp / "mlserver"
    repo.mkdir()
    shutil.copy(model_file, repo / "model.json")
    port = free_port()
    # Every port on loopback; debug off, as in production, or uvicorn logs each request.
    (repo / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
        "debug": False}))
    (repo / "model-settings.json").write_text(json.dumps({
        "name": MODEL_NAME, "implementation": "mlserver_xgboost.XGBoostModel",
        "parameters": {"uri": "./model.json"}}))
    body = tmp / "mlserver-body.json"
    body.write_text(json.dumps({"inputs": [{"name": "features", "shape": [1, len(columns)], "datatype": "FP64",
                                            "data": [ROW[c] for c in columns]}]}))
    argv = [venv / "bin" / "mlserver", "start", repo]
    with Server("MLServer", argv, port, f"/v2/models/{MODEL_NAME}/ready", tmp, env=clean_env(venv)) as s:
        path = f"/v2/models/{MODEL_NAME}/infer"
        s.check(path, body.read_bytes())
        measure(load, s, path, body, seconds, results)


def report(results: dict, ours: list[str]) -> None:
    print(f"\n{'server':<32}{'clients':>8}{'p50 ms':>10}{'p99 ms':>10}{'requests/s':>12}{'errors':>8}")
    for (name, clients), r in results.items():
        print(f"{name:<32}{clients:>8}{r.p50_ms:>10.3f}{r.p99_ms:>10.3f}{r.rps:>12.0f}{r.errors:>8}")

    def ratio(a, b):
        return f"{a / b:.2f}x" if b else "-"

    print(f"\n{'':<32}{'p99 @1 / floor':>16}{'req/s @8 / MLflow':>19}{'req/s @8 / MLServer':>21}")
    print(f"{'goal':<32}{'<= 2x':>16}{'>= 20x':>19}{'>= 3x':>21}")
    floor = results["floor", 1]
    mlflow, mlserver = results.get(("MLflow", 8)), results.get(("MLServer", 8))
    for name in ours:
        ours1, ours8 = results[name, 1], results[name, 8]
        print(f"{name:<32}{ratio(ours1.p99_ms, floor.p99_ms):>16}"
              f"{ratio(ours8.rps, mlflow.rps if mlflow else 0):>19}"
              f"{ratio(ours8.rps, mlserver.rps if mlserver else 0):>21}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each measurement (after its warm-up)")
    parser.add_argument("--trees", type=int, default=500, help="trees of the depth-6 XGBoost model")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--skip-mlserver", action="store_true")
    args = parser.parse_args()
    # `kill` or Bazel's own SIGTERM unwinds like Ctrl-C, through every server's stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    # Everything installed and converted before the first measurement, so nothing else runs then.
    wrk = ensure_wrk()
    mlflow_venv = None if args.skip_mlflow else ensure_venv("mlflow")
    mlserver_venv = None if args.skip_mlserver else ensure_venv("mlserver")
    with tempfile.TemporaryDirectory(prefix="rh-bench-scoring-") as d:
        tmp = pathlib.Path(d)
        store_dir = str(tmp / "models")
        store = open_store(store_dir)
        model_id = testlib.store_model(store, seed=1, n_trees=args.trees, depth=DEPTH)
        TagStore(store).set(TAG, model_id)
        columns = list(store.get(model_id).feature_set.columns)
        model_file = tmp / "model.json"  # the stored artifact, as the other servers load it
        artifacts.deserialize(store.artifact(model_id), artifacts.XGBOOST_JSON).save_model(model_file)

        print(f"{args.trees} trees of depth {DEPTH}; each figure {args.seconds} s after {WARMUP_SECONDS} s "
              f"of warm-up; wrk, 1 thread; {os.cpu_count()} cores", file=sys.stderr)
        load = Load(wrk, tmp)
        results = {}
        ours = bench_scorers(load, tmp, store_dir, args.seconds, results)
        if mlflow_venv:
            bench_mlflow(load, tmp, mlflow_venv, model_file, columns, args.seconds, results)
        if mlserver_venv:
            bench_mlserver(load, tmp, mlserver_venv, model_file, columns, args.seconds, results)
    report(results, ours)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # every server is stopped by then
        sys.exit(130)
