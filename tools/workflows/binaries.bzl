"""workflow_binaries: the train binaries of every workflow, with their runfiles.

A filegroup would give a service only the binaries' launchers; their code and packages would
then be found only through the launchers' symlinks into bazel-bin, which an image does not have.
"""

def _workflow_binaries_impl(ctx):
    runfiles = ctx.runfiles(files = ctx.files.srcs)
    for src in ctx.attr.srcs:
        runfiles = runfiles.merge(src[DefaultInfo].default_runfiles)
    return [DefaultInfo(files = depset(ctx.files.srcs), runfiles = runfiles)]

workflow_binaries = rule(
    implementation = _workflow_binaries_impl,
    attrs = {"srcs": attr.label_list(mandatory = True)},
)
