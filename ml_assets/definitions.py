"""The `ml_assets` code location: one asset graph per pipeline config.

Nothing happens at import time: `defs` is built when Dagster loads the code location.
"""


from collections.abc import Sequence

import dagster as dg

from ml_assets.config import PipelineConfig, load_configs
from ml_assets.defs.executors import executor_from_env
from ml_assets.defs.io_manager import TableIOManager
from ml_assets.defs.pipeline import build_pipeline
from ml_assets.defs.resources import AlertsResource, StorageResource
from ml_assets.environment import Settings, settings_from_env


def storage_for(settings: Settings) -> StorageResource:
    return StorageResource(
        tables_root=settings.tables_root,
        models_root=settings.models_root,
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_region=settings.s3_region,
        s3_sse=settings.s3_sse,
        s3_kms_key_id=settings.s3_kms_key_id,
    )


def alerts_for(settings: Settings) -> AlertsResource:
    # the URL is a secret: passed as an EnvVar reference, so the UI never shows its value
    url = dg.EnvVar("ALERT_WEBHOOK_URL") if settings.alert_webhook_url else None
    return AlertsResource(webhook_url=url)


def build_definitions(
    configs: Sequence[PipelineConfig], storage: StorageResource | None = None,
    alerts: AlertsResource | None = None,
) -> dg.Definitions:
    if storage is None or alerts is None:
        settings = settings_from_env()
        storage = storage or storage_for(settings)
        alerts = alerts or alerts_for(settings)
    assets, checks, jobs, sensors, schedules = [], [], [], [], []
    for cfg in configs:
        built = build_pipeline(cfg)
        assets += built.assets
        checks += built.checks
        jobs += built.jobs
        sensors += built.sensors
        schedules += built.schedules
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        sensors=sensors,
        schedules=schedules,
        executor=executor_from_env(),
        resources={"storage": storage, "alerts": alerts,
                   "table_io_manager": TableIOManager(storage=storage)},
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_configs())
