"""Hostile landing files, one at a time, on a credit-like set (glob and `{date}` forms): nothing
lost, nothing leaked, nothing of a blocked day written, other days never blocked."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from ml_assets_tests.helpers import (
    checks_by_name,
    materializations,
    materialize,
    step_errors,
)
from ml_assets_tests.pipeline.hostile import (
    START,
    credit_config,
    credit_frame,
    day_name,
    parquet_files,
    stored_text,
    write_credit,
    write_day,
)

D = [(START + dt.timedelta(days=i)).isoformat() for i in range(6)]
D_DATE = [START + dt.timedelta(days=i) for i in range(6)]
INGEST = ["raw", "processed", "quarantine"]


@pytest.fixture(autouse=True)
def _pii_key(monkeypatch):
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "test-key")


def _tables(storage) -> Path:
    return Path(storage.tables_root)


def _rows(mat) -> int:
    return mat.metadata["dagster/row_count"].value


def _quarantine(result, day) -> pd.DataFrame:
    return pd.read_parquet(materializations(result, "quarantine")[day].metadata["dagster/uri"].value)


# ---------------------------------------------------------------- requirement 1: per-file columns
@pytest.mark.parametrize("form,fmt", [("glob", "csv"), ("glob", "parquet"), ("date", "csv")])
def test_a_file_missing_a_column_blocks_its_day_and_nothing_is_written(tmp_path, storage, instance,
                                                                       form, fmt):
    src = tmp_path / "landing"
    write_credit(src, fmt)
    day = START + dt.timedelta(days=3)
    write_day(src, day, credit_frame(day).drop(columns=["balance"]), fmt)
    cfg = credit_config(src, form, fmt)
    result = materialize(cfg, storage, instance, D[0], D[5], layers=INGEST)
    assert not result.success
    check = checks_by_name(result)["raw.required_columns"]
    assert not check.passed
    assert check.metadata["observed"].value == "balance"
    assert day_name(day, fmt) in check.metadata["files"].value
    assert D[3] in check.metadata["failing_partitions"].value
    assert f"partition {D[3]}" in check.metadata["problems"].value
    message = step_errors(result)
    assert f"partition {D[3]}" in message and day_name(day, fmt) in message
    assert "missing required column(s) ['balance']" in message
    # nothing of the run is written or recorded as materialized
    assert parquet_files(_tables(storage)) == []
    assert materializations(result, "raw") == {}
    assert instance.get_materialized_partitions(cfg_key(cfg, "raw")) == set()
    # a run over other days is not blocked
    other = materialize(cfg, storage, instance, D[0], D[1], layers=INGEST)
    assert other.success, step_errors(other)
    assert sorted(materializations(other, "raw")) == D[:2]


def cfg_key(cfg, layer):
    from ml_assets.defs.names import PipelineNames

    return PipelineNames(cfg.name).key(layer)


def test_an_unparseable_header_fails_required_columns_naming_file_and_column(tmp_path, storage,
                                                                            instance):
    src = tmp_path / "landing"
    write_credit(src, "csv")
    path = src / day_name(START, "csv")
    text = path.read_text().splitlines()
    text[0] = text[0].replace("age", "balance")  # two columns named 'balance', none 'age'
    path.write_text("\n".join(text) + "\n")
    cfg = credit_config(src, "glob")
    result = materialize(cfg, storage, instance, D[0], layers=["raw"])
    check = checks_by_name(result)["raw.required_columns"]
    assert not check.passed
    assert "unparseable header" in check.metadata["problems"].value
    assert "['balance'] appear more than once" in check.metadata["problems"].value
    # the names at fault, not every name of the header as if it were missing
    assert check.metadata["observed"].value == "unparseable header: balance (more than once)"
    assert day_name(START, "csv") in check.metadata["files"].value
    assert parquet_files(_tables(storage)) == []


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_s3_glob_file_missing_a_column_is_named(tmp_path, s3_endpoint, s3_client, instance, fmt,
                                                monkeypatch):
    from ml_assets.defs.resources import StorageResource
    from ml_assets_tests.conftest import BUCKET

    local = tmp_path / "landing"
    write_credit(local, fmt, days=3)
    write_day(local, START + dt.timedelta(days=1),
              credit_frame(START + dt.timedelta(days=1)).drop(columns=["credit_limit"]), fmt)
    for path in sorted(local.iterdir()):
        s3_client.upload_file(str(path), BUCKET, f"landing/{path.name}")
    from ml_assets.config import PipelineConfig
    from ml_assets_tests.pipeline.hostile import credit_dict

    cfg = PipelineConfig.model_validate(credit_dict(f"s3://{BUCKET}/landing/credit-*.{fmt}", fmt))
    storage = StorageResource(tables_root=f"s3://{BUCKET}/tables", models_root=f"s3://{BUCKET}/models",
                              s3_endpoint_url=s3_endpoint, s3_region="us-east-1")
    result = materialize(cfg, storage, instance, D[0], D[2], layers=["raw"])
    assert not result.success
    message = step_errors(result)
    assert f"s3://{BUCKET}/landing/{day_name(START + dt.timedelta(days=1), fmt)}" in message
    assert "missing required column(s) ['credit_limit']" in message
    stored = s3_client.list_objects_v2(Bucket=BUCKET, Prefix="tables/").get("Contents", [])
    assert not [o["Key"] for o in stored if o["Key"].endswith(".parquet")]
    ok = materialize(cfg, storage, instance, D[2], layers=["raw"])
    assert ok.success, step_errors(ok)


# ---------------------------------------------------------------- requirement 2: PII never leaks
ADDRESSES = ["leak.one@corp.example", "leak.two@corp.example"]


def _with_pii_column(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    frame = frame.copy()
    if kind == "renamed":  # the PII column renamed in one file
        frame = frame.rename(columns={"email": "Customer_Email"})
        frame.loc[:1, "Customer_Email"] = ADDRESSES
    else:  # a new column holding e-mail addresses
        frame["contact_email"] = "x@y.example"
        frame.loc[:1, "contact_email"] = ADDRESSES
    frame.loc[0, "balance"] = "n/a"  # the row with the first address is quarantined
    return frame


@pytest.mark.parametrize("form", ["glob", "date"])
@pytest.mark.parametrize("kind", ["renamed", "new"])
def test_plain_addresses_never_reach_storage(tmp_path, storage, instance, form, kind):
    src = tmp_path / "landing"
    write_credit(src, "csv")
    day = START + dt.timedelta(days=2)
    write_day(src, day, _with_pii_column(credit_frame(day), kind), "csv")
    cfg = credit_config(src, form)
    result = materialize(cfg, storage, instance, D[0], D[5], layers=INGEST)
    text = stored_text(_tables(storage))
    assert not any(a in text for a in ADDRESSES)
    if kind == "renamed":  # 'email' (hashed) is missing from that file: its day is blocked
        assert not result.success
        message = step_errors(result)
        assert "missing required column(s) ['email']" in message
        assert "'Customer_Email' may be 'email' renamed" in message
        assert parquet_files(_tables(storage)) == []
    else:  # dropped before anything is written, named and counted
        assert result.success, step_errors(result)
        [mat] = [m for m in result.get_asset_materialization_events()
                 if m.materialization.asset_key.path[-1] == "raw"][:1]
        meta = _raw_output_metadata(result)
        assert meta["columns_outside_contract"].value == "contact_email (1 file)"
        assert meta["columns_outside_contract_count"].value == 1
        assert meta["columns_outside_contract_action"].value == "drop"
        raw = materializations(result, "raw")
        assert raw[D[2]].metadata["extra_columns"].value == "contact_email"
        assert raw[D[2]].metadata["extra_columns_files"].value == 1
        assert "extra_columns" not in raw[D[1]].metadata  # only the day that had them
        from ml_assets.runner import summarize  # the `ml-assets run` summary names them once

        summary = summarize(cfg, result, START, START + dt.timedelta(days=6), START, {})
        assert summary["extra_columns"] == {"extra_columns": ["contact_email"],
                                            "extra_columns_files": 1}
        q = _quarantine(result, D[2])  # the quarantined row's record holds no address either
        assert q["_source_row"].tolist() == [1] and "balance" in q.loc[0, "record"]
        assert len(parquet_files(_tables(storage))) >= 6 * 3 - 1
        assert mat is not None


def _raw_output_metadata(result):
    """The run-level metadata of the raw output, as the run's last raw materialization (the
    asset's latest) carries it."""
    events = [e for e in result.get_asset_materialization_events()
              if e.materialization.asset_key.path[-1] == "raw"]
    return events[-1].materialization.metadata


