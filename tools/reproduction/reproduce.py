"""`tools/reproduce MODEL_ID`: rebuild a model from its recorded git SHA and compare.

Reads the model's record (git SHA, dirty flag, Bazel target, request, data fingerprint);
refuses a model trained from a dirty tree (its source is not in git), an unstamped one, and
one whose input files no longer match their fingerprint. Otherwise it checks the SHA out in a
temporary git worktree, builds and runs the same target on the same request there, into a
scratch model store, and reports whether the rebuilt model is identical (same model ID) or,
when it is not, which record fields differ and how its predictions on the holdout differ.

The worktree's Bazel runs in this checkout's output base, so the locked wheels fetched for
this checkout are reused (re-fetched only when the old commit locked other ones).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
from google.protobuf import json_format

from roundhouse.platform.data import fingerprint, training_data
from roundhouse.platform.home import default_home
from roundhouse.platform.registry import artifacts
from roundhouse.platform.registry.store import ModelNotFound, ModelStore, open_store

# Fields that do not define a model (model_id.compute leaves them out too).
_NOT_DEFINING = {"modelId", "timings", "jobId", "image"}


class Refused(Exception):
    pass


def check_reproducible(record) -> None:
    if record.meta.kind:
        raise Refused(f"{record.model_id} is a meta-model (a spec over other models): reproduce its models")
    if not record.git_sha:
        raise Refused(f"{record.model_id} was built unstamped (no git SHA in its record): nothing to check out")
    if record.git_dirty:
        raise Refused(f"{record.model_id} was trained from a dirty tree (uncommitted changes on top of "
                      f"{record.git_sha[:12]}): the code that trained it is not in git, so it cannot be rebuilt")
    for f in record.data.files:
        if f.path.startswith("s3://"):
            raise Refused(f"{f.path}: checking S3 objects against their ETags is not implemented here")
        if not os.path.exists(f.path):
            raise Refused(f"its data file {f.path} is gone")
        if os.path.getsize(f.path) != f.size or fingerprint.sha256_file(f.path) != f.sha256:
            raise Refused(f"its data file {f.path} changed since training (size or sha256 differs from "
                          "the fingerprint in the record)")


def record_differences(old, new) -> list[str]:
    a, b = (json_format.MessageToDict(r) for r in (old, new))
    out = []
    for key in sorted((set(a) | set(b)) - _NOT_DEFINING):
        x, y = a.get(key), b.get(key)
        if key == "artifact":
            x, y = ({k: v for k, v in (d or {}).items() if k != "uri"} for d in (x, y))
        if x != y:
            out.append(f"{key}: {json.dumps(x, sort_keys=True)[:200]} -> {json.dumps(y, sort_keys=True)[:200]}")
    return out


def prediction_differences(store_a: ModelStore, a, store_b: ModelStore, b) -> dict:
    """Max abs difference of the two models' scores on the holdout, and the share of rows whose
    decision at 0.5 changed."""
    data = training_data.load(a.request)
    columns = list(a.feature_set.columns) or list(data.feature_columns)
    x = data.holdout.select(columns).to_pandas()
    scores = []
    for store, r in ((store_a, a), (store_b, b)):
        model = artifacts.deserialize(store.artifact(r.model_id), r.artifact.format)
        scores.append(model.predict_proba(x)[:, 1])
    diff = np.abs(scores[0] - scores[1])
    return {"rows": len(x), "max_abs_difference": float(diff.max()) if len(x) else 0.0,
            "changed_decisions_at_0.5": float(np.mean((scores[0] >= 0.5) != (scores[1] >= 0.5))) if len(x) else 0.0}


def git(repo, *args, capture=True) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], check=True, text=True,
                            capture_output=capture)
    return result.stdout.strip() if capture else ""


def rebuild(repo: pathlib.Path, record, store_dir: pathlib.Path, keep: bool) -> str:
    """Trains the record's target at its SHA in a worktree; returns the new model's ID."""
    try:
        git(repo, "cat-file", "-e", f"{record.git_sha}^{{commit}}")
    except subprocess.CalledProcessError:
        raise Refused(f"commit {record.git_sha} is not in {repo}: fetch it first") from None
    output_base = subprocess.run([str(repo / "tools" / "bazel"), "info", "output_base"], cwd=repo, check=True,
                                 text=True, capture_output=True).stdout.strip()
    worktree = pathlib.Path(tempfile.mkdtemp(prefix=f"reproduce-{record.git_sha[:12]}-"))
    git(repo, "worktree", "add", "--detach", str(worktree), record.git_sha)
    try:
        request = worktree.parent / (worktree.name + ".request.json")
        request.write_text(json_format.MessageToJson(record.request))
        print(f"[reproduce] building {record.bazel_target} at {record.git_sha[:12]} in {worktree}", file=sys.stderr)
        run = subprocess.run(
            [str(worktree / "tools" / "bazel"), f"--output_base={output_base}", "run", record.bazel_target, "--",
             "--request", str(request), "--store", str(store_dir)],
            cwd=worktree, text=True, stdout=subprocess.PIPE)
        if run.returncode != 0:
            raise Refused(f"the rebuilt {record.bazel_target} failed with exit code {run.returncode}")
        return json.loads(run.stdout.strip().splitlines()[-1])["model_id"]
    finally:
        if not keep:
            git(repo, "worktree", "remove", "--force", str(worktree))
            request.unlink(missing_ok=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tools/reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("model_id")
    parser.add_argument("--store", default=os.environ.get("ROUNDHOUSE_STORE", str(default_home())),
                        help="the model store holding the model (default $ROUNDHOUSE_HOME)")
    parser.add_argument("--keep", action="store_true", help="keep the worktree and the rebuilt model's store")
    args = parser.parse_args(argv)
    repo = pathlib.Path(os.environ.get("BUILD_WORKSPACE_DIRECTORY") or os.getcwd())
    repo = pathlib.Path(git(repo, "rev-parse", "--show-toplevel"))
    store = open_store(args.store)
    try:
        record = store.get(args.model_id)
        check_reproducible(record)
        scratch = pathlib.Path(tempfile.mkdtemp(prefix="reproduce-store-"))
        new_id = rebuild(repo, record, scratch, args.keep)
    except (Refused, ModelNotFound) as e:
        print(f"reproduce: refused: {e}", file=sys.stderr)
        return 2
    report = {"model_id": args.model_id, "git_sha": record.git_sha, "rebuilt_model_id": new_id,
              "identical": new_id == args.model_id}
    if not report["identical"]:
        new_store = open_store(str(scratch))
        new = new_store.get(new_id)
        report["record_differences"] = record_differences(record, new)
        report["predictions"] = prediction_differences(store, record, new_store, new)
    print(json.dumps(report, indent=2))
    return 0 if report["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
