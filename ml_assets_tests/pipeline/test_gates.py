"""A model that fails its gate is never used for predictions: not in its run, not later."""

from __future__ import annotations

from ml_assets_tests.helpers import (
    failed_checks,
    flights_config,
    materializations,
    materialize,
    step_errors,
)

TABLES = ["raw", "processed", "quarantine", "features"]


def test_failed_gate_holds_across_runs(storage, instance):
    strict = flights_config(gates={"roc_auc": {"min": 0.99}})
    lenient = flights_config(gates={"roc_auc": {"min": 0.5}})
    assert materialize(strict, storage, instance, "2013-01-01", "2013-01-16", layers=TABLES).success

    # 1. same run: the failing gate blocks predictions
    run = materialize(strict, storage, instance, "2013-01-13", "2013-01-14",
                      layers=["model", "predictions"], as_of="2013-01-12")
    assert not run.success
    assert failed_checks(run) == ["model.gate_roc_auc"]
    failed_id = materializations(run, "model")[None].metadata["model_id"].value
    assert materializations(run, "predictions") == {}

    # 2. a later run of predictions alone: still refused, with the reason
    later = materialize(strict, storage, instance, "2013-01-13", layers=["predictions"])
    assert not later.success
    message = step_errors(later)
    assert "no model has passed its gate yet" in message
    assert failed_id in message and "roc_auc" in message

    # 3. a model that passes becomes the one predictions use
    good = materialize(lenient, storage, instance, "2013-01-13", layers=["model"], as_of="2013-01-12")
    assert good.success, step_errors(good)
    good_id = materializations(good, "model")[None].metadata["model_id"].value

    # 4. a newer model that fails is never used: predictions keep the last passing one
    worse = materialize(strict, storage, instance, "2013-01-13", layers=["model"], as_of="2013-01-15")
    assert not worse.success
    newer_failed = materializations(worse, "model")[None].metadata["model_id"].value
    assert newer_failed not in (good_id, failed_id)
    preds = materialize(lenient, storage, instance, "2013-01-13", "2013-01-16", layers=["predictions"])
    assert preds.success, step_errors(preds)
    used = {m.metadata["model_id"].value for m in materializations(preds, "predictions").values()}
    assert used == {good_id}
    versions = storage.models().versions("flights")
    assert [v.gate_passed for v in versions] == [False, True, False]