def test_extra_columns_keep_stores_them_and_fail_blocks(tmp_path, storage, instance):
    src = tmp_path / "landing"
    write_credit(src, "csv", days=2)
    write_day(src, START, _with_pii_column(credit_frame(START), "new"), "csv")
    keep = credit_config(src, "glob", extra_columns="keep",
                         partitions={"start": D[0], "end": D[2]})
    result = materialize(keep, storage, instance, D[0], D[1], layers=INGEST)
    assert result.success, step_errors(result)
    assert ADDRESSES[0] in stored_text(_tables(storage))  # the grep above can see a leak
    fail = credit_config(src, "glob", extra_columns="fail", name="credit_strict",
                         partitions={"start": D[0], "end": D[2]})
    blocked = materialize(fail, storage, instance, D[0], D[1], layers=INGEST)
    assert not blocked.success
    message = step_errors(blocked)
    assert "column(s) ['contact_email'] are outside the contract (extra_columns: fail)" in message
    check = checks_by_name(blocked)["raw.required_columns"]
    assert not check.passed and check.metadata["columns_outside_contract"].value == "contact_email"
    # nothing is missing: observed names what failed it
    assert check.metadata["observed"].value == "outside the contract: contact_email"
    assert day_name(START, "csv") in message


def _with_reserved_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """A file that carries columns named like the platform's own lineage columns."""
    frame = frame.copy()
    frame["_source_file"] = "s3://elsewhere/forged.csv"
    frame["_source_row"] = 999
    frame["_ingest_reason"] = "forged reason"
    return frame


