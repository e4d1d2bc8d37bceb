"""py_workflow: a workflow's train entry point as a py_binary and a self-contained .par."""

load("//tools:par.bzl", "py_par")

def py_workflow(name, main, srcs = [], deps = [], par = True, **kwargs):
    """Defines :NAME (bazel run) and, with par, :NAME.par (one file, `python3 -S NAME.par`)."""
    native.py_binary(
        name = name,
        srcs = srcs + [main],
        main = main,
        deps = deps,
        python_version = "PY3",
        **kwargs
    )
    if par:
        py_par(
            name = name + ".par",
            binary = ":" + name,
            main = main,
            testonly = kwargs.get("testonly", False),
            visibility = kwargs.get("visibility"),
        )
