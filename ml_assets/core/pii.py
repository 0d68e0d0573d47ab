"""PII treatment, applied before anything is written.

- `hash`: keyed HMAC-SHA256 (hex, 32 characters); the key comes from an environment variable,
  so equal values still join but cannot be reversed or brute-forced without the key.
- `drop`: the column is removed.
- `mask`: every character but the last four becomes '*'.
Nulls stay null.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

import pandas as pd


class PiiKeyMissing(RuntimeError):
    pass


def _hmac(value: str, key: bytes) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


def _mask(value: str) -> str:
    keep = 4 if len(value) > 4 else 0
    return "*" * (len(value) - keep) + value[len(value) - keep :]


def key_missing(rules: Mapping[str, str], key: str | None, key_env: str) -> PiiKeyMissing | None:
    """The error to raise before reading anything when a `hash` rule has no key."""
    hashed = sorted(c for c, a in rules.items() if a == "hash")
    if hashed and not key:
        return PiiKeyMissing(
            f"column(s) {hashed} are configured for pii 'hash' but the HMAC key is empty: set the "
            f"environment variable {key_env} (named by pii_key_env)")
    return None


def apply_pii(frame: pd.DataFrame, rules: Mapping[str, str], key: str | None,
              key_env: str = "ML_ASSETS_PII_KEY") -> pd.DataFrame:
    """Return a copy of `frame` with each PII column hashed, dropped or masked."""
    if not rules:
        return frame
    out = frame.copy()
    for column, action in rules.items():
        if column not in out.columns:
            continue  # the raw schema check reports missing columns
        if action == "drop":
            out = out.drop(columns=[column])
            continue
        values = out[column]
        present = values.notna()
        text = values[present].astype(str)
        if action == "hash":
            if not key:
                raise key_missing({column: action}, key, key_env)
            secret = key.encode()
            treated = text.map(lambda v, s=secret: _hmac(v, s))
        elif action == "mask":
            treated = text.map(_mask)
        else:
            raise ValueError(f"unknown pii action {action!r} for column {column!r}")
        result = pd.Series(pd.NA, index=out.index, dtype="string")
        result[present] = treated.astype("string")
        out[column] = result
    return out
