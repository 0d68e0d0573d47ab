"""Exact versions from the event log: which stored file each materialized partition wrote."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

URI = "dagster/uri"
CONTENT_HASH = "content_hash"


@dataclass(frozen=True)
class TableRef:
    partition: str
    uri: str
    content_hash: str
    rows: int
    data_version: str = ""


def _value(metadata, key, default=None):
    entry = metadata.get(key)
    return entry.value if entry is not None else default


def latest_versions(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partitions: list[str]
) -> dict[str, TableRef]:
    """The newest materialization of each partition, as recorded; missing ones are left out."""
    wanted = set(partitions)
    found: dict[str, TableRef] = {}
    cursor = None
    while wanted - set(found):
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=sorted(wanted - set(found))),
            limit=1000,
            cursor=cursor,
        )
        for record in result.records:
            mat = record.asset_materialization
            if mat is None or mat.partition in found or mat.partition not in wanted:
                continue
            uri = _value(mat.metadata, URI)
            if uri is None:
                continue
            found[mat.partition] = TableRef(
                partition=mat.partition,
                uri=str(uri),
                content_hash=str(_value(mat.metadata, CONTENT_HASH, "")),
                rows=int(_value(mat.metadata, "dagster/row_count", -1)),
                data_version=str((mat.tags or {}).get("dagster/data_version", "")),
            )
        if not result.has_more:
            break
        cursor = result.cursor
    return found
