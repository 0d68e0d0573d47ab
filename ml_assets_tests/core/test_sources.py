"""Reading a files source one file at a time (no Dagster): contract checks per file, columns
outside the contract, rows outside their day, unreadable files, and the `extra_columns` key."""

from __future__ import annotations

import datetime as dt
import os

import pandas as pd
import pytest

from ml_assets.config import ConfigError, load_config
from ml_assets.core.contract import clean
from ml_assets.core.frames import INGEST_REASON
from ml_assets.core.sources import read_source
from ml_assets.core.storage import LocalStore
from ml_assets_tests.helpers import write_config
from ml_assets_tests.pipeline.hostile import (
    START,
    credit_config,
    credit_dict,
    credit_frame,
    write_day,
)

D0, D1 = START.isoformat(), (START + dt.timedelta(days=1)).isoformat()
END = START + dt.timedelta(days=2)


def _two_days(tmp_path, fmt="csv"):
    src = tmp_path / "landing"
    for i in range(2):
        day = START + dt.timedelta(days=i)
        write_day(src, day, credit_frame(day, 10), fmt)
    return src


@pytest.mark.parametrize("form", ["glob", "date"])
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_good_day_has_the_contract_and_lineage_columns(tmp_path, form, fmt):
    src = _two_days(tmp_path, fmt)
    cfg = credit_config(src, form, fmt)
    batch = read_source(cfg, START, END, store=LocalStore(str(tmp_path / "tables")))
    rows = batch.day(D1)
    assert rows.problems == [] and rows.extra == {}
    assert list(rows.frame.columns) == [*cfg.columns, "_source_file", "_source_row", INGEST_REASON]
    assert rows.frame[INGEST_REASON].isna().all()
    assert rows.frame["_source_row"].tolist() == list(range(1, 11))
    assert rows.frame["_source_file"].str.endswith(f"credit-{D1}.{fmt}").all()


@pytest.mark.parametrize("form", ["glob", "date"])
def test_extra_columns_are_dropped_and_named_per_file(tmp_path, form):
    src = _two_days(tmp_path)
    write_day(src, START, credit_frame(START, 10).assign(contact_email="a@b.example"), "csv")
    cfg = credit_config(src, form)
    rows = read_source(cfg, START, END, store=LocalStore(str(tmp_path / "t"))).day(D0)
    assert "contact_email" not in rows.frame.columns
    assert list(rows.extra.values()) == [["contact_email"]]


def test_glob_rows_are_split_by_timestamp_and_strays_go_to_the_home_day(tmp_path):
    src = tmp_path / "landing"
    src.mkdir()
    both = pd.concat([credit_frame(START, 5), credit_frame(START + dt.timedelta(days=1), 5)],
                     ignore_index=True)
    both.loc[7, "observed_at"] = "2030-01-01 00:00:00"
    both.loc[8, "observed_at"] = ""
    both.to_csv(src / "credit-all.csv", index=False)
    cfg = credit_config(src, "glob")
    batch = read_source(cfg, START, END, store=None)
    first, second = batch.day(D0), batch.day(D1)
    assert len(first.frame) == 5 + 2 and first.placed_rows == 2
    assert len(second.frame) == 3
    reasons = first.frame.set_index("_source_row")[INGEST_REASON]
    assert "outside the pipeline's partitions" in reasons[8] and "filed under 2024-03-01" in reasons[8]
    assert "no timestamp to place the row in a day" in reasons[9]
    assert reasons.isna().sum() == 5
    # every day has the column (null where the row was placed): one raw schema for all days
    assert list(second.frame.columns)[-1] == INGEST_REASON and second.frame[INGEST_REASON].isna().all()
    # the processed layer quarantines them with that reason, and keeps the others
    cleaned = clean(first.frame, cfg, D0)
    assert len(cleaned.processed) == 5 and len(cleaned.quarantine) == 2
    assert cleaned.quarantine["reason"].str.contains("filed under 2024-03-01").all()
    assert INGEST_REASON not in cleaned.quarantine.loc[0, "record"]
    assert cleaned.extra_columns == []


def test_a_day_that_no_file_holds_is_empty_with_the_contract_columns(tmp_path):
    src = _two_days(tmp_path)
    os.remove(src / f"credit-{D1}.csv")
    cfg = credit_config(src, "glob")
    rows = read_source(cfg, START, END).day(D1)
    assert len(rows.frame) == 0 and rows.files == []
    assert set(cfg.columns) <= set(rows.frame.columns)


def test_extra_columns_key_is_validated(tmp_path):
    path = write_config(tmp_path / "c.yaml", credit_dict("/x/*.csv", extra_columns="maybe"))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "extra_columns" in str(err.value) and "'drop', 'keep' or 'fail'" in str(err.value)
    ok = load_config(write_config(tmp_path / "d.yaml", credit_dict("/x/*.csv")))
    assert ok.extra_columns == "drop"


@pytest.mark.parametrize("found,hint", [
    ("balance ", "'balance ' is 'balance' with spaces around it"),
    ("Balance", "'Balance' differs from 'balance' only in case (names are case-sensitive)"),
    ("account_balance", "'account_balance' may be 'balance' renamed"),
])
def test_a_missing_column_names_the_likely_misspelling(tmp_path, found, hint):
    src = _two_days(tmp_path)
    write_day(src, START, credit_frame(START, 10).rename(columns={"balance": found}), "csv")
    rows = read_source(credit_config(src, "glob"), START, END,
                       store=LocalStore(str(tmp_path / "t"))).day(D0)
    [problem] = rows.problems
    assert "missing required column(s) ['balance']" in problem.message
    assert f"({hint})" in problem.message
