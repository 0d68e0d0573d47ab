"""Metric gates: one verdict per configured threshold."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from ml_assets.config import Threshold


@dataclass(frozen=True)
class GateResult:
    metric: str
    observed: float
    min: float | None
    max: float | None
    passed: bool

    def describe(self) -> str:
        bound = " and ".join(
            b for b in (
                f">= {self.min}" if self.min is not None else "",
                f"<= {self.max}" if self.max is not None else "",
            ) if b
        )
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
