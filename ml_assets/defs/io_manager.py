"""The table IO manager: Parquet on a local path or S3, content-addressed and atomic.

Each partition is written to `<asset key>/<partition>/<content hash>.parquet`. A changed day gets a
new file; the previous version stays readable at the URI its materialization recorded. Inputs are
read from the exact URI that the upstream partition's newest materialization recorded in the
event log, never from "the newest file on disk".

Assets hand this IO manager a `TableBatch` (one DataFrame per partition, with content hashes
computed by `table_output`), so a single-run backfill of many partitions writes one file each.
"""


from dataclasses import dataclass

import dagster as dg
import pandas as pd

from ml_assets.core.storage import read_uri
from ml_assets.core.tables import from_parquet_bytes, to_parquet_bytes
from ml_assets.defs.lineage import latest_versions
from ml_assets.defs.resources import StorageResource


@dataclass
class TableBatch:
    """Tables by partition key, with each table's content hash."""

    frames: dict[str, pd.DataFrame]
    hashes: dict[str, str]


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
        for partition, frame in obj.frames.items():
            key = table_key(context.asset_key, partition, obj.hashes[partition])
            if not store.exists(key):
                store.put(key, to_parquet_bytes(frame))

    def load_input(self, context: dg.InputContext) -> dict[str, pd.DataFrame]:
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
        client = self.storage.s3_client() if any(r.uri.startswith("s3://") for r in refs.values()) else None
        return {p: from_parquet_bytes(read_uri(refs[p].uri, client)) for p in partitions}
