"""The model store: models, their semantic versions, the aliases that point at them, and an
append-only audit log, all in one folder or S3 prefix per pipeline.

    <pipeline>/<model_id>/model.txt          LightGBM text format (never pickle)
    <pipeline>/<model_id>/validation.parquet the validation rows' predictions and labels
    <pipeline>/<model_id>/model.json         sidecar: version, params, metrics, gate verdicts,
                                             feature contract, lineage, reproduction manifest
    <pipeline>/versions/v1.2.0.json          the claim of a semantic version (write-once)
    <pipeline>/aliases.json                  production, previous, candidate, canary
    <pipeline>/audit.jsonl                   one JSON object per line, append-only

A model is write-once: the sidecar is written last, so a model exists only once it is complete,
and its gate verdict never changes. The same trained bytes and verdicts always get the same
`model_id` (content-addressed) and, once registered, the same semantic version.

Semantic versions (the human name beside the content id):
- the first model of a pipeline is `v1.0.0`;
- a change of the feature contract (feature columns, their dtypes, the transforms, where the
  categorical levels come from) bumps the major version: `v2.0.0`;
- a retrain on other data (another set of feature partitions or content) bumps the minor version;
- a retrain on the same data with other parameters or code bumps the patch version.
The bump is relative to the highest version claimed so far. A version is claimed with a
create-only write, so two trainings finishing at once never get the same number.

Aliases live in one document so that a promotion (production -> previous, challenger ->
production) is one atomic write: a reader sees the aliases before it or after it, never half.
Every alias move is a compare-and-swap against the document the writer read; of two concurrent
promotions from the same champion exactly one wins, the other gets `AliasConflict`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from ml_assets.core.gates import GateResult
from ml_assets.core.storage import ObjectStore, PreconditionFailed
from ml_assets.core.training import TrainedModel

SIDECAR_FORMAT = 2
ALIASES = ("production", "previous", "candidate", "canary")
AUDIT_ACTIONS = ("register", "promote", "reject", "rollback", "canary_start", "canary_stop")
_SEMVER_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
_CAS_ATTEMPTS = 50


class NoApprovedModel(LookupError):
    pass


class UnknownModel(LookupError):
    """A version, alias or id that names no registered model."""


class AliasConflict(RuntimeError):
    """The aliases moved since the decision was made (a concurrent promotion won)."""


# ---------------------------------------------------------------- semantic versions
@dataclass(frozen=True, order=True)
class SemVer:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> SemVer:
        match = _SEMVER_RE.match(text.strip())
        if not match:
            raise ValueError(f"not a semantic version like v1.2.0: {text!r}")
        return cls(*(int(g) for g in match.groups()))

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}"


def next_version(claims: list[dict], contract_hash: str, data_hash: str) -> SemVer:
    """The version a new model gets, from the claims so far (see the module docstring)."""
    if not claims:
        return SemVer(1, 0, 0)
    latest = max(claims, key=lambda c: SemVer.parse(c["version"]))
    top = SemVer.parse(latest["version"])
    if latest.get("contract_hash") != contract_hash:
        return SemVer(top.major + 1, 0, 0)
    if latest.get("data_hash") != data_hash:
        return SemVer(top.major, top.minor + 1, 0)
    return SemVer(top.major, top.minor, top.patch + 1)


def fingerprint(value: Any) -> str:
    """A stable hash of a JSON-able value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------- records
@dataclass(frozen=True)
class ModelVersion:
    pipeline: str
    model_id: str
    version: str
    created_at: str
    gate_passed: bool
    gates: list[dict]
    metrics: dict[str, float]
    model_uri: str
    sidecar_uri: str
    model_sha256: str
    sidecar: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def failed_gates(self) -> list[str]:
        return [g["metric"] for g in self.gates if not g["passed"]]

    @property
    def label(self) -> str:
        """`v1.2.0 (3f2a9c0d1e2b)`: how a person names this model."""
        return f"{self.version} ({self.model_id})"

    def gate_summary(self) -> str:
        return "; ".join(
            f"{g['metric']} = {g['observed']:.4f} (needs {_bounds(g['min'], g['max'])})"
            for g in self.gates if not g["passed"]) or "all gates passed"


def _bounds(low, high) -> str:
    parts = ([f">= {low}"] if low is not None else []) + ([f"<= {high}"] if high is not None else [])
    return " and ".join(parts)


@dataclass(frozen=True)
class AliasState:
    """The aliases document as read, and the etag to write it back against."""

    aliases: dict[str, dict]
    generation: int
    etag: str | None

    def model_id(self, alias: str) -> str | None:
        entry = self.aliases.get(alias)
        return entry["model_id"] if entry else None


@dataclass(frozen=True)
class AuditEntry:
    action: str
    actor: str
    reason: str
    run_id: str | None = None
    from_version: str | None = None
    from_model_id: str | None = None
    to_version: str | None = None
    to_model_id: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    time: str = ""

    def __post_init__(self) -> None:
        if self.action not in AUDIT_ACTIONS:
            raise ValueError(f"audit action must be one of {list(AUDIT_ACTIONS)}, found {self.action!r}")


