"""Layers and layouts are deterministic: the same files give the same digests, whatever the
files' timestamps, owners or order; the revision label changes only the config and manifest."""

import gzip
import hashlib
import io
import json
import os
import tarfile

import pytest

from roundhouse.tools.images import layer, layout


def _files(root, stamp):
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("print('a')\n")
    (root / "pkg" / "run").write_text("#!/bin/sh\n")
    (root / "pkg" / "run").chmod(0o700)
    (root / "b.txt").write_text("b\n")
    for path in root.rglob("*"):
        os.utime(path, (stamp, stamp))
    return root


def _manifest(tmp_path, root, order):
    lines = {"app/x.runfiles/pkg/a.py": root / "pkg" / "a.py",
             "app/x.runfiles/pkg/run": root / "pkg" / "run",
             "app/x.runfiles/b.txt": root / "b.txt"}
    path = tmp_path / f"manifest-{order}"
    items = sorted(lines.items(), reverse=order == "reversed")
    path.write_text("".join(f"{dest}\t{src}\n" for dest, src in items) + f"app/x\t{root / 'b.txt'}\t0755\n")
    return path


def _layer(tmp_path, tag, stamp, order):
    root = _files(tmp_path / f"src-{tag}", stamp)
    out, desc = tmp_path / f"{tag}.tar.gz", tmp_path / f"{tag}.json"
    assert layer.main(["--manifest", str(_manifest(tmp_path, root, order)), "--out", str(out),
                       "--descriptor", str(desc)]) == 0
    return out, json.loads(desc.read_text())


def test_the_same_files_give_the_same_layer_bytes(tmp_path):
    first, d1 = _layer(tmp_path, "one", stamp=1_600_000_000, order="sorted")
    second, d2 = _layer(tmp_path, "two", stamp=1_700_000_000, order="reversed")
    assert first.read_bytes() == second.read_bytes()
    assert d1 == d2
    assert d1["digest"] == "sha256:" + hashlib.sha256(first.read_bytes()).hexdigest()
    assert d1["size"] == first.stat().st_size
    assert d1["diff_id"] == "sha256:" + hashlib.sha256(gzip.decompress(first.read_bytes())).hexdigest()


def test_entries_are_sorted_with_fixed_owners_times_and_modes(tmp_path):
    out, _ = _layer(tmp_path, "one", stamp=1_600_000_000, order="reversed")
    raw = out.read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip header mtime
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw))) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names[:3] == ["app", "app/x", "app/x.runfiles"]  # parents come before children
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    modes = {m.name: m.mode for m in members}
    assert modes["app/x"] == 0o755  # the manifest's mode wins over the file's (0644)
    assert modes["app/x.runfiles/pkg/run"] == 0o755 and modes["app/x.runfiles/pkg/a.py"] == 0o644
    assert modes["app/x.runfiles/pkg"] == 0o755


def test_a_path_given_twice_with_different_files_is_an_error(tmp_path):
    root = _files(tmp_path / "src", 0)
    manifest = tmp_path / "m"
    manifest.write_text(f"app/a\t{root / 'b.txt'}\napp/a\t{root / 'pkg' / 'a.py'}\n")
    with pytest.raises(SystemExit, match=f"{manifest}:2: app/a is given twice"):
        layer.main(["--manifest", str(manifest), "--out", str(tmp_path / "o"),
                    "--descriptor", str(tmp_path / "d")])


def _layout(tmp_path, name, labels):
    out, desc = _layer(tmp_path, name, stamp=1, order="sorted")
    return layout.build(str(tmp_path / f"layout-{name}"), [(str(out), desc)], ["/app/x"], "x",
                        labels, ["test layer"])


def test_the_layout_names_its_image_by_a_stable_digest_and_the_revision_is_only_a_label(tmp_path):
    plain = _layout(tmp_path, "a", {})
    again = _layout(tmp_path, "b", {})
    stamped = _layout(tmp_path, "c", {layout.REVISION: "f" * 40})
    assert plain == again
    assert stamped["digest"] != plain["digest"]
    root = tmp_path / "layout-c"
    index = json.loads((root / "index.json").read_text())
    assert index["manifests"][0]["digest"] == stamped["digest"]
    manifest = json.loads((root / "blobs" / "sha256" / stamped["digest"][7:]).read_bytes())
    config = json.loads((root / "blobs" / "sha256" / manifest["config"]["digest"][7:]).read_bytes())
    assert config["config"]["Labels"] == {layout.TITLE: "x", layout.REVISION: "f" * 40}
    plain_manifest = json.loads((tmp_path / "layout-a" / "blobs" / "sha256" / plain["digest"][7:]).read_bytes())
    assert plain_manifest["layers"] == manifest["layers"]  # same layer blobs, different config
    for blob in (root / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
