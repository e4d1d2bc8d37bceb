"""Benchmark: loading and scoring an XGBoost model with XGBoost, onnxruntime, treelite and our
serving form (roundhouse.platform.registry.tree_arrays), side by side.

    bazel run //tools/bench:tree_models -- [--trees 500 1000]

Models: binary:logistic, 12 features, depth 6, trained here on synthetic data with NaN. Load
time and extra RSS are measured in a fresh process per load (median of --loads runs):
XGBoost from JSON and from UBJSON, onnxruntime's InferenceSession, and ours (a memory map).
Predict latency, p50/p99 of single calls on 1 row and on 100 rows, all single-threaded.

onnxruntime, onnxmltools and treelite/tl2cgen are not build dependencies: they live in a
virtual environment of their own ($ROUNDHOUSE_BENCH_VENV, default
~/.cache/roundhouse/bench-venv-trees), made on the first run with the pinned versions below
and reused. Their measurements run in that environment's python, which runs this same file
as a worker (so engine imports sit inside the functions that need them); converted models
(ONNX, the compiled treelite library) are cached there by model digest.
"""

import argparse
import hashlib
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

VENV_PINS = ["onnxruntime==1.31.1", "onnx==1.23.2", "onnxmltools==1.16.0", "treelite==4.8.1", "tl2cgen==1.0.0"]
N_FEATURES = 12
DEPTH = 6
ONE_ROW_CALLS = 3000
BATCH_CALLS = 300
BATCH = 100


# --- Measuring (the worker side: runs in this interpreter or in the venv's) ----------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def load_engine(engine, path):
    """The loaded model: what a scorer would hold after its start."""
    if engine in ("xgboost-json", "xgboost-ubjson"):
        import xgboost
        booster = xgboost.Booster()
        booster.load_model(path)
        booster.set_param({"nthread": 1})
        return booster
    if engine == "onnxruntime":
        import onnxruntime
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    if engine == "ours":
        from roundhouse.platform.registry import tree_arrays
        return tree_arrays.load(path)
    if engine == "treelite-compiled":
        import tl2cgen
        return tl2cgen.Predictor(path, nthread=1)
    if engine == "treelite-gtil":
        import treelite
        return treelite.Model.deserialize(path)
    raise ValueError(f"unknown engine {engine}")


def import_engine(engine):
    """Imports the engine's library before the clock starts: a load is the model, not the import."""
    modules = {"xgboost-json": "xgboost", "xgboost-ubjson": "xgboost", "onnxruntime": "onnxruntime",
               "ours": "roundhouse.platform.registry.tree_arrays", "treelite-compiled": "tl2cgen",
               "treelite-gtil": "treelite"}
    __import__(modules[engine])


def measure_load(engine, path):
    import_engine(engine)
    before = rss_bytes()
    t0 = time.perf_counter()
    model = load_engine(engine, path)
    ms = (time.perf_counter() - t0) * 1e3
    extra = rss_bytes() - before
    assert model is not None  # still held while RSS was read
    return {"ms": ms, "mib": extra / 2 ** 20}


def predictor(engine, model):
    """f(rows: float32 (n, 12)) -> P(class 1), one call of the engine's own predict API."""
    if engine.startswith("xgboost"):
        return lambda x: model.inplace_predict(x)
    if engine == "onnxruntime":
        name = model.get_inputs()[0].name
        return lambda x: model.run(["probabilities"], {name: x})[0][:, 1]
    if engine == "ours":
        return lambda x: model.predict_one(x[0]) if len(x) == 1 else model.predict_proba(x)
    if engine == "treelite-compiled":
        import tl2cgen
        return lambda x: model.predict(tl2cgen.DMatrix(x, dtype="float32")).reshape(-1)
    if engine == "treelite-gtil":
        import treelite
        return lambda x: treelite.gtil.predict(model, x, nthread=1).reshape(-1)
    raise ValueError(f"unknown engine {engine}")


