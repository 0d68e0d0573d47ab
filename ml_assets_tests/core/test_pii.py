from __future__ import annotations

import hashlib
import json
import re

import pandas as pd
import pytest

from ml_assets.core.pii import (
    PiiKeyMissing,
    PiiKeyRefused,
    apply_pii,
    check_key,
    hashed_columns,
    key_fingerprint,
    key_record_key,
    remember_key,
)
from ml_assets.core.storage import LocalStore, S3Store


@pytest.fixture
def frame():
    return pd.DataFrame({
        "email": pd.array(["alice@example.com", None, "bob@example.com", "alice@example.com"],
                          dtype="string"),
        "card": pd.array(["4111111111111111", "1234", None, "12345"], dtype="string"),
        "n": [1, 2, 3, 4],
    })


def test_hash_is_deterministic_and_keyed(frame):
    a = apply_pii(frame, {"email": "hash"}, "key-one")["email"]
    again = apply_pii(frame, {"email": "hash"}, "key-one")["email"]
    other = apply_pii(frame, {"email": "hash"}, "key-two")["email"]
    pd.testing.assert_series_equal(a, again)
    assert a[0] == a[3]  # equal values still join
    assert a[0] != a[2]
    assert a[0] != other[0] and a[2] != other[2]


def test_hash_hides_the_value(frame):
    hashed = apply_pii(frame, {"email": "hash"}, "k")["email"].dropna()
    for value in hashed:
        assert re.fullmatch(r"[0-9a-f]{32}", value)
        assert "alice" not in value and "example" not in value
    assert str(apply_pii(frame, {"email": "hash"}, "k")["email"].dtype) == "string"


def test_drop_removes_the_column(frame):
    out = apply_pii(frame, {"email": "drop"}, None)
    assert list(out.columns) == ["card", "n"]


@pytest.mark.parametrize("value,masked", [
    ("4111111111111111", "************1111"),
    ("12345", "*2345"),
    ("1234", "****"),  # 4 characters or fewer: nothing is kept
    ("ab", "**"),
    ("", ""),
])
def test_mask_keeps_only_the_last_four_characters(value, masked):
    frame = pd.DataFrame({"card": pd.array([value], dtype="string")})
    assert apply_pii(frame, {"card": "mask"}, None)["card"].tolist() == [masked]


@pytest.mark.parametrize("action", ["hash", "mask"])
def test_nulls_stay_null(frame, action):
    out = apply_pii(frame, {"email": action, "card": action}, "k")
    assert out["email"].isna().tolist() == [False, True, False, False]
    assert out["card"].isna().tolist() == [False, False, True, False]


def test_nulls_stay_null_for_default_str_dtype():
    frame = pd.DataFrame({"email": ["a@b.c", None]})
    out = apply_pii(frame, {"email": "hash"}, "k")
    assert out["email"].isna().tolist() == [False, True]


@pytest.mark.parametrize("key", [None, ""])
def test_hash_without_key_raises(frame, key):
    with pytest.raises(PiiKeyMissing, match="'email'.*HMAC key is empty.*ML_ASSETS_PII_KEY"):
        apply_pii(frame, {"email": "hash"}, key)


def test_unknown_action_raises(frame):
    with pytest.raises(ValueError, match="unknown pii action 'shred' for column 'email'"):
        apply_pii(frame, {"email": "shred"}, "k")


def test_input_frame_is_not_modified(frame):
    before = frame.copy(deep=True)
    apply_pii(frame, {"email": "hash", "card": "mask"}, "k")
    apply_pii(frame, {"email": "drop"}, "k")
    pd.testing.assert_frame_equal(frame, before)


def test_other_columns_untouched(frame):
    out = apply_pii(frame, {"email": "hash"}, "k")
    pd.testing.assert_series_equal(out["card"], frame["card"])
    pd.testing.assert_series_equal(out["n"], frame["n"])


# ---------------------------------------------------------------- the key fingerprint and its record
def test_fingerprint_tells_keys_apart_and_reveals_nothing():
    fp = key_fingerprint("key-one")
    assert re.fullmatch(r"[0-9a-f]{12}", fp)
    assert fp == key_fingerprint("key-one") != key_fingerprint("key-two")
    # not a hash of the key alone, nor the hash the key gives a stored value
    assert fp not in hashlib.sha256(b"key-one").hexdigest()
    frame = pd.DataFrame({"v": pd.array(["key-one", "ml_assets pii key fingerprint"], dtype="string")})
    assert not any(fp in v for v in apply_pii(frame, {"v": "hash"}, "key-one")["v"])


def test_only_hash_uses_the_key():
    assert hashed_columns({"a": "hash", "b": "mask", "c": "drop", "d": "hash"}) == ["a", "d"]
    assert hashed_columns({"b": "mask", "c": "drop"}) == []


def _local(tmp_path, request):
    return LocalStore(str(tmp_path / "tables"))


def _s3(tmp_path, request):
    import boto3

    from ml_assets_tests.conftest import BUCKET

    endpoint = request.getfixturevalue("s3_endpoint")  # moto's server: real conditional PUTs
    return S3Store(f"s3://{BUCKET}/tables", boto3.client("s3", endpoint_url=endpoint,
                                                         region_name="us-east-1"))


