"""Tags: movable names for models (`fraud-prod` -> m-...). Shipping a model = moving its tag.

Each tag is one object, tags/<name>.json, holding its whole history; every change is a
compare-and-swap on that object, so concurrent moves never lose one another and readers
always see a complete history. A tag may only point at a model that exists.
"""

import dataclasses
import datetime as dt
import json
import re

from roundhouse.platform.registry.store import ModelNotFound, ModelStore

TAG_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


class TagError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class TagEvent:
    model_id: str | None  # None: untagged
    at: str
    by: str


class TagStore:
    def __init__(self, models: ModelStore, clock=lambda: dt.datetime.now(dt.timezone.utc)):
        self.models = models
        self.blobs = models.blobs
        self.clock = clock

    @staticmethod
    def _key(tag):
        if not TAG_NAME.fullmatch(tag):
            raise TagError(f"bad tag name {tag!r}: use 1-63 of a-z 0-9 . _ - starting with a letter or digit")
        return f"tags/{tag}.json"

    def history(self, tag: str) -> list[TagEvent]:
        data = self.blobs.get(self._key(tag))
        return [] if data is None else [TagEvent(**e) for e in json.loads(data)["history"]]

    def get(self, tag: str) -> str | None:
        history = self.history(tag)
        return history[-1].model_id if history else None

    def list(self) -> dict[str, str]:
        out = {}
        for key in self.blobs.list("tags/"):
            name = key[len("tags/"):-len(".json")]
            current = self.get(name)
            if current:
                out[name] = current
        return out

    def set(self, tag: str, model_id: str, by: str = "") -> None:
        if not self.models.exists(model_id):
            raise ModelNotFound(model_id, self.blobs.describe(""))
        self._append(tag, lambda history: model_id, by)

    def untag(self, tag: str, by: str = "") -> None:
        def check(history):
            if not history or history[-1].model_id is None:
                raise TagError(f"tag {tag!r} points at no model")
            return None
        self._append(tag, check, by)

    def rollback(self, tag: str, by: str = "") -> str:
        """Points the tag back at the model it pointed at before the current one."""
        def previous(history):
            current = history[-1].model_id if history else None
            for event in reversed(history[:-1]):
                if event.model_id and event.model_id != current:
                    return event.model_id
            raise TagError(f"tag {tag!r} has no earlier model to roll back to")
        return self._append(tag, previous, by)

    def _append(self, tag, choose, by):
        key = self._key(tag)
        while True:  # compare-and-swap; retry when another writer moved the tag meanwhile
            data, version = self.blobs.read_versioned(key)
            history = [] if data is None else [TagEvent(**e) for e in json.loads(data)["history"]]
            target = choose(history)
            event = TagEvent(model_id=target, at=self.clock().isoformat(), by=by)
            body = json.dumps({"tag": tag, "history": [dataclasses.asdict(e) for e in history + [event]]},
                              indent=1, sort_keys=True).encode()
            if self.blobs.put_if_version(key, body, version):
                return target
