from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_assets.core import quality as q
from ml_assets.core.features import LABEL
from ml_assets_tests.core._helpers import config

CFG = config(
    schema={
        "id": {"dtype": "int64", "nullable": False, "min": 1},
        "x1": {"dtype": "float64", "max": 10},
        "x2": {"dtype": "float64"},
        "c": {"dtype": "string", "allowed": ["a", "b"]},
        "y": {"dtype": "int64"},
    },
    features={"numeric": ["x1", "x2"], "categorical": ["c"], "forbidden": ["x2_late"]},
)
BAD_DAY = "2024-01-02"


def processed(**over) -> pd.DataFrame:
    frame = pd.DataFrame({
        "id": pd.array([1, 2, 3], dtype="Int64"),
        "x1": [1.0, 2.0, 10.0],
        "x2": [1.0, np.nan, 3.0],
        "c": pd.array(["a", "b", None], dtype="string"),
        "y": pd.array([1, 0, 1], dtype="Int64"),
        "_source_file": "good.csv",
        "_source_row": [1, 2, 3],
    })
    return frame.assign(**over)


def features(**over) -> pd.DataFrame:
    frame = processed()[["id", "x1", "x2", "c"]].assign(**{LABEL: [1, 0, 1]})
    return frame.assign(**over)


def predictions(values) -> pd.DataFrame:
    return pd.DataFrame({"id": range(len(values)), "prediction": np.asarray(values, dtype=float)})


def days(bad: pd.DataFrame | None = None, good: pd.DataFrame | None = None) -> dict:
    good = processed() if good is None else good
    return {"2024-01-01": good, BAD_DAY: good if bad is None else bad, "2024-01-03": good}


