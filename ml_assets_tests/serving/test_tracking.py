"""Experiment tracking in a real MLflow SQLite store: a training logs params, metrics, the
LightGBM model, each feature partition as a dataset input, the semantic version and the Dagster
run id; alias moves (promotion, canary) are mirrored as registered-model aliases; a tracking
failure never fails training; without MLFLOW_TRACKING_URI MLflow is never imported."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from ml_assets.commands.models import cmd_canary
from ml_assets.defs.resources import StorageResource
from ml_assets.environment import EnvironmentError_, tracking_uri_from_env
from ml_assets_tests.helpers import materializations, materialize, step_errors

pytestmark = pytest.mark.xdist_group("serving")  # one worker: the package's trained models are made once


@pytest.fixture
def fresh_storage(tmp_path) -> StorageResource:
    return StorageResource(tables_root=str(tmp_path / "tables"), models_root=str(tmp_path / "models"))


def _train(trained, storage, as_of="2013-01-10", layers=("model", "production_model")):
    result = materialize(trained.cfg, storage, trained.instance, as_of, as_of=as_of,
                         layers=list(layers))
    assert result.success, step_errors(result)
    return result


def test_training_and_alias_moves_are_tracked(trained, fresh_storage, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = _train(trained, fresh_storage)
    meta = {k: v.value for k, v in materializations(result, "model")[None].metadata.items()}
    assert "mlflow_error" not in meta
    [version] = fresh_storage.models().versions("flights")

    from mlflow import MlflowClient

    client = MlflowClient(uri)
    run = client.get_run(meta["mlflow_run_id"])
    assert run.info.run_name == "v1.0.0"
    assert run.data.tags["ml_assets.model_id"] == version.model_id
    assert run.data.tags["ml_assets.semantic_version"] == "v1.0.0"
    assert run.data.tags["ml_assets.dagster_run_id"] == result.run_id
    assert run.data.params["num_boost_round"] == "30" and run.data.params["seed"] == "7"
    assert run.data.metrics["roc_auc"] == pytest.approx(version.metrics["roc_auc"])
    inputs = run.inputs.dataset_inputs
    lineage = version.sidecar["lineage"]["features"]
    assert sorted(i.dataset.name for i in inputs) == [f"flights/features/{d}" for d in sorted(lineage)]
    for i in inputs:
        tags = {t.key: t.value for t in i.tags}
        day = tags["partition"]
        assert tags["content_hash"] == lineage[day]["content_hash"]
        assert i.dataset.digest == lineage[day]["content_hash"][:32]
        assert lineage[day]["uri"] in i.dataset.source
        expected = "validation" if day in version.sidecar["validation_days"] else "training"
        assert tags["mlflow.data.context"] == expected
    lookups = client.download_artifacts(run.info.run_id, "ml_assets/lookups.json", str(tmp_path))
    with open(lookups) as fh:  # the lookup versions of the training window, as the registry has them
        assert json.load(fh) == version.sidecar["lineage"]["lookups"]
    assert set(version.sidecar["lineage"]["lookups"]) == {"weather", "planes"}
    text = client.download_artifacts(run.info.run_id, "ml_assets/model.txt", str(tmp_path))
    with open(text) as fh:
        assert fh.read() == fresh_storage.models().load_text(version)  # the exact bytes

    # the registered model mirrors the store: version tagged, aliases candidate + production
    [mv] = client.search_model_versions("name='flights'")
    assert mv.tags["ml_assets.model_id"] == version.model_id
    assert _aliases(client) == {"candidate": str(mv.version), "production": str(mv.version)}
    # the logged model is LightGBM's native format and predicts what the store's model does
    import mlflow.lightgbm

    booster = mlflow.lightgbm.load_model("models:/flights@production")
    from ml_assets.core.scoring import LoadedModel
    from ml_assets.serving.schema import RecordSchema, ServedModel

    loaded = LoadedModel.from_text(version.model_id, fresh_storage.models().load_text(version),
                                   version.sidecar)
    served = ServedModel(version.model_id, version.version, loaded, RecordSchema(loaded, {}),
                         version.sidecar)
    rows = served.synthetic_records()
    matrix = np.vstack([served.schema.row(r)[0] for r in rows])
    assert np.array_equal(booster.predict(matrix), served.predict_frame(
        served.schema.frame({c: [r[c] for r in rows] for c in served.schema.features})))

    # a second model (retrained on newer data) and a canary: aliases follow
    _train(trained, fresh_storage, as_of="2013-01-12", layers=["model"])
    assert cmd_canary(trained.cfg, fresh_storage.models(), "v1.1.0", 0.2, False, False, None,
                      "user:test", False)[0] == 0
    assert _aliases(client) == {"candidate": "2", "production": "1", "canary": "2"}
    cmd_canary(trained.cfg, fresh_storage.models(), None, None, True, False, None, "user:test",
               False)
    assert "canary" not in _aliases(client)


def _aliases(client) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model("flights").aliases.items()}


def test_a_tracking_failure_does_not_fail_training(trained, fresh_storage, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the database folder should be")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{blocker}/mlflow.db")
    result = _train(trained, fresh_storage)
    meta = materializations(result, "model")[None].metadata
    assert "mlflow_error" in meta and "mlflow_run_id" not in meta
    assert fresh_storage.models().aliases("flights").model_id("production")  # promoted all the same


def test_without_a_tracking_uri_mlflow_is_never_imported(trained, fresh_storage, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # any `import mlflow` would raise
    result = _train(trained, fresh_storage)
    assert "mlflow_error" not in materializations(result, "model")[None].metadata
    assert cmd_canary(trained.cfg, fresh_storage.models(), None, None, True, False, None,
                      "user:test", False)[0] == 0


@pytest.mark.parametrize(("value", "message"), [
    ("./mlruns", "must be a URI whose scheme is one of"),
    ("mlruns.db", "must be a URI whose scheme is one of"),
    ("ftp://host/x", "must be a URI whose scheme is one of"),
    ("file:///tmp/mlruns", "MLflow's file store, which MLflow 3 refuses"),
])
def test_a_bad_tracking_uri_is_a_clear_error(value, message):
    with pytest.raises(EnvironmentError_, match=message):
        tracking_uri_from_env({"MLFLOW_TRACKING_URI": value})


def test_tracking_uri_forms():
    assert tracking_uri_from_env({}) is None
    assert tracking_uri_from_env({"MLFLOW_TRACKING_URI": "  "}) is None
    assert tracking_uri_from_env({"MLFLOW_TRACKING_URI": "sqlite:///x.db"}) == "sqlite:///x.db"
    assert tracking_uri_from_env({"MLFLOW_TRACKING_URI": "postgresql+psycopg2://u@h/db"})
    assert tracking_uri_from_env({"MLFLOW_TRACKING_URI": "file:///m",
                                  "MLFLOW_ALLOW_FILE_STORE": "true"}) == "file:///m"


def test_a_bad_tracking_uri_leaves_training_untracked_with_a_warning(trained, fresh_storage,
                                                                     monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "./mlruns")
    result = _train(trained, fresh_storage, layers=["model"])
    logs = "\n".join(e.user_message for e in trained.instance.all_logs(result.run_id))
    assert "MLflow tracking is off: MLFLOW_TRACKING_URI must be a URI" in logs
