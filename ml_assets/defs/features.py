"""Features: the configured transforms, the feature columns and the label, with the leakage
guard. The transforms receive the pipeline's lookup tables (assets upstream of features)."""


import dagster as dg

from ml_assets.core import quality
from ml_assets.core.features import TransformError, build_features_days, one_line
from ml_assets.core.lookups import lookups_in_use
from ml_assets.defs.io_manager import TableBatch
from ml_assets.defs.lineage import LOOKUP_VERSIONS
from ml_assets.defs.lookups import load_lookups
from ml_assets.defs.resources import StorageResource
from ml_assets.defs.spec import TABLE_IO, PipelineSpec
from ml_assets.defs.tables import check_result, partitions_of, table_output


def failure_line(exc: Exception, day: str, step: str) -> str:
    """One line naming the transform (or the step), the partition, the exception type and
    message."""
    if isinstance(exc, TransformError):
        return (f"transform {exc.path} failed on partition {day}: {exc.exc_type}: "
                f"{exc.exc_message}")
    text = exc.args[0] if isinstance(exc, KeyError) and len(exc.args) == 1 else exc
    return f"{step} failed on partition {day}: {type(exc).__name__}: {one_line(str(text))}"


def build(spec: PipelineSpec) -> list[dg.AssetsDefinition]:
    cfg, names = spec.cfg, spec.names

    @dg.asset(
        key=names.features, partitions_def=spec.daily, backfill_policy=spec.backfill_policy,
        io_manager_key=TABLE_IO, ins={"processed": dg.AssetIn(key=names.processed)},
        deps=[names.lookup(name) for name in cfg.lookups],
        group_name="features", kinds={"pandas", "parquet"}, owners=spec.owners, tags=spec.tags,
        description=(f"{cfg.name}: keys, features {cfg.feature_columns} and the label; transforms "
                     f"{cfg.features.transforms}"
                     + (f"; lookup tables {sorted(cfg.lookups)}." if cfg.lookups else ".")),
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
        days = ((day, processed[day]) for day in partitions_of(context))  # read lazily

        def fail(day: str, exc: Exception) -> dg.Failure:
            # one line for the summary and the run's failure; the stack trace stays in the
            # run's logs through the cause
            return dg.Failure(description=failure_line(exc, day, "features"))

        tables, versions = load_lookups(context, spec, storage)
        with lookups_in_use(tables):
            # several days a call when the transforms are row-wise (core.batches bounds the rows)
            for day, frame in build_features_days(days, cfg, on_error=fail):
                batch.add(day, frame)
                for check in checks:
                    check.update(day, frame)
        # each partition records the lookup versions it was built from (the model's lineage)
        yield table_output(context, storage, batch, names.features, metadata=(
            {LOOKUP_VERSIONS: dg.MetadataValue.json(versions)} if versions else None))
        for check in checks:
            yield check_result(check.result(), names.features)

    return [features]
