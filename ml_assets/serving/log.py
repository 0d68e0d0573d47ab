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

from ml_assets.config import PipelineConfig
from ml_assets.core.served import SERVED_AT, split_by_day, write_chunk
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

    def add_many(self, meta: dict[str, Any], columns: dict[str, list[Any]], rows: int,
                 predictions: np.ndarray) -> None:
        """Keep a request's rows as they are (columns and predictions); the DataFrame is built
        by the writer thread, off the request path."""
        if not self.enabled:
            return
        index = None
        if self.sample_rate < 1:
            keep = np.random.default_rng().random(rows) < self.sample_rate
            index = np.flatnonzero(keep)
            if rows - len(index):
                self.metrics.served_rows.labels("sampled_out").inc(rows - len(index))
            if not len(index):
                return
        self._append(_Chunk(meta, columns, predictions, index),
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
            frame = _frame(parts, self.cfg.target.task == "binary")
            written = 0
            try:
                for day, part in split_by_day(frame):
                    key = write_chunk(self.store, self.table_prefix, part, self.cfg, day,
                                      self.now())
                    self.chunks_written.append(key)
                    self.metrics.served_chunks.labels("written").inc()
                    self.metrics.served_rows.labels("logged").inc(len(part))
                    written += len(part)
                    frame = frame.drop(part.index)
            except Exception as exc:
                self.metrics.served_chunks.labels("failed").inc()
                log.error("served_predictions: could not write a chunk (%d rows kept for the "
                          "next attempt): %s", len(frame), exc)
                self._requeue(frame)
            return written

    def _requeue(self, frame: pd.DataFrame) -> None:
        with self._lock:
            self._parts.insert(0, frame)
            self._rows += len(frame)
            if self._oldest is None:
                self._oldest = time.monotonic()
            excess = self._rows - self.max_rows
            if excess > 0:  # drop the oldest rows
                merged = _frame(self._parts, self.cfg.target.task == "binary")
                self._parts = [merged.iloc[excess:]]
                self._rows = len(self._parts[0])
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
    """One request's served rows as received: built into a DataFrame when written."""

    __slots__ = ("meta", "columns", "predictions", "index")

    def __init__(self, meta, columns, predictions, index):
        self.meta, self.columns, self.predictions, self.index = meta, columns, predictions, index

    def frame(self, binary: bool) -> pd.DataFrame:
        keep = self.index
        rows = len(self.predictions)
        data: dict[str, Any] = {}
        for name, values in self.columns.items():
            data[name] = values if keep is None else [values[i] for i in keep]
        row = np.arange(rows) if keep is None else keep
        predictions = np.asarray(self.predictions, dtype="float64")
        if keep is not None:
            predictions = predictions[keep]
        for key, value in self.meta.items():
            data[key] = [value] * len(row)
        data["row"] = row
        data["prediction"] = predictions
        if binary:
            data["predicted_class"] = (predictions >= 0.5).astype("int64")
        return pd.DataFrame(data)  # one constructor, no column inserts


def _frame(parts: list, binary: bool) -> pd.DataFrame:
    dicts = [p for p in parts if isinstance(p, dict)]
    frames = [p.frame(binary) if isinstance(p, _Chunk) else p for p in parts
              if not isinstance(p, dict)]
    if dicts:
        frames.append(pd.DataFrame.from_records(dicts))
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return frame.sort_values(SERVED_AT, kind="mergesort").reset_index(drop=True)
