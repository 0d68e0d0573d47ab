"""Predictions: each day's feature rows scored by exactly the model that `production_model`'s
newest materialization recorded; every row carries that model's id and semantic version. Scoring
is a pure, row-wise function of (model, feature rows), so a backfill scores many days per call
(`core.batches`) with the same result as day by day."""


import dagster as dg

from ml_assets.core import quality
from ml_assets.core.batches import in_batches
from ml_assets.core.features import key_columns
from ml_assets.core.scoring import score
from ml_assets.defs.io_manager import TableBatch
from ml_assets.defs.lifecycle import load, production_version
from ml_assets.defs.resources import StorageResource
from ml_assets.defs.spec import TABLE_IO, PipelineSpec
from ml_assets.defs.tables import check_result, partitions_of, table_output


def build(spec: PipelineSpec) -> list[dg.AssetsDefinition]:
    cfg, names = spec.cfg, spec.names
    sanity = {
        "one_prediction_per_row": (True, "As many predictions as feature rows (blocking)."),
        "no_missing_predictions": (True, "No NaN prediction (blocking)."),
    }
    if cfg.target.task == "binary":
        sanity["probabilities_in_unit_interval"] = (True, "Every probability in [0, 1] (blocking).")

    @dg.asset(
        key=names.predictions, partitions_def=spec.daily, backfill_policy=spec.backfill_policy,
        io_manager_key=TABLE_IO, ins={"features": dg.AssetIn(key=names.features)},
        deps=[names.production_model], group_name="predictions", kinds={"pandas", "parquet"},
        owners=spec.owners, tags=spec.tags,
        description=(f"{cfg.name}: each day's feature rows scored by the production model that "
                     "production_model recorded; its id and version are on every row."),
        check_specs=spec.check_specs(names.predictions, sanity),
    )
    def predictions(context: dg.AssetExecutionContext, storage: StorageResource, features):
        models = storage.models()
        version = production_version(context.instance, spec, models)
        loaded = load(models, version)
        keys = key_columns(cfg)
        batch = TableBatch()
        checks = quality.predictions_check(cfg.target.task)
        rows: dict[str, int] = {}

        def days():  # read lazily; counts each day's feature rows for the checks
            for day in partitions_of(context):
                frame = features[day]
                rows[day] = len(frame)
                yield day, frame

        # scoring is row-wise: many days a call, at most core.batches.BATCH_ROWS rows at once
        for day, scored in in_batches(days(), lambda frame: score(loaded, frame, keys)):
            batch.add(day, scored)
            checks.update(day, rows[day], scored)
        yield table_output(context, storage, batch, names.predictions,
                           metadata={"model_id": version.model_id,
                                     "model_version": version.version,
                                     "model_created_at": version.created_at})
        for outcome in checks.result():
            yield check_result(outcome, names.predictions)

    return [predictions]
