"""A model that fails its gate never serves: not in its run, not later, and a newer failing model
never replaces the last one that passed."""

from __future__ import annotations

import pytest

from ml_assets_tests.helpers import (
    failed_checks,
    flights_config,
    materializations,
    materialize,
    step_errors,
)

pytestmark = pytest.mark.slow

TABLES = ["raw", "processed", "quarantine", "features"]
SERVE = ["model", "production_model", "predictions"]


def test_failed_gate_holds_across_runs(storage, instance):
    strict = flights_config(gates={"roc_auc": {"min": 0.99}})
    lenient = flights_config(gates={"roc_auc": {"min": 0.5}})
    assert materialize(strict, storage, instance, "2013-01-01", "2013-01-16", layers=TABLES).success

    # 1. same run: the failing gate blocks production_model and predictions
    run = materialize(strict, storage, instance, "2013-01-13", "2013-01-14", layers=SERVE,
                      as_of="2013-01-12")
    assert not run.success
    assert failed_checks(run) == ["model.gate_roc_auc"]
    failed_id = materializations(run, "model")[None].metadata["model_id"].value
    assert materializations(run, "production_model") == {}
    assert materializations(run, "predictions") == {}

    # 2. a later run without the model step: the failed model is still refused
    later = materialize(strict, storage, instance, "2013-01-13", layers=["production_model",
                                                                        "predictions"])
    assert not later.success
    message = step_errors(later)
    assert f"v1.0.0 ({failed_id}) failed its gates: roc_auc" in message
    assert "has no production model" in message
    # and predictions alone say what to do
    alone = materialize(strict, storage, instance, "2013-01-13", layers=["predictions"])
    assert "no production model yet" in step_errors(alone)
    assert f"v1.0.0 ({failed_id}) failed" in step_errors(alone) or "v1.0.0" in step_errors(alone)

    # 3. a model that passes becomes production
    good = materialize(lenient, storage, instance, "2013-01-13", layers=SERVE, as_of="2013-01-12")
    assert good.success, step_errors(good)
    good_id = materializations(good, "model")[None].metadata["model_id"].value

    # 4. a newer model that fails is never used: predictions keep the last passing one
    worse = materialize(strict, storage, instance, "2013-01-13", layers=SERVE, as_of="2013-01-15")
    assert not worse.success
    newer_failed = materializations(worse, "model")[None].metadata["model_id"].value
    assert newer_failed not in (good_id, failed_id)
    # its rejection is audited as a move refused: from production (the passing one) to it
    [refused] = [e for e in storage.models().audit("flights")
                 if e["run_id"] == worse.run_id and e["action"] == "reject"]
    assert (refused["from_model_id"], refused["to_model_id"]) == (good_id, newer_failed)
    # production_model run on its own (the newest candidate failed): production stays
    kept = materialize(lenient, storage, instance, "2013-01-13", "2013-01-16",
                       layers=["production_model", "predictions"])
    assert kept.success, step_errors(kept)
    decision = materializations(kept, "production_model")[None].metadata
    assert decision["action"].value == "reject" and decision["model_id"].value == good_id
    used = {m.metadata["model_id"].value for m in materializations(kept, "predictions").values()}
    assert used == {good_id}
    versions = storage.models().versions("flights")
    assert [v.gate_passed for v in versions] == [False, True, False]
