"""build_info: a data file with the git SHA and dirty flag of the build.

With --stamp it holds the STABLE_GIT_* lines of Bazel's stable-status.txt (and only those:
host and user names would make outputs differ between machines); with --nostamp it says
so. Read it at run time with roundhouse.platform.build_info.
"""

def _build_info_impl(ctx):
    out = ctx.actions.declare_file(ctx.label.name + ".txt")
    if ctx.attr.stamp:
        ctx.actions.run_shell(
            inputs = [ctx.info_file],
            outputs = [out],
            command = "(echo 'STAMPED true'; grep '^STABLE_GIT_' %s || true) > %s" % (ctx.info_file.path, out.path),
            mnemonic = "BuildInfo",
        )
    else:
        ctx.actions.write(out, "STAMPED false\n")
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out]))]

_build_info = rule(
    implementation = _build_info_impl,
    attrs = {"stamp": attr.bool(mandatory = True)},
)

def build_info(name, stamp = None, **kwargs):
    """stamp: None follows --stamp/--nostamp; True or False fixes it (for tests)."""
    if stamp == None:
        stamp = select({
            "//tools:stamped": True,
            "//conditions:default": False,
        })
    _build_info(name = name, stamp = stamp, **kwargs)
