from __future__ import annotations

import json

import pandas as pd
import pytest

from ml_assets.core.contract import QUARANTINE_COLUMNS, ContractError, clean
from ml_assets.core.frames import SOURCE_FILE, SOURCE_ROW
from ml_assets_tests.core._helpers import config, raw_frame

PART = "2024-01-05"


@pytest.fixture(scope="module")
def cfg():
    return config(
        schema={
            "id": {"dtype": "int64", "nullable": False, "min": 1, "max": 1000},
            "ts": {"dtype": "datetime"},
            "x": {"dtype": "float64", "min": 0, "max": 10},
            "flag": {"dtype": "bool"},
            "cat": {"dtype": "string", "allowed": ["a", "b"]},
            "y": {"dtype": "int64"},
        },
        primary_key=["id"],
        target={"column": "y", "task": "binary", "positive_value": 1},
        features={"numeric": ["x"], "categorical": ["cat"]},
    )


GOOD = {"id": "1", "ts": "2024-01-05 10:30", "x": "2.5", "flag": "yes", "cat": "a", "y": "1"}


def rows(*changes: dict, file: str = "in.csv") -> pd.DataFrame:
    """One raw row per `changes` dict: GOOD with the changes applied; ids 1, 2, ... by default."""
    records = []
    for i, change in enumerate(changes, start=1):
        records.append({**GOOD, "id": str(i), **change})
    return raw_frame(file, **{k: [r[k] for r in records] for k in GOOD})


def only_reason(result) -> str:
    assert len(result.quarantine) == 1, result.quarantine
    return result.quarantine["reason"].iloc[0]


def test_unparseable_int_is_quarantined_with_column_expected_and_found(cfg):
    result = clean(rows({}, {"id": "abc"}, file="s3://bkt/day.csv"), cfg, PART)
    assert len(result.processed) == 1
    q = result.quarantine.iloc[0]
    assert q["reason"] == "column 'id': expected int64, found 'abc'"
    assert q[SOURCE_FILE] == "s3://bkt/day.csv"
    assert q[SOURCE_ROW] == 2
    assert q["partition"] == PART
    assert list(result.quarantine.columns) == QUARANTINE_COLUMNS


@pytest.mark.parametrize("value", ["3.5", "1e-3", "inf", "99999999999999999999", "1,5"])
def test_non_integer_text_in_int_column_is_quarantined(cfg, value):
    result = clean(rows({"id": value}), cfg, PART)
    assert result.processed.empty
    assert only_reason(result) == f"column 'id': expected int64, found {value!r}"


@pytest.mark.parametrize("value,parsed", [("7", 7), (" 8 ", 8), ("9.0", 9), ("1e2", 100)])
def test_integral_text_in_int_column_is_accepted(cfg, value, parsed):
    result = clean(rows({"id": value}), cfg, PART)
    assert result.quarantine.empty
    assert result.processed["id"].tolist() == [parsed]


@pytest.mark.parametrize("value", [None, "", "   "])
def test_null_in_non_nullable_column_is_quarantined(cfg, value):
    result = clean(rows({"id": value}), cfg, PART)
    assert only_reason(result) == "column 'id': null not allowed"


@pytest.mark.parametrize("change,reason", [
    ({"x": "-0.5"}, "column 'x': -0.5 below min 0"),
    ({"x": "10.25"}, "column 'x': 10.25 above max 10"),
    ({"id": "0"}, "column 'id': 0 below min 1"),
    ({"id": "1001"}, "column 'id': 1001 above max 1000"),
    ({"cat": "z"}, "column 'cat': 'z' not in allowed ['a', 'b']"),
    ({"y": None}, "missing label (column 'y' is null)"),
    ({"flag": "maybe"}, "column 'flag': expected bool, found 'maybe'"),
    ({"ts": "not a date"}, "column 'ts': expected datetime, found 'not a date'"),
    ({"x": "abc"}, "column 'x': expected float64, found 'abc'"),
], ids=["below_min", "above_max", "int_below_min", "int_above_max", "not_allowed",
        "missing_label", "bad_bool", "bad_datetime", "bad_float"])
