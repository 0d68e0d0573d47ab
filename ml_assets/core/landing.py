"""The landing folder of a `files` source as the new-data sensor sees it: which files are there,
which version of each (etag, or size and modification time), and which days each holds."""

from __future__ import annotations

import glob as globlib
import io
import os
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ml_assets.config import FilesSource
from ml_assets.core.automation import date_pattern, days_between, file_version
from ml_assets.core.frames import to_naive_utc
from ml_assets.core.storage import read_uri, split_s3_uri


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
            out.append(LandingFile(path, st.st_size, st.st_mtime,
                                   file_version(st.st_size, st.st_mtime_ns)))
    if dated:
        out = [f for f in out if dated[1].match(f.uri)]
    return sorted(out, key=lambda f: f.uri)


def file_days(source: FilesSource, file: LandingFile, s3_client: Any = None) -> list[str]:
    """The days a file holds: from its name for a `{date}` source, else from the min and max of
    its timestamp column (only that column is read). An unreadable file holds no known day."""
    dated = date_pattern(source.uri)
    if dated:
        match = dated[1].match(file.uri)
        return [match.group("date")] if match else []
    try:
        data = read_uri(file.uri, s3_client)
        ts = source.timestamp_column
        if source.format == "csv":
            values = pd.read_csv(io.BytesIO(data), usecols=[ts], dtype=str)[ts]
        else:
            values = pd.read_parquet(io.BytesIO(data), columns=[ts])[ts]
    except (OSError, ValueError, KeyError):
        return []
    stamps = to_naive_utc(values).dropna()
    if stamps.empty:
        return []
    return days_between(stamps.min().date(), stamps.max().date())
