"""The model lifecycle as assets, through real Dagster runs: champion against challenger on the
same rows, rejection, manual promotion, rollback, the audit log and alerts."""

from __future__ import annotations

import pandas as pd
import pytest

from ml_assets.defs.resources import AlertsResource
from ml_assets_tests.helpers import (
    flights_config,
    materializations,
    materialize,
    step_errors,
)

pytestmark = pytest.mark.slow

TABLES = ["raw", "processed", "quarantine", "features"]


def _production(result):
    mat = materializations(result, "production_model")[None]
    return {k: v.value for k, v in mat.metadata.items()}


def _prediction_versions(result) -> set[tuple[str, str]]:
    out = set()
    for mat in materializations(result, "predictions").values():
        frame = pd.read_parquet(mat.metadata["dagster/uri"].value)
        out |= set(zip(frame["model_id"], frame["model_version"], strict=True))
    return out


def test_champion_challenger_rollback_and_audit(storage, instance, webhook):
    alerts = AlertsResource(webhook_url=webhook.url)
    good = flights_config(promotion={"tolerance": 0.03})
    weak = flights_config(gates={"roc_auc": {"min": 0.4}},  # passes its gate, loses to the champion
                          training={"params": {"num_boost_round": 2, "num_leaves": 2, "seed": 7}},
                          promotion={"tolerance": 0.03})
    assert materialize(good, storage, instance, "2013-01-01", "2013-01-20", layers=TABLES).success

    # 1. the first model: its gates alone decide; predictions carry its id and version
    first = materialize(good, storage, instance, "2013-01-13", "2013-01-14", as_of="2013-01-12",
                        layers=["model", "production_model", "predictions"], alerts=alerts)
    assert first.success, step_errors(first)
    prod = _production(first)
    assert prod["action"] == "promote" and prod["model_version"] == "v1.0.0"
    assert "first model" in prod["reason"]
    v1 = prod["model_id"]
    assert _prediction_versions(first) == {(v1, "v1.0.0")}

    # 2. a weaker challenger on newer data: compared on ITS validation rows, rejected
    second = materialize(weak, storage, instance, "2013-01-15", as_of="2013-01-16",
                         layers=["model", "production_model", "predictions"], alerts=alerts)
    assert second.success, step_errors(second)
    prod = _production(second)
    assert prod["action"] == "reject"
    assert prod["model_id"] == v1  # production unchanged
    assert prod["challenger"].startswith("v1.1.0")  # new data: minor bump
    assert prod["metric_roc_auc"] < prod["champion_metric_roc_auc"]
    assert "worse than champion v1.0.0" in prod["reason"]
    assert _prediction_versions(second) == {(v1, "v1.0.0")}

    # 3. a good challenger on newer data is promoted; the comparison is in the metadata
    third = materialize(good, storage, instance, "2013-01-17", as_of="2013-01-18",
                        layers=["model", "production_model", "predictions"], alerts=alerts)
    assert third.success, step_errors(third)
    prod = _production(third)
    assert prod["action"] == "promote", prod["reason"]
    assert prod["model_version"] == "v1.2.0" and prod["previous"] == "v1.0.0"
    assert prod["metric_roc_auc"] >= prod["champion_metric_roc_auc"] - 0.03
    v3 = prod["model_id"]

    # 4. rollback by config: production back to previous, through the same audit path
    back = materialize(good, storage, instance, "2013-01-17", layers=["production_model", "predictions"],
                       run_config={"ops": {"flights__production_model": {"config": {"rollback": True}}}},
                       alerts=alerts, tags={"ml_assets/actor": "user:alice"})
    assert back.success, step_errors(back)
    prod = _production(back)
    assert (prod["action"], prod["model_id"], prod["previous"]) == ("rollback", v1, "v1.2.0")
    assert _prediction_versions(back) == {(v1, "v1.0.0")}

    # 5. manual promotion of a named version
    again = materialize(good, storage, instance, "2013-01-17", layers=["production_model"],
                        run_config={"ops": {"flights__production_model": {
                            "config": {"version": "v1.2.0", "reason": "rolled forward after review"}}}},
                        alerts=alerts)
    assert again.success and _production(again)["model_id"] == v3

    models = storage.models()
    audit = models.audit("flights")
    assert [e["action"] for e in audit] == [
        "register", "promote", "register", "reject", "register", "promote", "rollback", "promote"]
    rollback = audit[6]
    assert rollback["actor"] == "user:alice" and rollback["from_version"] == "v1.2.0"
    assert rollback["to_version"] == "v1.0.0" and rollback["run_id"] == back.run_id
    assert audit[-1]["reason"] == "rolled forward after review"
    assert audit[3]["metrics"]["champion"]["roc_auc"] > audit[3]["metrics"]["challenger"]["roc_auc"]
    state = models.aliases("flights")
    assert state.model_id("production") == v3 and state.model_id("previous") == v1
    assert webhook.events() == ["promote", "reject", "promote", "rollback", "promote"]


