import pathlib

import pytest

from roundhouse.scoring import shards

CHECKED_IN = pathlib.Path(__file__).parent / "shards.yaml"


def test_the_checked_in_table_loads_and_routes_each_tag_to_one_shard():
    routing = shards.load(CHECKED_IN)
    assert routing.shard_of("fraud-prod").tier.name == "critical"
    assert routing.shard_of("fraud-dev").tier.name == "development"
    dev, critical = routing.shard_of("fraud-dev").tier, routing.shard_of("fraud-prod").tier
    assert dev.threads > dev.max_concurrency and critical.threads == 1  # dev answers 429 past its limit
    assert routing.shard_of("nope") is None
    table = routing.to_dict()
    assert table["tags"]["fraud-prod"] == routing.shard_of("fraud-prod").name


@pytest.mark.parametrize("data, message", [
    ({"tiers": {"gold": {"max_concurrency": 1}}, "shards": {}}, "unknown tier"),
    ({"tiers": {"critical": {"max_concurrency": 0}}, "shards": {}}, "positive integer"),
    ({"tiers": {"critical": {"max_concurrency": 2, "threads": 0}}, "shards": {}}, "threads: expected a positive"),
    ({"tiers": {"critical": {"max_concurrency": 2}}, "shards": {"a": {"tier": "standard", "tags": []}}},
     "is not a tier"),
    ({"tiers": {"critical": {"max_concurrency": 2}},
      "shards": {"a": {"tier": "critical", "tags": ["t"]}, "b": {"tier": "critical", "tags": ["t"]}}},
     "already served by shard 'a'"),
    ([], "expected a mapping"),
])
def test_bad_tables_say_what_is_wrong(data, message):
    with pytest.raises(shards.ShardError, match=message):
        shards.parse(data)