def percentiles(calls, rows):
    """p50 and p99 in microseconds of single calls, cycling through different rows."""
    for i in range(min(200, len(rows))):  # warm-up: page in the model, fill caches
        calls(rows[i])
    times = []
    for i in range(len(rows)):
        t0 = time.perf_counter_ns()
        calls(rows[i])
        times.append(time.perf_counter_ns() - t0)
    times.sort()
    return [times[len(times) // 2] / 1e3, times[int(len(times) * 0.99)] / 1e3]


def measure_latency(engine, path, data_path):
    import numpy as np
    x = np.load(data_path).astype(np.float32)
    predict = predictor(engine, load_engine(engine, path))
    one = [x[i:i + 1] for i in range(ONE_ROW_CALLS)]
    batches = [x[i:i + BATCH] for i in range(0, BATCH_CALLS * 7, 7)]
    return {"one": percentiles(predict, one), "batch": percentiles(predict, batches),
            "predictions": predict(x[:1000]).astype(float).tolist()}


def convert(json_path, out_dir):
    """In the venv: the model as ONNX and as a compiled treelite library (or, failing the
    compiler, treelite's own format for its GTIL interpreter). Returns their paths."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    done = out / "converted.json"
    if done.exists():
        return json.loads(done.read_text())
    import treelite
    import xgboost
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType
    classifier = xgboost.XGBClassifier()
    classifier.load_model(json_path)
    onnx_model = convert_xgboost(classifier, initial_types=[("input", FloatTensorType([None, N_FEATURES]))],
                                 target_opset=15)
    (out / "model.onnx").write_bytes(onnx_model.SerializeToString())
    paths = {"onnxruntime": str(out / "model.onnx")}
    tl_model = treelite.frontend.load_xgboost_model(json_path)
    try:
        import tl2cgen
        tl2cgen.export_lib(tl_model, toolchain="gcc", libpath=str(out / "model.so"),
                           params={"parallel_comp": os.cpu_count() or 1}, nthread=os.cpu_count() or 1)
        paths["treelite-compiled"] = str(out / "model.so")
    except Exception as e:  # no compiler or no tl2cgen: treelite's interpreter still runs
        print(f"tl2cgen could not compile ({type(e).__name__}: {e}); using treelite GTIL", file=sys.stderr)
        tl_model.serialize(str(out / "model.treelite"))
        paths["treelite-gtil"] = str(out / "model.treelite")
    done.write_text(json.dumps(paths))
    return paths


def worker(argv):
    """python tree_models.py --worker load|latency|convert ARGS...: prints one JSON line."""
    kind, *args = argv
    result = {"load": measure_load, "latency": measure_latency, "convert": convert}[kind](*args)
    print(json.dumps(result))


# --- Orchestrating (the build's interpreter) -----------------------------------------------


def venv_python() -> str:
    """The bench venv's python, made and filled on first use, remade when the pins change."""
    import numpy
    import xgboost
    venv = pathlib.Path(os.environ.get("ROUNDHOUSE_BENCH_VENV",
                                       pathlib.Path.home() / ".cache/roundhouse/bench-venv-trees"))
    # The same numpy and xgboost as the build, so that conversion reads the same model.
    pins = VENV_PINS + [f"numpy=={numpy.__version__}", f"xgboost-cpu=={xgboost.__version__}"]
    python, stamp = venv / "bin" / "python", venv / "roundhouse-pins.txt"
    if not stamp.exists() or stamp.read_text().split() != pins:
        print(f"making the bench venv at {venv} ({' '.join(pins)})", file=sys.stderr)
        # Without PYTHONPATH: pip would count the build's packages on it as installed.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, env=env)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *pins], check=True, env=env)
        stamp.write_text("\n".join(pins) + "\n")
    return str(python)


def run_worker(python, *args):
    """One fresh process; single-threaded; our own imports reachable through PYTHONPATH."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    flags = ["-S"] if python == sys.executable and sys.flags.no_site else []
    if python != sys.executable:
        env.pop("PYTHONPATH")  # the venv's packages only
    proc = subprocess.run([python, *flags, __file__, "--worker", *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_data(path):
    import numpy as np
    rng = np.random.default_rng(0)
    n = 20000
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    score = x[:, 0] * x[:, 1] + np.sin(x[:, 2]) + 0.5 * x[:, 3] + 0.5 * rng.normal(size=n)
    y = (score > 0.3).astype(int)
    x[rng.random(x.shape) < 0.05] = np.nan
    np.save(path, x[-5000:])
    return x[:-5000], y[:-5000]


def make_models(tmp, x, y, n_trees):
    """The model as XGBoost JSON and UBJSON and in our serving form; returns their paths."""
    import xgboost
    from roundhouse.platform.registry import tree_arrays
    model = xgboost.XGBClassifier(n_estimators=n_trees, max_depth=DEPTH, tree_method="hist", n_jobs=2,
                                  random_state=0).fit(x, y)
    booster = model.get_booster()
    paths = {"xgboost-json": tmp / f"model{n_trees}.json", "xgboost-ubjson": tmp / f"model{n_trees}.ubj",
             "ours": tmp / f"model{n_trees}.trees"}
    paths["xgboost-json"].write_bytes(bytes(booster.save_raw(raw_format="json")))
    paths["xgboost-ubjson"].write_bytes(bytes(booster.save_raw(raw_format="ubj")))
    t0 = time.perf_counter()
    ensemble = tree_arrays.from_xgboost_json(paths["xgboost-json"].read_bytes())
    paths["ours"].write_bytes(tree_arrays.dumps(ensemble))
    mib = {k: p.stat().st_size / 2 ** 20 for k, p in paths.items()}
    print(f"{n_trees} trees: serving form built in {time.perf_counter() - t0:.2f} s, {mib['ours']:.2f} MiB "
          f"(XGBoost JSON {mib['xgboost-json']:.2f} MiB)", file=sys.stderr)
    return {k: str(v) for k, v in paths.items()}


def median_load(python, engine, path, runs):
    results = [run_worker(python, "load", engine, path) for _ in range(runs)]
    return statistics.median(r["ms"] for r in results), statistics.median(r["mib"] for r in results)


def bench(n_trees, tmp, x, y, data_path, venv, loads):
    import numpy as np
    paths = make_models(tmp, x, y, n_trees)
    digest = hashlib.sha256(pathlib.Path(paths["xgboost-json"]).read_bytes()).hexdigest()[:16]
    converted = pathlib.Path(venv).parents[1] / "converted" / digest  # inside the venv
    paths.update(run_worker(venv, "convert", paths["xgboost-json"], str(converted)))
    reference = None
    rows = []
    for engine, python in [("xgboost-json", sys.executable), ("xgboost-ubjson", sys.executable),
                           ("onnxruntime", venv), ("treelite-compiled", venv), ("treelite-gtil", venv),
                           ("ours", sys.executable)]:
        if engine not in paths:
            continue
        load_ms, mib = (None, None)  # treelite: only its prediction is compared
        if not engine.startswith("treelite"):
            load_ms, mib = median_load(python, engine, paths[engine], loads)
        latency = None
        if engine != "xgboost-ubjson":  # the same booster as from JSON once loaded
            # Ours and XGBoost run in this interpreter, the others in the venv's.
            latency = measure_latency(engine, paths[engine], data_path) if python == sys.executable \
                else run_worker(python, "latency", engine, paths[engine], data_path)
            got = np.asarray(latency["predictions"])
            reference = got if reference is None else reference
            latency["max_diff"] = float(np.abs(got - reference).max())
        rows.append((engine, n_trees, load_ms, mib, latency))
    return rows


def fmt(value, width, decimals):
    return f"{'-':>{width}}" if value is None else f"{value:{width}.{decimals}f}"


def print_table(rows):
    head = f"{'engine':<18} {'trees':>5} {'load ms':>8} {'extra MiB':>9} {'1-row p50/p99 us':>17} " \
           f"{'100-row p50/p99 us':>19} {'max |dP|':>9}"
    print(head)
    print("-" * len(head))
    for engine, n_trees, load_ms, mib, lat in rows:
        one = "-" if lat is None else f"{lat['one'][0]:.1f}/{lat['one'][1]:.1f}"
        batch = "-" if lat is None else f"{lat['batch'][0]:.0f}/{lat['batch'][1]:.0f}"
        diff = "-" if lat is None else f"{lat['max_diff']:.1e}"
        print(f"{engine:<18} {n_trees:>5} {fmt(load_ms, 8, 1)} {fmt(mib, 9, 1)} {one:>17} {batch:>19} {diff:>9}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, nargs="+", default=[500, 1000])
    parser.add_argument("--loads", type=int, default=5, help="fresh processes per load measurement")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    venv = venv_python()
    with tempfile.TemporaryDirectory() as d:
        tmp = pathlib.Path(d)
        data_path = str(tmp / "rows.npy")
        x, y = make_data(data_path)
        rows = []
        for n_trees in args.trees:
            rows += bench(n_trees, tmp, x, y, data_path, venv, args.loads)
    print_table(rows)
    print("max |dP|: largest difference from XGBoost's probabilities on 1000 rows. Load: a fresh process "
          "each, after the engine's import; ours maps the file, pages come in as predictions touch them.")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2:])
    else:
        main()
