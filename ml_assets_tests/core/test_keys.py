"""Primary keys unique across the pipeline's history: the key index and the contract together."""

from __future__ import annotations

import pandas as pd
import pytest

from ml_assets.core import keys
from ml_assets.core.contract import clean
from ml_assets.core.frames import SOURCE_FILE, SOURCE_ROW
from ml_assets.core.storage import LocalStore
from ml_assets_tests.core._helpers import config, raw_frame

PREFIX = keys.index_prefix(["syn", "processed"])
D1, D2, D3 = "2024-01-01", "2024-01-02", "2024-01-03"


def day(file: str, ids: list[str]) -> pd.DataFrame:
    n = len(ids)
    return raw_frame(file, id=ids, x1=["1"] * n, x2=["2"] * n, c=["a"] * n, y=["1"] * n)


def store_day(store, cfg, partition: str, raw: pd.DataFrame):
    """Process one day against everything stored except itself and store its key index,
    as the processed asset does."""
    history = keys.KeyHistory.load(store, PREFIX, cfg, exclude=[partition])
    cleaned = clean(raw, cfg, partition, history)
    store.put(keys.index_key(PREFIX, partition),
              keys.index_bytes(cleaned.processed, cleaned.key_hashes, keys.key_spec(cfg)))
    return cleaned, history


@pytest.fixture
def store(tmp_path):
    return LocalStore(str(tmp_path / "tables"))


def test_key_of_an_earlier_day_is_quarantined_naming_partition_file_and_row(store):
    cfg = config()
    store_day(store, cfg, D1, day("s3://bkt/d1.csv", ["1", "2", "3"]))
    second, history = store_day(store, cfg, D2, day("s3://bkt/d2.csv", ["4", "2", "5"]))
    assert second.processed["id"].tolist() == [4, 5]
    q = second.quarantine
    assert q[SOURCE_FILE].tolist() == ["s3://bkt/d2.csv"] and q[SOURCE_ROW].tolist() == [2]
    assert q["reason"].tolist() == [
        f"duplicate primary key ['id']: same as partition {D1} file s3://bkt/d1.csv row 2"]
    assert history.partitions_read == 1 and history.later == {}


def test_reprocessing_a_day_does_not_collide_with_its_own_keys(store):
    cfg = config()
    first, _ = store_day(store, cfg, D1, day("d1.csv", ["1", "2"]))
    again, history = store_day(store, cfg, D1, day("d1.csv", ["1", "2"]))
    assert again.quarantine.empty
    pd.testing.assert_frame_equal(again.processed, first.processed)
    assert history.partitions_read == 0


def test_the_earliest_day_is_first_whatever_the_processing_order(store):
    cfg = config()
    # the later day is processed first: it keeps the key for now
    later, _ = store_day(store, cfg, D3, day("d3.csv", ["7", "8"]))
    assert later.quarantine.empty
    # the earlier day keeps it too (it is the first) and names the later day to re-materialize
    earlier, history = store_day(store, cfg, D1, day("d1.csv", ["8", "9"]))
    assert earlier.quarantine.empty and earlier.processed["id"].tolist() == [8, 9]
    assert history.later == {D1: {D3: 1}}
    assert history.later_partitions() == [D3]
    # re-materializing the later day now quarantines the repeat: the in-order result
    redone, _ = store_day(store, cfg, D3, day("d3.csv", ["7", "8"]))
    assert redone.processed["id"].tolist() == [7]
    assert redone.quarantine["reason"].tolist() == [
        f"duplicate primary key ['id']: same as partition {D1} file d1.csv row 1"]


def test_the_first_holder_named_is_the_earliest_stored_partition(store):
    cfg = config()
    # two stored days hold the key (D3 processed before D2 existed)
    store_day(store, cfg, D3, day("d3.csv", ["5"]))
    store_day(store, cfg, D2, day("d2.csv", ["5"]))
    history = keys.KeyHistory.load(store, PREFIX, cfg, exclude=["2024-01-04"])
    mask, where = history.repeats("2024-01-04", keys.key_hashes(
        clean(day("d4.csv", ["5"]), cfg, "2024-01-04").processed, ["id"]))
    assert mask.tolist() == [True]
    assert where.tolist() == [f"partition {D2} file d2.csv row 1"]


