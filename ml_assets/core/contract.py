"""The processed layer: parse raw rows against the config's column contract.

Rows that break the contract go to a quarantine table with one reason per problem, never dropped
silently. A missing required column is not a row problem: it fails the whole partition with the
file, the column, what was expected and what was found.

Numbers are parsed and checked for all numeric columns at once (one 2-D array: parse errors,
non-finite values, integrality, min and max), text columns in one stacked pass; what the contract
derives from the config (column lists, bounds, allowed sets) is computed once per config
(`contract_plan`), not once per day. Reasons are built only for the rows that have one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_assets.config import ColumnSpec, PipelineConfig
from ml_assets.core import frames as _ingest
from ml_assets.core.batches import BATCH_ROWS, batches, stack
from ml_assets.core.cache import per_config
from ml_assets.core.frames import LINEAGE_COLUMNS, SOURCE_FILE, SOURCE_ROW, to_naive_utc
from ml_assets.core.keys import KeyHistory, key_hashes

QUARANTINE_COLUMNS = ["partition", SOURCE_FILE, SOURCE_ROW, "reason", "record"]
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
_NAN_TEXT = {"nan", "+nan", "-nan"}
_INT_LIMIT = 2**53  # larger integers do not survive float64 exactly
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
    #: uint64 hashes of the processed rows' primary keys, in row order (None without a history)
    key_hashes: np.ndarray | None = None


@dataclass(frozen=True)
class ContractPlan:
    """What `clean` needs from a config, derived once per config (see `contract_plan`)."""

    expected: tuple[str, ...]
    specs: dict[str, ColumnSpec]
    numeric: tuple[str, ...]  # int64 and float64 columns, in contract order
    position: dict[str, int]  # numeric column -> row of the numeric block
    is_int: np.ndarray  # per numeric column
    lows: np.ndarray  # per numeric column, NaN: no bound
    highs: np.ndarray
    nonfinite_ok: np.ndarray
    allowed_numbers: dict[str, np.ndarray]
    allowed_text: dict[str, list[str]]
    target: str
    primary_key: list[str]
    known: frozenset[str]  # contract and lineage columns (anything else is extra)


def _build_plan(config: PipelineConfig) -> ContractPlan:
    dropped = {c for c, a in config.pii.items() if a == "drop"}
    expected = tuple(c for c in config.columns if c not in dropped)
    specs = {c: config.columns[c] for c in expected}
    numeric = tuple(c for c in expected if specs[c].dtype in ("int64", "float64"))

    def bound(value):
        return np.nan if value is None else float(value)

    allowed_numbers, allowed_text = {}, {}
    for column, spec in specs.items():
        if spec.allowed is None:
            continue
        if column in numeric:
            numbers = pd.to_numeric(pd.Series(spec.allowed), errors="coerce").dropna()
            allowed_numbers[column] = numbers.to_numpy(dtype="float64")
        else:
            allowed_text[column] = pd.Series(spec.allowed).astype(str).tolist()
    return ContractPlan(
        expected=expected,
        specs=specs,
        numeric=numeric,
        position={c: j for j, c in enumerate(numeric)},
        is_int=np.array([specs[c].dtype == "int64" for c in numeric], dtype=bool),
        lows=np.array([bound(specs[c].min) for c in numeric], dtype="float64"),
        highs=np.array([bound(specs[c].max) for c in numeric], dtype="float64"),
        nonfinite_ok=np.array([specs[c].allow_nonfinite for c in numeric], dtype=bool),
        allowed_numbers=allowed_numbers,
        allowed_text=allowed_text,
        target=config.target.column,
        primary_key=list(config.primary_key),
        known=frozenset([*config.columns, *LINEAGE_COLUMNS, _ingest.INGEST_REASON]),
    )


def contract_plan(config: PipelineConfig) -> ContractPlan:
    return per_config("contract", config, _build_plan)


def expected_columns(config: PipelineConfig) -> list[str]:
    """Columns the raw table must have: the schema, less PII columns that are dropped."""
    return list(contract_plan(config).expected)


def missing_columns(frame: pd.DataFrame, config: PipelineConfig) -> list[str]:
    return [c for c in contract_plan(config).expected if c not in frame.columns]


def _is_text(dtype) -> bool:
    return pd.api.types.is_object_dtype(dtype) or isinstance(dtype, pd.StringDtype)


def _parse(values: pd.Series, spec: ColumnSpec) -> tuple[pd.Series, pd.Series]:
    """Parse one bool, datetime or string column: (parsed values, mask of values present but
    unparseable). Numeric columns are parsed together by `_parse_numbers`."""
    present = values.notna()
    if _is_text(values.dtype):
        text = values.astype("string").str.strip()
        present = present & (text != "")
        values = text.where(present)
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


@dataclass
class _Numbers:
    """Every numeric column of a partition, one row per column (k x n)."""

    values: np.ndarray  # parsed, NaN where null or unparseable
    bad: np.ndarray  # present but not acceptable
    nonfinite: np.ndarray  # inf, -inf or NaN text (a reason of its own)
    null: np.ndarray


def _parse_numbers(raw: pd.DataFrame, plan: ContractPlan) -> _Numbers:
    k, n = len(plan.numeric), len(raw)
    values = np.full((k, n), np.nan)
    present = np.zeros((k, n), dtype=bool)
    nan_text = np.zeros((k, n), dtype=bool)
    text_rows: list[int] = []
    for j, column in enumerate(plan.numeric):
        source = raw[column]
        if pd.api.types.is_bool_dtype(source.dtype):
            present[j] = source.notna().to_numpy(dtype=bool)  # a bool is not a number: bad
        elif pd.api.types.is_numeric_dtype(source.dtype):
            values[j] = source.to_numpy(dtype="float64", na_value=np.nan)
            present[j] = source.notna().to_numpy(dtype=bool)
        elif _is_text(source.dtype):
            text_rows.append(j)
        else:  # anything else (e.g. datetimes in a numeric column): as pandas converts it
            values[j] = pd.to_numeric(source, errors="coerce").to_numpy(dtype="float64",
                                                                        na_value=np.nan)
            present[j] = source.notna().to_numpy(dtype=bool)
    if text_rows and n:
        # one pass over the text of every numeric text column (CSV sources: all of them)
        stacked = pd.concat([raw[plan.numeric[j]] for j in text_rows], ignore_index=True)
        text = stacked.astype("string").str.strip()
        here = stacked.notna().to_numpy(dtype=bool) & (text != "").to_numpy(dtype=bool,
                                                                         na_value=False)
        parsed = pd.to_numeric(text.where(here), errors="coerce").to_numpy(dtype="float64",
                                                                         na_value=np.nan)
        rows = np.asarray(text_rows)
        values[rows] = parsed.reshape(len(rows), n)
        present[rows] = here.reshape(len(rows), n)
        maybe = here & np.isnan(parsed)
        if maybe.any():
            where = np.flatnonzero(maybe)
            is_nan = text.iloc[where].str.lower().isin(_NAN_TEXT).to_numpy(dtype=bool)
            flat = np.zeros(len(parsed), dtype=bool)
            flat[where[is_nan]] = True
            nan_text[rows] = flat.reshape(len(rows), n)
    with np.errstate(invalid="ignore"):
        bad = present & np.isnan(values)
        is_int = plan.is_int[:, None]
        finite_int = np.where(np.isnan(values), 0.0, values)
        bad |= is_int & ((finite_int != np.floor(finite_int)) | (np.abs(values) > _INT_LIMIT))
        nonfinite = ~is_int & (np.isinf(values) | nan_text)
        allowed = plan.nonfinite_ok[:, None]
        bad = (bad & ~(nonfinite & allowed)) | (nonfinite & ~allowed)
        nonfinite &= bad
    values[bad] = np.nan
    return _Numbers(values=values, bad=bad, nonfinite=nonfinite, null=np.isnan(values) & ~bad)


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


def _fmt_all(values) -> np.ndarray:
    """`_fmt` of each value (a Series is mapped as pandas boxes its values), as an object array."""
    if isinstance(values, pd.Series):
        return values.map(_fmt).to_numpy(dtype=object)
    return np.array([_fmt(v) for v in values], dtype=object)


class _Reasons:
    """Reasons per row (position), appended in the order the checks run."""

    def __init__(self, n: int = 0, text: np.ndarray | None = None):
        self.text = np.full(n, "", dtype=object) if text is None else text

    def flag(self, mask: np.ndarray, message) -> None:
        """`message`: a str, or a function of the flagged positions giving one str per row."""
        if not mask.any():
            return
        idx = np.flatnonzero(mask)
        msgs = message(idx) if callable(message) else message
        self.text[idx] = self.text[idx] + msgs + "; "

    def bad(self) -> np.ndarray:
        return self.text != ""


def _parse_strings(raw: pd.DataFrame, columns: list[str]) -> dict[str, pd.Series]:
    """`_parse` of several string columns of text in one pass: stripped, empty text as null."""
    n = len(raw)
    if not columns or not n:
        return {}
    stacked = pd.concat([raw[c] for c in columns], ignore_index=True)
    text = stacked.astype("string").str.strip()
    here = stacked.notna().to_numpy(dtype=bool) & (text != "").to_numpy(dtype=bool, na_value=False)
    text = text.where(here)
    return {c: text.iloc[i * n:(i + 1) * n].reset_index(drop=True) for i, c in enumerate(columns)}


def clean(
    raw: pd.DataFrame, config: PipelineConfig, partition: str, history: KeyHistory | None = None
) -> Cleaned:
    """Parse one partition of raw rows; return processed rows and quarantined rows.

    `history`: keys already stored for other partitions (`ml_assets.core.keys`); a row whose
    primary key an earlier partition holds is quarantined, naming that partition, file and row.
    Steps: every contract column present; parse and check each column (reasons per row); primary
    keys (against the history, then within the day, among rows that are otherwise good); split.
    """
    plan = contract_plan(config)
    _require_columns(raw, plan, partition)
    reasons, parsed = _parse_rows(raw, plan)
    return _finish(raw, parsed, reasons, plan, partition, history)


def clean_days(days: Iterable[tuple[str, pd.DataFrame]], config: PipelineConfig,
               history: KeyHistory | None = None, max_rows: int = BATCH_ROWS
               ) -> Iterator[tuple[str, Cleaned]]:
    """(day, clean(raw, config, day, history)) for each day, in the order given (ascending, as
    the history requires); each day's kept keys are added to `history` before the next day's
    keys are checked.

    The row-wise work (parsing, key hashes, the quarantine records) runs once over a batch of
    days (`core.batches`: days with the same columns and dtypes, at most `max_rows` rows); the
    primary keys are checked day by day, exactly as `clean` checks them, so the result is the
    same."""
    plan = contract_plan(config)
    for group in batches(days, max_rows):
        if len(group) == 1:
            day, raw = group[0]
            cleaned = clean(raw, config, day, history)
            if history is not None:
                history.add(day, cleaned.processed, cleaned.key_hashes)
            yield day, cleaned
            continue
        yield from _clean_group(group, plan, history)


def _clean_group(group: list[tuple[str, pd.DataFrame]], plan: ContractPlan,
                 history: KeyHistory | None) -> list[tuple[str, Cleaned]]:
    _require_columns(group[0][1], plan, group[0][0])  # the group shares its columns
    stacked = stack(group)
    reasons, parsed = _parse_rows(stacked, plan)
    all_hashes = (key_hashes(parsed, list(plan.primary_key))
                  if history is not None and plan.primary_key else None)
    kept, bad_at, bad_text, bad_day = [], [], [], []
    start = 0
    for day, raw in group:
        end = start + len(raw)
        day_reasons = _Reasons(text=reasons.text[start:end].copy())
        bad, processed, day_hashes = _split_day(
            parsed.iloc[start:end].reset_index(drop=True), day_reasons, plan, day, history,
            None if all_hashes is None else all_hashes[start:end])
        if history is not None:
            history.add(day, processed, day_hashes)
        kept.append((processed, day_hashes, [c for c in raw.columns if c not in plan.known]))
        bad_at.append(start + np.flatnonzero(bad))
        bad_text.append(day_reasons.text[bad])
        bad_day.append(np.full(int(bad.sum()), day, dtype=object))
        start = end
    # the quarantine records of the whole group in one pass, then cut back into days
    at = np.concatenate(bad_at)
    rows = stacked.iloc[at]
    text = pd.Series(np.concatenate(bad_text), index=rows.index, dtype=object).str.rstrip("; ")
    quarantine = quarantine_frame(rows, text, np.concatenate(bad_day))
    out, first = [], 0
    for (day, _), (processed, day_hashes, extra), positions in zip(group, kept, bad_at,
                                                                   strict=True):
        last = first + len(positions)
        out.append((day, Cleaned(processed=processed,
                                 quarantine=quarantine.iloc[first:last].reset_index(drop=True),
                                 extra_columns=extra, key_hashes=day_hashes)))
        first = last
    return out


def _parse_rows(raw: pd.DataFrame, plan: ContractPlan) -> tuple[_Reasons, pd.DataFrame]:
    """The row-wise part of `clean`: rows the ingest could not place, every column parsed."""
    reasons = _Reasons(len(raw))
    if _ingest.INGEST_REASON in raw.columns:  # rows the ingest could not place in their day
        placed = raw[_ingest.INGEST_REASON]
        reasons.flag(placed.notna().to_numpy(dtype=bool),
                     lambda idx: placed.iloc[idx].astype(str).to_numpy(dtype=object))
    return reasons, _parse_columns(raw, plan, reasons)


def _finish(raw: pd.DataFrame, parsed: pd.DataFrame, reasons: _Reasons, plan: ContractPlan,
            partition: str, history: KeyHistory | None) -> Cleaned:
    """The per-day part of `clean`: primary keys (against the history, then within the day),
    then the split into processed and quarantined rows."""
    bad_rows, processed, hashes = _split_day(parsed, reasons, plan, partition, history)
    rows = raw.iloc[np.flatnonzero(bad_rows)]
    text = pd.Series(reasons.text[bad_rows], index=rows.index, dtype=object).str.rstrip("; ")
    return Cleaned(
        processed=processed,
        quarantine=quarantine_frame(rows, text, partition),
        extra_columns=[c for c in raw.columns if c not in plan.known],
        key_hashes=hashes,
    )


def _split_day(parsed: pd.DataFrame, reasons: _Reasons, plan: ContractPlan, day: str,
               history: KeyHistory | None, hashes: np.ndarray | None = None
               ) -> tuple[np.ndarray, pd.DataFrame, np.ndarray | None]:
    """One day's primary keys checked (against the history, then within the day; `hashes`:
    the day's key hashes if already computed), then its rows split: (the bad-row mask, the
    processed rows, the kept rows' key hashes or None)."""
    if plan.primary_key:
        hashes = _check_keys(parsed, plan, day, history, reasons, hashes)
    bad = reasons.bad()
    return bad, parsed.loc[~bad].reset_index(drop=True), None if hashes is None else hashes[~bad]


