"""Shards and tiers: which scorer pool serves which tags, and how much each may take on.

scoring/shards.yaml is the checked-in table. A shard names the tags it serves, its tier and
the URL its pool answers on; a tier sets the per-process concurrency limit past which a
scorer answers 429 instead of queueing, and the Python threads each worker runs requests in
(default 1, the fastest: Python runs one at a time). A limit answers 429 only once there are
more threads than the limit, as the development tier has; below that, granian holds at most
`limit` requests waiting and accepts no more connections. A scorer started with
`--shard NAME` loads only that shard's models; without --shard it serves every tag in the tag
store (the local default).
"""

from __future__ import annotations

import dataclasses
import pathlib

import yaml

TIERS = ("critical", "standard", "development")


class ShardError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Tier:
    name: str
    max_concurrency: int
    threads: int = 1


@dataclasses.dataclass(frozen=True)
class Shard:
    name: str
    tier: Tier
    tags: tuple[str, ...]
    url: str = ""


@dataclasses.dataclass(frozen=True)
class Routing:
    shards: dict[str, Shard]

    def shard_of(self, tag: str) -> Shard | None:
        for shard in self.shards.values():
            if tag in shard.tags:
                return shard
        return None

    def to_dict(self) -> dict:
        return {"shards": {s.name: {"tier": s.tier.name, "max_concurrency": s.tier.max_concurrency,
                                    "threads": s.tier.threads, "tags": list(s.tags), "url": s.url}
                           for s in self.shards.values()},
                "tags": {t: s.name for s in self.shards.values() for t in s.tags}}


def parse(data, where: str = "shards") -> Routing:
    if not isinstance(data, dict) or not isinstance(data.get("tiers"), dict) \
            or not isinstance(data.get("shards"), dict):
        raise ShardError(f"{where}: expected a mapping with `tiers` and `shards`")
    tiers = {}
    for name, body in data["tiers"].items():
        if name not in TIERS:
            raise ShardError(f"{where}: tiers.{name}: unknown tier; expected one of {', '.join(TIERS)}")
        limit = (body or {}).get("max_concurrency")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ShardError(f"{where}: tiers.{name}.max_concurrency: expected a positive integer")
        threads = (body or {}).get("threads", 1)
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ShardError(f"{where}: tiers.{name}.threads: expected a positive integer")
        tiers[name] = Tier(name, limit, threads)
    shards, owner = {}, {}
    for name, body in data["shards"].items():
        if not isinstance(body, dict):
            raise ShardError(f"{where}: shards.{name}: expected a mapping with tier and tags")
        tier = body.get("tier")
        if tier not in tiers:
            raise ShardError(f"{where}: shards.{name}.tier: {tier!r} is not a tier of this file "
                             f"({', '.join(tiers)})")
        tags = body.get("tags")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ShardError(f"{where}: shards.{name}.tags: expected a list of tag names")
        for tag in tags:
            if tag in owner:
                raise ShardError(f"{where}: shards.{name}.tags: {tag!r} is already served by shard "
                                 f"{owner[tag]!r}; a tag belongs to one shard")
            owner[tag] = name
        shards[name] = Shard(name, tiers[tier], tuple(tags), str(body.get("url", "")))
    return Routing(shards)


def load(path: pathlib.Path) -> Routing:
    try:
        return parse(yaml.safe_load(pathlib.Path(path).read_text()), str(path))
    except (OSError, yaml.YAMLError) as e:
        raise ShardError(f"{path}: {e}") from None
