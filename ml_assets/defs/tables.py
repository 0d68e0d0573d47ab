"""Turning a run's tables into one Dagster output with per-partition version metadata."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from ml_assets.core.quality import Outcome
from ml_assets.core.tables import column_schema, combine_hashes, content_hash
from ml_assets.defs.io_manager import TableBatch, table_key
from ml_assets.defs.lineage import CONTENT_HASH, URI
from ml_assets.defs.resources import StorageResource


def partitions_of(context: dg.AssetExecutionContext) -> list[str]:
    return list(context.partition_keys)


def check_result(outcome: Outcome, asset_key: dg.AssetKey) -> dg.AssetCheckResult:
    metadata = {"observed": _meta(outcome.observed), "threshold": _meta(outcome.threshold)}
    metadata.update({k: _meta(v) for k, v in outcome.details.items()})
    return dg.AssetCheckResult(
        check_name=outcome.name, asset_key=asset_key, passed=bool(outcome.passed), metadata=metadata
    )


def _meta(value):
    if isinstance(value, bool):
        return dg.MetadataValue.bool(value)
    if isinstance(value, int):
        return dg.MetadataValue.int(value)
    if isinstance(value, float):
        return dg.MetadataValue.float(value)
    if isinstance(value, (list, tuple)):
        return dg.MetadataValue.text(", ".join(map(str, value)))
    return dg.MetadataValue.text(str(value))


def table_schema(frame: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, dtype) for name, dtype in column_schema(frame)])


def table_output(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    frames: dict[str, pd.DataFrame],
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
    """
    store = storage.tables()
    hashes = {}
    for key, frame in frames.items():
        h = content_hash(frame)
        hashes[key] = h
        entry = {
            URI: dg.MetadataValue.path(store.uri(table_key(asset_key, key, h))),
            CONTENT_HASH: dg.MetadataValue.text(h),
            "dagster/row_count": dg.MetadataValue.int(len(frame)),
        }
        for name, value in (partition_metadata or {}).get(key, {}).items():
            entry[name] = _meta(value)
        context.add_asset_metadata(entry, asset_key=asset_key, partition_key=key)
    version = next(iter(hashes.values())) if len(hashes) == 1 else combine_hashes(hashes)
    sample = next((f for f in frames.values() if len(f.columns)), pd.DataFrame())
    out_meta = {
        "dagster/column_schema": table_schema(sample),
        "partitions_in_run": dg.MetadataValue.int(len(frames)),
        "rows_in_run": dg.MetadataValue.int(sum(len(f) for f in frames.values())),
    }
    out_meta.update({k: _meta(v) for k, v in (metadata or {}).items()})
    return dg.Output(
        TableBatch(frames=frames, hashes=hashes),
        output_name=output_name,
        data_version=dg.DataVersion(version[:32]),
        metadata=out_meta,
    )