def _now(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.UTC)).isoformat(timespec="microseconds")


# ---------------------------------------------------------------- the store
class ModelStore:
    def __init__(self, store: ObjectStore):
        self.store = store

    # ------------------------------------------------------------ registration
    def register(
        self,
        pipeline: str,
        trained: TrainedModel,
        gates: list[GateResult],
        lineage: dict[str, Any],
        contract: dict[str, Any] | None = None,
        manifest: dict[str, Any] | None = None,
        now: dt.datetime | None = None,
    ) -> tuple[ModelVersion, bool]:
        """Store a trained model write-once; return it and whether it is new.

        Registering the same model again (same bytes, same verdicts) returns the stored one.
        """
        gates_json = [g.to_dict() for g in gates]
        ident = hashlib.sha256(
            (trained.model_hash + json.dumps(gates_json, sort_keys=True)).encode()
        ).hexdigest()
        model_id = ident[:12]
        base = f"{pipeline}/{model_id}"
        if self.store.exists(f"{base}/model.json"):
            return self._version(pipeline, json.loads(self.store.get(f"{base}/model.json"))), False
        contract = contract or {}
        contract_hash = fingerprint(contract)
        data_hash = fingerprint(sorted(
            (day, ref.get("content_hash", "")) for day, ref in lineage.get("features", {}).items()))
        version = self._claim_version(pipeline, model_id, contract_hash, data_hash, now)
        model_uri = self.store.put(f"{base}/model.txt", trained.model_text.encode())
        if trained.validation is not None:
            buf = io.BytesIO()
            trained.validation.to_parquet(buf, index=False)
            self.store.put(f"{base}/validation.parquet", buf.getvalue())
        sidecar = {
            "format": SIDECAR_FORMAT,
            "pipeline": pipeline,
            "model_id": model_id,
            "version": str(version),
            "created_at": _now(now),
            "model_file": "model.txt",
            "model_sha256": trained.model_hash,
            "task": trained.task,
            "params": trained.params,
            "features": {"numeric": trained.numeric, "categorical": trained.categorical},
            "contract": contract,
            "contract_hash": contract_hash,
            "data_hash": data_hash,
            "metrics": trained.metrics,
            "gates": gates_json,
            "gate_passed": all(g.passed for g in gates),
            "train_days": trained.train_days,
            "validation_days": trained.validation_days,
            "train_rows": trained.train_rows,
            "validation_rows": trained.validation_rows,
            "importance": trained.importance.to_dict("records"),
            "reference": trained.reference,
            "lineage": lineage,
            "manifest": manifest or {},
            "model_uri": model_uri,
        }
        self.store.put(f"{base}/model.json", json.dumps(sidecar, indent=2, default=str).encode())
        return self._version(pipeline, sidecar), True

    def _claims(self, pipeline: str) -> list[dict]:
        out = []
        for key in self.store.list(f"{pipeline}/versions"):
            if key.endswith(".json"):
                out.append(json.loads(self.store.get(key)))
        return out

    def _claim_version(self, pipeline: str, model_id: str, contract_hash: str, data_hash: str,
                       now: dt.datetime | None) -> SemVer:
        for _ in range(_CAS_ATTEMPTS):
            claims = self._claims(pipeline)
            mine = [c for c in claims if c["model_id"] == model_id]
            if mine:  # an earlier attempt claimed a version and stopped before the sidecar
                return SemVer.parse(mine[0]["version"])
            version = next_version(claims, contract_hash, data_hash)
            claim = {"version": str(version), "model_id": model_id, "contract_hash": contract_hash,
                     "data_hash": data_hash, "claimed_at": _now(now)}
            try:
                self.store.put_if(f"{pipeline}/versions/{version}.json",
                                  json.dumps(claim, indent=2).encode(), expected=None)
                return version
            except PreconditionFailed:
                time.sleep(random.uniform(0, 0.02))  # another training claimed it: count again
        raise RuntimeError(f"pipeline {pipeline!r}: could not claim a semantic version")

    def _version(self, pipeline: str, sidecar: dict) -> ModelVersion:
        base = f"{pipeline}/{sidecar['model_id']}"
        return ModelVersion(
            pipeline=pipeline,
            model_id=sidecar["model_id"],
            version=sidecar.get("version", "v0.0.0"),
            created_at=sidecar["created_at"],
            gate_passed=bool(sidecar["gate_passed"]),
            gates=sidecar["gates"],
            metrics=sidecar["metrics"],
            model_uri=self.store.uri(f"{base}/model.txt"),
            sidecar_uri=self.store.uri(f"{base}/model.json"),
            model_sha256=sidecar["model_sha256"],
            sidecar=sidecar,
        )

    # ------------------------------------------------------------ reading models
    def versions(self, pipeline: str) -> list[ModelVersion]:
        """Every complete model of a pipeline, oldest version first."""
        out = []
        for key in self.store.list(pipeline):
            if key.endswith("/model.json") and key.count("/") == 2:
                out.append(self._version(pipeline, json.loads(self.store.get(key))))
        return sorted(out, key=lambda v: (SemVer.parse(v.version), v.created_at, v.model_id))

    def get(self, pipeline: str, model_id: str) -> ModelVersion:
        key = f"{pipeline}/{model_id}/model.json"
        if not self.store.exists(key):
            raise UnknownModel(f"no model {model_id!r} for pipeline {pipeline!r}")
        return self._version(pipeline, json.loads(self.store.get(key)))

    def resolve(self, pipeline: str, ref: str) -> ModelVersion:
        """A model named by alias (`production`), semantic version (`v1.2.0`) or id (or an
        unambiguous id prefix of at least 6 characters)."""
        ref = ref.strip()
        if ref in ALIASES:
            model_id = self.aliases(pipeline).model_id(ref)
            if model_id is None:
                raise UnknownModel(f"pipeline {pipeline!r}: alias {ref!r} is not set")
            return self.get(pipeline, model_id)
        versions = self.versions(pipeline)
        if _SEMVER_RE.match(ref):
            wanted = str(SemVer.parse(ref))
            for v in versions:
                if v.version == wanted:
                    return v
        else:
            found = [v for v in versions if v.model_id == ref
                     or (len(ref) >= 6 and v.model_id.startswith(ref))]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise UnknownModel(f"pipeline {pipeline!r}: {ref!r} matches several models: "
                                   f"{[v.model_id for v in found]}")
        known = ", ".join(v.label for v in versions[-10:]) or "none"
        raise UnknownModel(
            f"pipeline {pipeline!r} has no model {ref!r} (an alias {list(ALIASES)}, a version "
            f"like v1.2.0 or a model id); known: {known}")

    def load_text(self, version: ModelVersion) -> str:
        text = self.store.get(f"{version.pipeline}/{version.model_id}/model.txt").decode()
        if hashlib.sha256(text.encode()).hexdigest() != version.model_sha256:
            raise ValueError(f"{version.model_uri}: content does not match its recorded sha256")
        return text

    def load_validation(self, version: ModelVersion) -> pd.DataFrame | None:
        """The validation rows' predictions and labels recorded at training, if any."""
        key = f"{version.pipeline}/{version.model_id}/validation.parquet"
        if not self.store.exists(key):
            return None
        return pd.read_parquet(io.BytesIO(self.store.get(key)))

    # ------------------------------------------------------------ aliases
    def aliases(self, pipeline: str) -> AliasState:
        try:
            data, etag = self.store.get_versioned(f"{pipeline}/aliases.json")
        except FileNotFoundError:
            return AliasState({}, 0, None)
        doc = json.loads(data)
        return AliasState(doc.get("aliases", {}), int(doc.get("generation", 0)), etag)

    def move_aliases(
        self,
        pipeline: str,
        change: Callable[[dict[str, dict]], dict[str, dict]],
    ) -> AliasState:
        """Apply `change` (current aliases -> new aliases) with compare-and-swap.

        `change` is called again on the fresh document when another writer got in first; it
        raises `AliasConflict` when the move no longer makes sense (for a promotion: production
        is not the champion it was compared with any more).
        """
        for _ in range(_CAS_ATTEMPTS):
            state = self.aliases(pipeline)
            new = change({k: dict(v) for k, v in state.aliases.items()})
            for name in new:
                if name not in ALIASES:
                    raise ValueError(f"unknown alias {name!r}; aliases are {list(ALIASES)}")
            doc = {"format": 1, "pipeline": pipeline, "generation": state.generation + 1,
                   "updated_at": _now(), "aliases": new}
            try:
                etag = self.store.put_if(f"{pipeline}/aliases.json",
                                         json.dumps(doc, indent=2, sort_keys=True).encode(),
                                         expected=state.etag)
                return AliasState(new, state.generation + 1, etag)
            except PreconditionFailed:
                time.sleep(random.uniform(0, 0.02))
        raise AliasConflict(f"pipeline {pipeline!r}: aliases kept changing; gave up after "
                            f"{_CAS_ATTEMPTS} attempts")

    # ------------------------------------------------------------ audit
    def append_audit(self, pipeline: str, entry: AuditEntry, now: dt.datetime | None = None) -> dict:
        """Append one entry to `<pipeline>/audit.jsonl` (compare-and-swap, so concurrent
        writers never lose an entry). Returns the entry as written."""
        record = {"time": entry.time or _now(now), "pipeline": pipeline,
                  **{k: v for k, v in asdict(entry).items() if k != "time"}}
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        key = f"{pipeline}/audit.jsonl"
        for _ in range(_CAS_ATTEMPTS):
            try:
                data, etag = self.store.get_versioned(key)
            except FileNotFoundError:
                data, etag = b"", None
            try:
                self.store.put_if(key, data + line, expected=etag)
                return record
            except PreconditionFailed:
                time.sleep(random.uniform(0, 0.02))
        raise RuntimeError(f"pipeline {pipeline!r}: could not append to the audit log")

    def audit(self, pipeline: str) -> list[dict]:
        """The audit log, oldest entry first."""
        try:
            data = self.store.get(f"{pipeline}/audit.jsonl")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in data.decode().splitlines() if line.strip()]
