"""tools/deploy's pusher against a real registry (Debian's docker-registry on loopback), checked
by skopeo, a client other than ours: what it pushes, skips and mounts, and what it refuses."""

import json
import pathlib
import subprocess

import pytest

from roundhouse.platform.images import registry as image_registry
from roundhouse.testing.ports import free_port
from roundhouse.testing.registry_server import registry  # noqa: F401  (a fixture)
from roundhouse.tools.deployment import push
from roundhouse.tools.images import layer, layout

SHA = "3f1c2a9e8b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e"


def _layout(tmp_path, title, files, revision=SHA, dirty="false", base=b"base"):
    """A layout as tools/images builds one: a shared base layer and a layer of `files`."""
    work = tmp_path / title
    work.mkdir()
    layers = []
    for name, content in (("base", base), ("app", files)):
        src = work / f"{name}.src"
        src.write_bytes(content)
        manifest = work / f"{name}.manifest"
        manifest.write_text(f"app/{name}\t{src}\n")
        out, desc = work / f"{name}.tar.gz", work / f"{name}.json"
        layer.main(["--manifest", str(manifest), "--out", str(out), "--descriptor", str(desc)])
        layers.append((str(out), json.loads(desc.read_text())))
    labels = {layout.REVISION: revision, layout.DIRTY: dirty} if revision else {}
    descriptor = layout.build(str(work / "layout"), layers, ["/app/train"], title, labels,
                              ["base", "app"])
    return work / "layout", descriptor["digest"]


def _inspect(registry, reference):
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{registry}/{reference}"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def _blobs(out, action):
    """The blob lines of push's output with that action."""
    return [line for line in out.splitlines() if f": {action} " in line]


def _run(registry, layouts, capsys, *extra):
    code = push.main(["--registry", registry, "--insecure", *extra, *map(str, layouts)])
    out, err = capsys.readouterr()
    return code, out, err


def test_images_land_under_their_commit_and_main_and_a_second_deploy_pushes_nothing(registry, tmp_path, capsys):
    fraud, fraud_digest = _layout(tmp_path, "fraud", b"fraud code")
    scorer, scorer_digest = _layout(tmp_path, "scorer", b"scorer code")
    code, out, _ = _run(registry, [fraud, scorer], capsys)
    assert code == 0, out
    for name, digest in (("fraud", fraud_digest), ("scorer", scorer_digest)):
        for tag in (SHA, "main"):
            assert _inspect(registry, f"roundhouse/{name}:{tag}")["Digest"] == digest
            assert f"{registry}/roundhouse/{name}:{tag} -> {digest}" in out
    # fraud's three blobs are uploaded; scorer's base layer comes from fraud's repository.
    assert len(_blobs(out, "pushed")) == 5 and len(_blobs(out, "mounted")) == 1, out
    assert "2 image(s)" in out and "5 pushed, 1 mounted, 0 skipped" in out

    code, out, _ = _run(registry, [fraud, scorer], capsys)
    assert code == 0 and len(_blobs(out, "skipped")) == 6 and not _blobs(out, "pushed"), out


def test_a_changed_top_layer_is_the_only_blob_pushed_again(registry, tmp_path, capsys):
    first, _ = _layout(tmp_path, "fraud", b"version 1")
    assert _run(registry, [first], capsys)[0] == 0
    (tmp_path / "next").mkdir()
    changed, digest = _layout(tmp_path / "next", "fraud", b"version 2", revision="9" * 40)
    code, out, _ = _run(registry, [changed], capsys)
    assert code == 0
    # The app layer and the config (which names the new commit); the base is there already.
    assert len(_blobs(out, "pushed")) == 2 and len(_blobs(out, "skipped")) == 1, out
    assert _inspect(registry, "roundhouse/fraud:main")["Digest"] == digest
    assert _inspect(registry, "roundhouse/fraud:" + "9" * 40)["Labels"][layout.REVISION] == "9" * 40


@pytest.mark.parametrize("revision, dirty, words", [
    ("", "false", "not stamped with a commit"),
    (SHA, "true", "uncommitted changes"),
])
def test_an_unstamped_or_dirty_build_is_refused_and_nothing_is_pushed(registry, tmp_path, capsys,
                                                                     revision, dirty, words):
    image, _ = _layout(tmp_path, "churn", b"x", revision=revision, dirty=dirty)
    code, out, err = _run(registry, [image], capsys)
    assert code == 1 and words in err and "Traceback" not in err
    manifest = json.loads((image / "index.json").read_text())["manifests"][0]["digest"]
    config = json.loads((image / "blobs" / "sha256" / manifest[7:]).read_text())["config"]["digest"]
    assert not image_registry.RegistryClient(insecure=True).has_blob(f"{registry}/roundhouse/churn", config)


def test_an_unreachable_registry_is_a_clear_error(tmp_path, capsys):
    image, _ = _layout(tmp_path, "fraud", b"x")
    code, _, err = _run(f"127.0.0.1:{free_port()}", [image], capsys)
    assert code == 1 and "is unreachable" in err and "Traceback" not in err


def test_list_prints_name_commit_and_digest_without_a_registry(tmp_path, capsys):
    image, digest = _layout(tmp_path, "fraud", b"x", dirty="true")
    assert push.main(["--list", str(image)]) == 0
    assert capsys.readouterr().out == f"fraud {SHA} {digest}\n"
