"""Table identity: content hashes, column schemas, Parquet bytes."""

from __future__ import annotations

import hashlib
import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def content_hash(df: pd.DataFrame) -> str:
    """A hash of the table's content: column names, dtypes and values, row order included.

    It is the SHA-256 of the table's canonical Parquet encoding (`to_parquet_bytes`: no index,
    zstd), which is deterministic for a given table and library versions, so the bytes a step
    writes are hashed as they are (`encode`) instead of hashing the frame a second time. The
    encoding carries the pandas dtypes in its schema, so a changed dtype changes the hash. An
    upgrade of pyarrow or pandas may change the encoding, and with it every hash once.
    """
    return encode(df)[1]


def encode(df: pd.DataFrame) -> tuple[bytes, str]:
    """The table's canonical Parquet bytes and their content hash."""
    data = to_parquet_bytes(df)
    return data, bytes_hash(data)


def bytes_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def combine_hashes(hashes: dict[str, str]) -> str:
    """One hash for several partitions' hashes (order-independent by key)."""
    h = hashlib.sha256()
    for key in sorted(hashes):
        h.update(f"{key}={hashes[key]};".encode())
    return h.hexdigest()


def column_schema(df: pd.DataFrame) -> list[tuple[str, str]]:
    return [(str(name), str(dtype)) for name, dtype in df.dtypes.items()]


def to_parquet_bytes(df: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(df, preserve_index=False)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


THREADED_READ_BYTES = 4 << 20


def from_parquet_bytes(data: bytes) -> pd.DataFrame:
    # ParquetFile reads the one file directly; pq.read_table goes through the datasets layer,
    # which costs about 3 ms more per small file (a step reads one per partition). A small file
    # is decoded on this thread: handing it to Arrow's thread pool costs more than it saves.
    threads = len(data) > THREADED_READ_BYTES
    table = pq.ParquetFile(pa.BufferReader(data)).read(use_threads=threads)
    return table.to_pandas(use_threads=threads)
