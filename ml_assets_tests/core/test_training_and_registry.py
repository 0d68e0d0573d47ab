from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from ml_assets.config import Threshold
from ml_assets.core.features import LABEL
from ml_assets.core.gates import evaluate_gates
from ml_assets.core.registry import ModelStore
from ml_assets.core.scoring import LoadedModel, score
from ml_assets.core.storage import LocalStore
from ml_assets.core.training import TrainingError, split_days, train
from ml_assets_tests.core._helpers import config, synthetic_days

T0 = dt.datetime(2024, 2, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def cfg():
    return config()


@pytest.fixture(scope="module")
def frames():
    return synthetic_days(n_days=12, rows=60, seed=0)


@pytest.fixture(scope="module")
def trained(cfg, frames):
    return train(frames, cfg)


# --- training -----------------------------------------------------------------------------------

def test_training_is_byte_identical(cfg, frames, trained):
    # same rows, different dict order: the day order is fixed by sorting
    shuffled = dict(reversed(list(frames.items())))
    again = train(shuffled, cfg)
    assert again.model_text == trained.model_text
    assert again.model_hash == trained.model_hash
    assert again.metrics == trained.metrics


def test_different_seed_gives_a_different_model(frames, trained):
    other = config(training={"window_days": 12, "validation_days": 3,
                             "params": {"num_boost_round": 20, "num_leaves": 7,
                                        "min_data_in_leaf": 5, "seed": 8}})
    assert train(frames, other).model_text != trained.model_text


def test_binary_metrics(trained):
    assert {"accuracy", "f1", "roc_auc", "log_loss"} <= set(trained.metrics)
    for name in ("accuracy", "f1", "roc_auc"):
        assert 0.0 <= trained.metrics[name] <= 1.0
    assert trained.metrics["log_loss"] > 0
    assert trained.metrics["roc_auc"] > 0.7  # the label is learnable
    assert trained.params["num_boost_round"] == 20
    assert trained.task == "binary"


def test_regression_metrics():
    cfg = config(target={"column": "y", "task": "regression"}, gates={"rmse": {"max": 2.0}},
                 training={"window_days": 6, "validation_days": 2,
                           "params": {"num_boost_round": 20, "num_leaves": 7,
                                      "min_data_in_leaf": 5}})
    model = train(synthetic_days(n_days=6, rows=60, task="regression"), cfg)
    assert set(model.metrics) == {"rmse", "mae", "r2"}
    assert model.metrics["rmse"] >= model.metrics["mae"] > 0
    assert model.metrics["r2"] > 0.3


def test_split_uses_the_last_validation_days(trained, frames):
    days = sorted(frames)
    assert trained.validation_days == days[-3:]
    assert trained.train_days == days[:-3]
    assert trained.validation_rows == 3 * 60
    assert trained.train_rows == 9 * 60


@pytest.mark.parametrize("days,validation,train_days,valid_days", [
    (["d3", "d1", "d2"], 1, ["d1", "d2"], ["d3"]),
    (["d1", "d2", "d3", "d4"], 3, ["d1"], ["d2", "d3", "d4"]),
])
def test_split_days(days, validation, train_days, valid_days):
    assert split_days(days, validation) == (train_days, valid_days)


@pytest.mark.parametrize("n_days", [1, 3])
def test_too_few_days_raise(cfg, n_days):
    with pytest.raises(TrainingError, match=f"holds {n_days} day\\(s\\).*validation_days=3"):
        train(synthetic_days(n_days=n_days), cfg)


def test_one_class_labels_raise(cfg, frames):
    one = {k: f.assign(**{LABEL: 1}) for k, f in frames.items()}
    with pytest.raises(TrainingError, match=r"one class only \(\[1\]\)"):
        train(one, cfg)


def test_empty_training_days_raise(cfg, frames):
    empty = {k: (f.iloc[0:0] if i < 9 else f) for i, (k, f) in enumerate(sorted(frames.items()))}
    with pytest.raises(TrainingError, match="no rows to train on"):
        train(empty, cfg)


def test_reference_statistics_kept_with_model(trained):
    ref = trained.reference
    assert ref["rows"] == trained.train_rows
    assert set(ref["numeric"]) == {"x1", "x2"}
    assert set(ref["categorical"]["c"]) == {"a", "b", "c"}
    assert 0.0 <= ref["prediction"]["mean"] <= 1.0


# --- gates --------------------------------------------------------------------------------------

@pytest.mark.parametrize("observed,threshold,passed", [
    (0.7, {"min": 0.7}, True),
    (0.6999, {"min": 0.7}, False),
    (0.5, {"max": 0.5}, True),
    (0.5001, {"max": 0.5}, False),
    (0.5, {"min": 0.5, "max": 0.5}, True),
    # two-sided gates fail when either bound fails, the minimum as well as the maximum
    (0.4999, {"min": 0.5, "max": 0.9}, False),
    (0.9001, {"min": 0.5, "max": 0.9}, False),
    (0.7, {"min": 0.5, "max": 0.9}, True),
    (-1.0, {"min": 0.0, "max": 10.0}, False),
    (math.nan, {"min": 0.1}, False),
    (math.nan, {"max": 0.1}, False),
])
def test_evaluate_gates_boundaries(observed, threshold, passed):
    [result] = evaluate_gates({"m": observed}, {"m": Threshold(**threshold)})
    assert result.passed is passed
    assert result.metric == "m"
    assert (math.isnan(result.observed) and math.isnan(observed)) or result.observed == observed


def test_gate_on_missing_metric_fails():
    [result] = evaluate_gates({}, {"roc_auc": Threshold(min=0.5)})
    assert result.passed is False and math.isnan(result.observed)


def test_gate_describe():
    [result] = evaluate_gates({"rmse": 3.0}, {"rmse": Threshold(max=2.0)})
    assert result.describe() == "rmse = 3.0000 (needs <= 2.0): failed"


# --- registry: see test_registry.py -------------------------------------------------------------

def gates_for(trained, minimum: float):
    return evaluate_gates(trained.metrics, {"roc_auc": Threshold(min=minimum)})


# --- scoring ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def loaded(tmp_path_factory, trained):
    store = ModelStore(LocalStore(str(tmp_path_factory.mktemp("models"))))
    version, _ = store.register("syn", trained, gates_for(trained, 0.5), {}, now=T0)
    return LoadedModel.from_text(version.model_id, store.load_text(version), version.sidecar)


def test_score_one_row_per_input_row(loaded, frames):
    feats = frames["2024-01-12"]
    out = score(loaded, feats, ["id"])
    assert len(out) == len(feats)
    assert out["id"].tolist() == feats["id"].tolist()
    assert out["prediction"].between(0.0, 1.0).all()
    assert out["prediction"].notna().all()
    assert (out["model_id"] == loaded.model_id).all()
    assert (out["model_version"] == "v1.0.0").all()
    assert out["predicted_class"].tolist() == (out["prediction"] >= 0.5).astype(int).tolist()


def test_score_matches_training_booster(loaded, trained, frames):
    import lightgbm as lgb

    from ml_assets.core.training import encode

    feats = frames["2024-01-11"]
    booster = lgb.Booster(model_str=trained.model_text)
    expected = booster.predict(encode(feats, trained.numeric, trained.categorical))
    np.testing.assert_allclose(score(loaded, feats, ["id"])["prediction"].to_numpy(), expected)


def test_score_is_a_pure_function(loaded, frames):
    feats = frames["2024-01-10"].copy()
    before = feats.copy(deep=True)
    first = score(loaded, feats, ["id"])
    pd.testing.assert_frame_equal(feats, before)
    pd.testing.assert_frame_equal(score(loaded, feats, ["id"]), first)
    # a row's prediction does not depend on the other rows
    part = score(loaded, feats.iloc[[5, 2]], ["id"])
    np.testing.assert_allclose(part["prediction"].to_numpy(),
                               first["prediction"].to_numpy()[[5, 2]])


def test_unseen_and_null_categories_do_not_crash(loaded, frames):
    feats = frames["2024-01-10"].head(4).copy()
    feats["c"] = pd.array(["zzz", None, "a", "never seen"], dtype="string")
    out = score(loaded, feats, ["id"])
    assert len(out) == 4
    assert out["prediction"].between(0.0, 1.0).all()


def test_score_empty_frame(loaded, frames):
    out = score(loaded, frames["2024-01-10"].iloc[0:0], ["id"])
    assert out.empty and {"prediction", "model_id"} <= set(out.columns)
