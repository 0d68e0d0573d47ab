"""The contract and feature step as they were before vectorising (kept as a slow reference: the
new implementations must give identical results on real flights days). Do not use in code."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_assets.config import ColumnSpec, PipelineConfig
from ml_assets.core.frames import LINEAGE_COLUMNS, SOURCE_FILE, SOURCE_ROW, to_naive_utc

QUARANTINE_COLUMNS = ["partition", SOURCE_FILE, SOURCE_ROW, "reason", "record"]
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
PANDAS_DTYPES = {
    "int64": "Int64",
    "float64": "float64",
    "bool": "boolean",
    "string": "string",
    "datetime": "datetime64[ns]",
}


class ContractError(ValueError):
    """A partition that cannot be processed at all (for example a missing required column)."""


@dataclass
class Cleaned:
    processed: pd.DataFrame
    quarantine: pd.DataFrame
    extra_columns: list[str]


def expected_columns(config: PipelineConfig) -> list[str]:
    """Columns the raw table must have: the schema, less PII columns that are dropped."""
    dropped = {c for c, a in config.pii.items() if a == "drop"}
    return [c for c in config.columns if c not in dropped]


def missing_columns(frame: pd.DataFrame, config: PipelineConfig) -> list[str]:
    return [c for c in expected_columns(config) if c not in frame.columns]


def _parse(values: pd.Series, spec: ColumnSpec) -> tuple[pd.Series, pd.Series]:
    """Return (parsed values, mask of values present but unparseable)."""
    present = values.notna()
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
        text = values.astype("string").str.strip()
        present = present & (text != "")
        values = text.where(present)
    if spec.dtype in ("int64", "float64"):
        if pd.api.types.is_bool_dtype(values.dtype):
            numeric = pd.Series(np.nan, index=values.index)
        else:
            numeric = pd.to_numeric(values, errors="coerce").astype("float64")
        bad = present & numeric.isna()
        if spec.dtype == "int64":
            fractional = numeric.notna() & (numeric != np.floor(numeric.fillna(0)))
            too_big = numeric.abs() > 2**53
            bad = bad | fractional | too_big
            parsed = numeric.where(~bad).astype("Int64")
        else:
            parsed = numeric.where(~bad)
        return parsed, bad
    if spec.dtype == "bool":
        if pd.api.types.is_bool_dtype(values.dtype):
            return values.astype("boolean"), pd.Series(False, index=values.index)
        low = values.astype("string").str.lower()
        parsed = pd.Series(pd.NA, index=values.index, dtype="boolean")
        parsed[low.isin(_TRUE).fillna(False).astype(bool)] = True
        parsed[low.isin(_FALSE).fillna(False).astype(bool)] = False
        bad = present & parsed.isna()
        return parsed, bad
    if spec.dtype == "datetime":
        parsed = to_naive_utc(values)
        bad = present & parsed.isna()
        return parsed, bad
    return values.astype("string"), pd.Series(False, index=values.index)


def outside_allowed(values: pd.Series, spec: ColumnSpec) -> pd.Series:
    """True where a present value is not in `spec.allowed` (numbers compared as numbers)."""
    if spec.allowed is None:
        return pd.Series(False, index=values.index)
    if spec.dtype in ("int64", "float64"):
        allowed = pd.to_numeric(pd.Series(spec.allowed), errors="coerce").dropna().tolist()
        inside = values.astype("float64").isin(allowed)
    else:
        allowed = pd.Series(spec.allowed).astype(str).tolist()
        inside = values.astype("string").isin(allowed).fillna(False).astype(bool)
    return (values.notna() & ~inside).astype(bool)


def _fmt(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return repr(value)


def reference_clean(raw: pd.DataFrame, config: PipelineConfig, partition: str) -> Cleaned:
    """Parse one partition of raw rows; return processed rows and quarantined rows."""
    missing = missing_columns(raw, config)
    if missing:
        files = sorted(set(raw[SOURCE_FILE])) if SOURCE_FILE in raw and len(raw) else []
        found = [c for c in raw.columns if c not in LINEAGE_COLUMNS]
        raise ContractError(
            f"partition {partition}: source {files or '(no rows)'} is missing required "
            f"column(s) {missing}; expected {expected_columns(config)}, found {found}"
        )
    reasons = pd.Series("", index=raw.index, dtype=object)

    def flag(mask: pd.Series, message) -> None:
        if not mask.any():
            return
        idx = mask[mask].index
        msgs = message(idx) if callable(message) else pd.Series(message, index=idx)
        reasons.loc[idx] = reasons.loc[idx] + msgs + "; "

    out: dict[str, pd.Series] = {}
    for column in expected_columns(config):
        spec = config.columns[column]
        source = raw[column]
        parsed, bad = _parse(source, spec)
        flag(
            bad,
            lambda idx, c=column, s=spec, src=source: (
                f"column {c!r}: expected {s.dtype}, found " + src.loc[idx].map(_fmt)
            ),
        )
        null = parsed.isna() & ~bad
        if not spec.nullable:
            flag(null, f"column {column!r}: null not allowed")
        if column == config.target.column:
            flag(null, f"missing label (column {column!r} is null)")
        if spec.min is not None:
            low = (parsed < spec.min).fillna(False).astype(bool)
            flag(low, lambda idx, c=column, s=spec, p=parsed: (
                f"column {c!r}: " + p.loc[idx].map(_fmt) + f" below min {_fmt(s.min)}"
            ))
        if spec.max is not None:
            high = (parsed > spec.max).fillna(False).astype(bool)
            flag(high, lambda idx, c=column, s=spec, p=parsed: (
                f"column {c!r}: " + p.loc[idx].map(_fmt) + f" above max {_fmt(s.max)}"
            ))
        if spec.allowed is not None:
            flag(outside_allowed(parsed, spec), lambda idx, c=column, p=parsed, a=spec.allowed: (
                f"column {c!r}: " + p.loc[idx].map(_fmt) + f" not in allowed {a}"
            ))
        out[column] = parsed.astype(PANDAS_DTYPES[spec.dtype]) if spec.dtype != "datetime" else parsed

    parsed_frame = pd.DataFrame(out, index=raw.index)
    for col in LINEAGE_COLUMNS:
        parsed_frame[col] = raw.get(col, pd.NA)

    if config.primary_key:
        valid = reasons == ""
        keys = parsed_frame.loc[valid, config.primary_key]
        dup = keys.duplicated(keep="first")
        if dup.any():
            first = keys.drop_duplicates(keep="first")
            first_src = parsed_frame.loc[first.index, list(LINEAGE_COLUMNS) + config.primary_key]
            merged = keys[dup].reset_index().merge(
                first_src, on=config.primary_key, how="left", suffixes=("", "_first")
            ).set_index("index")
            dup_mask = pd.Series(False, index=raw.index)
            dup_mask.loc[merged.index] = True
            flag(dup_mask, lambda idx, m=merged: (
                f"duplicate primary key {config.primary_key}: same as "
                + m.loc[idx, SOURCE_FILE].astype(str) + " row " + m.loc[idx, SOURCE_ROW].astype(str)
            ))

    bad_rows = reasons != ""
    processed = parsed_frame.loc[~bad_rows].reset_index(drop=True)
    quarantine = quarantine_frame(raw.loc[bad_rows], reasons[bad_rows].str.rstrip("; "), partition)
    extra = [c for c in raw.columns if c not in config.columns and c not in LINEAGE_COLUMNS]
    return Cleaned(processed=processed, quarantine=quarantine, extra_columns=extra)


def quarantine_frame(rows: pd.DataFrame, reasons: pd.Series, partition: str) -> pd.DataFrame:
    """Quarantined rows: where they came from, why, and the whole raw record as JSON."""
    if rows.empty:
        return pd.DataFrame({
            "partition": pd.Series(dtype="string"),
            SOURCE_FILE: pd.Series(dtype="string"),
            SOURCE_ROW: pd.Series(dtype="int64"),
            "reason": pd.Series(dtype="string"),
            "record": pd.Series(dtype="string"),
        })
    payload = rows.drop(columns=[c for c in LINEAGE_COLUMNS if c in rows.columns])
    records = payload.astype(object).where(payload.notna(), None)
    as_json = [json.dumps(r, default=str, sort_keys=True) for r in records.to_dict("records")]
    return pd.DataFrame({
        "partition": pd.Series(partition, index=rows.index, dtype="string"),
        SOURCE_FILE: rows[SOURCE_FILE].astype("string"),
        SOURCE_ROW: rows[SOURCE_ROW].astype("int64"),
        "reason": reasons.astype("string"),
        "record": pd.Series(as_json, index=rows.index, dtype="string"),
    }).reset_index(drop=True)


# ---------------------------------------------------------------- features (before vectorising)
def reference_build_features(processed: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    from ml_assets.config import resolve_callable
    from ml_assets.core.features import LABEL, key_columns, label

    frame = processed.reset_index(drop=True)
    for path in config.features.transforms:
        frame = resolve_callable(path)(frame)
    out = pd.DataFrame(index=frame.index)
    for col in key_columns(config):
        out[col] = frame[col]
    for col in config.features.numeric:
        values = frame[col]
        if pd.api.types.is_bool_dtype(values.dtype):
            values = values.astype("float64")
        out[col] = pd.to_numeric(values, errors="raise").astype("float64")
    for col in config.features.categorical:
        out[col] = frame[col].astype("string")
    out[LABEL] = label(frame, config)
    return out.reset_index(drop=True)
