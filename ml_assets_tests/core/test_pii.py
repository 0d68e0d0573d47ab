from __future__ import annotations

import re

import pandas as pd
import pytest

from ml_assets.core.pii import PiiKeyMissing, apply_pii


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
