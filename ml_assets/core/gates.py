"""Metric gates: one verdict per configured threshold."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from ml_assets.config import Threshold


def bounds_text(low: float | None, high: float | None) -> str:
    """'>= 0.65', '<= 40' or '>= 0 and <= 1'."""
    parts = ([f">= {low}"] if low is not None else []) + ([f"<= {high}"] if high is not None else [])
    return " and ".join(parts)


@dataclass(frozen=True)
class GateResult:
    metric: str
    observed: float
    min: float | None
    max: float | None
    passed: bool

    def describe(self) -> str:
        bound = bounds_text(self.min, self.max)
        verdict = "passed" if self.passed else "failed"
        return f"{self.metric} = {self.observed:.4f} (needs {bound}): {verdict}"

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_gates(metrics: Mapping[str, float], gates: Mapping[str, Threshold]) -> list[GateResult]:
    results = []
    for metric, threshold in gates.items():
        observed = float(metrics.get(metric, math.nan))
        ok = not math.isnan(observed)
        if ok and threshold.min is not None:
            ok = observed >= threshold.min
        if ok and threshold.max is not None:
            ok = observed <= threshold.max
        results.append(GateResult(metric, observed, threshold.min, threshold.max, ok))
    return results
