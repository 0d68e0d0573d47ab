"""Served predictions: what the real-time API answered, one table per UTC day.

The API (`ml_assets.serving`) appends sampled predictions as immutable chunk files; this asset
collects a day's chunks into that day's table through the table IO manager (content-addressed,
with URI, row count and content hash), so monitoring reads what production actually saw. It is
not part of the pipeline job: materialize a day once it is over (the UI, or a schedule);
re-materializing a day picks up chunks written since, as a new version of the table.
"""


import dagster as dg

from ml_assets.core.served import collect
from ml_assets.defs.io_manager import TableBatch
from ml_assets.defs.resources import StorageResource
from ml_assets.defs.spec import TABLE_IO, PipelineSpec
from ml_assets.defs.tables import partitions_of, table_output


def build(spec: PipelineSpec) -> list[dg.AssetsDefinition]:
    cfg, names = spec.cfg, spec.names
    prefix = "/".join(names.served_predictions.path)

    @dg.asset(
        key=names.served_predictions, partitions_def=spec.daily,
        backfill_policy=spec.backfill_policy, io_manager_key=TABLE_IO, group_name="serving",
        kinds={"pandas", "parquet"}, owners=spec.owners, tags=spec.tags,
        description=(f"{cfg.name}: every prediction the real-time API served (sampled at "
                     f"serving.sample_rate = {cfg.serving.sample_rate}) on a UTC day: time, "
                     "request id and key, the model id, version and role (production or "
                     "canary) that answered, the keys, the features as received and the "
                     "prediction. Collected from the API's chunk files."),
    )
    def served_predictions(context: dg.AssetExecutionContext, storage: StorageResource):
        store = storage.tables()
        batch = TableBatch()
        per_partition: dict[str, dict] = {}
        for day in partitions_of(context):
            frame, chunks = collect(store, prefix, day, cfg)
            batch.add(day, frame)
            versions = sorted(frame["model_version"].dropna().unique().tolist())
            per_partition[day] = {
                "chunks": chunks,
                "model_versions": ", ".join(versions) or "none",
                "canary_rows": int((frame["role"] == "canary").sum()),
            }
        yield table_output(context, storage, batch, names.served_predictions,
                           partition_metadata=per_partition,
                           metadata={"chunks_read": sum(p["chunks"] for p in per_partition.values())})

    return [served_predictions]
