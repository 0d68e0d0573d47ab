"""Exact versions from the event log: which stored file each materialized partition wrote."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import dagster as dg

URI = "dagster/uri"
CONTENT_HASH = "content_hash"
DATA_VERSION = "dagster/data_version"
#: Features metadata: lookup name -> the data version of the lookup table it was built from.
LOOKUP_VERSIONS = "lookup_versions"
#: The tag Dagster puts on a materialization per upstream asset: `<prefix><asset key>`.
INPUT_DATA_VERSION = "dagster/input_data_version/"


@dataclass(frozen=True)
class TableRef:
    partition: str
    uri: str
    content_hash: str
    rows: int
    data_version: str = ""
    #: lookup name -> version, as the partition recorded it (LOOKUP_VERSIONS)
    lookup_versions: Mapping[str, str] = field(default_factory=dict)
    #: upstream asset key (user string) -> its data version, as Dagster tagged the partition
    input_versions: Mapping[str, str] = field(default_factory=dict)


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
                data_version=str((mat.tags or {}).get(DATA_VERSION, "")),
                lookup_versions=dict(_value(mat.metadata, LOOKUP_VERSIONS, None) or {}),
                input_versions={tag[len(INPUT_DATA_VERSION):]: str(value)
                                for tag, value in (mat.tags or {}).items()
                                if tag.startswith(INPUT_DATA_VERSION)},
            )
        if not result.has_more:
            break
        cursor = result.cursor
    return found


def lookup_versions_by_day(refs: Mapping[str, TableRef], lookups: Mapping[str, dg.AssetKey]
                           ) -> dict[str, dict[str, str]]:
    """Day -> {lookup name: version} the features partitions were built from: what the
    partition recorded (LOOKUP_VERSIONS), else the input data version Dagster tagged it with
    (features materialized before they recorded it); a lookup with neither is left out."""
    out: dict[str, dict[str, str]] = {}
    for day, ref in refs.items():
        out[day] = {}
        for name, key in lookups.items():
            version = ref.lookup_versions.get(name) or ref.input_versions.get(key.to_user_string())
            if version:
                out[day][name] = version
    return out


def current_version(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> str | None:
    """The data version of an unpartitioned asset's newest materialization (None: none)."""
    event = instance.get_latest_materialization_event(asset_key)
    mat = event.asset_materialization if event is not None else None
    return (mat.tags or {}).get(DATA_VERSION) if mat is not None else None
