"""Re-ingesting with another PII key: refused before anything is written, unless the rotation is
explicit (ML_ASSETS_PII_KEY_ROTATE names the new key's fingerprint); each raw partition records
the fingerprint of the key that hashed it. Real Dagster runs of the raw step."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from ml_assets.config import load_config
from ml_assets.core.pii import ROTATE_ENV, key_fingerprint, key_record_key
from ml_assets.definitions import storage_for
from ml_assets.environment import settings_from_env
from ml_assets_tests.conftest import BUCKET
from ml_assets_tests.helpers import (
    materializations,
    materialize,
    rentals_dict,
    step_errors,
    write_config,
    write_rentals,
)

pytestmark = pytest.mark.slow
DAYS = ("2024-03-01", "2024-03-02")


def _local(tmp_path, request):
    return request.getfixturevalue("storage")


def _s3(tmp_path, request):
    endpoint = request.getfixturevalue("s3_endpoint")
    return storage_for(settings_from_env({"S3_BUCKET": BUCKET, "AWS_ENDPOINT_URL": endpoint,
                                          "AWS_REGION": "us-east-1"}))


@pytest.fixture(params=[_local, _s3], ids=["local", "s3"])
def any_storage(request, tmp_path):
    return request.param(tmp_path, request)


def _config(tmp_path, **over):
    src = tmp_path / "src"
    write_rentals(src, dt.date(2024, 3, 1), days=2, rows=30)
    return load_config(write_config(tmp_path / "r.yaml", rentals_dict(str(src / "{date}.csv"),
                                                                       **over)))


def _raw(cfg, storage, instance):
    return materialize(cfg, storage, instance, DAYS[0], DAYS[1], layers=["raw"])


def _stored(storage) -> dict[str, bytes]:
    """Every stored object but the file manifest (a cache of facts about the landing files)."""
    store = storage.tables()
    return {k: store.get(k) for k in store.list("") if not k.endswith("_ingest/files.json")}


def _fingerprints(result) -> dict:
    return {day: m.metadata.get("pii_key_fingerprint") and m.metadata["pii_key_fingerprint"].value
            for day, m in materializations(result, "raw").items()}


def test_same_key_twice_records_its_fingerprint(tmp_path, storage, instance, monkeypatch):
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "key-one")
    monkeypatch.delenv(ROTATE_ENV, raising=False)
    cfg = _config(tmp_path)
    fp = key_fingerprint("key-one")
    for _ in range(2):
        result = _raw(cfg, storage, instance)
        assert result.success, step_errors(result)
        assert _fingerprints(result) == {DAYS[0]: fp, DAYS[1]: fp}
    doc = json.loads(storage.tables().get(key_record_key("rentals")))
    assert doc["fingerprint"] == fp and doc["rotations"] == []
    assert not any(b"key-one" in data for data in _stored(storage).values())


def test_another_key_is_refused_and_nothing_is_written(tmp_path, any_storage, instance,
                                                       monkeypatch):
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "key-one")
    monkeypatch.delenv(ROTATE_ENV, raising=False)
    cfg = _config(tmp_path)
    assert _raw(cfg, any_storage, instance).success
    before = _stored(any_storage)

    monkeypatch.setenv("ML_ASSETS_PII_KEY", "key-two")
    result = _raw(cfg, any_storage, instance)
    assert not result.success
    old, new = key_fingerprint("key-one"), key_fingerprint("key-two")
    assert (
        "raw: nothing written; ML_ASSETS_PII_KEY differs from the key this pipeline's stored data "
        f"was hashed with (fingerprint {old}, now {new}): hashed columns would not join across "
        f"days. To rotate the key on purpose, set ML_ASSETS_PII_KEY_ROTATE={new} for this run, "
        "then re-materialize raw for the stored days; otherwise set ML_ASSETS_PII_KEY back to "
        "the old key\n") in step_errors(result)
    assert materializations(result, "raw") == {}
    assert _stored(any_storage) == before  # raw files and the key record unchanged


def test_explicit_rotation_is_accepted_and_recorded(tmp_path, storage, instance, monkeypatch):
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "key-one")
    monkeypatch.delenv(ROTATE_ENV, raising=False)
    cfg = _config(tmp_path)
    assert _raw(cfg, storage, instance).success
    old, new = key_fingerprint("key-one"), key_fingerprint("key-two")

    monkeypatch.setenv("ML_ASSETS_PII_KEY", "key-two")
    monkeypatch.setenv(ROTATE_ENV, new)
    result = _raw(cfg, storage, instance)
    assert result.success, step_errors(result)
    assert _fingerprints(result) == {DAYS[0]: new, DAYS[1]: new}
    raw = materializations(result, "raw")
    assert raw[DAYS[0]].metadata["pii_key_rotated_from"].value == old
    doc = json.loads(storage.tables().get(key_record_key("rentals")))
    assert doc["fingerprint"] == new
    [rotation] = doc["rotations"]
    assert (rotation["from"], rotation["to"]) == (old, new)
    assert rotation["by"] == f"run {result.run_id}"
    assert any(f"PII key rotated ({ROTATE_ENV}): ML_ASSETS_PII_KEY fingerprint {old} -> {new}"
               in entry.user_message for entry in instance.all_logs(result.run_id))

    # the variable left set is harmless: the same key runs; the old key is refused again
    assert _raw(cfg, storage, instance).success
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "key-one")
    result = _raw(cfg, storage, instance)
    assert not result.success and f"{ROTATE_ENV}={new} names another key" in step_errors(result)
    monkeypatch.delenv(ROTATE_ENV)
    result = _raw(cfg, storage, instance)
    assert not result.success and f"(fingerprint {new}, now {old})" in step_errors(result)


@pytest.mark.parametrize("value,error", [
    ("1", "ML_ASSETS_PII_KEY_ROTATE must be the 12-hex-character fingerprint of the new "
          "ML_ASSETS_PII_KEY (the refusal names it), found '1'"),
    ("0123456789ab", "ML_ASSETS_PII_KEY_ROTATE=0123456789ab names another key than "
                     "ML_ASSETS_PII_KEY"),
])
def test_a_bad_rotation_value_fails_raw_naming_the_variable(tmp_path, storage, instance,
                                                            monkeypatch, value, error):
    monkeypatch.setenv("ML_ASSETS_PII_KEY", "key-one")
    monkeypatch.setenv(ROTATE_ENV, value)
    cfg = _config(tmp_path)
    result = _raw(cfg, storage, instance)
    assert not result.success
    assert f"raw: nothing written; {error}" in step_errors(result)
    assert materializations(result, "raw") == {}
    assert storage.tables().list("rentals") == []


def test_without_hash_rules_there_is_no_fingerprint(tmp_path, storage, instance, monkeypatch):
    """mask and drop use no key: no fingerprint, no record, any key (or none) and any rotation
    value are fine."""
    monkeypatch.setenv(ROTATE_ENV, "not a fingerprint")
    cfg = _config(tmp_path, pii={"rider_email": "mask", "phone": "drop"})
    for key in ("key-one", "key-two", None):
        if key is None:
            monkeypatch.delenv("ML_ASSETS_PII_KEY", raising=False)
        else:
            monkeypatch.setenv("ML_ASSETS_PII_KEY", key)
        result = _raw(cfg, storage, instance)
        assert result.success, step_errors(result)
        assert set(_fingerprints(result)) == set(DAYS)
        assert set(_fingerprints(result).values()) == {None}
    assert not storage.tables().exists(key_record_key("rentals"))
