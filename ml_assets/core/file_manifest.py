"""The file manifest of a `files` source: what is known about each landing file, kept in the store
so a run reads only the files that can hold its days.

One JSON document per pipeline, `<pipeline>/_ingest/files.json` in the tables store (local or
S3, through `core.storage`). Per file: its URI, size and version (S3 etag, or size and
modification time), whether it could be read (and if not: why, and its SHA-256), its row count,
its min and max timestamp, the days that hold rows (as `[first, last]` ranges of consecutive
days), how many rows have no usable timestamp, and `previous_days`: the days of the last readable
earlier version (a changed file re-materializes old days and new days; an unreadable new version
blocks the days its last readable version held).

Refreshing is incremental: a listing of the landing folder (sizes and versions, no reads) is
compared with the manifest, and only new or changed files are scanned. The document is written
with compare-and-swap (`put_if`): two runs refreshing at once merge, neither loses the other's
entries. The manifest is a cache of facts about immutable file versions, so a lost or deleted
manifest only costs one re-scan.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ml_assets.core.days import contiguous_ranges
from ml_assets.core.storage import ObjectStore, PreconditionFailed

MANIFEST_FORMAT = 1
_NAME_DATE = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?!\d)")


def manifest_key(pipeline: str) -> str:
    return f"{pipeline}/_ingest/files.json"


def day_ranges(days: Iterable[str]) -> list[list[str]]:
    """['2024-03-01', '2024-03-02', '2024-03-05'] -> [['2024-03-01', '2024-03-02'], ['2024-03-05', '2024-03-05']]
    (lists: the manifest's JSON form)."""
    return [list(r) for r in contiguous_ranges(days)]


def expand(ranges: list[list[str]], start: dt.date | None = None, end: dt.date | None = None
           ) -> list[str]:
    """The days of `ranges`, clipped to [start, end) when given."""
    out = []
    for first, last in ranges:
        a, b = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
        if start is not None:
            a = max(a, start)
        if end is not None:
            b = min(b, end - dt.timedelta(days=1))
        out.extend((a + dt.timedelta(days=i)).isoformat() for i in range((b - a).days + 1))
    return out


def date_in_name(uri: str) -> str | None:
    """A date written in the file's name (YYYY-MM-DD or YYYYMMDD), if exactly one."""
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    found = set()
    for y, m, d in _NAME_DATE.findall(name):
        try:
            found.add(dt.date(int(y), int(m), int(d)).isoformat())
        except ValueError:
            continue
    return found.pop() if len(found) == 1 else None


@dataclass
class FileEntry:
    uri: str
    size: int
    version: str
    readable: bool
    reason: str | None = None
    sha256: str | None = None
    rows: int | None = None
    min_ts: str | None = None
    max_ts: str | None = None
    days: list[list[str]] = field(default_factory=list)
    untimed_rows: int = 0
    previous_days: list[list[str]] = field(default_factory=list)
    scanned_at: float = 0.0

    def days_in(self, start: dt.date, end: dt.date) -> list[str]:
        return expand(self.days, start, end)

    def outside_rows(self, start: dt.date, end: dt.date) -> bool:
        """Whether some rows have no usable timestamp or one outside [start, end)."""
        if self.untimed_rows:
            return True
        return any(dt.date.fromisoformat(a) < start or dt.date.fromisoformat(b) >= end
                   for a, b in self.days)

    def home(self, start: dt.date, end: dt.date) -> str | None:
        """The partition its rows without an in-range timestamp are filed under: the earliest
        partition day it holds rows for (None: it holds none)."""
        inside = self.days_in(start, end)
        return inside[0] if inside else None

    def could_hold(self, start: dt.date, end: dt.date) -> list[str]:
        """The partitions this file may hold rows for. Readable: the days it holds. Unreadable:
        a date in its name, else the days of its last readable version, else none known."""
        if self.readable:
            return self.days_in(start, end)
        named = date_in_name(self.uri)
        if named is not None:
            return [named] if start <= dt.date.fromisoformat(named) < end else []
        return expand(self.previous_days, start, end)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> FileEntry:
        known = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class Manifest:
    source: str
    format: str
    timestamp_column: str
    files: dict[str, FileEntry] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        doc = {"manifest_format": MANIFEST_FORMAT, "source": self.source, "format": self.format,
               "timestamp_column": self.timestamp_column,
               "files": {u: asdict(e) for u, e in sorted(self.files.items())}}
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    def matches(self, source: str, fmt: str, ts: str) -> bool:
        return (self.source, self.format, self.timestamp_column) == (source, fmt, ts)

    @classmethod
    def parse(cls, data: bytes) -> Manifest | None:
        try:
            doc = json.loads(data)
            if doc.get("manifest_format") != MANIFEST_FORMAT:
                return None
            return cls(doc["source"], doc["format"], doc["timestamp_column"],
                       {u: FileEntry.from_json(e) for u, e in doc.get("files", {}).items()})
        except (ValueError, KeyError, TypeError):
            return None  # unreadable or from another version: rebuilt by scanning


def load(store: ObjectStore, key: str) -> tuple[Manifest | None, str | None]:
    """The stored manifest and its etag (for `put_if`); (None, None) when there is none."""
    try:
        data, etag = store.get_versioned(key)
    except FileNotFoundError:
        return None, None
    return Manifest.parse(data), etag


@dataclass(frozen=True)
class Listed:
    """One landing file as a listing sees it (no read)."""

    uri: str
    size: int
    version: str


def _successor(old: FileEntry | None, new: FileEntry) -> FileEntry:
    """`new`, remembering the days of the last readable earlier version."""
    if old is not None and old.version != new.version:
        new.previous_days = old.days if old.readable else old.previous_days
    elif old is not None:
        new.previous_days = old.previous_days
    return new


def update(
    store: ObjectStore,
    key: str,
    header: tuple[str, str, str],
    listing: list[Listed],
    scan: Callable[[Listed], FileEntry],
    complete: bool = True,
    attempts: int = 20,
) -> tuple[Manifest, list[str]]:
    """Bring the manifest up to date with `listing`, scanning only new or changed files.

    `complete`: the listing is the whole landing folder (entries of files no longer listed are
    dropped); False for a partial listing (one day's files of a `{date}` source): only upserts.
    Returns the manifest and the URIs that were scanned."""
    scanned: dict[str, FileEntry] = {}
    for _ in range(attempts):
        current, etag = load(store, key)
        fresh = current is None or not current.matches(*header)
        base = Manifest(*header) if fresh else current
        files = {} if complete else dict(base.files)
        changed = current is None or base is not current
        for item in listing:
            old = base.files.get(item.uri)
            if old is not None and old.version == item.version and old.size == item.size:
                files[item.uri] = old
                continue
            entry = scanned.get(item.uri)
            if entry is None or entry.version != item.version:
                entry = scan(item)
                entry.scanned_at = time.time()
                scanned[item.uri] = entry
            files[item.uri] = _successor(old, FileEntry.from_json(asdict(entry)))
            changed = True
        if complete and set(files) != set(base.files):
            changed = True
        manifest = Manifest(*header, files)
        if not changed:
            return manifest, sorted(scanned)
        try:
            store.put_if(key, manifest.to_bytes(), etag)
            return manifest, sorted(scanned)
        except PreconditionFailed:
            continue  # another run wrote it meanwhile: merge again (scans are reused)
    raise RuntimeError(f"{key}: could not update the file manifest after {attempts} attempts "
                       "(other runs kept writing it)")
