"""Where a file of a target's runfiles sits inside the runfiles tree."""

def runfiles_path(ctx, f):
    # External files have short paths like ../pypi/numpy/site/...; runfiles put them at
    # pypi/numpy/site/... (--nolegacy_external_runfiles) and ours under the workspace name.
    if f.short_path.startswith("../"):
        return f.short_path[3:]
    return ctx.workspace_name + "/" + f.short_path

def is_external(f):
    return f.short_path.startswith("../")
