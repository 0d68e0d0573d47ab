"""The features layer: transforms named in config, the label, and the leakage guard."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator

import pandas as pd

from ml_assets.config import PipelineConfig, resolve_callable
from ml_assets.core.batches import batches, run_group
from ml_assets.core.cache import per_config
from ml_assets.core.frames import LINEAGE_COLUMNS

LABEL = "_label"
_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
        "==": operator.eq, "!=": operator.ne}


class FeatureError(ValueError):
    pass


class TransformError(FeatureError):
    """A configured transform raised: names the transform, the exception type and its message
    (on one line); the original exception is its __cause__, for the run's logs."""

    def __init__(self, path: str, exc: BaseException):
        self.path, self.exc_type = path, type(exc).__name__
        # a KeyError's str() is the repr of its key; its message reads better without quotes
        text = exc.args[0] if isinstance(exc, KeyError) and len(exc.args) == 1 else exc
        self.exc_message = one_line(str(text))
        super().__init__(f"transform {path} failed: {self.exc_type}: {self.exc_message}")


def one_line(text: str, limit: int = 500) -> str:
    """`text` with its whitespace (newlines included) collapsed, cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def key_columns(config: PipelineConfig) -> list[str]:
    """Columns that identify a row in features and predictions."""
    return list(config.primary_key) if config.primary_key else list(LINEAGE_COLUMNS)


def label(processed: pd.DataFrame, config: PipelineConfig) -> pd.Series:
    target = processed[config.target.column]
    if config.target.task == "regression":
        return target.astype("float64")
    if config.target.positive_when is not None:
        op, number = config.target.comparison()
        return _OPS[op](target.astype("float64"), number).astype("int64")
    return (target.astype("string") == str(config.target.positive_value)).fillna(False).astype(
        "int64"
    )


def rowwise(fn):
    """Mark a transform as row-wise: each output row depends only on its own input row (and on
    lookup tables), never on the other rows of the frame (no per-day aggregates, ranks, shifts or
    de-duplication). The features step then builds several days in one call (`build_features_days`);
    a transform without the mark always gets one day at a time."""
    fn.__rowwise__ = True
    return fn


def is_rowwise(config: PipelineConfig) -> bool:
    """Whether every configured transform is marked row-wise (no transforms: row-wise)."""
    return all(getattr(fn, "__rowwise__", False) for _, fn in _transforms(config))


def _transforms(config: PipelineConfig) -> list[tuple[str, object]]:
    """The configured transforms, imported once per config (not once per day)."""
    return per_config("transforms", config,
                      lambda c: [(path, resolve_callable(path)) for path in c.features.transforms])


def apply_transforms(frame: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    for path, fn in _transforms(config):
        before = len(frame)
        try:
            result = fn(frame)
        except Exception as exc:
            raise TransformError(path, exc) from exc
        if not isinstance(result, pd.DataFrame):
            raise FeatureError(f"transform {path} returned {type(result).__name__}, not a DataFrame")
        if len(result) != before:
            raise FeatureError(
                f"transform {path} changed the row count from {before} to {len(result)}; "
                "transforms must add columns, never add or drop rows"
            )
        frame = result
    return frame


def _numeric(values: pd.Series, col: str) -> pd.Series:
    if values.dtype == "float64":
        return values
    if pd.api.types.is_bool_dtype(values.dtype):
        values = values.astype("float64")
    try:
        return pd.to_numeric(values, errors="raise").astype("float64")
    except (TypeError, ValueError) as exc:
        raise FeatureError(f"numeric feature {col!r} is not numeric: {exc}") from exc


def build_features(processed: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    """Keys, the declared feature columns (numeric as float64, categorical as string), the label.

    The output frame is built in one step from its columns (not column by column)."""
    frame = apply_transforms(processed.reset_index(drop=True), config)
    missing = [c for c in config.feature_columns if c not in frame.columns]
    if missing:
        raise FeatureError(
            f"feature column(s) {missing} exist neither in processed data nor in the output of "
            f"transforms {config.features.transforms}; available: {sorted(frame.columns)}"
        )
    columns: dict[str, pd.Series] = {}
    for col in key_columns(config):
        columns[col] = frame[col]
    for col in config.features.numeric:
        columns[col] = _numeric(frame[col], col)
    for col in config.features.categorical:
        columns[col] = frame[col].astype("string")
    columns[LABEL] = label(frame, config)
    return pd.DataFrame(columns, index=frame.index).reset_index(drop=True)


def build_features_days(days: Iterable[tuple[str, pd.DataFrame]], config: PipelineConfig,
                        on_error=None) -> Iterator[tuple[str, pd.DataFrame]]:
    """(day, build_features(frame)) for each day: several days in one call when every transform
    is row-wise (`rowwise`), else one day at a time; the same frames either way.
    `on_error(day, exc)` makes the exception raised for a day that fails (see `in_batches`)."""
    if is_rowwise(config):
        checked = False
        for group in batches(days):
            out = list(run_group(group, lambda frame: build_features(frame, config), on_error))
            # the run's first batch of several days, on its first day with rows (an empty
            # day's frame says nothing about other rows)
            sample = next((i for i, (_, f) in enumerate(group) if len(f)), None)
            if not checked and len(group) > 1 and sample is not None:
                checked = True
                try:
                    _check_rowwise(group[sample], out[sample][1], len(group), config)
                except FeatureError as exc:
                    if on_error is None:
                        raise
                    raise on_error(group[sample][0], exc) from exc
            yield from out
        return
    for day, frame in days:
        try:
            out = build_features(frame, config)
        except Exception as exc:
            if on_error is None:
                raise
            raise on_error(day, exc) from exc
        yield day, out


def _check_rowwise(first: tuple[str, pd.DataFrame], batched: pd.DataFrame, days: int,
                   config: PipelineConfig) -> None:
    """The `@rowwise` mark is a promise the platform cannot read from the code, so it is
    sampled: the first day with rows of a run's first batch of several days is built again alone,
    and must give the same frame as it did inside the batch. A transform that uses other rows of
    its frame (a per-day mean, a rank, a shift) gives another frame and fails here, instead of
    silently mixing days."""
    day, frame = first
    alone = build_features(frame.reset_index(drop=True), config)
    if alone.equals(batched):
        return
    columns = [c for c in alone.columns
               if c not in batched.columns or not alone[c].equals(batched[c])]
    paths = ", ".join(config.features.transforms)
    raise FeatureError(
        f"transforms marked @rowwise ({paths}) gave day {day} other features when built together "
        f"with {days - 1} more day(s) than when built alone (column(s) {columns} differ); a "
        "transform that uses other rows of its frame (a per-day mean, rank, shift or "
        "de-duplication) must not be marked @rowwise")


def feature_columns(frame: pd.DataFrame, config: PipelineConfig) -> list[str]:
    keys = set(key_columns(config))
    return [c for c in frame.columns if c not in keys and c != LABEL]


def leaked_columns(frame: pd.DataFrame, config: PipelineConfig) -> list[str]:
    """Forbidden columns (and the raw target) that reached the model's feature columns."""
    forbidden = set(config.features.forbidden) | {config.target.column}
    return [c for c in feature_columns(frame, config) if c in forbidden]
