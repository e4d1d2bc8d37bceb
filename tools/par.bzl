"""py_par: a py_binary packed into one self-contained zip that runs with `python3 -S FILE`."""

load("//tools:runfiles.bzl", _runfiles_path = "runfiles_path")

def _py_par_impl(ctx):
    out = ctx.actions.declare_file(ctx.label.name)
    runfiles = ctx.attr.binary[DefaultInfo].default_runfiles.files
    manifest_file = ctx.actions.declare_file(ctx.label.name + ".manifest")
    ctx.actions.write(manifest_file, "".join([
        "%s\t%s\n" % (_runfiles_path(ctx, f), f.path)
        for f in runfiles.to_list()
    ]))
    imports = ctx.attr.binary[PyInfo].imports.to_list()
    ctx.actions.run(
        executable = ctx.executable._builder,
        arguments = [
            "--manifest", manifest_file.path,
            "--main", _runfiles_path(ctx, ctx.file.main),
            "--imports", ":".join(imports),
            "--bootstrap", ctx.file._bootstrap.path,
            "--out", out.path,
        ],
        inputs = depset([manifest_file, ctx.file._bootstrap], transitive = [runfiles]),
        outputs = [out],
        mnemonic = "PyPar",
        progress_message = "Packing %s" % out.short_path,
    )
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out]))]

py_par = rule(
    implementation = _py_par_impl,
    attrs = {
        "binary": attr.label(mandatory = True, providers = [PyInfo]),
        "main": attr.label(mandatory = True, allow_single_file = [".py"]),
        "_builder": attr.label(default = "//tools/par:build_par", executable = True, cfg = "exec"),
        "_bootstrap": attr.label(default = "//tools/par:par_main.py", allow_single_file = True),
    },
)
