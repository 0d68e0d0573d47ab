"""Object storage with one interface for a local folder and an S3 bucket.

Writes are atomic: a local write goes to a temporary file in the same folder and is renamed into
place; an S3 PUT is atomic by itself (the object appears whole or not at all). A crash mid-write
leaves no partial file under the final name. Local files get the mode the process umask gives a
new file (0666 & ~umask, e.g. 0644), like any other file the process creates: the temporary file
is created with `os.open(..., 0o666)`, not `mkstemp` (which always makes 0600).

Compare-and-swap (`put_if`) is what lets two writers share one small document (an alias file, an
audit log) without losing an update: the write succeeds only if the object is still the version
the writer read (`expected` etag), or, with `expected=None`, only if it does not exist yet.
- S3: conditional writes (`If-Match` / `If-None-Match: *`), checked by S3 itself.
- Local: an exclusive `flock` on a lock file beside the object; inside it the current content's
  hash is compared with `expected` before the atomic rename. Readers never lock: a rename is
  atomic, so a reader sees the old document or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import io
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class PreconditionFailed(RuntimeError):
    """A conditional write lost: the object changed (or appeared) since the writer read it."""


class ObjectStore(Protocol):
    """Keys are '/'-separated paths relative to the store's root."""

    root: str

    def uri(self, key: str) -> str: ...
    def put(self, key: str, data: bytes) -> str: ...
    def get(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
    def get_versioned(self, key: str) -> tuple[bytes, str]: ...
    def put_if(self, key: str, data: bytes, expected: str | None) -> str: ...


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid storage key {key!r}")
    return key


@dataclass
class LocalStore:
    root: str
    _resolved: str | None = field(default=None, init=False, repr=False, compare=False)

    def _path(self, key: str) -> Path:
        return Path(self.root) / _check_key(key)

    def uri(self, key: str) -> str:
        # the root resolved once (a step asks for one URI per partition); keys hold no '.',
        # '..' or empty parts (`_check_key`), so joining them keeps the path normalized
        if self._resolved is None:
            self._resolved = str(Path(self.root).resolve())
        return os.path.join(self._resolved, *_check_key(key).split("/"))

    def put(self, key: str, data: bytes) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp")
        # O_EXCL: never someone else's file; mode 0o666: the kernel applies the process umask
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
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

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        data = self.get(key)
        return data, _etag(data)

    def put_if(self, key: str, data: bytes, expected: str | None) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.parent / f".{path.name}.lock"):
            try:
                current: str | None = _etag(path.read_bytes())
            except FileNotFoundError:
                current = None
            if current != expected:
                raise PreconditionFailed(
                    f"{path}: expected {'no object' if expected is None else 'version ' + expected[:12]}"
                    f", found {'no object' if current is None else 'version ' + current[:12]}")
            self.put(key, data)
        return _etag(data)

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


def _etag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def _locked(lock_path: Path):
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@dataclass
class S3Store:
    """`root` is 's3://bucket/prefix'; `client` is a boto3 S3 client (dagster-aws S3Resource).

    Every object is written with server-side encryption: `sse="AES256"` (SSE-S3, the default) or
    `sse="aws:kms"` with `kms_key_id` (SSE-KMS); `sse=None` sends no encryption header.
    """

    root: str
    client: Any
    sse: str | None = "AES256"
    kms_key_id: str | None = None
    _extra: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        bucket, prefix = split_s3_uri(self.root)
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._extra = encryption_args(self.sse, self.kms_key_id)

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def put(self, key: str, data: bytes) -> str:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **self._extra)
        return self.uri(key)

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"{self.uri(key)}: no such stored object") from None
        return obj["Body"].read(), obj["ETag"]

    def put_if(self, key: str, data: bytes, expected: str | None) -> str:
        condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected}
        try:
            out = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                         **condition, **self._extra)
        except Exception as exc:  # botocore ClientError
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            # 412 PreconditionFailed; 409 ConditionalRequestConflict (a racing write in flight)
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise PreconditionFailed(f"{self.uri(key)}: changed since it was read ({code})") from None
            raise
        return out["ETag"]

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


SSE_MODES = ("AES256", "aws:kms")


def encryption_args(sse: str | None, kms_key_id: str | None = None) -> dict[str, str]:
    """put_object arguments for server-side encryption."""
    if sse is None:
        return {}
    if sse not in SSE_MODES:
        raise ValueError(f"server-side encryption must be one of {list(SSE_MODES)} or none, found {sse!r}")
    if sse == "aws:kms":
        args = {"ServerSideEncryption": "aws:kms"}
        if kms_key_id:
            args["SSEKMSKeyId"] = kms_key_id
        return args
    return {"ServerSideEncryption": "AES256"}


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    rest = uri[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"s3 URI has no bucket: {uri!r}")
    return bucket, prefix


WRITERS = 8


def put_all(store: ObjectStore, items: list[tuple[str, bytes]], skip_existing: bool = False) -> None:
    """`store.put` each (key, bytes), skipping keys already stored when `skip_existing`. A
    backfill writes hundreds of files: up to WRITERS at once, so one file's fsync (local) or round
    trip (S3) overlaps the others'. Each write is atomic on its own; the first failure is raised
    after the other writes have finished."""

    def put(item: tuple[str, bytes]) -> None:
        key, data = item
        if not (skip_existing and store.exists(key)):
            store.put(key, data)

    if len(items) <= 1:
        for item in items:
            put(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(WRITERS, len(items))) as pool:
        futures = [pool.submit(put, item) for item in items]
    for future in futures:
        future.result()


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


def open_uri(uri: str, s3_client: Any = None, size: int | None = None) -> Any:
    """A seekable binary file over a local path (a pyarrow `OSFile`) or an s3:// object (an
    `S3RangeFile`). On S3 each read is a ranged GET, so a reader that needs a few parts of a large
    object (a Parquet footer and some row groups) transfers only those."""
    if uri.startswith("s3://"):
        if s3_client is None:
            raise ValueError(f"{uri}: an S3 client is needed to read this URI")
        return S3RangeFile(uri, s3_client, size)
    import pyarrow as pa

    try:
        return pa.OSFile(uri, "r")  # native reads: no Python call per read
    except FileNotFoundError:
        raise
    except OSError as exc:
        if not os.path.exists(uri):
            raise FileNotFoundError(f"{uri}: no such file") from exc
        raise


class S3RangeFile(io.RawIOBase):
    """A read-only, seekable view of one S3 object through ranged GETs."""

    def __init__(self, uri: str, client: Any, size: int | None = None):
        super().__init__()
        self.uri, self.client = uri, client
        self.bucket, self.key = split_s3_uri(uri)
        if size is None:
            try:
                size = int(client.head_object(Bucket=self.bucket, Key=self.key)["ContentLength"])
            except Exception as exc:  # botocore ClientError 404
                code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                if code in ("404", "NoSuchKey", "NotFound"):
                    raise FileNotFoundError(f"{uri}: no such object") from None
                raise
        self.size, self.pos = size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer) -> int:
        want = min(len(buffer), self.size - self.pos)
        if want <= 0:
            return 0
        rng = f"bytes={self.pos}-{self.pos + want - 1}"
        data = self.client.get_object(Bucket=self.bucket, Key=self.key, Range=rng)["Body"].read()
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)
