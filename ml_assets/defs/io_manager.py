"""The table IO manager: Parquet on a local path or S3, content-addressed and atomic.

Each partition is written to `<asset key>/<partition>/<content hash>.parquet`. A changed day gets a
new file; the previous version stays readable at the URI its materialization recorded. Inputs are
read from the exact URI that the upstream partition's newest materialization recorded in the
event log, never from "the newest file on disk".

Assets hand this IO manager a `TableBatch`: each partition already hashed and encoded as Parquet
bytes when the asset produced it, so a single-run backfill of many partitions holds compressed
bytes, not every DataFrame, until the files are written (one file per partition).
"""


from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

from ml_assets.core.storage import put_all, read_uri
from ml_assets.core.tables import column_schema, encode, from_parquet_bytes
from ml_assets.defs.lineage import latest_versions
from ml_assets.defs.resources import StorageResource


@dataclass(frozen=True)
class EncodedTable:
    content_hash: str
    parquet: bytes
    rows: int
    schema: list[tuple[str, str]]


class TableBatch:
    """Tables by partition key, each kept as its content hash and Parquet bytes."""

    def __init__(self) -> None:
        self.parts: dict[str, EncodedTable] = {}

    def add(self, partition: str, frame: pd.DataFrame) -> EncodedTable:
        parquet, digest = encode(frame)  # the hash is of the bytes written
        part = EncodedTable(digest, parquet, len(frame), column_schema(frame))
        self.parts[partition] = part
        return part

    @property
    def hashes(self) -> dict[str, str]:
        return {k: p.content_hash for k, p in self.parts.items()}

    def frame(self, partition: str) -> pd.DataFrame:
        return from_parquet_bytes(self.parts[partition].parquet)


def table_key(asset_key: dg.AssetKey, partition: str, content_hash: str) -> str:
    return "/".join([*asset_key.path, partition, f"{content_hash[:32]}.parquet"])


class TableIOManager(dg.ConfigurableIOManager):
    """Stores each partition of a table asset as one Parquet file (see module docstring)."""

    storage: dg.ResourceDependency[StorageResource]

    def handle_output(self, context: dg.OutputContext, obj: TableBatch) -> None:
        if not isinstance(obj, TableBatch):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: the table IO manager stores TableBatch "
                f"values, got {type(obj).__name__}"
            )
        store = self.storage.tables()
        items = [(table_key(context.asset_key, partition, part.content_hash), part.parquet)
                 for partition, part in obj.parts.items()]
        put_all(store, items, skip_existing=True)  # content-addressed: an existing key holds these bytes

    def load_input(self, context: dg.InputContext) -> "LazyTables":
        asset_key = context.asset_key
        partitions = list(context.asset_partition_keys) if context.has_asset_partitions else []
        if not partitions:
            raise dg.Failure(f"{asset_key.to_user_string()}: only partitioned tables are supported")
        refs = latest_versions(context.instance, asset_key, partitions)
        missing = [p for p in partitions if p not in refs]
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise dg.Failure(
                f"{asset_key.to_user_string()} has no materialization for partition(s) {shown}; "
                "materialize them first (or backfill the range)."
            )
        client = self.storage.client_for(*(r.uri for r in refs.values()))
        return LazyTables({p: refs[p].uri for p in partitions}, client)


class LazyTables(Mapping[str, pd.DataFrame]):
    """Partition key -> table, each read from its recorded URI when asked for and not kept,
    so a step over many partitions holds one input partition in memory at a time."""

    def __init__(self, uris: dict[str, str], s3_client: Any = None):
        self.uris = uris
        self._client = s3_client

    def __getitem__(self, partition: str) -> pd.DataFrame:
        return from_parquet_bytes(read_uri(self.uris[partition], self._client))

    def __iter__(self) -> Iterator[str]:
        return iter(self.uris)

    def __len__(self) -> int:
        return len(self.uris)