def _require_columns(raw: pd.DataFrame, plan: ContractPlan, partition: str) -> None:
    missing = [c for c in plan.expected if c not in raw.columns]
    if missing:
        files = sorted(set(raw[SOURCE_FILE])) if SOURCE_FILE in raw and len(raw) else []
        found = [c for c in raw.columns if c not in LINEAGE_COLUMNS]
        raise ContractError(
            f"partition {partition}: source {files or '(no rows)'} is missing required "
            f"column(s) {missing}; expected {list(plan.expected)}, found {found}"
        )


def _parse_columns(raw: pd.DataFrame, plan: ContractPlan, reasons: _Reasons) -> pd.DataFrame:
    """Every contract column parsed to its dtype (positional index), lineage columns kept; each
    problem appended to `reasons`, column by column in contract order."""
    n = len(raw)
    numbers = _parse_numbers(raw, plan)
    strings = _parse_strings(raw, [c for c in plan.expected if plan.specs[c].dtype == "string"
                                   and _is_text(raw[c].dtype)])
    out: dict[str, object] = {}
    for column in plan.expected:
        spec = plan.specs[column]
        source = raw[column]
        if column in plan.position:
            j = plan.position[column]
            values, bad, null = numbers.values[j], numbers.bad[j], numbers.null[j]
            reasons.flag(bad, lambda idx, c=column, s=spec, src=source, nf=numbers.nonfinite[j]: (
                f"column {c!r}: expected "
                + np.where(nf[idx], f"finite {s.dtype}", s.dtype).astype(object)
                + ", found " + _fmt_all(src.iloc[idx])))
        elif column in strings:
            parsed = strings[column]
            bad = np.zeros(n, dtype=bool)
            null = parsed.isna().to_numpy(dtype=bool)
        else:
            parsed, bad_series = _parse(source, spec)
            parsed = parsed.reset_index(drop=True)
            bad = bad_series.to_numpy(dtype=bool)
            null = parsed.isna().to_numpy(dtype=bool) & ~bad
            reasons.flag(bad, lambda idx, c=column, s=spec, src=source: (
                f"column {c!r}: expected {s.dtype}, found " + _fmt_all(src.iloc[idx])))
        if not spec.nullable:
            reasons.flag(null, f"column {column!r}: null not allowed")
        if column == plan.target:
            reasons.flag(null, f"missing label (column {column!r} is null)")
        if column in plan.position:
            _check_bounds(column, spec, values, plan, reasons)
            out[column] = (pd.arrays.IntegerArray(np.where(null | bad, 0, values).astype("int64"),
                                                  null | bad)
                           if spec.dtype == "int64" else values)
            continue
        if column in plan.allowed_text:
            inside = parsed.astype("string").isin(plan.allowed_text[column])
            outside = ~null & ~bad & ~inside.fillna(False).to_numpy(dtype=bool)
            reasons.flag(outside, lambda idx, c=column, p=parsed, a=spec.allowed: (
                f"column {c!r}: " + _fmt_all(p.iloc[idx]) + f" not in allowed {a}"))
        out[column] = (parsed.astype(PANDAS_DTYPES[spec.dtype]) if spec.dtype != "datetime"
                       else parsed)
    frame = pd.DataFrame(out, index=pd.RangeIndex(n))
    for col in LINEAGE_COLUMNS:
        frame[col] = raw[col].reset_index(drop=True) if col in raw.columns else pd.NA
    return frame