RESERVED = ["_source_file", "_source_row", "_ingest_reason"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_source_columns_named_like_lineage_columns_are_outside_the_contract(
        tmp_path, storage, instance, fmt):
    src = tmp_path / "landing"
    write_credit(src, fmt, days=2)
    write_day(src, START, _with_reserved_columns(credit_frame(START)), fmt)
    path = src / day_name(START, fmt)
    span = {"start": D[0], "end": D[2]}
    # drop (the default): named and counted, never read into the lineage columns
    result = materialize(credit_config(src, "glob", fmt, partitions=span), storage, instance,
                         D[0], D[1], layers=INGEST)
    assert result.success, step_errors(result)
    raw = materializations(result, "raw")
    assert sorted(raw[D[0]].metadata["extra_columns"].value.split(", ")) == sorted(RESERVED)
    stored = pd.read_parquet(raw[D[0]].metadata["dagster/uri"].value)
    assert set(stored["_source_file"]) == {str(path)}
    assert stored["_source_row"].tolist() == list(range(1, len(stored) + 1))
    assert "forged" not in stored_text(_tables(storage))
    assert materializations(result, "quarantine")[D[0]].metadata["dagster/row_count"].value == 0
    # fail and keep: the day is blocked, naming the file and the columns
    for action, words in (("fail", "are outside the contract (extra_columns: fail)"),
                          ("keep", "cannot be kept: the platform writes its own")):
        cfg = credit_config(src, "glob", fmt, partitions=span, extra_columns=action,
                            name=f"credit_{action}")
        blocked = materialize(cfg, storage, instance, D[0], D[1], layers=INGEST)
        assert not blocked.success
        message = step_errors(blocked)
        assert str(path) in message and words in message, message
        assert all(c in message for c in RESERVED), message


# ---------------------------------------------------------------- requirement 2: rows never dropped
def test_glob_rows_outside_the_partitions_are_quarantined_and_counted(tmp_path, storage, instance):
    src = tmp_path / "landing"
    write_credit(src, "csv")
    day = START + dt.timedelta(days=1)
    frame = credit_frame(day)
    frame.loc[[3, 4], "observed_at"] = ["2099-06-01 10:00:00", "2099-06-02 11:00:00"]
    write_day(src, day, frame, "csv")
    cfg = credit_config(src, "glob")
    result = materialize(cfg, storage, instance, D[0], D[5], layers=INGEST)
    assert result.success, step_errors(result)
    raw = materializations(result, "raw")
    assert sum(_rows(m) for m in raw.values()) == 6 * 40  # every row received is in raw
    assert raw[D[1]].metadata["rows_outside_day"].value == 2
    assert _raw_output_metadata(result)["rows_outside_day_in_run"].value == 2
    assert raw[D[0]].metadata["rows_outside_day"].value == 0
    q = _quarantine(result, D[1])
    outside = q[q["reason"].str.contains("outside the pipeline's partitions")]
    assert sorted(outside["_source_row"]) == [4, 5]
    assert outside["reason"].str.contains("2099-06-01 10:00:00|2099-06-02 11:00:00").all()
    assert outside["reason"].str.contains(f"filed under {D[1]}").all()
    processed = materializations(result, "processed")
    assert sum(_rows(m) for m in processed.values()) + sum(
        len(_quarantine(result, d)) for d in D) == 6 * 40


def test_dated_rows_outside_their_files_day_are_quarantined(tmp_path, storage, instance):
    src = tmp_path / "landing"
    write_credit(src, "csv", days=2)
    frame = credit_frame(START)
    frame.loc[0, "observed_at"] = "2099-01-01 00:00:00"
    frame.loc[1, "observed_at"] = f"{D[1]} 09:00:00"
    write_day(src, START, frame, "csv")
    cfg = credit_config(src, "date", partitions={"start": D[0], "end": D[2]})
    result = materialize(cfg, storage, instance, D[0], layers=INGEST)
    assert result.success, step_errors(result)
    q = _quarantine(result, D[0])
    assert sorted(q["_source_row"]) == [1, 2]
    assert q["reason"].str.contains(f"is outside its file's day {D[0]}").all()
    assert materializations(result, "raw")[D[0]].metadata["rows_outside_day"].value == 2
    assert _rows(materializations(result, "processed")[D[0]]) == 38


def test_a_file_with_no_row_inside_the_partitions_is_reported_as_a_file(tmp_path, storage,
                                                                        instance):
    src = tmp_path / "landing"
    write_credit(src, "csv", days=2)
    stray = credit_frame(START).assign(observed_at="2099-01-01 00:00:00")
    stray.to_csv(src / "credit-extra.csv", index=False)
    cfg = credit_config(src, "glob", partitions={"start": D[0], "end": D[2]})
    result = materialize(cfg, storage, instance, D[0], D[1], layers=["raw"])
    assert result.success, step_errors(result)
    check = checks_by_name(result)["raw.readable_files"]
    assert not check.passed and check.severity.value == "WARN"
    assert "credit-extra.csv: none of its 40 rows is inside the pipeline's partitions" in \
        check.metadata["files"].value


# ---------------------------------------------------------------- requirement 2: unreadable files
def _hostile_bytes(kind: str, fmt: str, good: Path) -> bytes:
    if kind == "empty":
        return b""
    if kind == "latin1":
        return good.read_bytes().replace(b"bank.example", b"b\xe4nk.example", 1)
    if kind == "ragged":
        lines = good.read_bytes().splitlines()
        lines[3] = lines[3] + b",surplus"
        return b"\n".join(lines) + b"\n"
    if kind == "corrupt":
        data = good.read_bytes()
        return data[: len(data) // 2]  # a truncated Parquet file: no footer
    raise AssertionError(kind)


CASES = [("empty", "csv"), ("latin1", "csv"), ("ragged", "csv"), ("corrupt", "parquet"),
         ("empty", "parquet")]


@pytest.mark.parametrize("kind,fmt", CASES)
def test_glob_unreadable_file_dated_outside_the_run_never_blocks_it(tmp_path, storage, instance,
                                                                     kind, fmt):
    src = tmp_path / "landing"
    write_credit(src, fmt)
    bad_day = START + dt.timedelta(days=5)
    path = src / day_name(bad_day, fmt)
    data = _hostile_bytes(kind, fmt, path)
    path.write_bytes(data)
    cfg = credit_config(src, "glob", fmt)
    result = materialize(cfg, storage, instance, D[0], D[1], layers=INGEST)
    assert result.success, step_errors(result)
    assert sorted(materializations(result, "raw")) == D[:2]
    check = checks_by_name(result)["raw.readable_files"]
    assert not check.passed and check.severity.value == "WARN"
    files = check.metadata["files"].value
    assert str(path) in files and f"size {len(data)} B" in files
    assert hashlib.sha256(data).hexdigest()[:16] in files
    assert check.metadata["unreadable_files"].value == 1
    assert check.metadata["blocked_partitions"].value == "none"
    # the day it could hold (from its name) is blocked, with nothing written
    before = set(parquet_files(_tables(storage)))
    blocked = materialize(cfg, storage, instance, D[4], D[5], layers=INGEST)
    assert not blocked.success
    assert f"partition {D[5]}" in step_errors(blocked) and str(path) in step_errors(blocked)
    assert set(parquet_files(_tables(storage))) == before


@pytest.mark.parametrize("kind,fmt", CASES)
def test_dated_unreadable_file_blocks_only_its_day(tmp_path, storage, instance, kind, fmt):
    src = tmp_path / "landing"
    write_credit(src, fmt, days=3)
    path = src / day_name(START + dt.timedelta(days=1), fmt)
    path.write_bytes(_hostile_bytes(kind, fmt, path))
    cfg = credit_config(src, "date", fmt, partitions={"start": D[0], "end": D[3]})
    result = materialize(cfg, storage, instance, D[0], D[2], layers=INGEST)
    assert not result.success
    assert parquet_files(_tables(storage)) == []
    message = step_errors(result)
    assert f"partition {D[1]}" in message and str(path) in message and "cannot be read" in message
    data = path.read_bytes()
    if kind == "latin1":  # where, as a line of the whole file
        at = data.index(b"\xe4")
        line = data.count(b"\n", 0, at) + 1
        assert f"at line {line}, byte {at} of the file" in message
    check = checks_by_name(result)["raw.readable_files"]
    if kind == "ragged":  # pandas' message on one line, without its trailing newline
        assert re.search(r"Expected \d+ fields in line 4, saw \d+ \(size \d+ B",
                         check.metadata["files"].value), check.metadata["files"].value
    assert str(path) in check.metadata["files"].value
    from ml_assets.runner import summarize  # the summary names the day blocked, not the range

    summary = summarize(cfg, result, D_DATE[0], D_DATE[2], D_DATE[0], {})
    [item] = [c for c in summary["failed_checks"] if c["check"] == "readable_files"]
    assert item["partitions"] == D[1]
    for day in (D[0], D[2]):  # the other days run
        ok = materialize(cfg, storage, instance, day, layers=INGEST)
        assert ok.success, step_errors(ok)


def test_an_unreadable_file_whose_days_cannot_be_known_blocks_nothing(tmp_path, storage, instance):
    src = tmp_path / "landing"
    write_credit(src, "csv", days=2)
    (src / "credit-dump.csv").write_bytes(b"")
    cfg = credit_config(src, "glob", partitions={"start": D[0], "end": D[2]})
    result = materialize(cfg, storage, instance, D[0], D[1], layers=INGEST)
    assert result.success, step_errors(result)
    check = checks_by_name(result)["raw.readable_files"]
    assert "credit-dump.csv" in check.metadata["files"].value
    from ml_assets.runner import summarize

    summary = summarize(cfg, result, D_DATE[0], D_DATE[1], D_DATE[0], {})
    [item] = [c for c in summary["failed_checks"] if c["check"] == "readable_files"]
    assert item["partitions"] == "none blocked"


def test_an_unreadable_new_version_blocks_the_days_its_last_readable_version_held(
        tmp_path, storage, instance):
    src = tmp_path / "landing"
    write_credit(src, "csv", days=2)
    both = pd.concat([credit_frame(START), credit_frame(START + dt.timedelta(days=1))])
    for p in src.iterdir():
        p.unlink()
    both.to_csv(src / "credit-all.csv", index=False)
    cfg = credit_config(src, "glob", partitions={"start": D[0], "end": D[3]})
    first = materialize(cfg, storage, instance, D[0], D[1], layers=["raw"])
    assert first.success, step_errors(first)
    (src / "credit-all.csv").write_bytes(b"\xff\xfe garbage")
    blocked = materialize(cfg, storage, instance, D[1], layers=["raw"])
    assert not blocked.success and "credit-all.csv" in step_errors(blocked)
    free = credit_frame(START + dt.timedelta(days=2))
    free.to_csv(src / "credit-third.csv", index=False)
    ok = materialize(cfg, storage, instance, D[2], layers=["raw"])
    assert ok.success, step_errors(ok)


# ---------------------------------------------------------------- requirement 2: file modes
@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_written_files_follow_the_process_umask(tmp_path, storage, instance, mask):
    src = tmp_path / "landing"
    write_credit(src, "csv", days=1)
    cfg = credit_config(src, "date", partitions={"start": D[0], "end": D[1]})
    old = os.umask(mask)
    try:
        result = materialize(cfg, storage, instance, D[0], layers=INGEST)
    finally:
        os.umask(old)
    assert result.success, step_errors(result)
    files = parquet_files(_tables(storage))
    assert len(files) >= 3  # raw, processed, quarantine (and the key index)
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(0o666 & ~mask)}


def test_a_glob_file_without_the_timestamp_column_and_no_date_is_reported(tmp_path, storage,
                                                                         instance):
    src = tmp_path / "landing"
    write_credit(src, "csv", days=2)
    credit_frame(START).drop(columns=["observed_at"]).to_csv(src / "credit-misc.csv", index=False)
    cfg = credit_config(src, "glob", partitions={"start": D[0], "end": D[2]})
    result = materialize(cfg, storage, instance, D[0], D[1], layers=["raw"])
    assert result.success, step_errors(result)  # its days cannot be known: it blocks none
    check = checks_by_name(result)["raw.readable_files"]
    assert not check.passed
    assert "credit-misc.csv: missing required column(s) ['observed_at']" in \
        check.metadata["files"].value


@pytest.mark.parametrize("env_name", ["ML_ASSETS_PII_KEY", "CREDIT_HMAC_KEY"])
def test_a_missing_pii_key_names_the_variable_before_any_read(tmp_path, storage, instance,
                                                              monkeypatch, env_name):
    import ml_assets.core.sources as sources

    monkeypatch.delenv("ML_ASSETS_PII_KEY", raising=False)
    monkeypatch.delenv("CREDIT_HMAC_KEY", raising=False)
    reads = []
    real = sources.read_uri
    monkeypatch.setattr(sources, "read_uri", lambda uri, client=None: reads.append(uri) or real(
        uri, client))
    src = tmp_path / "landing"
    write_credit(src, "csv", days=1)
    cfg = credit_config(src, "glob", pii_key_env=env_name,
                        partitions={"start": D[0], "end": D[1]})
    result = materialize(cfg, storage, instance, D[0], layers=["raw"])
    assert not result.success
    message = step_errors(result)
    assert f"set the environment variable {env_name}" in message and "['email']" in message
    assert reads == [] and parquet_files(_tables(storage)) == []
