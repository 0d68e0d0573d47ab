"""Table identity: content hashes, column schemas, Parquet bytes."""

from __future__ import annotations

import hashlib
import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def content_hash(df: pd.DataFrame) -> str:
    """A hash of the table's content: column names, dtypes and values, row order included.

    Independent of Parquet writer metadata, so the same table always hashes the same.
    """
    h = hashlib.sha256()
    for name, dtype in df.dtypes.items():
        h.update(f"{name}\x1f{dtype}\x1e".encode())
    if len(df):
        values = pd.util.hash_pandas_object(df, index=False, categorize=True).to_numpy()
        h.update(values.tobytes())
    h.update(f"rows={len(df)}".encode())
    return h.hexdigest()


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


def from_parquet_bytes(data: bytes) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(data)).to_pandas()
