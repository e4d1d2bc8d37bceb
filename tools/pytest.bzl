"""py_pytest: a py_test that runs pytest on its srcs."""

def py_pytest(name, srcs, deps = [], args = [], **kwargs):
    main = "//tools/pytest:pytest_main.py"
    native.py_test(
        name = name,
        srcs = srcs + [main],
        main = main,
        args = ["%s/%s" % (native.package_name(), src) for src in srcs] + args,
        deps = deps + [d for d in ["@pypi//pytest"] if d not in deps],
        python_version = "PY3",
        **kwargs
    )
