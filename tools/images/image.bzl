"""py_image: a py_binary as an OCI image layout, in three layers, least often changed first.

  1. the Debian base (@image_base, python3 and the shared libraries the wheels need),
  2. the third-party packages in this binary's runfiles (only those it depends on),
  3. the binary's own code with the platform code it imports, and its entry point
     /app/<entrypoint> (tools/images/launcher.py), which runs it from /app/<entrypoint>.runfiles.

A change to a workflow's code rebuilds only layer 3. Under --stamp the git SHA goes in the
`org.opencontainers.image.revision` label (and in the binary's build info, part of layer 3).
The output is a folder holding an OCI layout with the one image tagged `latest`.
"""

load("//tools:runfiles.bzl", "is_external", "runfiles_path")

def _manifest_line(path, f, mode = None):
    return "%s\t%s%s\n" % (path, f.path, "\t" + mode if mode else "")

def _layer(ctx, name, lines, inputs):
    manifest = ctx.actions.declare_file("%s.%s.manifest" % (ctx.label.name, name))
    ctx.actions.write(manifest, "".join(lines))
    out = ctx.actions.declare_file("%s.%s.tar.gz" % (ctx.label.name, name))
    descriptor = ctx.actions.declare_file("%s.%s.json" % (ctx.label.name, name))
    ctx.actions.run(
        executable = ctx.executable._layer,
        arguments = ["--manifest", manifest.path, "--out", out.path, "--descriptor", descriptor.path],
        inputs = depset([manifest], transitive = [inputs]),
        outputs = [out, descriptor],
        mnemonic = "ImageLayer",
        progress_message = "Writing the %s layer of %s" % (name, ctx.label),
    )
    return out, descriptor

def _py_image_impl(ctx):
    entry = "app/" + ctx.attr.entrypoint
    root = entry + ".runfiles/"
    files = ctx.attr.binary[DefaultInfo].default_runfiles.files.to_list()
    third_party = [f for f in files if is_external(f)]
    own = [f for f in files if not is_external(f)]

    meta = ctx.actions.declare_file(ctx.label.name + ".entry.json")
    ctx.actions.write(meta, json.encode({
        "main": runfiles_path(ctx, ctx.file.main),
        "imports": ctx.attr.binary[PyInfo].imports.to_list(),
    }))
    packages = _layer(ctx, "packages", [_manifest_line(root + runfiles_path(ctx, f), f) for f in third_party],
                      depset(third_party))
    app = _layer(
        ctx,
        "app",
        [_manifest_line(root + runfiles_path(ctx, f), f) for f in own] + [
            _manifest_line(entry, ctx.file._launcher, "0755"),
            _manifest_line(entry + ".json", meta, "0644"),
        ],
        depset(own + [ctx.file._launcher, meta]),
    )

    layers = [
        (ctx.file._base_layer, ctx.file._base_descriptor, "debian base (tools/images/base.py)"),
        packages + ("third-party packages of %s" % ctx.attr.binary.label,),
        app + ("%s and the platform code it imports" % ctx.attr.binary.label,),
    ]
    out = ctx.actions.declare_directory(ctx.label.name)
    args = ctx.actions.args()
    args.add("--out", out.path)
    args.add("--entrypoint", "/" + entry)
    args.add("--title", ctx.attr.title)
    inputs = []
    for tar, descriptor, history in layers:
        args.add_all("--layer", [tar, descriptor, history])
        inputs += [tar, descriptor]
    if ctx.attr.stamp:
        args.add("--status", ctx.info_file)
        inputs.append(ctx.info_file)
    ctx.actions.run(
        executable = ctx.executable._layout,
        arguments = [args],
        inputs = inputs,
        outputs = [out],
        mnemonic = "ImageLayout",
        progress_message = "Assembling the image %s" % ctx.label,
    )
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out]))]

_py_image = rule(
    implementation = _py_image_impl,
    attrs = {
        "binary": attr.label(mandatory = True, providers = [PyInfo]),
        "main": attr.label(mandatory = True, allow_single_file = [".py"]),
        "entrypoint": attr.string(mandatory = True),
        "title": attr.string(mandatory = True),
        "stamp": attr.bool(mandatory = True),
        "_base_layer": attr.label(default = "@image_base//:layer.tar.gz", allow_single_file = True),
        "_base_descriptor": attr.label(default = "@image_base//:layer.json", allow_single_file = True),
        "_launcher": attr.label(default = "//tools/images:launcher.py", allow_single_file = True),
        "_layer": attr.label(default = "//tools/images:layer", executable = True, cfg = "exec"),
        "_layout": attr.label(default = "//tools/images:layout", executable = True, cfg = "exec"),
    },
)

def py_image(name, binary, main, entrypoint, title, **kwargs):
    """An OCI layout of `binary` (a py_binary whose main is `main`) named `title` in a registry.

    The image's entry point is /app/<entrypoint>. Deploy pushes it as roundhouse/<title>.
    """
    _py_image(
        name = name,
        binary = binary,
        main = main,
        entrypoint = entrypoint,
        title = title,
        stamp = select({
            "//tools:stamped": True,
            "//conditions:default": False,
        }),
        tags = kwargs.pop("tags", []) + ["oci-image"],
        **kwargs
    )
