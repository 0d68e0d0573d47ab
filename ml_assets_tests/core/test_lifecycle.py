"""Champion against challenger: the promotion verdict as a pure function."""

from __future__ import annotations

import math

import pytest

from ml_assets.core.lifecycle import compare, decide, feature_contract, promote_change
from ml_assets.core.registry import AliasConflict, ModelVersion
from ml_assets_tests.core._helpers import config


def version(model_id: str, passed: bool = True, semver: str = "v1.0.0", **metrics) -> ModelVersion:
    gates = [{"metric": "roc_auc", "observed": metrics.get("roc_auc", 0.8), "min": 0.6,
              "max": None, "passed": passed}]
    return ModelVersion("syn", model_id, semver, "2024-01-01", passed, gates,
                        metrics or {"roc_auc": 0.8}, "u", "s", "sha")


@pytest.fixture
def cfg():
    return config(gates={"roc_auc": {"min": 0.6}, "log_loss": {"max": 0.9}},
                  promotion={"tolerance": {"roc_auc": 0.01}})


def test_first_model_is_decided_by_its_gates(cfg):
    assert decide(version("a"), None, cfg).action == "promote"
    rejected = decide(version("a", passed=False, roc_auc=0.5), None, cfg)
    assert rejected.action == "reject"
    assert "failed its gates: roc_auc = 0.5000 (needs >= 0.6)" in rejected.reason


def test_challenger_already_production_is_kept(cfg):
    assert decide(version("a"), version("a"), cfg).action == "keep"


def test_better_challenger_is_promoted_on_the_same_rows(cfg):
    d = decide(version("b", semver="v1.1.0"), version("a"), cfg,
               challenger_metrics={"roc_auc": 0.80, "log_loss": 0.50},
               champion_metrics={"roc_auc": 0.78, "log_loss": 0.55})
    assert d.action == "promote"
    assert [c.metric for c in d.comparisons] == ["roc_auc", "log_loss"]
    assert all(c.ok for c in d.comparisons)
    assert "v1.1.0 (b)" in d.reason and "champion v1.0.0 (a)" in d.reason


@pytest.mark.parametrize("challenger,champion,action", [
    ({"roc_auc": 0.771, "log_loss": 0.5}, {"roc_auc": 0.78, "log_loss": 0.5}, "promote"),  # within 0.01
    ({"roc_auc": 0.769, "log_loss": 0.5}, {"roc_auc": 0.78, "log_loss": 0.5}, "reject"),   # beyond 0.01
    ({"roc_auc": 0.80, "log_loss": 0.51}, {"roc_auc": 0.78, "log_loss": 0.5}, "reject"),   # lower is better, no tolerance
    ({"roc_auc": 0.80, "log_loss": 0.49}, {"roc_auc": 0.78, "log_loss": 0.5}, "promote"),
    ({"roc_auc": math.nan, "log_loss": 0.4}, {"roc_auc": 0.78, "log_loss": 0.5}, "reject"),
])
def test_tolerance_and_direction(cfg, challenger, champion, action):
    d = decide(version("b"), version("a"), cfg, challenger, champion)
    assert d.action == action, d.reason
    if action == "reject":
        assert "worse than champion" in d.reason


def test_unscorable_champion_leaves_the_gates_to_decide(cfg):
    d = decide(version("b"), version("a"), cfg, champion_problem="feature rows lack ['x3']")
    assert d.action == "promote"
    assert "could not be scored" in d.reason and "['x3']" in d.reason


def test_compare_directions():
    assert compare("rmse", 3.0, 3.5, 0.0).ok and not compare("rmse", 3.6, 3.5, 0.0).ok
    assert compare("rmse", 3.6, 3.5, 0.2).ok
    assert compare("r2", 0.7, 0.8, 0.1).ok and not compare("r2", 0.69, 0.8, 0.1).ok


def test_promotion_conflicts_when_production_moved():
    change = promote_change(version("b"), "a", {})
    assert change({"production": {"model_id": "a"}})["previous"] == {"model_id": "a"}
    with pytest.raises(AliasConflict, match="production moved from a to c"):
        change({"production": {"model_id": "c"}})


def test_feature_contract_changes_with_features_not_with_data():
    base = feature_contract(config())
    assert feature_contract(config()) == base
    assert feature_contract(config(features={"numeric": ["x1"], "categorical": ["c"]})) != base


@pytest.mark.parametrize("over,message", [
    ({"promotion": {"tolerance": -0.1}}, "tolerance must be >= 0"),
    ({"promotion": {"tolerance": {"f1": 0.1}}}, "promotion.tolerance.f1"),
    ({"promotion": {"toleranse": 0.1}}, "unknown key"),
])
def test_bad_promotion_config(tmp_path, over, message):
    from ml_assets.config import ConfigError, load_config
    from ml_assets_tests.helpers import flights_dict, write_config

    path = write_config(tmp_path / "bad.yaml", flights_dict(**over))
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(path)