def _check_bounds(column: str, spec: ColumnSpec, values: np.ndarray, plan: ContractPlan,
                  reasons: _Reasons) -> None:
    """min, max and allowed of a numeric column (values NaN where null or unparseable)."""
    with np.errstate(invalid="ignore"):
        if spec.min is not None:
            reasons.flag(values < spec.min, lambda idx: (
                f"column {column!r}: " + _fmt_all(values[idx].tolist())
                + f" below min {_fmt(spec.min)}"))
        if spec.max is not None:
            reasons.flag(values > spec.max, lambda idx: (
                f"column {column!r}: " + _fmt_all(values[idx].tolist())
                + f" above max {_fmt(spec.max)}"))
    if column in plan.allowed_numbers:
        outside = ~np.isnan(values) & ~np.isin(values, plan.allowed_numbers[column])
        reasons.flag(outside, lambda idx: (
            f"column {column!r}: " + _fmt_all(values[idx].tolist())
            + f" not in allowed {spec.allowed}"))


def _check_keys(parsed: pd.DataFrame, plan: ContractPlan, partition: str,
                history: KeyHistory | None, reasons: _Reasons,
                hashes: np.ndarray | None = None) -> np.ndarray | None:
    """Quarantine repeated primary keys among the rows still good: first a key an earlier
    partition holds (when a history is given), then a repeat within the day (the first row in
    source order stays). Returns the key hashes of every row (None without a history)."""
    key = plan.primary_key
    valid = ~reasons.bad()
    if history is None:
        hashes = None
    elif hashes is None:  # else: this day's rows of hashes computed for a batch of days
        hashes = key_hashes(parsed, key)
    if history is not None:
        repeat, where = history.repeats(partition, hashes[valid])
        if repeat.any():
            positions = np.flatnonzero(valid)[repeat]
            mask = np.zeros(len(parsed), dtype=bool)
            mask[positions] = True
            holder = pd.Series(where, index=positions)
            reasons.flag(mask, lambda idx: (
                f"duplicate primary key {key}: same as " + holder.loc[idx].to_numpy()))
            valid = ~reasons.bad()
    keys = parsed.loc[valid, key]
    if hashes is not None:
        # equal keys hash equal: only rows sharing a hash with another row can repeat a key, so
        # the exact comparison runs on those few rows, not on every key of the day
        shared = pd.Series(hashes[valid]).duplicated(keep=False).to_numpy()
        keys = keys[shared]
    dup = keys.duplicated(keep="first")
    if dup.any():
        first = keys.drop_duplicates(keep="first")
        first_src = parsed.loc[first.index, list(LINEAGE_COLUMNS) + key]
        merged = keys[dup].reset_index().merge(
            first_src, on=key, how="left", suffixes=("", "_first")
        ).set_index("index")
        dup_mask = np.zeros(len(parsed), dtype=bool)
        dup_mask[merged.index.to_numpy()] = True
        reasons.flag(dup_mask, lambda idx: (
            f"duplicate primary key {key}: same as "
            + merged.loc[idx, SOURCE_FILE].astype(str).to_numpy() + " row "
            + merged.loc[idx, SOURCE_ROW].astype(str).to_numpy()))
    return hashes