def test_row_level_problem_is_quarantined_with_reason(cfg, change, reason):
    result = clean(rows(change), cfg, PART)
    assert result.processed.empty
    assert only_reason(result) == reason


@pytest.mark.parametrize("value", ["0", "10", "0.0", "10.0"])
def test_bounds_are_inclusive(cfg, value):
    result = clean(rows({"x": value}), cfg, PART)
    assert result.quarantine.empty


def test_duplicate_primary_key_quarantines_the_second_and_names_the_first():
    cfg2 = config(primary_key=["id", "c"])
    a = raw_frame("a.csv", id=["1", "1", "2"], x1=["1", "2", "3"], x2=["0", "0", "0"],
                  c=["k", "k", "k"], y=["1", "0", "1"])
    b = raw_frame("b.csv", id=["2", "1"], x1=["4", "5"], x2=["0", "0"], c=["k", "j"], y=["0", "1"])
    raw = pd.concat([a, b], ignore_index=True)
    result = clean(raw, cfg2, PART)
    q = result.quarantine
    assert list(zip(q[SOURCE_FILE], q[SOURCE_ROW], strict=False)) == [("a.csv", 2), ("b.csv", 1)]
    assert q["reason"].tolist() == [
        "duplicate primary key ['id', 'c']: same as a.csv row 1",
        "duplicate primary key ['id', 'c']: same as a.csv row 3",
    ]
    # the first occurrence stays; the key differing only in `c` is not a duplicate
    kept = list(zip(result.processed[SOURCE_FILE], result.processed[SOURCE_ROW], strict=False))
    assert kept == [("a.csv", 1), ("a.csv", 3), ("b.csv", 2)]


def test_duplicate_of_a_quarantined_row_is_not_a_duplicate(cfg):
    # the first row with id 1 is bad for another reason, so the second becomes the kept one
    result = clean(rows({"id": "1", "x": "-1"}, {"id": "1"}), cfg, PART)
    assert result.processed[SOURCE_ROW].tolist() == [2]
    assert only_reason(result) == "column 'x': -1 below min 0"


def test_several_problems_in_one_row_give_several_reasons(cfg):
    result = clean(rows({"id": "x1", "x": "11", "cat": "q", "y": None}), cfg, PART)
    reasons = only_reason(result).split("; ")
    assert reasons == [
        "column 'id': expected int64, found 'x1'",
        "column 'x': 11 above max 10",
        "column 'cat': 'q' not in allowed ['a', 'b']",
        "missing label (column 'y' is null)",
    ]


def test_good_rows_get_contract_dtypes_and_values(cfg):
    result = clean(rows({}, {"x": None, "flag": None, "cat": None, "ts": "2024-01-05T23:59:59"}),
                   cfg, PART)
    p = result.processed
    assert result.quarantine.empty
    assert {c: str(p[c].dtype) for c in GOOD} == {
        "id": "Int64", "ts": "datetime64[ns]", "x": "float64", "flag": "boolean",
        "cat": "string", "y": "Int64",
    }
    assert p["id"].tolist() == [1, 2]
    assert p["ts"].tolist() == [pd.Timestamp("2024-01-05 10:30"), pd.Timestamp("2024-01-05 23:59:59")]
    assert p["x"].iloc[0] == 2.5 and pd.isna(p["x"].iloc[1])
    assert bool(p["flag"].iloc[0]) is True
    assert pd.isna(p["flag"].iloc[1]) and pd.isna(p["cat"].iloc[1])
    assert p[SOURCE_ROW].tolist() == [1, 2]
    assert set(p.columns) == {*GOOD, SOURCE_FILE, SOURCE_ROW}


