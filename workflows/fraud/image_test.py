"""The fraud image really runs: unpacked with umoci, its entry point trains the fraud model
inside the image's rootfs (chroot), and the model records the SHA of the image's label."""

import json
import os
import pathlib
import shutil
import subprocess

import pytest

# Tests run with a PATH without /usr/sbin.
CHROOT = "/usr/sbin/chroot"
_LAYOUT = pathlib.Path(__file__).with_name("image")
REVISION = "org.opencontainers.image.revision"


def _blob(layout, digest):
    return json.loads((layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes())


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("this test runs the image with chroot, which needs root")
    if shutil.which("umoci") is None:
        pytest.fail("umoci is missing: ./tools/bazel installs Debian's umoci")
    work = tmp_path_factory.mktemp("image")
    layout = work / "layout"
    shutil.copytree(_LAYOUT, layout)  # umoci writes into the layout it reads
    for path in [layout, *layout.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:latest", str(work / "bundle")],
                   check=True, capture_output=True)
    return work / "bundle" / "rootfs"


def _config():
    index = json.loads((_LAYOUT / "index.json").read_text())
    manifest = _blob(_LAYOUT, index["manifests"][0]["digest"])
    return manifest, _blob(_LAYOUT, manifest["config"]["digest"])


def test_the_image_has_three_layers_and_names_its_workflow_and_commit():
    manifest, config = _config()
    assert len(manifest["layers"]) == 3  # Debian base, third-party packages, our code
    labels = config["config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == "fraud"
    assert len(labels[REVISION]) == 40  # .bazelrc stamps every build
    assert config["config"]["Entrypoint"] == ["/app/train"]


def test_the_entry_point_trains_the_fraud_model_inside_the_rootfs(rootfs):
    _, config = _config()
    # Nothing of the host: an empty environment, the image's own python3 and libraries.
    result = subprocess.run(
        [CHROOT, str(rootfs), "/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "HOME=/root",
         "ROUNDHOUSE_HOME=/tmp/store", *config["config"]["Entrypoint"],
         "--charges", "4000", "--days", "30"],
        capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["model_id"].startswith("m-")
    assert summary["git_sha"] == config["config"]["Labels"][REVISION]
    records = list((rootfs / "tmp" / "store").rglob("record.json"))
    assert len(records) == 1, records
    assert json.loads(records[0].read_text())["gitSha"] == summary["git_sha"]
