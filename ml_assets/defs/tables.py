"""Turning a run's tables into one Dagster output with per-partition version metadata."""

from __future__ import annotations

import dagster as dg

from ml_assets.core.quality import Outcome
from ml_assets.core.tables import combine_hashes
from ml_assets.defs.io_manager import TableBatch, table_key
from ml_assets.defs.lineage import CONTENT_HASH, URI
from ml_assets.defs.resources import StorageResource


def partitions_of(context: dg.AssetExecutionContext) -> list[str]:
    return list(context.partition_keys)


def check_result(outcome: Outcome, asset_key: dg.AssetKey) -> dg.AssetCheckResult:
    metadata = {"observed": metadata_value(outcome.observed), "threshold": metadata_value(outcome.threshold)}
    metadata.update({k: metadata_value(v) for k, v in outcome.details.items()})
    return dg.AssetCheckResult(
        check_name=outcome.name, asset_key=asset_key, passed=bool(outcome.passed), metadata=metadata
    )


def metadata_value(value) -> dg.MetadataValue:
    """A Python value as typed Dagster metadata (numbers stay numbers, so the UI can plot them)."""
    if isinstance(value, dg.MetadataValue):
        return value
    if isinstance(value, bool):
        return dg.MetadataValue.bool(value)
    if isinstance(value, int):
        return dg.MetadataValue.int(value)
    if isinstance(value, float):
        return dg.MetadataValue.float(value)
    if isinstance(value, (list, tuple)):
        return dg.MetadataValue.text(", ".join(map(str, value)))
    return dg.MetadataValue.text(str(value))


def table_output(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    batch: TableBatch,
    asset_key: dg.AssetKey,
    output_name: str = "result",
    metadata: dict | None = None,
    partition_metadata: dict[str, dict] | None = None,
) -> dg.Output:
    """An Output carrying a TableBatch, with URI, row count and content hash per partition.

    A one-partition run's DataVersion is that partition's content hash, so re-ingesting an
    unchanged day yields the same version. A multi-partition run (single-run backfill) can carry
    only one DataVersion, so it is the hash of the partitions' hashes; each partition's own hash
    is always in its `content_hash` metadata.

    Every partition's materialization event carries what a user needs about that partition: URI,
    content hash, row count and the caller's `partition_metadata` and `metadata` (small values).
    The column schema (2-4 KB serialized, most of an event) is on the run's last two partitions,
    which is what Dagster's schema-change check compares (the latest two materializations), and
    on any partition whose columns differ from the partition before it in the run, so a day with
    a changed schema shows it. The run's counts (`partitions_in_run`, `rows_in_run`) are on its
    last partition, the asset's latest materialization.
    """
    store = storage.tables()
    parts = list(batch.parts.items())
    last_two = {key for key, _ in parts[-2:]}
    run_level = {"partitions_in_run": len(parts), "rows_in_run": sum(p.rows for _, p in parts)}
    common = {k: metadata_value(v) for k, v in (metadata or {}).items()}
    last = parts[-1][0] if parts else None
    previous = None
    for key, part in parts:
        entry = {
            URI: dg.MetadataValue.path(store.uri(table_key(asset_key, key, part.content_hash))),
            CONTENT_HASH: dg.MetadataValue.text(part.content_hash),
            "dagster/row_count": dg.MetadataValue.int(part.rows),
            **common,
        }
        if key in last_two or (previous is not None and part.schema != previous):
            entry["dagster/column_schema"] = dg.TableSchema(
                columns=[dg.TableColumn(name, dtype) for name, dtype in part.schema])
        if key == last:
            entry.update({k: metadata_value(v) for k, v in run_level.items()})
        for name, value in (partition_metadata or {}).get(key, {}).items():
            entry[name] = metadata_value(value)
        context.add_asset_metadata(entry, asset_key=asset_key, partition_key=key)
        previous = part.schema
    hashes = batch.hashes
    version = next(iter(hashes.values())) if len(hashes) == 1 else combine_hashes(hashes)
    return dg.Output(batch, output_name=output_name, data_version=dg.DataVersion(version[:32]))