@pytest.mark.parametrize("text,expected", [
    ("yes", True), ("no", False), ("true", True), ("false", False), ("1", True), ("0", False),
    ("YES", True), ("False", False), (" y ", True), ("n", False), ("T", True), ("f", False),
])
def test_bool_parsing(cfg, text, expected):
    result = clean(rows({"flag": text}), cfg, PART)
    assert result.quarantine.empty
    assert bool(result.processed["flag"].iloc[0]) is expected


@pytest.mark.parametrize("text", ["2", "yess", "-1", "on"])
def test_bool_parsing_rejects_other_text(cfg, text):
    result = clean(rows({"flag": text}), cfg, PART)
    assert only_reason(result) == f"column 'flag': expected bool, found {text!r}"


def test_missing_required_column_fails_the_partition(cfg):
    raw = rows({}).drop(columns=["x", "cat"])
    raw[SOURCE_FILE] = "s3://bkt/raw/2024-01-05.csv"
    with pytest.raises(ContractError) as info:
        clean(raw, cfg, PART)
    msg = str(info.value)
    assert f"partition {PART}" in msg
    assert "s3://bkt/raw/2024-01-05.csv" in msg
    assert "missing required column(s) ['x', 'cat']" in msg
    assert "found ['id', 'ts', 'flag', 'y']" in msg
    assert "expected ['id', 'ts', 'x', 'flag', 'cat', 'y']" in msg


def test_dropped_pii_column_is_not_required():
    cfg2 = config(schema={**config().model_dump(by_alias=True)["schema"], "ssn": {"dtype": "string"}},
                  pii={"ssn": "drop"})
    raw = raw_frame(id=["1"], x1=["1"], x2=["2"], c=["a"], y=["1"])
    result = clean(raw, cfg2, PART)
    assert len(result.processed) == 1 and "ssn" not in result.processed


def test_extra_columns_are_reported_not_kept(cfg):
    raw = rows({})
    raw["surprise"] = "?"
    result = clean(raw, cfg, PART)
    assert result.extra_columns == ["surprise"]
    assert "surprise" not in result.processed.columns


def test_empty_raw_frame_gives_empty_outputs(cfg):
    raw = rows({}).iloc[0:0]
    result = clean(raw, cfg, PART)
    assert result.processed.empty and result.quarantine.empty
    assert list(result.quarantine.columns) == QUARANTINE_COLUMNS
    assert str(result.processed["id"].dtype) == "Int64"


def test_input_frame_is_not_modified(cfg):
    raw = rows({}, {"id": "bad", "x": " 11 "}, {"id": "1"}, {"flag": "No", "cat": None})
    before = raw.copy(deep=True)
    clean(raw, cfg, PART)
    pd.testing.assert_frame_equal(raw, before)


def test_quarantine_record_holds_the_original_values(cfg):
    result = clean(rows({"id": " 3.5", "x": "", "cat": None, "flag": "Yes"}), cfg, PART)
    record = json.loads(result.quarantine["record"].iloc[0])
    assert record == {"id": " 3.5", "ts": "2024-01-05 10:30", "x": "", "flag": "Yes",
                      "cat": None, "y": "1"}


COUNT_CASES = {
    "all_good": [{}, {}, {}],
    "all_bad": [{"id": "a"}, {"x": "-3"}, {"y": None}],
    "mixed": [{}, {"id": "1"}, {"cat": "zz"}, {"flag": ""}, {"ts": ""}],
    "dups": [{"id": "5"}, {"id": "5"}, {"id": "5"}, {"id": "6"}],
    "one": [{"x": "nope"}],
}


@pytest.mark.parametrize("changes", COUNT_CASES.values(), ids=COUNT_CASES.keys())
def test_every_raw_row_is_processed_or_quarantined(cfg, changes):
    raw = rows(*changes)
    result = clean(raw, cfg, PART)
    assert len(result.processed) + len(result.quarantine) == len(raw)
    seen = sorted([*result.processed[SOURCE_ROW].tolist(), *result.quarantine[SOURCE_ROW].tolist()])
    assert seen == list(range(1, len(raw) + 1))


