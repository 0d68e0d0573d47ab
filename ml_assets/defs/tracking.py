"""The two MLflow hooks of the asset graph: log a training (model asset) and mirror the aliases
(model and production_model assets, and the `ml-assets models canary` command).

Tracking is on when MLFLOW_TRACKING_URI is set (read through `ml_assets.environment`, the one
place that reads the environment); without it these return at once and MLflow is never
imported. A tracking failure never fails a training or a promotion: the model store is the
source of truth, so the step logs a warning, records `mlflow_error` in the materialization's
metadata, and carries on. The next alias move brings MLflow's aliases back in step, because every
sync sets all of them from the store.
"""

from __future__ import annotations

from typing import Any

from ml_assets.core.registry import ModelStore, ModelVersion
from ml_assets.core.training import TrainedModel
from ml_assets.environment import EnvironmentError_, tracking_uri_from_env


def _uri(log) -> str | None:
    try:
        return tracking_uri_from_env()
    except EnvironmentError_ as exc:
        log.warning(f"MLflow tracking is off: {exc}")
        return None


def log_training(context, pipeline: str, version: ModelVersion, trained: TrainedModel,
                 lineage: dict[str, Any], models: ModelStore) -> dict[str, Any]:
    """Log the training in MLflow and mirror the aliases; metadata for the materialization."""
    uri = _uri(context.log)
    if uri is None:
        return {}
    try:
        from ml_assets.core.tracking import log_training as log_run
        from ml_assets.core.tracking import sync_aliases

        out = log_run(uri, pipeline, version, trained, lineage, context.run_id)
        sync_aliases(uri, pipeline, models.aliases(pipeline).aliases)
    except Exception as exc:
        context.log.warning(f"MLflow tracking failed; the model is registered in the model store "
                            f"all the same: {type(exc).__name__}: {exc}")
        return {"mlflow_error": f"{type(exc).__name__}: {exc}"[:500]}
    return {k: str(v) for k, v in out.items()}


def sync_aliases(pipeline: str, models: ModelStore, log) -> dict[str, str] | None:
    """Mirror the store's aliases as MLflow registered-model aliases (a warning on failure)."""
    uri = _uri(log)
    if uri is None:
        return None
    try:
        from ml_assets.core.tracking import sync_aliases as sync

        return sync(uri, pipeline, models.aliases(pipeline).aliases)
    except Exception as exc:
        log.warning(f"MLflow aliases not updated (the model store's aliases moved all the "
                    f"same): {type(exc).__name__}: {exc}")
        return None
