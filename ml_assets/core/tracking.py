"""Experiment tracking in MLflow: each training as an MLflow run, each registered model as an
MLflow model version, and the model store's aliases mirrored as MLflow registered-model aliases.

The model store stays the source of truth (it decides versions and aliases, with compare-and-swap
and an audit log); MLflow is a mirror that lets people compare runs in the MLflow UI and serve a
model with MLflow's own tools (`mlflow models serve -m models:/flights@production`).

What one training records:
- run name = the semantic version; tags `ml_assets.model_id`, `ml_assets.semantic_version`,
  `ml_assets.dagster_run_id`, `ml_assets.as_of`, `ml_assets.gate_passed`, the git commit;
- params = the LightGBM params as trained (seed included); metrics = the validation metrics;
- dataset inputs = every feature partition trained on (context `training`) or validated on
  (`validation`): name `<pipeline>/features/<day>`, source = its URI, digest = its content hash
  (first 32 hex characters; MLflow's column is 36 wide), the full hash and the Dagster data
  version as input tags;
- the model with `mlflow.lightgbm` (LightGBM's native format), plus `ml_assets/model.txt` (the
  exact bytes of the store's model file), `ml_assets/manifest.json` and
  `ml_assets/categorical_levels.json` (the codes MLflow's tensor input uses for categoricals);
- a model version of the registered model named like the pipeline, tagged with the model id and
  semantic version (one MLflow version per model id: retraining to the same bytes reuses it).

Only imported when a tracking URI is configured; nothing here runs otherwise.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

from ml_assets.core.registry import ALIASES, ModelVersion
from ml_assets.core.training import TrainedModel

TAG_PREFIX = "ml_assets."
MODEL_ID_TAG = f"{TAG_PREFIX}model_id"
VERSION_TAG = f"{TAG_PREFIX}semantic_version"
DIGEST_CHARS = 32


def artifact_root(tracking_uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside a SQLite database file, else the
    tracking server's default (None)."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri[len("sqlite:///"):])
        return (path.parent / "artifacts").resolve().as_uri()
    return None


def _client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _experiment_id(client, name: str, tracking_uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_root(tracking_uri))
    except Exception:  # created meanwhile by a concurrent training
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _version_of(client, name: str, model_id: str):
    found = client.search_model_versions(f"name='{name}' and tags.`{MODEL_ID_TAG}`='{model_id}'")
    return min(found, key=lambda mv: int(mv.version)) if found else None


def log_training(tracking_uri: str, pipeline: str, version: ModelVersion, trained: TrainedModel,
                 lineage: dict[str, Any], dagster_run_id: str | None) -> dict[str, Any]:
    """Log one training as an MLflow run and register its model. Returns the MLflow ids."""
    import lightgbm as lgb
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    client = _client(tracking_uri)
    experiment_id = _experiment_id(client, pipeline, tracking_uri)
    manifest = version.sidecar.get("manifest") or {}
    git = manifest.get("git") or {}
    tags = {
        MODEL_ID_TAG: version.model_id,
        VERSION_TAG: version.version,
        f"{TAG_PREFIX}pipeline": pipeline,
        f"{TAG_PREFIX}dagster_run_id": dagster_run_id or "",
        f"{TAG_PREFIX}as_of": str(lineage.get("as_of", "")),
        f"{TAG_PREFIX}gate_passed": str(version.gate_passed).lower(),
        f"{TAG_PREFIX}config_sha256": str(manifest.get("config_sha256", "")),
        f"{TAG_PREFIX}lock_sha256": str(manifest.get("lock_sha256", "")),
    }
    if git:
        tags["mlflow.source.git.commit"] = git.get("commit", "")
        tags[f"{TAG_PREFIX}git_dirty"] = str(bool(git.get("dirty"))).lower()
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(experiment_id=experiment_id, run_name=version.version, tags=tags) as run:
        mlflow.log_params({k: _param(v) for k, v in sorted(trained.params.items())})
        mlflow.log_metrics({k: float(v) for k, v in trained.metrics.items()
                            if v is not None and math.isfinite(float(v))})
        mlflow.log_metrics({"train_rows": trained.train_rows,
                            "validation_rows": trained.validation_rows})
        datasets, contexts, input_tags = [], [], []
        validation = set(trained.validation_days)
        for day, ref in sorted((lineage.get("features") or {}).items()):
            with warnings.catch_warnings():  # "can be interpreted in multiple ways": it is a file
                warnings.filterwarnings("ignore", message="The specified dataset source")
                source = resolve_dataset_source(ref["uri"])
            datasets.append(MetaDataset(source=source,
                                        name=f"{pipeline}/features/{day}",
                                        digest=str(ref.get("content_hash", ""))[:DIGEST_CHARS]))
            contexts.append("validation" if day in validation else "training")
            input_tags.append({"partition": day, "content_hash": str(ref.get("content_hash", "")),
                               "dagster_data_version": str(ref.get("data_version", "")),
                               "uri": ref["uri"]})
        if datasets:
            mlflow.log_inputs(datasets=datasets, contexts=contexts, tags_list=input_tags)
        mlflow.log_text(trained.model_text, "ml_assets/model.txt")
        mlflow.log_dict(manifest, "ml_assets/manifest.json")
        if lineage.get("lookups"):  # which version of each lookup table the window was built from
            mlflow.log_dict(lineage["lookups"], "ml_assets/lookups.json")
        mlflow.log_dict({"numeric": trained.numeric, "categorical": trained.categorical,
                         "input_order": [*trained.numeric, *trained.categorical],
                         "encoding": "categorical value -> its index in the list; unknown or "
                                     "missing -> NaN"}, "ml_assets/categorical_levels.json")
        booster = lgb.Booster(model_str=trained.model_text)
        info = mlflow.lightgbm.log_model(
            booster, name="model", signature=_signature(len(trained.feature_names)),
            pip_requirements=[f"lightgbm=={lgb.__version__}"],
            tags={MODEL_ID_TAG: version.model_id, VERSION_TAG: version.version})
    registered = register(client, pipeline, version, info.model_uri, run.info.run_id)
    return {"mlflow_run_id": run.info.run_id, "mlflow_experiment_id": experiment_id,
            "mlflow_model_version": registered, "mlflow_model_uri": info.model_uri}


def register(client, pipeline: str, version: ModelVersion, model_uri: str, run_id: str) -> str:
    """The MLflow version of `version` under the registered model `pipeline` (created once)."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(pipeline)
    except MlflowException:
        with contextlib.suppress(MlflowException):  # unless created meanwhile
            client.create_registered_model(
                pipeline, description=f"ml_assets pipeline {pipeline!r}; versions mirror the "
                "model store (tag ml_assets.semantic_version), aliases follow its aliases")
    existing = _version_of(client, pipeline, version.model_id)
    if existing is not None:
        return existing.version
    mv = client.create_model_version(pipeline, model_uri, run_id=run_id, tags={
        MODEL_ID_TAG: version.model_id, VERSION_TAG: version.version,
        f"{TAG_PREFIX}gate_passed": str(version.gate_passed).lower()},
        description=f"{version.label}: {version.gate_summary()}")
    for _ in range(50):  # registration is asynchronous on some stores
        if client.get_model_version(pipeline, mv.version).status == "READY":
            break
        time.sleep(0.1)
    return mv.version


def sync_aliases(tracking_uri: str, pipeline: str, aliases: dict[str, dict]) -> dict[str, str]:
    """Make the registered model's aliases match the store's. Returns alias -> MLflow version
    set (or `unregistered` for a model logged before tracking was turned on)."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        current = dict(client.get_registered_model(pipeline).aliases)
    except MlflowException:
        if not aliases:
            return {}
        current = None
    out: dict[str, str] = {}
    for alias in ALIASES:
        entry = aliases.get(alias)
        if entry:
            mv = _version_of(client, pipeline, entry["model_id"]) if current is not None else None
            if mv is None:
                out[alias] = "unregistered"
                if current and alias in current:
                    client.delete_registered_model_alias(pipeline, alias)
                continue
            if current.get(alias) != mv.version:
                client.set_registered_model_alias(pipeline, alias, mv.version)
            out[alias] = mv.version
        elif current and alias in current:
            client.delete_registered_model_alias(pipeline, alias)
    return out


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]


def _signature(n_features: int):
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    return ModelSignature(inputs=Schema([TensorSpec(np.dtype("float64"), (-1, n_features))]),
                          outputs=Schema([TensorSpec(np.dtype("float64"), (-1,))]))
