"""Data quality checks as pure functions over the partitions a run wrote.

Each returns an `Outcome`: pass/fail, the observed value beside the threshold, and the partitions
at fault. A run that writes many partitions gets one outcome per check (the worst partition),
which keeps the event log small in backfills. Each check is also an `Accumulator` (`*_check`)
that measures one partition at a time, so an asset never holds every partition to check them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml_assets.config import PipelineConfig
from ml_assets.core.contract import (
    PANDAS_DTYPES,
    contract_plan,
    expected_columns,
    outside_allowed,
)
from ml_assets.core.features import LABEL, leaked_columns
from ml_assets.core.frames import SOURCE_FILE
from ml_assets.core.keys import KeyHistory

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


class Accumulator:
    """A check computed one partition at a time: `update(key, frame)` keeps a small measure of
    each partition (never the frame), `result()` reduces them to one Outcome. A run over many
    partitions can then check each partition as it is produced and let it go."""

    def __init__(self, measure: Callable[..., Any], reduce: Callable[[dict[str, Any]], Any]):
        self._measure, self._reduce = measure, reduce
        self.measures: dict[str, Any] = {}

    def update(self, key: str, *frames: Any) -> None:
        self.measures[key] = self._measure(key, *frames)

    def result(self):
        return self._reduce(self.measures)


def _run(acc: Accumulator, frames: Frames):
    for key, frame in frames.items():
        acc.update(key, frame)
    return acc.result()


# ---------------------------------------------------------------- raw
def columns_present_check(config: PipelineConfig) -> Accumulator:
    """`update(key, frame, problems=())`: the day's combined frame, and the per-file problems
    of kind `columns` found when its files were read one by one (a missing required column, an
    unparseable header, extra columns under `extra_columns: fail`), each naming its file."""
    required = expected_columns(config)

    def measure(key, frame, problems=()):
        missing = [c for c in required if c not in frame.columns]
        files = sorted(frame[SOURCE_FILE].unique().tolist()) if missing and SOURCE_FILE in frame else []
        lines, extra, header = [], [], []
        for p in problems:
            if p.kind == "columns":
                target = (header if getattr(p, "header", False)
                          else extra if getattr(p, "extra", False) else missing)
                target.extend(c for c in p.columns if c not in target)
                files.append(p.uri)
                lines.append(f"partition {key}: {p.message}")
        return missing, sorted(set(files)), lines, extra, header

    def reduce(m):
        failing = sorted(k for k, v in m.items() if v[0] or v[3] or v[4])
        files = sorted({f for k in failing for f in m[k][1]})
        missing_all = sorted({c for k in failing for c in m[k][0]})
        extra_all = sorted({c for k in failing for c in m[k][3]})
        header_all = sorted({c for k in failing for c in m[k][4]})
        lines = [line for k in sorted(m) for line in m[k][2]]
        details: dict[str, Any] = {}
        if failing:
            details = {"failing_partitions": _short(failing), "files": _short(files)}
            if extra_all:
                details["columns_outside_contract"] = ", ".join(extra_all)
            if lines:
                details["problems"] = "\n".join(lines[:10]) + (
                    f"\n(+{len(lines) - 10} more)" if len(lines) > 10 else "")
        observed = (missing_all or "none") if not (header_all or extra_all) else "; ".join(part for part in (
            ", ".join(missing_all),
            f"unparseable header: {', '.join(header_all)}" if header_all else "",
            f"outside the contract: {', '.join(extra_all)}" if extra_all else "") if part)
        return Outcome("required_columns", not failing, observed, "no missing columns", details)

    return Accumulator(measure, reduce)


def readable_files(problems: list[Any]) -> Outcome:
    """Files quarantined as files: unreadable ones (path, size, SHA-256, reason), files with no
    row inside the partitions, and files whose days cannot be known (no timestamp column, no
    date in the name). Passes when there is none; a warning, never blocking."""
    seen: dict[str, Any] = {}
    for p in problems:  # a columns problem with no known day blocks nothing: reported here
        if p.kind in ("unreadable", "no_rows") or (p.kind == "columns" and not p.days):
            seen.setdefault(p.uri, p)
    blocked = sorted({d for p in seen.values() for d in p.days})
    unreadable = [p for p in seen.values() if p.kind == "unreadable"]
    details: dict[str, Any] = {}
    if seen:
        details["files"] = "\n".join(p.line() for p in list(seen.values())[:20]) + (
            f"\n(+{len(seen) - 20} more)" if len(seen) > 20 else "")
        details["unreadable_files"] = len(unreadable)
        details["files_without_rows_in_partitions"] = sum(p.kind == "no_rows" for p in seen.values())
        details["blocked_partitions"] = _short(blocked) if blocked else "none"
    return Outcome("readable_files", not seen, len(seen), "0 files quarantined as files", details)


def columns_present(frames: Frames, config: PipelineConfig) -> Outcome:
    return _run(columns_present_check(config), frames)


def row_count_check(minimum: int, maximum: int | None) -> Accumulator:
    def reduce(counts):
        bad = sorted(k for k, n in counts.items()
                     if n < minimum or (maximum is not None and n > maximum))
        worst = min(counts.values()) if counts else 0
        if maximum is not None and counts and max(counts.values()) > maximum:
            worst = max(counts.values())
        span = f"{min(counts.values(), default=0)}..{max(counts.values(), default=0)}"
        return Outcome(
            "row_count", not bad, worst if bad else span,
            f"{minimum}..{maximum if maximum is not None else 'inf'} rows per day",
            {"failing_partitions": _short(bad)} if bad else {},
        )

    return Accumulator(lambda key, frame: len(frame), reduce)


def row_count(frames: Frames, minimum: int, maximum: int | None) -> Outcome:
    return _run(row_count_check(minimum, maximum), frames)


# ---------------------------------------------------------------- processed
def schema_check(config: PipelineConfig) -> Accumulator:
    def measure(key, frame):
        wrong = {}
        for column in expected_columns(config):
            want = PANDAS_DTYPES[config.columns[column].dtype]
            got = str(frame[column].dtype) if column in frame.columns else "missing"
            if got != want and not (want.startswith("datetime") and got.startswith("datetime64")):
                wrong[f"{key}:{column}"] = f"expected {want}, found {got}"
        return wrong

    def reduce(m):
        wrong = {k: v for part in m.values() for k, v in part.items()}
        return Outcome(
            "schema", not wrong, len(wrong), "0 columns off contract",
            {"mismatches": _short([f"{k} {v}" for k, v in wrong.items()])} if wrong else {},
        )

    return Accumulator(measure, reduce)


def schema_matches(frames: Frames, config: PipelineConfig) -> Outcome:
    return _run(schema_check(config), frames)


def null_rate_check(columns: list[str], max_rate: float, name: str = "null_rate") -> Accumulator:
    def measure(key, frame):
        if frame.empty:
            return {}
        present = [c for c in columns if c in frame.columns]
        return {c: float(rate) for c, rate in frame[present].isna().mean().items()}

    def reduce(m):
        worst, where = 0.0, ""
        bad: set[str] = set()
        for key, rates in m.items():
            for column, rate in rates.items():
                if rate > worst:
                    worst, where = rate, f"{key}:{column}"
                if rate > max_rate:
                    bad.add(key)
        details: dict[str, Any] = {"worst_column": where} if where else {}
        if bad:
            details["failing_partitions"] = _short(sorted(bad))
        return Outcome(name, not bad, round(worst, 6), f"<= {max_rate}", details)

    return Accumulator(measure, reduce)


def null_rates(frames: Frames, columns: list[str], max_rate: float, name: str = "null_rate") -> Outcome:
    return _run(null_rate_check(columns, max_rate, name), frames)


def value_range_check(config: PipelineConfig) -> Accumulator:
    plan = contract_plan(config)  # bounds and allowed sets derived once, not per day
    bounded = [(c, s) for c, s in config.columns.items()
               if s.min is not None or s.max is not None or s.allowed is not None]

    numeric_bounds = [(c, s) for c, s in bounded
                      if s.dtype in ("int64", "float64") and c not in plan.allowed_numbers
                      and s.allowed is None]
    lows = np.array([-np.inf if s.min is None else float(s.min) for _, s in numeric_bounds])
    highs = np.array([np.inf if s.max is None else float(s.max) for _, s in numeric_bounds])

    def numeric_counts(frame) -> dict[str, int]:
        """min/max violations of the contract's numeric columns, all columns in one array."""
        pick = [i for i, (c, _) in enumerate(numeric_bounds)
                if c in frame.columns and _is_number(frame[c])]
        if not pick or frame.empty:
            return {}
        cols = [numeric_bounds[i][0] for i in pick]
        # null: NaN, never counted; column by column (a mixed Int64/float64 frame's to_numpy
        # goes through object values)
        values = np.column_stack([frame[c].to_numpy(dtype="float64", na_value=np.nan)
                                  for c in cols])
        with np.errstate(invalid="ignore"):
            counts = (values < lows[pick]).sum(axis=0) + (values > highs[pick]).sum(axis=0)
        return dict(zip(cols, counts.tolist(), strict=True))

    def measure(key, frame):
        found = []
        fast = numeric_counts(frame)
        for column, spec in bounded:
            if column not in frame.columns:
                continue
            if column in fast:
                if fast[column]:
                    found.append((f"{key}:{column}", int(fast[column])))
                continue
            values = frame[column]
            n = 0
            if spec.min is not None:
                n += int((values < spec.min).fillna(False).sum())
            if spec.max is not None:
                n += int((values > spec.max).fillna(False).sum())
            if column in plan.allowed_numbers:
                numbers = values.to_numpy(dtype="float64", na_value=np.nan)
                n += int((~np.isnan(numbers) & ~np.isin(numbers, plan.allowed_numbers[column])).sum())
            elif column in plan.allowed_text:
                inside = values.astype("string").isin(plan.allowed_text[column]).fillna(False)
                n += int((values.notna() & ~inside.astype(bool)).sum())
            elif spec.allowed is not None:  # a column the contract does not parse (PII-dropped)
                n += int(outside_allowed(values, spec).sum())
            if n:
                found.append((f"{key}:{column}", n))
        return found

    def reduce(m):
        found = [item for part in m.values() for item in part]
        violations = sum(n for _, n in found)
        where = [w for w, _ in found]
        return Outcome("value_ranges", violations == 0, violations,
                       "0 values outside min/max/allowed", {"where": _short(where)} if where else {})

    return Accumulator(measure, reduce)


