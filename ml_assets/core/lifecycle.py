"""The model lifecycle as pure decisions: which model becomes production, and why.

Champion against challenger on the same rows: the current production model (champion) is scored
on exactly the challenger's validation partitions, and the challenger is promoted only if its
gates passed and, on every gated metric, it is not worse than the champion by more than the
configured tolerance. The first model of a pipeline is decided by its gates alone. A rejected
challenger leaves production where it was.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from ml_assets.config import HIGHER_IS_BETTER, PipelineConfig
from ml_assets.core.features import LABEL
from ml_assets.core.registry import AliasConflict, ModelVersion
from ml_assets.core.scoring import LoadedModel, score
from ml_assets.core.training import TrainingError, compute_metrics, encode

_EPS = 1e-12

#: Where a model's categorical levels come from: part of the feature contract.
CATEGORICAL_LEVELS_SOURCE = "training window (sorted distinct values)"


def feature_contract(config: PipelineConfig) -> dict[str, Any]:
    """What a model expects of its input rows. A change here is a new major version."""
    return {
        "numeric": list(config.features.numeric),
        "categorical": list(config.features.categorical),
        "dtypes": {**{c: "float64" for c in config.features.numeric},
                   **{c: "string" for c in config.features.categorical}},
        "transforms": list(config.features.transforms),
        "categorical_levels": CATEGORICAL_LEVELS_SOURCE,
        "task": config.target.task,
    }


def higher_is_better(metric: str) -> bool:
    return metric in HIGHER_IS_BETTER


@dataclass(frozen=True)
class MetricComparison:
    metric: str
    challenger: float
    champion: float
    tolerance: float
    ok: bool

    @property
    def direction(self) -> str:
        return "higher is better" if higher_is_better(self.metric) else "lower is better"

    def describe(self) -> str:
        return (f"{self.metric} {self.challenger:.4f} vs champion {self.champion:.4f} "
                f"({self.direction}, tolerance {self.tolerance:g})")


def compare(metric: str, challenger: float, champion: float, tolerance: float) -> MetricComparison:
    if math.isnan(challenger):
        ok = False
    elif math.isnan(champion):
        ok = True  # nothing to compare against
    elif higher_is_better(metric):  # _EPS: exactly at the tolerance counts as within it
        ok = challenger >= champion - tolerance - _EPS
    else:
        ok = challenger <= champion + tolerance + _EPS
    return MetricComparison(metric, float(challenger), float(champion), float(tolerance), ok)


@dataclass(frozen=True)
class Decision:
    action: str  # "promote" | "reject" | "keep"
    reason: str
    challenger: ModelVersion
    champion: ModelVersion | None
    comparisons: list[MetricComparison] = field(default_factory=list)
    challenger_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        return self.action == "promote"

    def comparison_records(self) -> list[dict]:
        return [{**asdict(c), "direction": c.direction} for c in self.comparisons]


def decide(
    challenger: ModelVersion,
    champion: ModelVersion | None,
    config: PipelineConfig,
    challenger_metrics: dict[str, float] | None = None,
    champion_metrics: dict[str, float] | None = None,
    champion_problem: str | None = None,
) -> Decision:
    """The promotion verdict. Metrics are both models' metrics on the challenger's validation
    rows; `champion_problem` says why the champion could not be scored on them, if it could not."""
    mine = dict(challenger_metrics or challenger.metrics)
    if champion is not None and champion.model_id == challenger.model_id:
        return Decision("keep", f"{challenger.label} is already production", challenger, champion,
                        challenger_metrics=mine)
    if not challenger.gate_passed:
        return Decision("reject", f"{challenger.label} failed its gates: {challenger.gate_summary()}",
                        challenger, champion, challenger_metrics=mine)
    if champion is None:
        return Decision("promote", f"first model: {challenger.label} passed its gates",
                        challenger, None, challenger_metrics=mine)
    if champion_metrics is None:
        return Decision(
            "promote",
            f"champion {champion.label} could not be scored on the challenger's rows "
            f"({champion_problem or 'unknown reason'}); {challenger.label} passed its gates, "
            "so its gates alone decide",
            challenger, champion, challenger_metrics=mine)
    comparisons = [
        compare(m, float(mine.get(m, math.nan)), float(champion_metrics.get(m, math.nan)),
                config.promotion.tolerance_for(m))
        for m in config.gates
    ]
    worse = [c for c in comparisons if not c.ok]
    if worse:
        reason = (f"{challenger.label} is worse than champion {champion.label} on the same rows: "
                  + "; ".join(c.describe() for c in worse))
        return Decision("reject", reason, challenger, champion, comparisons, mine,
                        dict(champion_metrics))
    reason = (f"{challenger.label} passed its gates and is not worse than champion "
              f"{champion.label} on the same rows: " + "; ".join(c.describe() for c in comparisons))
    return Decision("promote", reason, challenger, champion, comparisons, mine, dict(champion_metrics))


def metrics_on_rows(model: LoadedModel, rows: pd.DataFrame, task: str) -> dict[str, float]:
    """A model's metrics on labelled feature rows (the `_label` column)."""
    if rows.empty:
        raise TrainingError("no rows to evaluate on")
    predictions = score(model, rows, [])
    return compute_metrics(task, rows[LABEL].to_numpy(), predictions["prediction"].to_numpy())


