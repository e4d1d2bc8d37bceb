import concurrent.futures

import boto3
import pytest

from roundhouse.platform.api import model_pb2
from roundhouse.platform.registry import blobs, store as store_lib, tags as tags_lib
from roundhouse.testing import s3_server


@pytest.fixture(scope="module")
def s3_endpoint():
    with s3_server.s3_server() as endpoint:
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return store_lib.ModelStore(blobs.LocalBlobs(tmp_path))
    endpoint = request.getfixturevalue("s3_endpoint")
    s3_server.reset(endpoint)
    client = boto3.client("s3", endpoint_url=endpoint, **s3_server.S3_CLIENT_ARGS)
    client.create_bucket(Bucket="models")
    return store_lib.ModelStore(blobs.S3Blobs(client, "models", "team-a"))


def record(sha="a" * 40, auc=0.9):
    r = model_pb2.ModelRecord(git_sha=sha, git_dirty=False, bazel_target="//workflows/fraud:train")
    r.metrics["roc_auc"] = auc
    r.artifact.format = "joblib"
    return r


def test_put_assigns_a_content_derived_id_and_reads_back(store):
    stored = store.put(b"model-bytes", record())
    assert stored.created and stored.record.model_id.startswith("m-")
    assert store.artifact(stored.record.model_id) == b"model-bytes"
    back = store.get(stored.record.model_id)
    assert back.git_sha == "a" * 40 and back.artifact.size == len(b"model-bytes")
    assert back.artifact.uri == stored.artifact_path
    assert store.list() == [stored.record.model_id]


def test_same_content_same_id_different_content_different_id(store):
    a = store.put(b"x", record()).record.model_id
    r = record()
    r.timings.train_seconds = 12.5  # timings do not define a model
    assert store.put(b"x", r).record.model_id == a
    assert store.put(b"y", record()).record.model_id != a
    assert store.put(b"x", record(sha="b" * 40)).record.model_id != a
    assert store.put(b"x", record(auc=0.8)).record.model_id != a


def test_write_once_never_overwrites(store):
    first = store.put(b"x", record())
    mid = first.record.model_id
    key = f"models/{mid}/record.json"
    assert not store.blobs.put_new(key, b"{}")  # the primitive refuses
    again = store.put(b"x", record())
    assert not again.created and store.get(mid) == first.record


def test_a_model_without_its_record_does_not_exist(store):
    # An interrupted put leaves at most the artifact; the model is not visible until the record lands.
    store.blobs.put_new("models/m-half/model.joblib", b"partial")
    assert not store.exists("m-half") and "m-half" not in store.list()
    with pytest.raises(store_lib.ModelNotFound, match="m-half"):
        store.get("m-half")


def test_tags_move_with_history_rollback_and_untag(store):
    tags = tags_lib.TagStore(store)
    a = store.put(b"a", record()).record.model_id
    b = store.put(b"b", record()).record.model_id
    tags.set("fraud-prod", a, by="ana")
    tags.set("fraud-prod", b, by="ben")
    assert tags.get("fraud-prod") == b and tags.list() == {"fraud-prod": b}
    assert tags.rollback("fraud-prod", by="ana") == a
    assert tags.get("fraud-prod") == a
    assert [e.model_id for e in tags.history("fraud-prod")] == [a, b, a]
    assert [e.by for e in tags.history("fraud-prod")] == ["ana", "ben", "ana"]
    tags.untag("fraud-prod")
    assert tags.get("fraud-prod") is None and tags.list() == {}
    with pytest.raises(tags_lib.TagError, match="points at no model"):
        tags.untag("fraud-prod")


def test_tag_must_point_at_an_existing_model_and_have_a_sane_name(store):
    tags = tags_lib.TagStore(store)
    with pytest.raises(store_lib.ModelNotFound, match="m-missing"):
        tags.set("fraud-prod", "m-missing")
    assert tags.history("fraud-prod") == []
    a = store.put(b"a", record()).record.model_id
    with pytest.raises(tags_lib.TagError, match="bad tag name"):
        tags.set("Fraud Prod/../x", a)
    with pytest.raises(tags_lib.TagError, match="no earlier model"):
        tags.set("t", a)
        tags.rollback("t")


def test_concurrent_moves_lose_no_event(store):
    tags = tags_lib.TagStore(store)
    ids = [store.put(bytes([i]), record()).record.model_id for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda mid: tags.set("race", mid), ids))
    history = [e.model_id for e in tags.history("race")]
    assert sorted(history) == sorted(ids)
    assert tags.get("race") == history[-1]


def test_a_tag_belongs_to_the_team_that_made_it(store):
    tags = tags_lib.TagStore(store)
    a = store.put(b"a", record()).record.model_id
    b = store.put(b"b", record()).record.model_id
    assert tags.owner("fraud-prod") is None
    tags.set("fraud-prod", a, by="ana", team="risk", token="t1", check_owner=True)
    assert tags.owner("fraud-prod") == "risk"
    with pytest.raises(tags_lib.TagForbidden, match="belongs to team 'risk'; team 'growth' may not move it"):
        tags.set("fraud-prod", b, team="growth", check_owner=True)
    with pytest.raises(tags_lib.TagForbidden):
        tags.rollback("fraud-prod", team="growth", check_owner=True)
    with pytest.raises(tags_lib.TagForbidden):
        tags.untag("fraud-prod", team="growth", check_owner=True)
    assert [e.model_id for e in tags.history("fraud-prod")] == [a]  # nothing was recorded
    tags.set("fraud-prod", b, by="bo", team="risk", token="t2", check_owner=True)
    tags.set("fraud-prod", a, by="root", team="admin", token="t3", owner="growth")  # an admin hands it over
    assert tags.owner("fraud-prod") == "growth" and tags.list_with_owners() == {"fraud-prod": (a, "growth")}
    assert [(e.by, e.team, e.token) for e in tags.history("fraud-prod")] == [
        ("ana", "risk", "t1"), ("bo", "risk", "t2"), ("root", "admin", "t3")]


def test_tag_objects_stay_readable_by_scorers_built_before_teams(store):
    import json

    tags = tags_lib.TagStore(store)
    a = store.put(b"a", record()).record.model_id
    tags.set("fraud-prod", a, by="ana", team="risk", token="t1")
    doc = json.loads(store.blobs.get("tags/fraud-prod.json"))
    # Old readers build TagEvent(model_id=, at=, by=) from each event: no other keys in it.
    assert [set(e) for e in doc["history"]] == [{"model_id", "at", "by"}]
    # And an object written before teams reads with no team, and no owner.
    store.blobs.put_if_version("tags/legacy.json", json.dumps(
        {"tag": "legacy", "history": [{"model_id": a, "at": "2024-01-01T00:00:00+00:00", "by": "ana"}]}).encode(),
        store.blobs.read_versioned("tags/legacy.json")[1])
    assert tags.owner("legacy") == "" and tags.history("legacy")[0].team == ""
    with pytest.raises(tags_lib.TagForbidden, match="belongs to no team"):
        tags.set("legacy", a, team="risk", check_owner=True)
