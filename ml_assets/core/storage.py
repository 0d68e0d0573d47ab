"""Object storage with one interface for a local folder and an S3 bucket.

Writes are atomic: a local write goes to a temporary file in the same folder and is renamed into
place; an S3 PUT is atomic by itself (the object appears whole or not at all). A crash mid-write
leaves no partial file under the final name.
"""

from __future__ import annotations

import fnmatch
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class ObjectStore(Protocol):
    """Keys are '/'-separated paths relative to the store's root."""

    root: str

    def uri(self, key: str) -> str: ...
    def put(self, key: str, data: bytes) -> str: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid storage key {key!r}")
    return key


@dataclass
class LocalStore:
    root: str

    def _path(self, key: str) -> Path:
        return Path(self.root) / _check_key(key)

    def uri(self, key: str) -> str:
        return str(self._path(key).resolve())

    def put(self, key: str, data: bytes) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return self.uri(key)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such stored object") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        """Keys under the folder `prefix` ('' for all)."""
        base = Path(self.root)
        start = base / _check_key(prefix) if prefix else base
        if not start.exists():
            return []
        return sorted(
            str(p.relative_to(base)).replace(os.sep, "/")
            for p in start.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )


@dataclass
class S3Store:
    """`root` is 's3://bucket/prefix'; `client` is a boto3 S3 client (dagster-aws S3Resource)."""

    root: str
    client: Any

    def __post_init__(self) -> None:
        bucket, prefix = split_s3_uri(self.root)
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def put(self, key: str, data: bytes) -> str:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        return self.uri(key)

    def get(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"{self.uri(key)}: no such stored object") from None

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except Exception as exc:  # botocore ClientError 404
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def list(self, prefix: str) -> list[str]:
        """Keys under the folder `prefix` ('' for all): 'a' lists 'a/x', never 'ab/x'."""
        full = self._key(prefix) if prefix else self.prefix
        full = f"{full.rstrip('/')}/" if full else ""
        out: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                rel = key[len(self.prefix) + 1 :] if self.prefix else key
                out.append(rel)
        return sorted(out)


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    rest = uri[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"s3 URI has no bucket: {uri!r}")
    return bucket, prefix


def read_uri(uri: str, s3_client: Any = None) -> bytes:
    """Read a whole object given its absolute URI (a local path or s3://)."""
    if uri.startswith("s3://"):
        if s3_client is None:
            raise ValueError(f"{uri}: an S3 client is needed to read this URI")
        bucket, key = split_s3_uri(uri)
        return s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return Path(uri).read_bytes()


def glob_uri(pattern: str, s3_client: Any = None) -> list[str]:
    """Expand a glob on a local path or s3:// URI into sorted absolute URIs."""
    if pattern.startswith("s3://"):
        if s3_client is None:
            raise ValueError(f"{pattern}: an S3 client is needed to list this URI")
        bucket, key_pattern = split_s3_uri(pattern)
        literal = key_pattern.split("*")[0].split("?")[0].split("[")[0]
        paginator = s3_client.get_paginator("list_objects_v2")
        keys = [
            obj["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=literal)
            for obj in page.get("Contents", [])
        ]
        return sorted(f"s3://{bucket}/{k}" for k in keys if fnmatch.fnmatchcase(k, key_pattern))
    import glob

    return sorted(glob.glob(pattern))
