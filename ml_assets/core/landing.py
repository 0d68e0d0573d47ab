"""The landing folder of a `files` source as the new-data sensor sees it: which files are there,
which version of each (etag, or size and modification time; a listing, no reads), and which days
a changed file touches (from the file manifest, `core.file_manifest`)."""

from __future__ import annotations

import datetime as dt
import glob as globlib
import os
import re
import stat
from dataclasses import dataclass
from typing import Any

from ml_assets.config import FilesSource, PipelineConfig
from ml_assets.core import file_manifest as fm
from ml_assets.core.automation import date_pattern, file_version
from ml_assets.core.storage import ObjectStore, split_s3_uri


@dataclass(frozen=True)
class LandingFile:
    uri: str
    size: int
    modified: float  # POSIX seconds
    version: str


def list_landing(source: FilesSource, s3_client: Any = None) -> list[LandingFile]:
    """Every file the source's URI pattern matches (for `{date}`: any day), with its version."""
    pattern = source.uri
    dated = date_pattern(pattern)
    glob = dated[0] if dated else pattern
    out = []
    if glob.startswith("s3://"):
        import fnmatch

        if s3_client is None:
            raise ValueError(f"{glob}: an S3 client is needed to list this URI")
        bucket, key_glob = split_s3_uri(glob)
        prefix = key_glob.split("*")[0].split("?")[0].split("[")[0]
        for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if fnmatch.fnmatchcase(obj["Key"], key_glob):
                    modified = obj["LastModified"].timestamp()
                    out.append(LandingFile(f"s3://{bucket}/{obj['Key']}", int(obj["Size"]),
                                           modified, file_version(obj["Size"], modified, obj.get("ETag"))))
    else:
        for path in globlib.glob(glob):
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):
                continue  # a folder matching the pattern is not a landing file
            out.append(LandingFile(path, st.st_size, st.st_mtime,
                                   file_version(st.st_size, st.st_mtime_ns)))
    if dated:
        out = [f for f in out if dated[1].match(f.uri)]
    return sorted(out, key=lambda f: f.uri)


def _calendar_day(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:  # 2024-02-30 matches the pattern; it is no day
        return False
    return True


def _dated_days(regex: re.Pattern, files: list[LandingFile]) -> dict[str, list[str]]:
    """A `{date}` file's day: the calendar date in its name, or none."""
    out = {}
    for f in files:
        match = regex.match(f.uri)
        out[f.uri] = [match.group("date")] if match and _calendar_day(match.group("date")) else []
    return out


def touched_days(config: PipelineConfig, files: list[LandingFile], changed: list[LandingFile],
                 s3_client: Any = None, store: ObjectStore | None = None,
                 removed: list[str] = ()) -> dict[str, list[str]]:
    """For each changed file, the days a run must re-materialize (any day, in the partitions or
    not; the caller decides): a `{date}` file, the day in its name; a glob file, from the file
    manifest (refreshed first; only new or changed files are read): the days its new version
    holds, the days its previous version held (rows may have left them), and for an unreadable
    version the days it could hold (`FileEntry.could_hold`). `removed` (glob): URIs no longer
    listed; their days are those the manifest held for them before this refresh."""
    source = config.source
    assert isinstance(source, FilesSource)
    dated = date_pattern(source.uri)
    if dated:
        return _dated_days(dated[1], changed)
    from ml_assets.core.sources import refresh_manifest

    if store is None:
        raise ValueError("a glob source needs the tables store for its file manifest")
    listing = [fm.Listed(f.uri, f.size, f.version) for f in files]
    before, _ = fm.load(store, fm.manifest_key(config.name)) if removed else (None, None)
    manifest, _ = refresh_manifest(config, s3_client, store, listing)
    far = (dt.date(1, 1, 1), dt.date(9999, 12, 31))
    out = {}
    for f in changed:
        entry = manifest.files.get(f.uri)
        if entry is None:
            out[f.uri] = []
            continue
        days = set(entry.could_hold(*far)) | set(fm.expand(entry.previous_days))
        out[f.uri] = sorted(days)
    for uri in removed:
        gone = before.files.get(uri) if before is not None else None
        out[uri] = sorted(set(fm.expand(gone.days if gone.readable else gone.previous_days))) \
            if gone is not None else []
    return out


def held_days(config: PipelineConfig, files: list[LandingFile], store: ObjectStore | None = None
              ) -> dict[str, list[str]]:
    """For each file, the days its current version holds (any day; the caller keeps those in
    the partitions): a `{date}` file, the day in its name; a glob file, from the stored file
    manifest as it is (`touched_days` refreshes it): the days the entry of that version could
    hold (`FileEntry.could_hold`), none when the manifest has no entry of that version."""
    source = config.source
    assert isinstance(source, FilesSource)
    dated = date_pattern(source.uri)
    if dated:
        return _dated_days(dated[1], files)
    if store is None:
        raise ValueError("a glob source needs the tables store for its file manifest")
    manifest, _ = fm.load(store, fm.manifest_key(config.name))
    far = (dt.date(1, 1, 1), dt.date(9999, 12, 31))
    out = {}
    for f in files:
        entry = manifest.files.get(f.uri) if manifest is not None else None
        out[f.uri] = entry.could_hold(*far) if entry is not None and entry.version == f.version else []
    return out
