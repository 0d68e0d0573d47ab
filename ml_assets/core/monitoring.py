"""Monitoring as pure functions: drift levels per day, realized performance once labels arrive,
and the one-result-per-run summaries the checks record.

Levels: `OK`, `WARN`, `ERROR`. Dagster stores a failed check as failed whatever its severity and
declarative automation does not look at severity, so every monitoring check records its level
explicitly in its metadata (`level`), and only `ERROR` may start a retrain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ml_assets.config import Drift, PipelineConfig
from ml_assets.core.drift import (
    CATEGORICAL,
    NUMERIC,
    ColumnDrift,
    DriftResult,
    DriftSettings,
    column_drift,
    dataset_drift,
)
from ml_assets.core.features import LABEL, key_columns
from ml_assets.core.lifecycle import higher_is_better
from ml_assets.core.training import compute_metrics

OK, WARN, ERROR = "OK", "WARN", "ERROR"
_RANK = {OK: 0, WARN: 1, ERROR: 2}
PREDICTION = "prediction"


def worst(levels) -> str:
    return max(levels, key=_RANK.__getitem__, default=OK)


def share_level(share: float, warn_share: float, error_share: float) -> str:
    if share >= error_share:
        return ERROR
    if share >= warn_share:
        return WARN
    return OK


def settings_of(drift: Drift) -> DriftSettings:
    return DriftSettings(numeric_method=drift.numeric_method,
                         categorical_method=drift.categorical_method,
                         numeric_threshold=drift.numeric_threshold,
                         categorical_threshold=drift.categorical_threshold)


# ---------------------------------------------------------------- drift
@dataclass
class DayDrift:
    """One day's drift: every feature's verdict, the share over the watched columns, the
    prediction drift, and the levels they give."""

    day: str
    features: DriftResult
    watched: list[str]
    prediction: ColumnDrift | None
    feature_level: str
    prediction_level: str
    rows: int

    @property
    def share(self) -> float:
        by = self.features.by_column()
        evaluated = [c for c in self.watched if by[c].evaluated]
        return sum(by[c].drifted for c in evaluated) / len(evaluated) if evaluated else 0.0

    @property
    def drifted_columns(self) -> list[str]:
        by = self.features.by_column()
        return [c for c in self.watched if by[c].drifted]

    @property
    def level(self) -> str:
        return worst([self.feature_level, self.prediction_level])

    def table(self) -> pd.DataFrame:
        """One row per compared column (features, then `prediction`)."""
        records = [{**c.to_record(), "watched": c.column in self.watched}
                   for c in self.features.columns]
        if self.prediction is not None:
            records.append({**self.prediction.to_record(), "watched": True})
        frame = pd.DataFrame.from_records(records)
        if frame.empty:
            return frame
        frame["score"] = frame["score"].astype("float64")
        frame.insert(0, "partition", pd.Series(self.day, index=frame.index, dtype="string"))
        for col in ("column", "kind", "method", "direction", "note"):
            frame[col] = frame[col].astype("string")
        return frame


def day_drift(day: str, reference: pd.DataFrame, current: pd.DataFrame, config: PipelineConfig,
              validation_predictions: pd.Series | None, predictions: pd.Series | None) -> DayDrift:
    """A day's features (and predictions) against the production model's training rows (and its
    validation predictions)."""
    d = config.drift
    settings = settings_of(d)
    numeric, categorical, added = comparable_features(config, reference)
    result = dataset_drift(reference, current, numeric, categorical, settings)
    if added:  # features the production model was not trained on: named, not evaluated
        kinds = kinds_of(config)
        result = DriftResult(result.columns + [
            ColumnDrift(c, kinds[c], settings.method(kinds[c]), math.nan,
                        settings.threshold(kinds[c]), False, len(reference), len(current),
                        ADDED_NOTE, evaluated=False) for c in added])
    watched = list(d.columns) if d.columns else list(config.feature_columns)
    pred = None
    if validation_predictions is not None and predictions is not None:
        pred = column_drift(validation_predictions.rename(PREDICTION), predictions.rename(PREDICTION),
                            NUMERIC, d.numeric_method,
                            d.prediction_threshold if d.prediction_threshold is not None
                            else d.numeric_threshold)
    out = DayDrift(day, result, watched, pred, OK, OK, len(current))
    out.feature_level = share_level(out.share, d.warn_share, d.error_share) if len(current) else OK
    if pred is not None and pred.drifted:
        out.prediction_level = ERROR if d.prediction_level == "error" else WARN
    return out


ADDED_NOTE = ("not in the production model's training rows (a feature added to the config "
              "after it was trained): compared once a model trained with it is in production")


def comparable_features(config: PipelineConfig, reference: pd.DataFrame
                        ) -> tuple[list[str], list[str], list[str]]:
    """(numeric, categorical) features the reference rows hold, and the features they do not
    hold: added to the config after the production model was trained."""
    added = [c for c in config.feature_columns if c not in reference.columns]
    return ([c for c in config.features.numeric if c not in added],
            [c for c in config.features.categorical if c not in added], added)


def kinds_of(config: PipelineConfig) -> dict[str, str]:
    return {**{c: NUMERIC for c in config.features.numeric},
            **{c: CATEGORICAL for c in config.features.categorical}}


# ---------------------------------------------------------------- one result per run
@dataclass
class RunVerdict:
    """A monitoring check's verdict over the days of one run: the worst level, the days at each
    level, the worst observed value. `first_error_day`/`last_error_day` are what the retrain
    sensor reads."""

    check: str
    level: str
    observed: float
    threshold: str
    error_days: list[str] = field(default_factory=list)
    warn_days: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.level == OK

    def metadata(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "observed": float(self.observed),
            "threshold": self.threshold,
            "error_days": ", ".join(self.error_days) or "none",
            "warn_days": ", ".join(self.warn_days) or "none",
            "first_error_day": self.error_days[0] if self.error_days else "",
            "last_error_day": self.error_days[-1] if self.error_days else "",
            **self.details,
        }


def drift_verdicts(days: list[DayDrift], config: PipelineConfig) -> tuple[RunVerdict, RunVerdict]:
    d = config.drift
    feature = RunVerdict(
        "feature_drift", worst(x.feature_level for x in days),
        max((x.share for x in days), default=0.0),
        f"WARN at share >= {d.warn_share}, ERROR at share >= {d.error_share}",
        [x.day for x in days if x.feature_level == ERROR],
        [x.day for x in days if x.feature_level == WARN])
    top = max(days, key=lambda x: (x.share, x.day), default=None)
    if top is not None:
        feature.details["drift_share"] = float(top.share)
        feature.details["worst_day"] = top.day
        feature.details["drifted_columns"] = ", ".join(top.drifted_columns) or "none"
    scores = [x.prediction.score for x in days if x.prediction is not None
              and not math.isnan(x.prediction.score)]
    threshold = next((x.prediction.threshold for x in days if x.prediction is not None), math.nan)
    prediction = RunVerdict(
        "prediction_drift", worst(x.prediction_level for x in days),
        max(scores, default=0.0),
        f"{d.numeric_method} score vs {threshold}: drift is {d.prediction_level.upper()}",
        [x.day for x in days if x.prediction_level == ERROR],
        [x.day for x in days if x.prediction_level == WARN])
    return feature, prediction


# ---------------------------------------------------------------- realized performance
def labelled_predictions(day: str, features: pd.DataFrame, predictions: pd.DataFrame,
                         config: PipelineConfig) -> pd.DataFrame:
    """A day's predictions beside their outcome: `day`, `model_id`, `label`, `prediction`.

    Rows are matched by position: predictions are written one per feature row, in order (the
    `one_prediction_per_row` check guarantees it); the key columns are compared to be sure.
    """
    if len(features) != len(predictions):
        raise ValueError(f"partition {day}: {len(predictions)} predictions for {len(features)} "
                         "feature rows; re-materialize predictions for this day")
    keys = [k for k in key_columns(config) if k in features.columns and k in predictions.columns]
    if keys and not (features[keys].reset_index(drop=True).astype("string")
                     .equals(predictions[keys].reset_index(drop=True).astype("string"))):
        raise ValueError(f"partition {day}: predictions are not in the order of the feature rows "
                         f"(keys {keys} differ); re-materialize predictions for this day")
    return pd.DataFrame({
        "day": pd.Series(day, index=range(len(features)), dtype="string"),
        "model_id": predictions["model_id"].astype("string").to_numpy(),
        "label": features[LABEL].to_numpy(dtype="float64"),
        "prediction": predictions["prediction"].to_numpy(dtype="float64"),
    })


PERFORMANCE_COLUMNS = ["partition", "window", "model_id", "model_version", "metric", "realized",
                       "validation", "drop", "tolerance", "rows", "judged", "note"]


def realized_performance(day: str, window_rows: pd.DataFrame, models: dict[str, dict],
                         config: PipelineConfig) -> pd.DataFrame:
    """The realized metrics, over the labelled rows of the trailing `monitoring.window_days`
    ending at `day` (`window_rows`, from `labelled_predictions`), of each model version that
    scored them, beside that model's validation metrics. Only days after a model's training
    window count for it: those it could have served. Days inside the window are in-sample, and
    days before it were scored after the fact (a backfill), so both are left out for that model.
    `models`: model_id -> sidecar. One row per (model, gated metric)."""
    m = config.monitoring
    out = []
    days = sorted(window_rows["day"].unique()) if len(window_rows) else [day]
    span = f"{days[0]}..{days[-1]}"
    for model_id, rows in window_rows.groupby("model_id", sort=True) if len(window_rows) else []:
        sidecar = models.get(str(model_id), {})
        window = [*sidecar.get("train_days", []), *sidecar.get("validation_days", [])]
        if window:
            rows = rows[rows["day"] > max(window)]
        realized = (compute_metrics(config.target.task, rows["label"].to_numpy(),
                                    rows["prediction"].to_numpy()) if len(rows) else {})
        for metric in config.gates:
            got = float(realized.get(metric, math.nan))
            expected = float(sidecar.get("metrics", {}).get(metric, math.nan))
            drop = (expected - got) if higher_is_better(metric) else (got - expected)
            tolerance = m.tolerance_for(metric, expected) if not math.isnan(expected) else math.nan
            note = ""
            if not len(rows):
                note = ("no day of the window comes after the model's training window (days it "
                        "could have served): not judged")
            elif len(rows) < m.min_rows:
                note = f"{len(rows)} labelled rows < monitoring.min_rows={m.min_rows}: not judged"
            elif math.isnan(got) or math.isnan(expected):
                note = "metric undefined on these rows (e.g. one class only): not judged"
            out.append({"partition": day, "window": span, "model_id": str(model_id),
                        "model_version": str(sidecar.get("version", "")), "metric": metric,
                        "realized": got, "validation": expected, "drop": float(drop),
                        "tolerance": float(tolerance), "rows": int(len(rows)),
                        "judged": not note, "note": note})
    frame = pd.DataFrame(out, columns=PERFORMANCE_COLUMNS)
    for col in ("partition", "window", "model_id", "model_version", "metric", "note"):
        frame[col] = frame[col].astype("string")
    for col in ("realized", "validation", "drop", "tolerance"):
        frame[col] = frame[col].astype("float64")
    frame["rows"] = frame["rows"].astype("int64")
    frame["judged"] = frame["judged"].astype("bool")
    return frame


def performance_level(table: pd.DataFrame) -> str:
    judged = table[table["judged"].astype(bool)] if len(table) else table
    if len(judged) and bool((judged["drop"] > judged["tolerance"] + 1e-12).any()):
        return ERROR
    return OK


def performance_verdict(tables: dict[str, pd.DataFrame], config: PipelineConfig) -> RunVerdict:
    tol = config.monitoring.performance_tolerance
    levels = {day: performance_level(t) for day, t in tables.items()}
    judged = [t[t["judged"].astype(bool)] for t in tables.values() if len(t)]
    drops = pd.concat(judged)["drop"] if judged else pd.Series([], dtype="float64")
    verdict = RunVerdict(
        "model_performance", worst(levels.values()),
        float(drops.max()) if len(drops) else 0.0,
        f"ERROR when a gated metric falls more than {tol} below the model's validation value",
        [d for d, lvl in levels.items() if lvl == ERROR])
    verdict.details["judged_days"] = int(sum(bool(len(t) and t["judged"].any()) for t in tables.values()))
    if len(drops):
        worst_row = pd.concat(judged).sort_values("drop").iloc[-1]
        verdict.details["worst"] = (f"{worst_row['partition']} {worst_row['model_version']} "
                                    f"{worst_row['metric']} realized {worst_row['realized']:.4f} vs "
                                    f"validation {worst_row['validation']:.4f}")
    return verdict