def test_a_failed_gate_is_rejected_audited_and_alerted_whatever_the_run_status(storage, instance, webhook):
    strict = flights_config(gates={"roc_auc": {"min": 0.99}})
    assert materialize(strict, storage, instance, "2013-01-01", "2013-01-12", layers=TABLES).success
    run = materialize(strict, storage, instance, "2013-01-12", as_of="2013-01-11",
                      layers=["model", "production_model", "predictions"],
                      alerts=AlertsResource(webhook_url=webhook.url))
    assert not run.success  # the blocking gate stops production_model and predictions
    assert materializations(run, "production_model") == {}
    [register, reject] = storage.models().audit("flights")
    assert (register["action"], reject["action"]) == ("register", "reject")
    assert "failed its gates: roc_auc" in reject["reason"] and "needs >= 0.99" in reject["reason"]
    assert webhook.events() == ["reject"]
    assert storage.models().aliases("flights").model_id("production") is None


@pytest.mark.parametrize("config,message", [
    ({"version": "v9.0.0"}, "has no model 'v9.0.0'"),
    ({"rollback": True}, "nothing to roll back to"),
    ({"version": "production"}, "alias 'production' is not set"),
])
def test_bad_promotion_requests_fail_clearly(storage, instance, config, message):
    cfg = flights_config()
    assert materialize(cfg, storage, instance, "2013-01-01", "2013-01-12", layers=TABLES).success
    run = materialize(cfg, storage, instance, "2013-01-12", layers=["production_model"],
                      run_config={"ops": {"flights__production_model": {"config": config}}})
    assert not run.success
    assert message in step_errors(run)


def test_gate_failed_version_needs_force(storage, instance):
    strict = flights_config(gates={"roc_auc": {"min": 0.99}})
    assert materialize(strict, storage, instance, "2013-01-01", "2013-01-12", layers=TABLES).success
    materialize(strict, storage, instance, "2013-01-12", as_of="2013-01-11", layers=["model"])
    refused = materialize(strict, storage, instance, "2013-01-12", layers=["production_model"],
                          run_config={"ops": {"flights__production_model": {"config": {"version": "v1.0.0"}}}})
    assert "failed its gates" in step_errors(refused) and "force: true" in step_errors(refused)
    forced = materialize(strict, storage, instance, "2013-01-12", layers=["production_model"],
                         run_config={"ops": {"flights__production_model": {
                             "config": {"version": "v1.0.0", "force": True}}}})
    assert forced.success
    assert storage.models().audit("flights")[-1]["details"]["forced"] is True


def test_a_model_whose_file_was_altered_is_never_made_production(storage, instance):
    """Production must point at a model the predictions step and the API can load."""
    strict = flights_config(gates={"roc_auc": {"min": 0.99}})  # v1.0.0 is registered, not promoted
    assert materialize(strict, storage, instance, "2013-01-01", "2013-01-12", layers=TABLES).success
    materialize(strict, storage, instance, "2013-01-12", as_of="2013-01-11", layers=["model"])
    models = storage.models()
    [version] = models.versions("flights")
    path = version.model_uri
    with open(path, "a") as fh:  # altered after registration
        fh.write("\n# edited\n")
    run = materialize(strict, storage, instance, "2013-01-12", layers=["production_model"],
                      run_config={"ops": {"flights__production_model": {
                          "config": {"version": "v1.0.0", "force": True}}}})
    assert not run.success
    assert f"promote: {version.label} cannot be loaded" in step_errors(run)
    assert "does not match its recorded sha256" in step_errors(run)
    assert "production stays unset" in step_errors(run)
    assert models.aliases("flights").model_id("production") is None
