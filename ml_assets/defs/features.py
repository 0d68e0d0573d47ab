"""Features: the configured transforms, the feature columns and the label, with the leakage
guard."""


import dagster as dg

from ml_assets.core import quality
from ml_assets.core.features import build_features
from ml_assets.defs.io_manager import TableBatch
from ml_assets.defs.resources import StorageResource
from ml_assets.defs.spec import TABLE_IO, PipelineSpec
from ml_assets.defs.tables import check_result, partitions_of, table_output


def build(spec: PipelineSpec) -> list[dg.AssetsDefinition]:
    cfg, names = spec.cfg, spec.names

    @dg.asset(
        key=names.features, partitions_def=spec.daily, backfill_policy=spec.backfill_policy,
        io_manager_key=TABLE_IO, ins={"processed": dg.AssetIn(key=names.processed)},
        group_name="features", kinds={"pandas", "parquet"}, owners=spec.owners, tags=spec.tags,
        description=(f"{cfg.name}: keys, features {cfg.feature_columns} and the label; transforms "
                     f"{cfg.features.transforms}."),
        check_specs=spec.check_specs(names.features, {
            "no_leakage": (True, "No forbidden (post-prediction-time) column is a feature (blocking)."),
            "feature_columns": (True, "Every configured feature and the label present (blocking)."),
            "feature_null_rate": (False, "Null rate per feature <= checks.max_null_rate (warn)."),
        }),
    )
    def features(context: dg.AssetExecutionContext, storage: StorageResource, processed):
        batch = TableBatch()
        checks = [quality.leakage_check(cfg), quality.feature_columns_check(cfg),
                  quality.null_rate_check(cfg.feature_columns, cfg.checks.max_null_rate,
                                          name="feature_null_rate")]
        for day in partitions_of(context):  # one day in memory at a time
            try:
                frame = build_features(processed[day], cfg)
            except ValueError as exc:
                raise dg.Failure(description=str(exc)) from None
            batch.add(day, frame)
            for check in checks:
                check.update(day, frame)
        yield table_output(context, storage, batch, names.features)
        for check in checks:
            yield check_result(check.result(), names.features)

    return [features]