# --- bugs -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["9999-12-31", "1600-01-01"])
def test_out_of_range_datetime_is_quarantined_not_fatal(cfg, value):
    result = clean(rows({}, {"ts": value}), cfg, PART)
    assert len(result.processed) == 1
    assert only_reason(result) == f"column 'ts': expected datetime, found {value!r}"


def test_timestamps_with_different_utc_offsets_are_parsed(cfg):
    result = clean(rows({"ts": "2024-03-30T10:00:00+01:00"}, {"ts": "2024-03-31T10:00:00+02:00"}),
                   cfg, PART)
    assert result.quarantine.empty
    assert result.processed["ts"].tolist() == [pd.Timestamp("2024-03-30 09:00"),
                                               pd.Timestamp("2024-03-31 08:00")]


def test_single_utc_offset_is_converted_to_naive_utc(cfg):
    result = clean(rows({"ts": "2024-01-05T10:00:00+02:00"}), cfg, PART)
    assert result.processed["ts"].tolist() == [pd.Timestamp("2024-01-05 08:00")]


def test_allowed_numbers_match_float_values():
    cfg2 = config(schema={**config().model_dump(by_alias=True)["schema"],
                          "x1": {"dtype": "float64", "allowed": [1, 2]}})
    raw = raw_frame(id=["1", "2"], x1=["1", "2.0"], x2=["0", "0"], c=["a", "a"], y=["1", "0"])
    result = clean(raw, cfg2, PART)
    assert result.quarantine["reason"].tolist() == []


# --- the vectorised clean gives what the column-at-a-time one gave -----------------------------

def _as_text(raw: pd.DataFrame) -> pd.DataFrame:
    """The same rows as a CSV source delivers them: every value text, missing as null."""
    text = raw.drop(columns=[SOURCE_FILE, SOURCE_ROW]).astype(str)
    text = text.where(raw.drop(columns=[SOURCE_FILE, SOURCE_ROW]).notna(), None).astype(object)
    return pd.concat([text, raw[[SOURCE_FILE, SOURCE_ROW]]], axis=1)


@pytest.mark.parametrize("as_text", [False, True], ids=["typed", "text"])
def test_clean_matches_the_reference_on_real_flights_days(as_text):
    import datetime as dt

    from ml_assets.core.sources import read_source
    from ml_assets_tests.core._reference import reference_clean
    from ml_assets_tests.helpers import flights_config

    cfg = flights_config()
    batch = read_source(cfg, dt.date(2013, 1, 1), dt.date(2013, 1, 8))
    quarantined = 0
    for day, raw in batch.frames.items():
        raw = _as_text(raw) if as_text else raw
        new, old = clean(raw, cfg, day), reference_clean(raw, cfg, day)
        pd.testing.assert_frame_equal(new.processed, old.processed)
        pd.testing.assert_frame_equal(new.quarantine, old.quarantine)
        assert new.extra_columns == old.extra_columns
        quarantined += len(new.quarantine)
    assert quarantined > 0  # the days compared do exercise the quarantine


def test_clean_matches_the_reference_on_damaged_rows(cfg):
    from ml_assets_tests.core._reference import reference_clean

    raw = rows(*COUNT_CASES["mixed"], *COUNT_CASES["all_bad"], {"id": "1e2"}, {"x": " 3 "},
               {"id": "5", "x": "10.0"}, {"flag": "N"}, {"ts": "2024-01-05T10:00:00+02:00"})
    new, old = clean(raw, cfg, PART), reference_clean(raw, cfg, PART)
    pd.testing.assert_frame_equal(new.processed, old.processed)
    pd.testing.assert_frame_equal(new.quarantine, old.quarantine)
