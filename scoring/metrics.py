"""The scorer's Prometheus metrics, in a registry of its own (no process-global state)."""

from __future__ import annotations

import prometheus_client as prom

LATENCY = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    def __init__(self):
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.requests = prom.Counter("scoring_requests", "Scoring requests answered, by tag, model and status",
                                     ["tag", "model_id", "code"], registry=r)
        self.errors = prom.Counter("scoring_errors", "Requests that got an error answer, by reason",
                                   ["tag", "reason"], registry=r)
        self.feature_serve = prom.Histogram("scoring_feature_serve_seconds",
                                            "Computing an event's online features (and ingesting it)",
                                            ["definitions"], buckets=LATENCY, registry=r)
        self.predict = prom.Histogram("scoring_predict_seconds", "Running the model or meta-model",
                                      ["tag"], buckets=LATENCY, registry=r)
        self.total = prom.Histogram("scoring_request_seconds", "Whole scoring request", ["tag"],
                                    buckets=LATENCY, registry=r)
        self.load = prom.Gauge("scoring_model_load_seconds", "Time to load and warm a model", ["model_id"],
                               registry=r)
        self.moves = prom.Counter("scoring_tag_moves", "Tag moves picked up (a new model now serving)",
                                  ["tag"], registry=r)
        self.load_failures = prom.Counter("scoring_model_load_failures",
                                          "Models a tag pointed at that failed to load", ["tag"], registry=r)
        self.serving = prom.Gauge("scoring_tag_model", "1 for the model each tag is serving",
                                  ["tag", "model_id"], registry=r)
        self.degraded = prom.Gauge("scoring_tag_degraded",
                                   "1 when a tag points at a model this process could not load", ["tag"],
                                   registry=r)
        self.rejected = prom.Counter("scoring_rejected", "Requests refused with 429 past the concurrency limit",
                                     registry=r)

    def exposition(self) -> bytes:
        return prom.generate_latest(self.registry)