def test_days_of_one_run_are_checked_against_each_other_in_date_order(store):
    cfg = config()
    history = keys.KeyHistory.load(store, PREFIX, cfg, exclude=[D1, D2])
    one = clean(day("d1.csv", ["1", "2"]), cfg, D1, history)
    history.add(D1, one.processed, one.key_hashes)
    two = clean(day("d2.csv", ["2", "2", "3"]), cfg, D2, history)
    # both repeats name the earlier day's row, not each other
    assert two.quarantine["reason"].tolist() == [
        f"duplicate primary key ['id']: same as partition {D1} file d1.csv row 2"] * 2
    assert two.processed["id"].tolist() == [3]
    with pytest.raises(ValueError, match="ascending order"):
        history.add(D1, one.processed, one.key_hashes)


def test_within_day_duplicates_still_name_the_first_row(store):
    cfg = config()
    history = keys.KeyHistory.load(store, PREFIX, cfg)
    result = clean(day("d1.csv", ["1", "1"]), cfg, D1, history)
    assert result.quarantine["reason"].tolist() == [
        "duplicate primary key ['id']: same as d1.csv row 1"]
    assert len(result.key_hashes) == len(result.processed) == 1


def test_composite_key_differing_in_one_column_is_not_a_repeat(store):
    cfg = config(primary_key=["id", "c"])
    store_day(store, cfg, D1, raw_frame("d1.csv", id=["1"], x1=["1"], x2=["2"], c=["a"], y=["1"]))
    second, _ = store_day(store, cfg, D2, raw_frame("d2.csv", id=["1", "1"], x1=["1", "1"],
                                                    x2=["2", "2"], c=["b", "a"], y=["1", "1"]))
    assert second.processed["c"].tolist() == ["b"]
    assert second.quarantine["reason"].str.contains(f"partition {D1} file d1.csv row 1").tolist() \
        == [True]


def test_an_index_written_under_another_key_spec_is_not_compared(store):
    store_day(store, config(), D1, day("d1.csv", ["1"]))
    # the key column's dtype changed since: its hashes are not comparable
    cfg = config(schema={**config().model_dump(by_alias=True)["schema"],
                         "id": {"dtype": "string", "nullable": False}})
    second, history = store_day(store, cfg, D2, day("d2.csv", ["1"]))
    assert second.quarantine.empty
    assert history.stale == [D1] and history.partitions_read == 0


def test_without_a_history_clean_gives_no_hashes():
    result = clean(day("d1.csv", ["1"]), config(), D1)
    assert result.key_hashes is None


def test_key_history_outcome_names_the_later_partitions_to_rematerialize(store):
    from ml_assets.core.quality import key_history_outcome

    cfg = config()
    assert key_history_outcome(None).passed
    store_day(store, cfg, D3, day("d3.csv", ["1", "2"]))
    _, history = store_day(store, cfg, D1, day("d1.csv", ["1", "2", "3"]))
    outcome = key_history_outcome(history)
    assert (outcome.passed, outcome.observed) == (False, 2)
    assert outcome.details["failing_partitions"] == D3
    assert outcome.details["first_held_in"] == D1
    assert outcome.details["partitions_compared"] == 1


def test_an_empty_day_writes_an_empty_index_and_is_read_back(store):
    cfg = config()
    empty, _ = store_day(store, cfg, D1, day("d1.csv", ["1"]).iloc[0:0])
    assert empty.processed.empty and len(empty.key_hashes) == 0
    second, history = store_day(store, cfg, D2, day("d2.csv", ["1"]))
    assert second.quarantine.empty and history.partitions_read == 1


def test_many_days_in_one_run_stay_found(store):
    """A run adds days one by one (its chunks are merged as they grow): every earlier day's key
    is still found, and named by its own partition."""
    cfg = config()
    history = keys.KeyHistory.load(store, PREFIX, cfg)
    days = [f"2024-01-{i:02d}" for i in range(1, 31)]
    for i, partition in enumerate(days):
        result = clean(day(f"{partition}.csv", [str(100 + i), str(200 + i)]), cfg, partition,
                       history)
        history.add(partition, result.processed, result.key_hashes)
    late = clean(day("late.csv", [str(100 + i) for i in range(30)]), cfg, "2024-02-01", history)
    assert late.processed.empty
    assert late.quarantine["reason"].tolist() == [
        f"duplicate primary key ['id']: same as partition {p} file {p}.csv row 1" for p in days]
    assert len(history._run) <= 6