@pytest.fixture(params=[_local, _s3], ids=["local", "s3"])
def store(request, tmp_path):
    return request.param(tmp_path, request)


def test_key_record_first_same_refused_and_rotated(store):
    old, new = key_fingerprint("key-one"), key_fingerprint("key-two")
    assert check_key(store, "p", "key-one", "ML_ASSETS_PII_KEY").action == "first"
    assert not store.exists(key_record_key("p"))  # checking writes nothing
    assert remember_key(store, "p", "key-one", "ML_ASSETS_PII_KEY").action == "first"
    stored = store.get(key_record_key("p"))
    assert json.loads(stored)["fingerprint"] == old and b"key-one" not in stored
    assert remember_key(store, "p", "key-one", "ML_ASSETS_PII_KEY").action == "same"
    assert store.get(key_record_key("p")) == stored  # the same key writes nothing

    for call in (check_key, remember_key):
        with pytest.raises(PiiKeyRefused) as err:
            call(store, "p", "key-two", "ML_ASSETS_PII_KEY")
        assert str(err.value).startswith(
            "ML_ASSETS_PII_KEY differs from the key this pipeline's stored data was hashed with "
            f"(fingerprint {old}, now {new}): hashed columns would not join across days. "
            f"To rotate the key on purpose, set ML_ASSETS_PII_KEY_ROTATE={new}")
    assert store.get(key_record_key("p")) == stored

    decision = remember_key(store, "p", "key-two", "ML_ASSETS_PII_KEY", rotate=new, by="run r1")
    assert (decision.action, decision.previous, decision.fingerprint) == ("rotate", old, new)
    doc = json.loads(store.get(key_record_key("p")))
    assert doc["fingerprint"] == new
    assert [(r["from"], r["to"], r["by"]) for r in doc["rotations"]] == [(old, new, "run r1")]
    # the rotation variable left set names the new key: harmless from now on
    assert remember_key(store, "p", "key-two", "ML_ASSETS_PII_KEY", rotate=new).action == "same"
    with pytest.raises(PiiKeyRefused, match=f"fingerprint {new}, now {old}"):
        remember_key(store, "p", "key-one", "ML_ASSETS_PII_KEY")
    # pipelines are apart
    assert remember_key(store, "q", "key-one", "ML_ASSETS_PII_KEY").action == "first"


@pytest.mark.parametrize("rotate,message", [
    ("1", "ML_ASSETS_PII_KEY_ROTATE must be the 12-hex-character fingerprint of the new "
          "RENTALS_KEY (the refusal names it), found '1'"),
    ("yes please", "ML_ASSETS_PII_KEY_ROTATE must be the 12-hex-character fingerprint"),
    ("ABCDEF012345", "ML_ASSETS_PII_KEY_ROTATE must be the 12-hex-character fingerprint"),
    ("0123456789ab", "ML_ASSETS_PII_KEY_ROTATE=0123456789ab names another key than RENTALS_KEY "
                     f"(fingerprint {key_fingerprint('key-two')})"),
])
def test_a_bad_rotation_value_is_refused_naming_the_variable(tmp_path, rotate, message):
    store = LocalStore(str(tmp_path))
    remember_key(store, "p", "key-one", "RENTALS_KEY")
    before = store.get(key_record_key("p"))
    for key in ("key-one", "key-two"):  # also when nothing would rotate
        with pytest.raises(PiiKeyRefused) as err:
            remember_key(store, "p", key, "RENTALS_KEY", rotate=rotate)
        if key == "key-two":
            assert str(err.value).startswith(message)
        assert "ML_ASSETS_PII_KEY_ROTATE" in str(err.value)
    assert store.get(key_record_key("p")) == before
    # an empty value is unset
    assert remember_key(store, "p", "key-one", "RENTALS_KEY", rotate=" ").action == "same"


def test_an_unreadable_key_record_is_refused_naming_it(tmp_path):
    store = LocalStore(str(tmp_path))
    store.put(key_record_key("p"), b"{not json")
    with pytest.raises(PiiKeyRefused, match=r"p/_ingest/pii_key.json is not a PII key record"):
        check_key(store, "p", "key-one", "ML_ASSETS_PII_KEY")


def test_a_key_recorded_meanwhile_is_seen_not_overwritten(tmp_path):
    """Two first runs with different keys: B records key-two between A's read and A's write, so
    A's compare-and-swap loses, A decides again and is refused; B's record stays."""
    store = LocalStore(str(tmp_path))
    real = store.get_versioned

    def b_writes_after_a_reads(key):
        store.get_versioned = real
        try:
            return real(key)
        finally:
            remember_key(store, "p", "key-two", "K")

    store.get_versioned = b_writes_after_a_reads
    with pytest.raises(PiiKeyRefused, match="fingerprint .*, now "):
        remember_key(store, "p", "key-one", "K")
    assert json.loads(store.get(key_record_key("p")))["fingerprint"] == key_fingerprint("key-two")
