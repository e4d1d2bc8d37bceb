"""Tags: movable names for models (`fraud-prod` -> m-...). Shipping a model = moving its tag.

Each tag is one object, tags/<name>.json, holding its whole history; every change is a
compare-and-swap on that object, so concurrent moves never lose one another and readers
always see a complete history. A tag may only point at a model that exists.

A tag belongs to a team: the team of whoever created it (its `owner`; tags made before
teams have none). Each event records who moved it (`by`, as the caller says), the team it
acted for and the token it used; with `check_owner=True` a move by another team is refused
(TagForbidden) inside the same compare-and-swap, so ownership cannot change underneath it.
"""

import dataclasses
import datetime as dt
import json
import re

from roundhouse.platform.registry.store import ModelNotFound, ModelStore

TAG_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


class TagError(ValueError):
    pass


class TagForbidden(TagError):
    """The tag belongs to another team."""

    def __init__(self, tag: str, owner: str, team: str):
        self.tag, self.owner, self.team = tag, owner, team
        whose = f"team {owner!r}" if owner else "no team (it predates team tokens)"
        super().__init__(f"tag {tag!r} belongs to {whose}; team {team!r} may not move it")


@dataclasses.dataclass(frozen=True)
class TagEvent:
    model_id: str | None  # None: untagged
    at: str
    by: str
    team: str = ""   # the team the move was made for ("" before team tokens)
    token: str = ""  # the ID of the token that made it


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
        return [] if data is None else _events(json.loads(data))

    def owner(self, tag: str) -> str | None:
        """The team the tag belongs to; "" for a tag older than teams; None: no such tag."""
        data = self.blobs.get(self._key(tag))
        return None if data is None else json.loads(data).get("owner", "")

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

    def list_with_owners(self) -> dict[str, tuple[str, str]]:
        """tag -> (the model it points at, the team it belongs to) for every tag that points
        at a model."""
        out = {}
        for key in self.blobs.list("tags/"):
            name = key[len("tags/"):-len(".json")]
            data = self.blobs.get(key)
            if data is None:
                continue
            stored = json.loads(data)
            history = _events(stored)
            if history and history[-1].model_id:
                out[name] = (history[-1].model_id, stored.get("owner", ""))
        return out

    # Every move takes, besides `by`: team= and token= (recorded in the event), check_owner=
    # (refuse unless the tag is new or belongs to `team`) and owner= (hand the tag to this
    # team; default: `team` for a new tag, the current owner for an existing one).

    def set(self, tag: str, model_id: str, by: str = "", **who) -> None:
        if not self.models.exists(model_id):
            raise ModelNotFound(model_id, self.blobs.describe(""))
        self._append(tag, lambda history: model_id, by, **who)

    def untag(self, tag: str, by: str = "", **who) -> None:
        def check(history):
            if not history or history[-1].model_id is None:
                raise TagError(f"tag {tag!r} points at no model")
            return None
        self._append(tag, check, by, **who)

    def rollback(self, tag: str, by: str = "", **who) -> str:
        """Points the tag back at the model it pointed at before the current one."""
        def previous(history):
            current = history[-1].model_id if history else None
            for event in reversed(history[:-1]):
                if event.model_id and event.model_id != current:
                    return event.model_id
            raise TagError(f"tag {tag!r} has no earlier model to roll back to")
        return self._append(tag, previous, by, **who)

    def _append(self, tag, choose, by, *, team: str = "", token: str = "", check_owner: bool = False,
                owner: str | None = None):
        key = self._key(tag)
        while True:  # compare-and-swap; retry when another writer moved the tag meanwhile
            data, version = self.blobs.read_versioned(key)
            stored = None if data is None else json.loads(data)
            history = [] if stored is None else _events(stored)
            current_owner = None if stored is None else stored.get("owner", "")
            if check_owner and current_owner is not None and current_owner != team:
                raise TagForbidden(tag, current_owner, team)
            target = choose(history)
            event = TagEvent(model_id=target, at=self.clock().isoformat(), by=by, team=team, token=token)
            new_owner = owner if owner is not None else (team if current_owner is None else current_owner)
            doc = _document(tag, history + [event], new_owner)
            body = json.dumps(doc, indent=1, sort_keys=True).encode()
            if self.blobs.put_if_version(key, body, version):
                return target


# On disk, history events keep the three keys they always had ({model_id, at, by}): scorers
# built before team tokens read the same objects and take each event as TagEvent(**e). Who
# acted for which team is a parallel list, "audit", one {team, token} per event.

def _events(stored: dict) -> list[TagEvent]:
    audit = stored.get("audit") or []
    events = []
    for i, e in enumerate(stored["history"]):
        extra = audit[i] if i < len(audit) and len(audit) == len(stored["history"]) else {}
        events.append(TagEvent(model_id=e.get("model_id"), at=e.get("at", ""), by=e.get("by", ""),
                               team=extra.get("team", ""), token=extra.get("token", "")))
    return events


def _document(tag: str, history: list[TagEvent], owner: str) -> dict:
    doc = {"tag": tag,
           "history": [{"model_id": e.model_id, "at": e.at, "by": e.by} for e in history],
           "audit": [{"team": e.team, "token": e.token} for e in history]}
    if owner:
        doc["owner"] = owner
    return doc