def can_score(model: LoadedModel, rows: pd.DataFrame) -> str | None:
    """Why `model` cannot score `rows` (missing columns), or None."""
    try:
        encode(rows.head(1), model.numeric, model.categorical)
    except TrainingError as exc:
        return str(exc)
    return None


# ---------------------------------------------------------------- alias moves
def promote_change(challenger: ModelVersion, expected_champion: str | None, moved: dict[str, Any]):
    """An alias change for `ModelStore.move_aliases`: challenger -> production, the champion ->
    previous; a conflict when production is no longer `expected_champion`."""

    def change(aliases: dict[str, dict]) -> dict[str, dict]:
        current = (aliases.get("production") or {}).get("model_id")
        if current != expected_champion:
            raise AliasConflict(
                f"production moved from {expected_champion or 'nothing'} to {current} while "
                f"{challenger.label} was being compared; re-run the promotion to compare "
                "against the new champion")
        if aliases.get("production"):
            aliases["previous"] = aliases["production"]
        aliases["production"] = {"model_id": challenger.model_id, "version": challenger.version,
                                 **moved}
        change.ended_canary = _end_canary_of(aliases, challenger)
        return aliases

    change.ended_canary = None
    return change


def _end_canary_of(aliases: dict[str, dict], production: ModelVersion) -> dict | None:
    """A canary of the model that becomes production has done its job: the alias is removed
    (left in place it would take traffic again for that model after a later rollback)."""
    canary = aliases.get("canary")
    if canary and canary.get("model_id") == production.model_id:
        return aliases.pop("canary")
    return None


def rollback_change(target: ModelVersion, expected_production: str | None, moved: dict[str, Any]):
    """production -> target, the old production -> previous."""

    def change(aliases: dict[str, dict]) -> dict[str, dict]:
        current = (aliases.get("production") or {}).get("model_id")
        if current != expected_production:
            raise AliasConflict(f"production moved from {expected_production} to {current} while "
                                f"the rollback to {target.label} was being prepared; re-run it")
        if aliases.get("production"):
            aliases["previous"] = aliases["production"]
        aliases["production"] = {"model_id": target.model_id, "version": target.version, **moved}
        change.ended_canary = _end_canary_of(aliases, target)
        return aliases

    change.ended_canary = None
    return change


def set_alias_change(alias: str, version: ModelVersion | None, moved: dict[str, Any]):
    """Point `alias` at `version` (None removes it), whatever it pointed at."""

    def change(aliases: dict[str, dict]) -> dict[str, dict]:
        if version is None:
            aliases.pop(alias, None)
        else:
            aliases[alias] = {"model_id": version.model_id, "version": version.version, **moved}
        return aliases

    return change
