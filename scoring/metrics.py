"""The scorer's Prometheus metrics, in a registry of its own.

With several worker processes (`--workers N`) each worker counts in files of a folder they
share (prometheus-client's multiprocess mode, which server.py turns on before forking), and
/metrics, whichever worker answers it, adds up every worker's counts.
"""

from __future__ import annotations

import os

import prometheus_client as prom
from prometheus_client import multiprocess, values

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def share_between_processes(folder: str) -> None:
    """Makes the metrics created from now on in this process and its forks count in `folder`.

    prometheus-client picks its value store when it is imported, from the environment; the
    scorer decides on workers later, so it is picked again here (before any worker forks).
    """
    os.environ[MULTIPROCESS_ENV] = folder
    values.ValueClass = values.get_value_class()


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
        # Gauges: each worker loads every model and serves every tag, so across workers the
        # largest value (the slowest load, any worker degraded) is the one to see.
        self.load = prom.Gauge("scoring_model_load_seconds", "Time to load and warm a model", ["model_id"],
                               registry=r, multiprocess_mode="max")
        self.moves = prom.Counter("scoring_tag_moves", "Tag moves picked up (a new model now serving)",
                                  ["tag"], registry=r)
        self.load_failures = prom.Counter("scoring_model_load_failures",
                                          "Models a tag pointed at that failed to load", ["tag"], registry=r)
        self.serving = prom.Gauge("scoring_tag_model", "1 for the model each tag is serving",
                                  ["tag", "model_id"], registry=r, multiprocess_mode="livemax")
        self.degraded = prom.Gauge("scoring_tag_degraded",
                                   "1 when a tag points at a model this process could not load", ["tag"],
                                   registry=r, multiprocess_mode="livemax")
        self.rejected = prom.Counter("scoring_rejected", "Requests refused with 429 past the concurrency limit",
                                     registry=r)

    def exposition(self) -> bytes:
        folder = os.environ.get(MULTIPROCESS_ENV)
        if not folder:
            return prom.generate_latest(self.registry)
        merged = prom.CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=folder)
        return prom.generate_latest(merged)