def _is_number(values: pd.Series) -> bool:
    return (pd.api.types.is_numeric_dtype(values.dtype)
            and not pd.api.types.is_bool_dtype(values.dtype))


def value_ranges(frames: Frames, config: PipelineConfig) -> Outcome:
    return _run(value_range_check(config), frames)


def key_unique_check(primary_key: list[str]) -> Accumulator:
    def measure(key, frame):
        return int(frame.duplicated(primary_key).sum()) if primary_key and len(frame) else 0

    def reduce(dups):
        if not primary_key:
            return Outcome("primary_key_unique", True, 0, "no primary_key configured")
        bad = sorted(k for k, n in dups.items() if n)
        return Outcome("primary_key_unique", not bad, sum(dups.values()), "0 duplicate keys",
                       {"failing_partitions": _short(bad)} if bad else {})

    return Accumulator(measure, reduce)


def key_unique(frames: Frames, primary_key: list[str]) -> Outcome:
    return _run(key_unique_check(primary_key), frames)


def key_history_outcome(history: KeyHistory | None) -> Outcome:
    """Stored partitions later than a partition of this run that repeat a key the run kept
    (the run's partition is the first holder): re-materializing them quarantines the repeats."""
    if history is None or not history.primary_key:
        return Outcome("primary_key_history", True, 0, "no primary_key configured")
    later = history.later_partitions()
    count = sum(n for qs in history.later.values() for n in qs.values())
    details: dict[str, Any] = {"partitions_compared": history.partitions_read}
    if later:  # the later partitions hold the repeats: they are the ones to re-materialize
        details["failing_partitions"] = _short(later)
        details["rematerialize_partitions"] = _short(later)
        details["first_held_in"] = _short(sorted(history.later))
    if history.stale:
        details["index_written_under_another_key_spec"] = _short(sorted(history.stale))
    return Outcome("primary_key_history", not later, count,
                   "0 keys of this run repeated by a later stored partition "
                   "(re-materialize the partitions named)", details)


