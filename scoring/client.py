"""A small scoring client that routes each request by tag to the shard that serves it.

    client = ScoringClient("http://scoring-payments-critical:8000")
    client.score("fraud-prod", {"event_time": "...", "charge_id": "...", ...})

It reads the routing table (GET /v1/routing) from any scorer once, sends each tag's requests
to its shard's URL, and re-reads the table when a scorer answers 421 (the shards moved).
`urls` overrides shard URLs (a local setup, a test). Standard library only.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request


class ScoringError(RuntimeError):
    def __init__(self, status: int, body: dict):
        super().__init__(f"{status}: {body.get('error', body)}")
        self.status, self.body = status, body


class ScoringUnavailable(RuntimeError):
    pass


class ScoringClient:
    def __init__(self, seed_url: str, urls: dict[str, str] | None = None, timeout: float = 5.0):
        self.seed = seed_url.rstrip("/")
        self.overrides = dict(urls or {})
        self.timeout = timeout
        self.table: dict | None = None

    def _call(self, base: str, method: str, path: str, body=None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raise ScoringError(e.code, json.loads(e.read() or b"{}")) from None

    def routing(self, refresh: bool = False) -> dict:
        if self.table is None or refresh:
            self.table = self._call(self.seed, "GET", "/v1/routing")
        return self.table

    def url_for(self, tag: str) -> tuple[str, str]:
        shard = self.routing()["tags"].get(tag)
        if shard is None:
            return "", self.seed  # a tag outside the table: an unsharded scorer serves every tag
        return shard, self.overrides.get(shard) or self.routing()["shards"][shard]["url"]

    def score(self, tag: str, event: dict, explain: bool = False) -> dict:
        path = f"/v1/score/{tag}" + ("?explain=1" if explain else "")
        for attempt in range(2):
            shard, url = self.url_for(tag)
            try:
                return self._call(url, "POST", path, event)
            except ScoringError as e:
                if e.status != 421 or attempt:
                    raise
                self.routing(refresh=True)
            except OSError as e:
                raise ScoringUnavailable(f"shard {shard or '(default)'} at {url} does not answer: {e}") from None
        raise AssertionError("unreachable")
