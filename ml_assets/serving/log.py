"""The served-predictions log: sampled predictions buffered in memory and written as immutable
chunk files for the daily `served_predictions` asset (layout in `ml_assets.core.served`).

A request only appends to the buffer (a list append under a lock, after the sampling draw).
A background thread writes the buffer as one chunk per UTC day when it holds `flush_rows` rows
or its oldest row is `flush_seconds` old, and once more when the API shuts down. A failed write
keeps the rows for the next attempt; the buffer never grows past 10 x `flush_rows` (the oldest
rows are dropped and counted in `served_rows_total{outcome="dropped"}`), so a storage outage
never takes the API's memory with it.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ml_assets.config import PipelineConfig
from ml_assets.core.served import SERVED_AT, arrow_schema, split_by_day, write_chunk
from ml_assets.core.storage import ObjectStore
from ml_assets.serving.metrics import ServingMetrics

log = logging.getLogger("ml_assets.serving")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class ServedLog:
    def __init__(self, store: ObjectStore, table_prefix: str, cfg: PipelineConfig,
                 metrics: ServingMetrics, clock: Callable[[], dt.datetime] = utcnow):
        self.store = store
        self.table_prefix = table_prefix
        self.cfg = cfg
        self.sample_rate = cfg.serving.sample_rate
        self.flush_rows = cfg.serving.flush_rows
        self.flush_seconds = cfg.serving.flush_seconds
        self.max_rows = 10 * self.flush_rows
        self.metrics = metrics
        self.clock = clock
        self._parts: list[pd.DataFrame | dict[str, Any]] = []
        self._rows = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._oldest: float | None = None
        self.chunks_written: list[str] = []
        self.schema = arrow_schema(cfg)

    @property
    def enabled(self) -> bool:
        return self.sample_rate > 0

    def now(self) -> dt.datetime:
        return self.clock()

    # ------------------------------------------------------------ the request side
    def add_one(self, meta: dict[str, Any], record: dict[str, Any], prediction: float) -> None:
        if not self.enabled:
            return
        if self.sample_rate < 1 and random.random() >= self.sample_rate:
            self.metrics.served_rows.labels("sampled_out").inc()
            return
        row = {**meta, "row": 0, **record, "prediction": prediction}
        if self.cfg.target.task == "binary":
            row["predicted_class"] = int(prediction >= 0.5)
        self._append(row, 1)

    def add_many(self, meta: dict[str, Any], features, keys: dict[str, list[Any]],
                 predictions: np.ndarray, rows: int | None = None) -> None:
        """Keep a request's rows as they are: the typed feature frame it was scored on (or a
        function that builds it, called by the writer thread), the key columns, the
        predictions; the writer thread assembles them, off the request path."""
        if not self.enabled:
            return
        rows = len(features) if rows is None else rows
        index = None
        if self.sample_rate < 1:
            keep = np.random.default_rng().random(rows) < self.sample_rate
            index = np.flatnonzero(keep)
            if rows - len(index):
                self.metrics.served_rows.labels("sampled_out").inc(rows - len(index))
            if not len(index):
                return
        self._append(_Chunk(meta, features, keys, predictions, index),
                     rows if index is None else len(index))

    def _append(self, part, rows: int) -> None:
        with self._lock:
            if self._oldest is None:
                self._oldest = time.monotonic()
            self._parts.append(part)
            self._rows += rows
            full = self._rows >= self.flush_rows
        if full:
            self._wake.set()

    # ------------------------------------------------------------ the writer side
    def flush(self) -> int:
        """Write what is buffered (one chunk per day); return the rows written."""
        with self._flush_lock:
            with self._lock:
                parts = self._parts
                self._parts, self._rows, self._oldest = [], 0, None
            if not parts:
                return 0
            table = _table(parts, self.schema)
            written, kept = 0, []
            for day, part in split_by_day(table):
                try:
                    key = write_chunk(self.store, self.table_prefix, part, day, self.now())
                except Exception as exc:
                    self.metrics.served_chunks.labels("failed").inc()
                    log.error("served_predictions: could not write a chunk (%d rows kept for "
                              "the next attempt): %s", part.num_rows, exc)
                    kept.append(part)
                    continue
                self.chunks_written.append(key)
                self.metrics.served_chunks.labels("written").inc()
                self.metrics.served_rows.labels("logged").inc(part.num_rows)
                written += part.num_rows
            if kept:
                self._requeue(pa.concat_tables(kept))
            return written

    def _requeue(self, table: pa.Table) -> None:
        with self._lock:
            self._parts.insert(0, table)
            self._rows += table.num_rows
            if self._oldest is None:
                self._oldest = time.monotonic()
            excess = self._rows - self.max_rows
            if excess > 0:  # drop the oldest rows
                merged = _table(self._parts, self.schema)
                merged = merged.take(pc.sort_indices(merged, [(SERVED_AT, "ascending")]))
                self._parts = [merged.slice(excess)]
                self._rows = self._parts[0].num_rows
                self.metrics.served_rows.labels("dropped").inc(excess)

    def start(self) -> None:
        if not self.enabled:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ml-assets-served-log",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(min(1.0, self.flush_seconds))
            self._wake.clear()
            with self._lock:
                due = self._rows >= self.flush_rows or (
                    self._oldest is not None
                    and time.monotonic() - self._oldest >= self.flush_seconds)
            if due:
                try:
                    self.flush()
                except Exception:
                    log.exception("served_predictions log")

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.flush()


class _Chunk:
    """One request's served rows as received: assembled into an Arrow table when written."""

    __slots__ = ("meta", "features", "keys", "predictions", "index")

    def __init__(self, meta, features, keys, predictions, index):
        self.meta, self.features, self.keys = meta, features, keys
        self.predictions, self.index = predictions, index

    def table(self, schema: pa.Schema) -> pa.Table:
        keep = self.index
        features = self.features() if callable(self.features) else self.features
        features = features if keep is None else features.iloc[keep]
        n = len(features)
        columns: dict[str, Any] = {}
        for key, value in self.meta.items():
            columns[key] = pa.repeat(pa.scalar(value, schema.field(key).type), n)
        columns["row"] = pa.array(np.arange(n) if keep is None else keep, pa.int64())
        for name, values in self.keys.items():
            columns[name] = values if keep is None else [values[i] for i in keep]
        for name in features.columns:  # already typed: numpy floats, Arrow-backed strings
            columns[name] = pa.array(features[name].array)
        predictions = np.asarray(self.predictions, dtype="float64")
        columns["prediction"] = predictions if keep is None else predictions[keep]
        if "predicted_class" in schema.names:
            columns["predicted_class"] = (columns["prediction"] >= 0.5).astype("int64")
        return pa.table([_array(columns.get(f.name), f.type, n) for f in schema], schema=schema)


def _array(values, kind: pa.DataType, n: int) -> pa.Array:
    if values is None:
        return pa.nulls(n, kind)
    if isinstance(values, pa.ChunkedArray | pa.Array):
        return values.cast(kind)
    return pa.array(values, kind)


def _table(parts: list, schema: pa.Schema) -> pa.Table:
    """The buffer as one Arrow table: one-record rows (dicts), batches, requeued tables."""
    dicts = [p for p in parts if isinstance(p, dict)]
    tables = [p.table(schema) if isinstance(p, _Chunk) else p for p in parts
              if not isinstance(p, dict)]
    if dicts:
        tables.append(pa.Table.from_pylist(dicts, schema=schema))
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]