def quarantine_rate_check(max_rate: float) -> Accumulator:
    """`update(key, processed_frame, quarantine_frame)`."""

    def reduce(m):
        worst, bad, total_q, total = 0.0, [], 0, 0
        for key, (p, q) in m.items():
            total_q, total = total_q + q, total + q + p
            rate = q / (q + p) if q + p else 0.0
            worst = max(worst, rate)
            if rate > max_rate:
                bad.append(key)
        details: dict[str, Any] = {"quarantined_rows": total_q, "rows_in": total}
        if bad:
            details["failing_partitions"] = _short(sorted(bad))
        return Outcome("quarantine_rate", not bad, round(worst, 6), f"<= {max_rate}", details)

    return Accumulator(lambda key, good, bad=(): (len(good), len(bad)), reduce)


def quarantine_rate(processed: Frames, quarantine: Frames, max_rate: float) -> Outcome:
    acc = quarantine_rate_check(max_rate)
    for key, frame in processed.items():
        acc.update(key, frame, quarantine.get(key, ()))
    return acc.result()


# ---------------------------------------------------------------- features
def leakage_check(config: PipelineConfig) -> Accumulator:
    def reduce(m):
        bad = sorted(k for k, cols in m.items() if cols)
        leaked = sorted({c for cols in m.values() for c in cols})
        return Outcome("no_leakage", not leaked, leaked or "none",
                       f"none of {sorted(set(config.features.forbidden) | {config.target.column})}",
                       {"failing_partitions": _short(bad)} if bad else {})

    return Accumulator(lambda key, frame: leaked_columns(frame, config), reduce)


