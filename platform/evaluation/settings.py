"""How an evaluation resamples and compares: the settings every part of it shares."""

from __future__ import annotations

import dataclasses

# "first": every model against the first (the baseline); "all": every pair of models.
COMPARE = ("first", "all")


@dataclasses.dataclass(frozen=True)
class Settings:
    resamples: int = 1000
    seed: int = 0
    confidence: float = 0.95  # of the two-sided percentile interval
