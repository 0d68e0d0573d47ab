"""Data quality checks as pure functions over the partitions a run wrote.

Each returns an `Outcome`: pass/fail, the observed value beside the threshold, and the partitions
at fault. A run that writes many partitions gets one outcome per check (the worst partition),
which keeps the event log small in backfills.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ml_assets.config import PipelineConfig
from ml_assets.core.contract import PANDAS_DTYPES, expected_columns, outside_allowed
from ml_assets.core.features import LABEL, feature_columns, leaked_columns
from ml_assets.core.sources import SOURCE_FILE

Frames = dict[str, pd.DataFrame]


@dataclass
class Outcome:
    name: str
    passed: bool
    observed: Any
    threshold: Any
    details: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        where = self.details.get("failing_partitions")
        at = f" in partition(s) {where}" if where else ""
        return f"{self.name}: observed {self.observed}, threshold {self.threshold}{at}"


def _short(keys: list[str], n: int = 10) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def columns_present(frames: Frames, config: PipelineConfig) -> Outcome:
    required = expected_columns(config)
    problems: dict[str, list[str]] = {}
    for key, frame in frames.items():
        missing = [c for c in required if c not in frame.columns]
        if missing:
            problems[key] = missing
    files = sorted({f for k in problems for f in frames[k].get(SOURCE_FILE, pd.Series()).unique()})
    missing_all = sorted({c for cols in problems.values() for c in cols})
    return Outcome(
        "required_columns", not problems, missing_all or "none", "no missing columns",
        {"failing_partitions": _short(sorted(problems)), "files": _short(files)} if problems else {},
    )


def row_count(frames: Frames, minimum: int, maximum: int | None) -> Outcome:
    counts = {k: len(f) for k, f in frames.items()}
    bad = sorted(k for k, n in counts.items() if n < minimum or (maximum is not None and n > maximum))
    worst = min(counts.values()) if counts else 0
    if maximum is not None and counts and max(counts.values()) > maximum:
        worst = max(counts.values())
    return Outcome(
        "row_count", not bad, worst if bad else f"{min(counts.values(), default=0)}..{max(counts.values(), default=0)}",
        f"{minimum}..{maximum if maximum is not None else 'inf'} rows per day",
        {"failing_partitions": _short(bad)} if bad else {},
    )


def schema_matches(frames: Frames, config: PipelineConfig) -> Outcome:
    wrong: dict[str, str] = {}
    for key, frame in frames.items():
        for column in expected_columns(config):
            want = PANDAS_DTYPES[config.columns[column].dtype]
            got = str(frame[column].dtype) if column in frame.columns else "missing"
            if got != want and not (want.startswith("datetime") and got.startswith("datetime64")):
                wrong[f"{key}:{column}"] = f"expected {want}, found {got}"
    return Outcome(
        "schema", not wrong, len(wrong), "0 columns off contract",
        {"mismatches": _short([f"{k} {v}" for k, v in wrong.items()])} if wrong else {},
    )


def null_rates(frames: Frames, columns: list[str], max_rate: float, name: str = "null_rate") -> Outcome:
    worst, where = 0.0, ""
    bad: set[str] = set()
    for key, frame in frames.items():
        if frame.empty:
            continue
        for column in columns:
            if column not in frame.columns:
                continue
            rate = float(frame[column].isna().mean())
            if rate > worst:
                worst, where = rate, f"{key}:{column}"
            if rate > max_rate:
                bad.add(key)
    details: dict[str, Any] = {"worst_column": where} if where else {}
    if bad:
        details["failing_partitions"] = _short(sorted(bad))
    return Outcome(name, not bad, round(worst, 6), f"<= {max_rate}", details)


def value_ranges(frames: Frames, config: PipelineConfig) -> Outcome:
    violations = 0
    where: list[str] = []
    for key, frame in frames.items():
        for column, spec in config.columns.items():
            if column not in frame.columns:
                continue
            values = frame[column]
            n = 0
            if spec.min is not None:
                n += int((values < spec.min).fillna(False).sum())
            if spec.max is not None:
                n += int((values > spec.max).fillna(False).sum())
            n += int(outside_allowed(values, spec).sum())
            if n:
                violations += n
                where.append(f"{key}:{column}")
    return Outcome("value_ranges", violations == 0, violations, "0 values outside min/max/allowed",
                   {"where": _short(where)} if where else {})


def key_unique(frames: Frames, primary_key: list[str]) -> Outcome:
    if not primary_key:
        return Outcome("primary_key_unique", True, 0, "no primary_key configured")
    dups = {k: int(f.duplicated(primary_key).sum()) for k, f in frames.items() if len(f)}
    bad = sorted(k for k, n in dups.items() if n)
    return Outcome("primary_key_unique", not bad, sum(dups.values()), "0 duplicate keys",
                   {"failing_partitions": _short(bad)} if bad else {})


def quarantine_rate(processed: Frames, quarantine: Frames, max_rate: float) -> Outcome:
    worst, bad, total_q, total = 0.0, [], 0, 0
    for key in processed:
        q, p = len(quarantine.get(key, ())), len(processed[key])
        total_q, total = total_q + q, total + q + p
        rate = q / (q + p) if q + p else 0.0
        worst = max(worst, rate)
        if rate > max_rate:
            bad.append(key)
    details: dict[str, Any] = {"quarantined_rows": total_q, "rows_in": total}
    if bad:
        details["failing_partitions"] = _short(sorted(bad))
    return Outcome("quarantine_rate", not bad, round(worst, 6), f"<= {max_rate}", details)


def no_leakage(frames: Frames, config: PipelineConfig) -> Outcome:
    by_partition = {k: leaked_columns(f, config) for k, f in frames.items()}
    bad = sorted(k for k, cols in by_partition.items() if cols)
    leaked = sorted({c for cols in by_partition.values() for c in cols})
    return Outcome("no_leakage", not leaked, leaked or "none",
                   f"none of {sorted(set(config.features.forbidden) | {config.target.column})}",
                   {"failing_partitions": _short(bad)} if bad else {})


def features_complete(frames: Frames, config: PipelineConfig) -> Outcome:
    problems = []
    for key, frame in frames.items():
        missing = [c for c in config.feature_columns if c not in frame.columns]
        if LABEL not in frame.columns:
            missing.append(LABEL)
        non_numeric = [c for c in config.features.numeric
                       if c in frame.columns and not pd.api.types.is_float_dtype(frame[c].dtype)]
        if missing or non_numeric:
            problems.append(f"{key}: missing {missing}, non-float numeric {non_numeric}")
    return Outcome("feature_columns", not problems, len(problems), "0 partitions off schema",
                   {"problems": _short(problems, 5)} if problems else {})


def predictions_sane(features: Frames, predictions: Frames, task: str) -> list[Outcome]:
    mismatched = sorted(k for k in predictions if len(predictions[k]) != len(features.get(k, ())))
    nan_by = {k: int(p["prediction"].isna().sum()) for k, p in predictions.items()}
    nan_at = sorted(k for k, n in nan_by.items() if n)
    out = [
        Outcome("one_prediction_per_row", not mismatched, len(mismatched),
                "0 partitions where prediction rows != feature rows",
                {"failing_partitions": _short(mismatched)} if mismatched else {}),
        Outcome("no_missing_predictions", not nan_at, sum(nan_by.values()), "0 NaN predictions",
                {"failing_partitions": _short(nan_at)} if nan_at else {}),
    ]
    if task == "binary":
        values = [p["prediction"] for p in predictions.values() if len(p)]
        lo = min((float(v.min()) for v in values), default=0.0)
        hi = max((float(v.max()) for v in values), default=1.0)
        outside = sorted(k for k, p in predictions.items()
                         if len(p) and bool(((p["prediction"] < 0) | (p["prediction"] > 1)).any()))
        out.append(Outcome("probabilities_in_unit_interval", not outside, f"{lo:.6f}..{hi:.6f}",
                           "0..1", {"failing_partitions": _short(outside)} if outside else {}))
    return out


__all__ = [
    "Outcome",
    "columns_present",
    "feature_columns",
    "features_complete",
    "key_unique",
    "no_leakage",
    "null_rates",
    "predictions_sane",
    "quarantine_rate",
    "row_count",
    "schema_matches",
    "value_ranges",
]
