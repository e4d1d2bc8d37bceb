"""Assembles an OCI image layout (a folder skopeo and umoci read) from built layers.

    layout.py --out DIR --layer L.tar.gz L.json [--layer ...] --entrypoint /app/train
              --title fraud [--status stable-status.txt] [--label K=V ...]

Layers are given base first. The image config and manifest are canonical JSON (sorted
keys, no spaces) with a fixed creation time, so the manifest digest depends only on the
layers and the labels. With --status (Bazel's stable-status.txt, under --stamp) the git SHA
becomes the `org.opencontainers.image.revision` label; it is never part of a layer that
a later commit could reuse. Blobs are hard-linked from the layer files when they can be
(a layer of hundreds of MB is not copied into every image that shares it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
INDEX = "application/vnd.oci.image.index.v1+json"
REVISION = "org.opencontainers.image.revision"
DIRTY = "io.roundhouse.git-dirty"
TITLE = "org.opencontainers.image.title"
# The tag of the one image in the layout (skopeo's oci:DIR:latest).
REF_NAME = "latest"
EPOCH = "1970-01-01T00:00:00Z"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def read_status(path: str) -> dict[str, str]:
    with open(path, encoding="utf-8") as f:
        return dict(line.rstrip("\n").split(" ", 1) for line in f if " " in line)


def _put_blob(blobs: str, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def _link_blob(blobs: str, layer: str, digest: str) -> None:
    target = os.path.join(blobs, digest.split(":", 1)[1])
    if os.path.exists(target):  # the same layer twice
        return
    try:
        os.link(os.path.realpath(layer), target)
    except OSError:  # another file system
        shutil.copyfile(layer, target)


def build(out: str, layers: list[tuple[str, dict]], entrypoint: list[str], title: str,
          labels: dict[str, str], history: list[str]) -> dict:
    """Writes the layout; returns the manifest's descriptor (its digest names the image)."""
    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    for path, descriptor in layers:
        _link_blob(blobs, path, descriptor["digest"])
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": EPOCH,
        "config": {
            "Entrypoint": entrypoint,
            "Env": [f"PATH={PATH}", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"],
            "WorkingDir": "/app",
            "Labels": {TITLE: title, **labels},
        },
        "rootfs": {"type": "layers", "diff_ids": [d["diff_id"] for _, d in layers]},
        "history": [{"created": EPOCH, "created_by": h} for h in history],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, **_put_blob(blobs, canonical(config))},
        "layers": [{"mediaType": LAYER, "digest": d["digest"], "size": d["size"]}
                   for _, d in layers],
    }
    manifest_descriptor = {"mediaType": MANIFEST, **_put_blob(blobs, canonical(manifest))}
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [
        {**manifest_descriptor, "annotations": {"org.opencontainers.image.ref.name": REF_NAME}}]}
    with open(os.path.join(out, "index.json"), "wb") as f:
        f.write(canonical(index))
    with open(os.path.join(out, "oci-layout"), "wb") as f:
        f.write(canonical({"imageLayoutVersion": "1.0.0"}))
    return manifest_descriptor


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--layer", nargs=3, action="append", required=True,
                        metavar=("TAR_GZ", "DESCRIPTOR", "HISTORY"))
    parser.add_argument("--entrypoint", action="append", required=True)
    parser.add_argument("--title", required=True)
    parser.add_argument("--status", help="Bazel's stable-status.txt (stamped builds)")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    labels = dict(item.split("=", 1) for item in args.label)
    if args.status:
        status = read_status(args.status)
        if status.get("STABLE_GIT_COMMIT"):
            labels[REVISION] = status["STABLE_GIT_COMMIT"]
            labels[DIRTY] = status.get("STABLE_GIT_DIRTY", "true")
    layers = []
    for path, descriptor_path, _ in args.layer:
        with open(descriptor_path, encoding="utf-8") as f:
            layers.append((path, json.load(f)))
    build(args.out, layers, args.entrypoint, args.title, labels, [h for _, _, h in args.layer])
    return 0


if __name__ == "__main__":
    sys.exit(main())
