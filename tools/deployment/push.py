"""Pushes built image layouts to a registry as roundhouse/<title>:<git-sha> and :<moving tag>.

    push.py --registry HOST[:PORT][/PREFIX] [--insecure] [--tag main] LAYOUT...
    push.py --list LAYOUT...     # prints `<name> <revision> <manifest digest>`, pushes nothing

Each LAYOUT is a folder that tools/images/image.bzl built (an OCI layout with one image whose
config names it, org.opencontainers.image.title, and its commit, .revision). A blob the
registry already has is skipped; a blob pushed earlier in this run to another repository is
mounted from there rather than uploaded again (every image shares the Debian base). Prints a
line per blob and per tag, and refuses an unstamped or dirty build: a tag names a commit.
Credentials, when the registry wants them, come from $REGISTRY_USERNAME and
$REGISTRY_PASSWORD (for ECR: AWS and `aws ecr get-login-password`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import time

from roundhouse.platform.images import registry as image_registry
from roundhouse.tools.images.layout import DIRTY, MANIFEST, REVISION, TITLE

REPOSITORY_PREFIX = "roundhouse"


class DeployError(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class Image:
    layout: pathlib.Path
    title: str
    revision: str
    manifest: bytes
    manifest_digest: str
    blobs: tuple[tuple[str, int], ...]  # (digest, size): the layers, then the config

    def blob_path(self, digest: str) -> pathlib.Path:
        return self.layout / "blobs" / "sha256" / digest.split(":", 1)[1]


def read_layout(layout: pathlib.Path, allow_dirty: bool) -> Image:
    try:
        index = json.loads((layout / "index.json").read_bytes())
        (entry,) = index["manifests"]
        manifest_path = layout / "blobs" / "sha256" / entry["digest"].split(":", 1)[1]
        manifest_bytes = manifest_path.read_bytes()
        manifest = json.loads(manifest_bytes)
        config = json.loads((layout / "blobs" / "sha256" /
                             manifest["config"]["digest"].split(":", 1)[1]).read_bytes())
    except (OSError, ValueError, KeyError) as exc:
        raise DeployError(f"{layout}: not an image layout built by tools/images ({exc})") from None
    labels = config.get("config", {}).get("Labels") or {}
    title, revision = labels.get(TITLE), labels.get(REVISION)
    if not title:
        raise DeployError(f"{layout}: the image config has no {TITLE} label")
    if not revision:
        raise DeployError(f"{layout}: the image is not stamped with a commit (build with --stamp "
                          "in a git checkout)")
    if labels.get(DIRTY) != "false" and not allow_dirty:
        raise DeployError(f"{layout}: built from a checkout with uncommitted changes; a tag "
                          f"{revision[:12]} would not name what it holds. Commit first")
    blobs = tuple((layer["digest"], layer["size"]) for layer in manifest["layers"]) + (
        (manifest["config"]["digest"], manifest["config"]["size"]),)
    return Image(layout, title, revision, manifest_bytes, entry["digest"], blobs)


def push(images: list[Image], client: image_registry.RegistryClient, registry: str,
         moving_tag: str) -> dict[str, int]:
    """Pushes every image; returns counts of blobs pushed, mounted and skipped."""
    counts = {"pushed": 0, "mounted": 0, "skipped": 0}
    where: dict[str, str] = {}  # digest -> a repository of this registry that has it
    for image in images:
        repo = f"{registry}/{REPOSITORY_PREFIX}/{image.title}"
        for digest, size in image.blobs:
            if client.has_blob(repo, digest):
                action = "skipped"
            elif digest in where and client.mount_blob(repo, digest, where[digest]):
                action = "mounted"
            else:
                client.push_blob(repo, digest, image.blob_path(digest))
                action = "pushed"
            where.setdefault(digest, repo)
            counts[action] += 1
            print(f"{repo}: {action:8} {digest} ({size / 1e6:.1f} MB)", flush=True)
        for tag in (image.revision, moving_tag):
            digest = client.put_manifest(f"{repo}:{tag}", image.manifest, MANIFEST)
            if digest != image.manifest_digest:
                raise DeployError(f"{repo}:{tag}: the registry stored the manifest as {digest}, "
                                  f"not {image.manifest_digest}")
            print(f"{repo}:{tag} -> {digest}", flush=True)
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", help="HOST[:PORT][/PREFIX]")
    parser.add_argument("--list", action="store_true", help="print what would be pushed")
    parser.add_argument("--insecure", action="store_true", help="plain HTTP (a registry on loopback)")
    parser.add_argument("--tag", default="main", help="the moving tag to point at these images")
    parser.add_argument("--allow-dirty", action="store_true")
    parser.add_argument("layouts", nargs="+", type=pathlib.Path)
    args = parser.parse_args(argv)
    if not args.list and not args.registry:
        parser.error("--registry is required (or --list)")
    try:
        images = [read_layout(layout, args.allow_dirty or args.list) for layout in args.layouts]
        if args.list:
            for image in images:
                print(image.title, image.revision, image.manifest_digest)
            return 0
        credentials = image_registry.Credentials.from_env(
            *(("REGISTRY_USERNAME", "REGISTRY_PASSWORD") if "REGISTRY_USERNAME" in os.environ
              else ("", "")), os.environ)
        client = image_registry.RegistryClient(insecure=args.insecure, credentials=credentials)
        started = time.monotonic()
        counts = push(images, client, args.registry.rstrip("/"), args.tag)
    except (DeployError, image_registry.RegistryError, ValueError) as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 1
    print(f"deploy: {len(images)} image(s) in {time.monotonic() - started:.1f} s; blobs: "
          + ", ".join(f"{n} {k}" for k, n in counts.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
