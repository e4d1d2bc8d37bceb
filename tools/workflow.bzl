"""py_workflow: a workflow's train entry point as a py_binary, a self-contained .par and an image.

Every workflows/<name>/ that declares `py_workflow(name = "train", ...)` is also registered with
the training service (tools/workflows/registry.bzl), and deployed as roundhouse/<name>.
"""

load("//tools:par.bzl", "py_par")
load("//tools/images:image.bzl", "py_image")

def py_workflow(name, main, srcs = [], deps = [], par = True, image = True, **kwargs):
    """Defines :NAME (bazel run), :NAME.par (one file, `python3 -S NAME.par`) and :image.

    The image runs the workflow as /app/NAME (the Kubernetes executor's command), with the
    request in $ROUNDHOUSE_REQUEST.
    """
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
    if image:
        py_image(
            name = "image",
            binary = ":" + name,
            main = main,
            entrypoint = name,
            title = native.package_name().split("/")[-1],
            testonly = kwargs.get("testonly", False),
            visibility = kwargs.get("visibility"),
        )
