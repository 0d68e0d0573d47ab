"""Lookup tables: one unpartitioned asset per table the config declares under `lookups`
(`<pipeline>/lookups/<name>`), upstream of features.

Each materialization reads the table (a built-in table or files), stores it as Parquet at
`<asset key>/<content hash>.parquet` and records that URI; its data version is the content hash,
so an unchanged file re-read gives the same version, and a changed one a new version upstream of
the features it touched. Features read exactly the URI the newest materialization recorded.
"""

import dagster as dg
import pandas as pd

from ml_assets.core.lookups import LookupError_, read_lookup
from ml_assets.core.storage import read_uri
from ml_assets.core.tables import column_schema, encode, from_parquet_bytes
from ml_assets.defs.lineage import CONTENT_HASH, DATA_VERSION, URI
from ml_assets.defs.names import LOOKUPS
from ml_assets.defs.resources import StorageResource
from ml_assets.defs.spec import PipelineSpec


def build(spec: PipelineSpec) -> list[dg.AssetsDefinition]:
    return [_lookup_asset(spec, name) for name in spec.cfg.lookups]


def _lookup_asset(spec: PipelineSpec, name: str) -> dg.AssetsDefinition:
    cfg, names = spec.cfg, spec.names
    declared = cfg.lookups[name]
    key = names.lookup(name)

    @dg.asset(
        key=key, group_name=LOOKUPS, kinds={"pandas", "parquet"}, owners=spec.owners,
        tags=spec.tags,
        description=(f"{cfg.name}: lookup table {name!r} from {declared.source}, joined by the "
                     "transforms; data version = content hash."),
    )
    def lookup_table(context: dg.AssetExecutionContext, storage: StorageResource
                     ) -> dg.MaterializeResult:
        client = storage.client_for(declared.uri) if declared.uri else None
        try:
            frame, files = read_lookup(name, declared, client)
        except LookupError_ as exc:
            raise dg.Failure(description=str(exc)) from exc
        parquet, digest = encode(frame)
        store = storage.tables()
        path = "/".join([*key.path, f"{digest[:32]}.parquet"])
        if not store.exists(path):
            store.put(path, parquet)
        context.log.info(f"lookup {name}: {len(frame)} rows from {declared.source}, "
                         f"version {digest[:12]}")
        return dg.MaterializeResult(
            metadata={
                URI: dg.MetadataValue.path(store.uri(path)),
                CONTENT_HASH: dg.MetadataValue.text(digest),
                "dagster/row_count": dg.MetadataValue.int(len(frame)),
                "source": dg.MetadataValue.text(declared.source),
                "files": dg.MetadataValue.text(", ".join(files)),
                "dagster/column_schema": dg.TableSchema(columns=[
                    dg.TableColumn(col, dtype) for col, dtype in column_schema(frame)]),
            },
            data_version=dg.DataVersion(digest[:32]),
        )

    return lookup_table


def load_lookups(context: dg.AssetExecutionContext, spec: PipelineSpec, storage: StorageResource
                 ) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Every declared lookup table, read from the URI its newest materialization recorded, and
    that materialization's data version (lookup name -> version)."""
    frames, versions = {}, {}
    for name in spec.cfg.lookups:
        key = spec.names.lookup(name)
        event = context.instance.get_latest_materialization_event(key)
        mat = event.asset_materialization if event is not None else None
        uri = mat.metadata.get(URI) if mat is not None else None
        if uri is None:
            raise dg.Failure(description=(
                f"lookup table {key.to_user_string()} has no materialization: materialize it "
                f"first (the {spec.names.pipeline_job} and {spec.names.daily_job} jobs do)"))
        frames[name] = from_parquet_bytes(read_uri(str(uri.value), storage.client_for(str(uri.value))))
        versions[name] = (mat.tags or {}).get(DATA_VERSION)
    return frames, versions
