"""The `ml_assets` code location: one asset graph per pipeline config.

Nothing happens at import time: `defs` is built when Dagster loads the code location.
"""


from collections.abc import Sequence

import dagster as dg

from ml_assets.config import PipelineConfig, load_configs
from ml_assets.defs.executors import executor_from_env
from ml_assets.defs.io_manager import TableIOManager
from ml_assets.defs.pipeline import build_pipeline
from ml_assets.defs.resources import StorageResource
from ml_assets.environment import Settings, settings_from_env


def storage_for(settings: Settings) -> StorageResource:
    return StorageResource(
        tables_root=settings.tables_root,
        models_root=settings.models_root,
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_region=settings.s3_region,
    )


def build_definitions(
    configs: Sequence[PipelineConfig], storage: StorageResource | None = None
) -> dg.Definitions:
    storage = storage or storage_for(settings_from_env())
    assets, checks, jobs = [], [], []
    for cfg in configs:
        built = build_pipeline(cfg)
        assets += built["assets"]
        checks += built["checks"]
        jobs += built["jobs"]
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        executor=executor_from_env(),
        resources={"storage": storage, "table_io_manager": TableIOManager(storage=storage)},
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_configs())