# name -> (good call, bad call, expected observed for the bad call)
CASES = {
    "columns_present": (
        lambda: q.columns_present(days(), CFG),
        lambda: q.columns_present(days(processed().drop(columns=["x2", "c"])
                                       .assign(_source_file="bad.csv")), CFG),
        ["c", "x2"],
    ),
    "row_count_min": (
        lambda: q.row_count(days(), 3, None),
        lambda: q.row_count(days(processed().iloc[:1]), 3, None),
        1,
    ),
    "row_count_max": (
        lambda: q.row_count(days(), 1, 3),
        lambda: q.row_count(days(pd.concat([processed()] * 2)), 1, 3),
        6,
    ),
    "schema_matches": (
        lambda: q.schema_matches(days(), CFG),
        lambda: q.schema_matches(days(processed(x1=[1, 2, 3])), CFG),
        1,
    ),
    "null_rates": (
        lambda: q.null_rates(days(), ["x1", "x2"], 0.34),
        lambda: q.null_rates(days(processed(x1=[np.nan, np.nan, 1.0])), ["x1", "x2"], 0.34),
        0.666667,
    ),
    "value_ranges": (
        lambda: q.value_ranges(days(), CFG),
        lambda: q.value_ranges(days(processed(
            id=pd.array([0, 2, 3], dtype="Int64"), x1=[1.0, 10.5, 2.0],
            c=pd.array(["a", "z", None], dtype="string"))), CFG),
        3,
    ),
    "key_unique": (
        lambda: q.key_unique(days(), ["id"]),
        lambda: q.key_unique(days(processed(id=pd.array([1, 1, 1], dtype="Int64"))), ["id"]),
        2,
    ),
    "quarantine_rate": (
        lambda: q.quarantine_rate(days(), {BAD_DAY: processed().iloc[:0]}, 0.2),
        lambda: q.quarantine_rate(days(), {BAD_DAY: processed().iloc[:1]}, 0.2),
        0.25,
    ),
    "features_complete": (
        lambda: q.features_complete(days(features(), features()), CFG),
        lambda: q.features_complete(days(features(x1=[1, 2, 3]).drop(columns=["c"]), features()),
                                    CFG),
        1,
    ),
    "one_prediction_per_row": (
        lambda: q.predictions_sane(days(features(), features()),
                                   days(predictions([0.1, 0.5, 0.9]), predictions([0.2] * 3)),
                                   "binary")[0],
        lambda: q.predictions_sane(days(features(), features()),
                                   days(predictions([0.1, 0.5]), predictions([0.2] * 3)),
                                   "binary")[0],
        1,
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_check_passes_on_good_input(name):
    outcome = CASES[name][0]()
    assert outcome.passed is True, outcome
    assert "failing_partitions" not in outcome.details


@pytest.mark.parametrize("name", CASES)
def test_check_fails_with_observed_value_and_partition(name):
    outcome = CASES[name][1]()
    assert outcome.passed is False
    assert outcome.observed == CASES[name][2]
    assert BAD_DAY in str(outcome.details), outcome.details
    assert "2024-01-01" not in str(outcome.details)
    assert str(outcome.observed) in outcome.describe()


def test_failing_partitions_appear_in_describe():
    outcome = q.row_count(days(processed().iloc[:1]), 3, None)
    assert outcome.describe() == (
        f"row_count: observed 1, threshold 3..inf rows per day in partition(s) {BAD_DAY}")


def test_columns_present_names_the_file():
    outcome = CASES["columns_present"][1]()
    assert outcome.details["files"] == "bad.csv"


def test_schema_matches_names_expected_and_found():
    outcome = CASES["schema_matches"][1]()
    assert outcome.details["mismatches"] == f"{BAD_DAY}:x1 expected float64, found int64"


def test_null_rates_names_worst_column():
    outcome = CASES["null_rates"][1]()
    assert outcome.details["worst_column"] == f"{BAD_DAY}:x1"


def test_quarantine_rate_totals():
    outcome = CASES["quarantine_rate"][1]()
    assert outcome.details["quarantined_rows"] == 1 and outcome.details["rows_in"] == 10


def test_key_unique_without_primary_key_passes():
    assert q.key_unique(days(processed(id=pd.array([1, 1, 1], dtype="Int64"))), []).passed


def test_null_rates_skips_empty_partitions():
    assert q.null_rates(days(processed().iloc[:0]), ["x1"], 0.0).passed


def test_many_failing_partitions_are_shortened():
    frames = {f"2024-02-{d:02d}": processed().iloc[:1] for d in range(1, 13)}
    outcome = q.row_count(frames, 2, None)
    assert outcome.details["failing_partitions"].endswith("2024-02-10 (+2 more)")


def test_no_leakage_pass_and_fail():
    assert q.no_leakage(days(features(), features()), CFG).passed
    outcome = q.no_leakage(days(features(x2_late=1.0, y=[1, 0, 1]), features()), CFG)
    assert outcome.passed is False
    assert outcome.observed == ["x2_late", "y"]


def test_predictions_sane_good_binary():
    outcomes = q.predictions_sane(days(features(), features()),
                                  days(predictions([0.0, 0.5, 1.0]), predictions([0.3] * 3)),
                                  "binary")
    assert [o.name for o in outcomes] == ["one_prediction_per_row", "no_missing_predictions",
                                          "probabilities_in_unit_interval"]
    assert all(o.passed for o in outcomes)


def test_predictions_sane_regression_skips_unit_interval():
    outcomes = q.predictions_sane(days(features(), features()),
                                  days(predictions([-5.0, 50.0, 1.0]), predictions([3.0] * 3)),
                                  "regression")
    assert [o.name for o in outcomes] == ["one_prediction_per_row", "no_missing_predictions"]
    assert all(o.passed for o in outcomes)


def test_predictions_sane_nan_and_out_of_range_values():
    feats = days(features(), features())
    _, nan, _ = q.predictions_sane(feats, days(predictions([0.1, np.nan, np.nan]),
                                               predictions([0.2] * 3)), "binary")
    assert (nan.passed, nan.observed) == (False, 2)
    *_, unit = q.predictions_sane(feats, days(predictions([1.2, 0.5, 0.1]),
                                              predictions([-0.1] * 3)), "binary")
    assert (unit.passed, unit.observed) == (False, "-0.100000..1.200000")


# --- bugs -------------------------------------------------------------------------------------


def test_no_leakage_names_the_failing_partition():
    outcome = q.no_leakage(days(features(x2_late=1.0), features()), CFG)
    assert outcome.details.get("failing_partitions") == BAD_DAY


def test_missing_predictions_name_the_failing_partition():
    outcome = q.predictions_sane(days(features(), features()),
                                 days(predictions([0.1, np.nan, 0.3]), predictions([0.2] * 3)),
                                 "binary")[1]
    assert outcome.details.get("failing_partitions") == BAD_DAY


def test_out_of_range_probabilities_name_the_failing_partition():
    outcome = q.predictions_sane(days(features(), features()),
                                 days(predictions([0.1, 1.5, 0.3]), predictions([0.2] * 3)),
                                 "binary")[2]
    assert outcome.details.get("failing_partitions") == BAD_DAY


def test_value_ranges_allowed_numbers_match_float_values():
    cfg = config(schema={"id": {"dtype": "int64"}, "x1": {"dtype": "float64", "allowed": [1, 2]},
                         "x2": {"dtype": "float64"}, "c": {"dtype": "string"},
                         "y": {"dtype": "int64"}})
    outcome = q.value_ranges({"2024-01-01": processed(x1=[1.0, 2.0, 1.0])}, cfg)
    assert (outcome.passed, outcome.observed) == (True, 0)


def test_value_ranges_counts_allowed_values_of_nullable_int_and_text_columns():
    cfg = config(schema={"id": {"dtype": "int64", "allowed": [1, 3]}, "x1": {"dtype": "float64"},
                         "x2": {"dtype": "float64"}, "c": {"dtype": "string", "allowed": ["a"]},
                         "y": {"dtype": "int64"}})
    day = processed(id=pd.array([1, None, 2], dtype="Int64"),
                    c=pd.array(["a", None, "z"], dtype="string"))
    outcome = q.value_ranges({"2024-01-01": day}, cfg)
    assert (outcome.passed, outcome.observed) == (False, 2)  # id 2 and c 'z'; nulls are not counted
    assert outcome.details["where"] == "2024-01-01:id, 2024-01-01:c"
