"""feature_parity_test: replays generated event logs through both targets of a definition file
and asserts the parity contract (see features/testing/parity_test_main.py).

    feature_parity_test(name = "fraud_parity_test", defs = "defs/fraud.feat")
    feature_parity_tests(srcs = glob(["defs/*.feat"]))   # one test per file

`data` must list the files `defs` imports.
"""

def feature_parity_test(name, defs, data = [], events = 3000, seeds = "1,2,3", spark_events = 300, size = "large", **kwargs):
    """spark_events: size of the log also run through Spark (local mode); 0 skips Spark."""
    native.py_test(
        name = name,
        srcs = ["//features/testing:parity_test_main.py"],
        main = "//features/testing:parity_test_main.py",
        args = [
            "--defs",
            "$(rootpath %s)" % defs,
            "--events",
            str(events),
            "--seeds",
            seeds,
            "--spark-events",
            str(spark_events),
        ],
        data = [defs] + [d for d in data if d != defs],
        deps = ["//features/language:loader", "//features/testing:parity", "@pypi//pytest"] +
               (["//features/targets/batch:spark_target"] if spark_events else []),
        python_version = "PY3",
        size = size,
        **kwargs
    )

def feature_parity_tests(srcs, data = [], **kwargs):
    """One parity test per definition file, named after it (defs/fraud.feat -> fraud_parity_test);
    every file in srcs is data of every test, so imports between them resolve."""
    for src in srcs:
        base = src.split("/")[-1].rsplit(".", 1)[0]
        feature_parity_test(name = base + "_parity_test", defs = src, data = srcs + data, **kwargs)