def quarantine_frame(rows: pd.DataFrame, reasons: pd.Series,
                     partition: str | np.ndarray) -> pd.DataFrame:
    """Quarantined rows: where they came from, why, and the whole raw record as JSON.
    `partition`: the rows' partition, or one per row."""
    if rows.empty:
        return pd.DataFrame({
            "partition": pd.Series(dtype="string"),
            SOURCE_FILE: pd.Series(dtype="string"),
            SOURCE_ROW: pd.Series(dtype="int64"),
            "reason": pd.Series(dtype="string"),
            "record": pd.Series(dtype="string"),
        })
    payload = rows[[c for c in rows.columns
                    if c not in LINEAGE_COLUMNS and c != _ingest.INGEST_REASON]]
    names = sorted(payload.columns)
    cells = payload[names].to_numpy(dtype=object, copy=True)
    cells[payload[names].isna().to_numpy(dtype=bool)] = None
    as_json = [json.dumps(dict(zip(names, row, strict=True)), default=str) for row in cells.tolist()]
    return pd.DataFrame({
        "partition": pd.Series(partition, index=rows.index, dtype="string"),
        SOURCE_FILE: rows[SOURCE_FILE].astype("string"),
        SOURCE_ROW: rows[SOURCE_ROW].astype("int64"),
        "reason": reasons.astype("string"),
        "record": pd.Series(as_json, index=rows.index, dtype="string"),
    }).reset_index(drop=True)
