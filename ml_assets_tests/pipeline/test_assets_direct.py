"""The model asset called directly with `build_asset_context` (table assets attach per-partition
metadata, which only a real run step supports, so they are tested through `dg.materialize`)."""

from __future__ import annotations

import dagster as dg
import pytest

from ml_assets.defs.pipeline import build_pipeline
from ml_assets.defs.resources import AlertsResource
from ml_assets_tests.helpers import flights_config, materialize

TABLES = ["raw", "processed", "quarantine", "features"]


def test_model_asset_trains_on_the_window_and_registers(storage, instance):
    cfg = flights_config()
    assert materialize(cfg, storage, instance, "2013-01-01", "2013-01-12", layers=TABLES).success
    model = build_pipeline(cfg).asset("model")
    context = dg.build_asset_context(instance=instance, resources={"storage": storage, "alerts": AlertsResource()},
                                     asset_config={"as_of": "2013-01-11"})
    result = model(context)
    assert isinstance(result, dg.MaterializeResult)
    assert result.metadata["as_of"].value == "2013-01-11"
    assert result.metadata["train_rows"].value > 5000
    [gate] = result.check_results
    assert gate.check_name == "gate_roc_auc" and gate.passed
    assert gate.metadata["threshold"].value == ">= 0.55"
    [version] = storage.models().versions("flights")
    assert version.version == "v1.0.0"
    assert storage.models().aliases("flights").model_id("candidate") == version.model_id
    assert result.data_version == dg.DataVersion(version.model_id)
    assert sorted(version.sidecar["lineage"]["features"]) == [
        f"2013-01-{d:02d}" for d in range(2, 12)]


@pytest.mark.parametrize(("as_of", "message"), [
    ("2013-02-30", "as_of: expected a date YYYY-MM-DD, found '2013-02-30'"),
    ("2013-01-02", "has 2 materialized features partition(s)"),
])
def test_model_asset_bad_as_of_is_a_clear_failure(storage, instance, as_of, message):
    cfg = flights_config()
    assert materialize(cfg, storage, instance, "2013-01-01", "2013-01-04", layers=TABLES).success
    model = build_pipeline(cfg).asset("model")
    context = dg.build_asset_context(instance=instance, resources={"storage": storage, "alerts": AlertsResource()},
                                     asset_config={"as_of": as_of})
    with pytest.raises(dg.Failure, match=message.replace("(", r"\(").replace(")", r"\)")):
        model(context)
