"""pip_repository: locked wheels -> one py_library per package.

Runs pip (with --require-hashes) inside a repository rule, unpacks each wheel into its own
folder and writes `@NAME//<package>` targets whose deps come from the wheels' metadata. One
folder per package keeps imports hermetic: a target sees only the packages it depends on.
"""

def _pip_repository_impl(rctx):
    python = rctx.which(rctx.attr.python)
    if not python:
        fail("pip_repository: '%s' not found on PATH; it needs a Python 3.11 with pip" % rctx.attr.python)
    lock = rctx.path(rctx.attr.lock)
    script = rctx.path(rctx.attr._installer)
    rctx.report_progress("Installing locked Python wheels from %s" % rctx.attr.lock)
    result = rctx.execute(
        [python, "-B", script, "--lock", lock, "--out", rctx.path("."),
         "--target-python", rctx.attr.target_python],
        timeout = 3600,
        quiet = False,
        environment = {"PYTHONDONTWRITEBYTECODE": "1", "PIP_NO_COMPILE": "1"},
    )
    if result.return_code != 0:
        fail("pip_repository: installing %s failed:\n%s\n%s" % (rctx.attr.lock, result.stdout, result.stderr))

pip_repository = repository_rule(
    implementation = _pip_repository_impl,
    attrs = {
        "lock": attr.label(mandatory = True, allow_single_file = True),
        "python": attr.string(default = "python3", doc = "runs pip"),
        # The interpreter of //tools/python:python3_runtime: dependency markers are
        # evaluated for it.
        "target_python": attr.string(default = "/usr/bin/python3"),
        "_installer": attr.label(default = "//third_party/python:install_wheels.py"),
    },
    environ = ["PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"],
)
