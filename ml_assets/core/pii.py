"""PII treatment, applied before anything is written.

- `hash`: keyed HMAC-SHA256 (hex, 32 characters); the key comes from an environment variable,
  so equal values still join but cannot be reversed or brute-forced without the key.
- `drop`: the column is removed.
- `mask`: every character but the last four becomes '*'.
Nulls stay null.

Only `hash` uses the key, so only a pipeline with a `hash` rule has a key fingerprint: the first
12 hex characters of HMAC-SHA512(key, "ml_assets pii key fingerprint"). It tells two keys apart
and reveals nothing about the key, and no stored hash (HMAC-SHA256) equals or contains it. The fingerprint this
pipeline's stored data was hashed with is kept in the tables store, `<pipeline>/_ingest/pii_key.json`
(local or S3, through `core.storage`, written with compare-and-swap), with the history of
rotations. A run whose key has another fingerprint is refused before anything is written (hashed
values would no longer join across days), unless ROTATE_ENV names the new key's fingerprint: that
run records it (an explicit, audited rotation). The key itself is never stored or logged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from ml_assets.core.storage import ObjectStore, PreconditionFailed

#: set to the new key's fingerprint to rotate the key of a pipeline whose data was hashed with another
ROTATE_ENV = "ML_ASSETS_PII_KEY_ROTATE"
KEY_RECORD_FORMAT = 1
_FINGERPRINT_LABEL = b"ml_assets pii key fingerprint"
_FINGERPRINT = re.compile(r"[0-9a-f]{12}")


class PiiKeyMissing(RuntimeError):
    pass


class PiiKeyRefused(RuntimeError):
    """The key differs from the one the stored data was hashed with, or the rotation variable
    is malformed or names another key: a configuration problem, raised before anything is written."""


def _hmac(value: str, key: bytes) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


def _mask(value: str) -> str:
    keep = 4 if len(value) > 4 else 0
    return "*" * (len(value) - keep) + value[len(value) - keep :]


def key_missing(rules: Mapping[str, str], key: str | None, key_env: str) -> PiiKeyMissing | None:
    """The error to raise before reading anything when a `hash` rule has no key."""
    hashed = hashed_columns(rules)
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


def hashed_columns(rules: Mapping[str, str]) -> list[str]:
    """The columns whose treatment uses the key (`hash`; `mask` and `drop` use none)."""
    return sorted(c for c, a in rules.items() if a == "hash")


def key_fingerprint(key: str) -> str:
    """12 hex characters that tell keys apart without revealing anything about the key.

    HMAC-SHA512, not the HMAC-SHA256 that hashes values: with SHA-256 the fingerprint would be
    the stored hash of a source value equal to the label."""
    return hmac.new(key.encode(), _FINGERPRINT_LABEL, hashlib.sha512).hexdigest()[:12]


def key_record_key(pipeline: str) -> str:
    return f"{pipeline}/_ingest/pii_key.json"


@dataclass
class KeyRecord:
    """The fingerprint in use since `since`, and every rotation (fingerprints only, no key)."""

    fingerprint: str
    since: str
    rotations: list[dict] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        return json.dumps({"pii_key_format": KEY_RECORD_FORMAT, "fingerprint": self.fingerprint,
                           "since": self.since, "rotations": self.rotations},
                          sort_keys=True, indent=1).encode()

    @classmethod
    def parse(cls, data: bytes, where: str) -> KeyRecord:
        try:
            doc = json.loads(data)
            if doc["pii_key_format"] != KEY_RECORD_FORMAT or not _FINGERPRINT.fullmatch(
                    doc["fingerprint"]):
                raise ValueError("unknown format or fingerprint")
            return cls(doc["fingerprint"], str(doc["since"]), list(doc.get("rotations", [])))
        except (ValueError, KeyError, TypeError) as exc:
            raise PiiKeyRefused(
                f"{where} is not a PII key record ({exc}): it says which key the stored hashed "
                "columns were made with; restore it, or delete it to adopt the current key") from None


@dataclass(frozen=True)
class KeyDecision:
    """`action`: 'same' (the stored fingerprint), 'first' (none stored yet) or 'rotate'."""

    fingerprint: str
    action: str
    previous: str | None = None


def load_key_record(store: ObjectStore, pipeline: str) -> tuple[KeyRecord | None, str | None]:
    key = key_record_key(pipeline)
    try:
        data, etag = store.get_versioned(key)
    except FileNotFoundError:
        return None, None
    return KeyRecord.parse(data, store.uri(key)), etag


def _decide(record: KeyRecord | None, key: str, key_env: str, rotate: str | None) -> KeyDecision:
    fingerprint = key_fingerprint(key)
    rotate = (rotate or "").strip() or None
    if rotate is not None and not _FINGERPRINT.fullmatch(rotate):
        raise PiiKeyRefused(
            f"{ROTATE_ENV} must be the 12-hex-character fingerprint of the new {key_env} "
            f"(the refusal names it), found {rotate[:40]!r}")
    if rotate is not None and rotate != fingerprint:
        raise PiiKeyRefused(
            f"{ROTATE_ENV}={rotate} names another key than {key_env} (fingerprint {fingerprint}): "
            f"set {key_env} to the new key, or unset {ROTATE_ENV}")
    if record is None:
        return KeyDecision(fingerprint, "first")
    if record.fingerprint == fingerprint:
        return KeyDecision(fingerprint, "same")
    if rotate is None:
        raise PiiKeyRefused(
            f"{key_env} differs from the key this pipeline's stored data was hashed with "
            f"(fingerprint {record.fingerprint}, now {fingerprint}): hashed columns would not join "
            f"across days. To rotate the key on purpose, set {ROTATE_ENV}={fingerprint} for this "
            f"run, then re-materialize raw for the stored days; otherwise set {key_env} back to "
            "the old key")
    return KeyDecision(fingerprint, "rotate", record.fingerprint)


def check_key(store: ObjectStore, pipeline: str, key: str, key_env: str,
              rotate: str | None = None) -> KeyDecision:
    """Whether `key` may be used for `pipeline`'s stored data (read only); raises PiiKeyRefused."""
    record, _ = load_key_record(store, pipeline)
    return _decide(record, key, key_env, rotate)


def remember_key(store: ObjectStore, pipeline: str, key: str, key_env: str,
                 rotate: str | None = None, by: str = "", attempts: int = 20) -> KeyDecision:
    """Check `key` as `check_key` does and record its fingerprint (first use or rotation), with
    compare-and-swap: a run that rotated meanwhile is seen, never overwritten."""
    for _ in range(attempts):
        record, etag = load_key_record(store, pipeline)
        decision = _decide(record, key, key_env, rotate)
        if decision.action == "same":
            return decision
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        rotations = list(record.rotations) if record is not None else []
        if decision.action == "rotate":
            rotations.append({"at": now, "from": decision.previous, "to": decision.fingerprint,
                              "by": by, "confirmed_with": ROTATE_ENV})
        try:
            store.put_if(key_record_key(pipeline),
                         KeyRecord(decision.fingerprint, now, rotations).to_bytes(), etag)
            return decision
        except PreconditionFailed:
            continue  # another run recorded a key meanwhile: decide again against it
    raise RuntimeError(f"{key_record_key(pipeline)}: could not record the PII key fingerprint "
                       f"after {attempts} attempts (other runs kept writing it)")
