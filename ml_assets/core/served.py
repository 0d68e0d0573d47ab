"""What the real-time API served: the row layout of `<name>/served_predictions`, the chunk files
the API appends, and how a day's chunks become that day's table.

The API never rewrites a table. It buffers sampled predictions in memory and writes each batch
as one immutable chunk file (atomic write, unique name) under

    <table prefix>/_incoming/<YYYY-MM-DD>/<time>-<uuid>.parquet

where the day is the UTC day the request was served. The daily `served_predictions` asset reads
a day's chunks and writes them as one table (content-addressed, like every table), so monitoring
and delayed-label performance read exactly what production saw, from the same store.

Pure functions of the config and the store: no Dagster, no web framework.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ml_assets.config import PipelineConfig
from ml_assets.core.storage import ObjectStore

INCOMING = "_incoming"

#: Columns every served row carries before the keys and features.
SERVED_AT = "served_at"
META_COLUMNS: dict[str, str] = {
    SERVED_AT: "datetime64[us]",  # naive UTC
    "request_id": "string",
    "row": "int64",              # the record's position in its request
    "request_key": "string",     # the X-Request-Key header (canary stickiness), if any
    "role": "string",            # production | canary
    "model_id": "string",
    "model_version": "string",
}

_KEY_DTYPES = {"int64": "Int64", "float64": "Float64", "bool": "boolean", "string": "string",
               "datetime": "datetime64[us]"}


def served_key_columns(cfg: PipelineConfig) -> list[str]:
    """The primary-key columns a client may send with each record (echoed and logged, so a
    served prediction can be joined with its label later). Feature columns are not keys."""
    features = set(cfg.feature_columns)
    return [c for c in cfg.primary_key if c not in features]


def served_columns(cfg: PipelineConfig) -> dict[str, str]:
    """Column -> dtype of the served_predictions table, in order."""
    cols = dict(META_COLUMNS)
    for key in served_key_columns(cfg):
        cols[key] = _KEY_DTYPES[cfg.columns[key].dtype]
    cols.update({c: "float64" for c in cfg.features.numeric})
    cols.update({c: "string" for c in cfg.features.categorical})
    cols["prediction"] = "float64"
    if cfg.target.task == "binary":
        cols["predicted_class"] = "Int64"
    return cols


def conform(frame: pd.DataFrame, cfg: PipelineConfig) -> pd.DataFrame:
    """`frame` with exactly the served columns, in order and with their dtypes (missing columns
    become nulls; others are dropped)."""
    frame = frame.reset_index(drop=True)
    out = {}  # built as a dict, one DataFrame at the end (a column insert costs ~0.3 ms)
    for col, dtype in served_columns(cfg).items():
        if col in frame.columns:
            values = frame[col]
            if dtype.startswith("datetime") and not pd.api.types.is_datetime64_any_dtype(values.dtype):
                values = pd.to_datetime(values, utc=True, cache=False).dt.tz_localize(None)
            out[col] = values.astype(dtype)
        elif dtype == "int64" and len(frame):
            raise ValueError(f"served rows lack the column {col!r}")
        else:
            out[col] = pd.Series([None] * len(frame), dtype=dtype)
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


_ARROW_TYPES = {"datetime64[us]": pa.timestamp("us"), "string": pa.string(), "int64": pa.int64(),
                "Int64": pa.int64(), "float64": pa.float64(), "Float64": pa.float64(),
                "boolean": pa.bool_()}


def arrow_schema(cfg: PipelineConfig) -> pa.Schema:
    """The chunk files' Arrow schema: the served columns with their types (nullable)."""
    return pa.schema([(col, _ARROW_TYPES[dtype]) for col, dtype in served_columns(cfg).items()])


def empty_table(cfg: PipelineConfig) -> pd.DataFrame:
    return conform(pd.DataFrame(), cfg)


def incoming_prefix(table_prefix: str, day: str) -> str:
    """Where the chunks of `day` are (`table_prefix` is the asset key path, e.g.
    `flights/served_predictions`)."""
    dt.date.fromisoformat(day)  # a day, never a path fragment
    return f"{table_prefix}/{INCOMING}/{day}"


def chunk_key(table_prefix: str, day: str, now: dt.datetime) -> str:
    """A new, unique chunk name for rows served on `day`; names sort by when it was written."""
    stamp = now.strftime("%Y%m%dT%H%M%S%f")
    return f"{incoming_prefix(table_prefix, day)}/{stamp}-{uuid.uuid4().hex[:12]}.parquet"


def write_chunk(store: ObjectStore, table_prefix: str, table: pa.Table, day: str,
                now: dt.datetime) -> str:
    """Write one chunk of rows served on `day` (an Arrow table in `arrow_schema`) atomically;
    return its key. Chunks are transient: `collect` rewrites a day as one table."""
    key = chunk_key(table_prefix, day, now)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    store.put(key, buf.getvalue())
    return key


def chunk_keys(store: ObjectStore, table_prefix: str, day: str) -> list[str]:
    return [k for k in store.list(incoming_prefix(table_prefix, day)) if k.endswith(".parquet")]


def collect(store: ObjectStore, table_prefix: str, day: str, cfg: PipelineConfig
            ) -> tuple[pd.DataFrame, int]:
    """Every chunk of `day` as one table, ordered by serving time, request and row (so the same
    chunks always give the same table and content hash); and how many chunks were read."""
    keys = chunk_keys(store, table_prefix, day)
    frames = [conform(pq.read_table(io.BytesIO(store.get(k))).to_pandas(), cfg) for k in keys]
    if not frames:
        return empty_table(cfg), 0
    table = pd.concat(frames, ignore_index=True)
    table = table.sort_values([SERVED_AT, "request_id", "row"], kind="mergesort")
    return table.reset_index(drop=True), len(keys)


def split_by_day(table: pa.Table) -> Iterable[tuple[str, pa.Table]]:
    """Rows grouped by the UTC day they were served."""
    if table.num_rows == 0:
        return []
    days = pc.cast(table[SERVED_AT], pa.date32())
    unique = sorted(pc.unique(days).to_pylist())
    if len(unique) == 1:  # the usual case: one day
        return [(unique[0].isoformat(), table)]
    return [(day.isoformat(), table.filter(pc.equal(days, pa.scalar(day, pa.date32()))))
            for day in unique]