def no_leakage(frames: Frames, config: PipelineConfig) -> Outcome:
    return _run(leakage_check(config), frames)


def feature_columns_check(config: PipelineConfig) -> Accumulator:
    def measure(key, frame):
        missing = [c for c in config.feature_columns if c not in frame.columns]
        if LABEL not in frame.columns:
            missing.append(LABEL)
        non_numeric = [c for c in config.features.numeric
                       if c in frame.columns and not pd.api.types.is_float_dtype(frame[c].dtype)]
        if missing or non_numeric:
            return f"{key}: missing {missing}, non-float numeric {non_numeric}"
        return None

    def reduce(m):
        problems = [p for p in m.values() if p]
        return Outcome("feature_columns", not problems, len(problems), "0 partitions off schema",
                       {"problems": _short(problems, 5)} if problems else {})

    return Accumulator(measure, reduce)


def features_complete(frames: Frames, config: PipelineConfig) -> Outcome:
    return _run(feature_columns_check(config), frames)


# ---------------------------------------------------------------- predictions
def predictions_check(task: str) -> Accumulator:
    """`update(key, feature_rows: int, predictions_frame)`; `result()` is a list of Outcomes."""

    def measure(key, feature_rows, pred):
        values = pred["prediction"]
        return {
            "rows": len(pred), "feature_rows": feature_rows, "nan": int(values.isna().sum()),
            "min": float(values.min()) if len(pred) else None,
            "max": float(values.max()) if len(pred) else None,
            "outside": bool(((values < 0) | (values > 1)).any()) if len(pred) else False,
        }

    def reduce(m):
        mismatched = sorted(k for k, v in m.items() if v["rows"] != v["feature_rows"])
        nan_at = sorted(k for k, v in m.items() if v["nan"])
        out = [
            Outcome("one_prediction_per_row", not mismatched, len(mismatched),
                    "0 partitions where prediction rows != feature rows",
                    {"failing_partitions": _short(mismatched)} if mismatched else {}),
            Outcome("no_missing_predictions", not nan_at, sum(v["nan"] for v in m.values()),
                    "0 NaN predictions", {"failing_partitions": _short(nan_at)} if nan_at else {}),
        ]
        if task == "binary":
            lo = min((v["min"] for v in m.values() if v["min"] is not None), default=0.0)
            hi = max((v["max"] for v in m.values() if v["max"] is not None), default=1.0)
            outside = sorted(k for k, v in m.items() if v["outside"])
            out.append(Outcome("probabilities_in_unit_interval", not outside,
                               f"{lo:.6f}..{hi:.6f}", "0..1",
                               {"failing_partitions": _short(outside)} if outside else {}))
        return out

    return Accumulator(measure, reduce)


def predictions_sane(features: Frames, predictions: Frames, task: str) -> list[Outcome]:
    acc = predictions_check(task)
    for key, pred in predictions.items():
        acc.update(key, len(features.get(key, ())), pred)
    return acc.result()
