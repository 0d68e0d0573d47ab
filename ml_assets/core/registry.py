"""Model storage: each trained model in LightGBM's text format with a JSON sidecar.

Layout under the model store's root:

    <pipeline>/<model_id>/model.txt    LightGBM text format (never pickle)
    <pipeline>/<model_id>/model.json   sidecar: params, metrics, gate verdicts, feature schema,
                                       categorical levels, reference statistics, training lineage

The sidecar is written last, so a model exists only once it is complete. A model's gate verdict is
written once, at registration, and never changes: predictions use the newest model whose verdict is
"passed", in every run, which is how a failed gate keeps holding after the run that failed it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ml_assets.core.gates import GateResult
from ml_assets.core.storage import ObjectStore
from ml_assets.core.training import TrainedModel

SIDECAR_FORMAT = 1


class NoApprovedModel(LookupError):
    pass


@dataclass(frozen=True)
class ModelVersion:
    pipeline: str
    model_id: str
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


class ModelStore:
    def __init__(self, store: ObjectStore):
        self.store = store

    def register(
        self,
        pipeline: str,
        trained: TrainedModel,
        gates: list[GateResult],
        lineage: dict[str, Any],
        now: dt.datetime | None = None,
    ) -> ModelVersion:
        gates_json = [g.to_dict() for g in gates]
        ident = hashlib.sha256(
            (trained.model_hash + json.dumps(gates_json, sort_keys=True)).encode()
        ).hexdigest()
        model_id = ident[:12]
        base = f"{pipeline}/{model_id}"
        if self.store.exists(f"{base}/model.json"):
            return self._version(pipeline, json.loads(self.store.get(f"{base}/model.json")))
        created = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="microseconds")
        model_uri = self.store.put(f"{base}/model.txt", trained.model_text.encode())
        sidecar = {
            "format": SIDECAR_FORMAT,
            "pipeline": pipeline,
            "model_id": model_id,
            "created_at": created,
            "model_file": "model.txt",
            "model_sha256": trained.model_hash,
            "task": trained.task,
            "params": trained.params,
            "features": {"numeric": trained.numeric, "categorical": trained.categorical},
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
            "model_uri": model_uri,
        }
        self.store.put(f"{base}/model.json", json.dumps(sidecar, indent=2, default=str).encode())
        return self._version(pipeline, sidecar)

    def _version(self, pipeline: str, sidecar: dict) -> ModelVersion:
        base = f"{pipeline}/{sidecar['model_id']}"
        return ModelVersion(
            pipeline=pipeline,
            model_id=sidecar["model_id"],
            created_at=sidecar["created_at"],
            gate_passed=bool(sidecar["gate_passed"]),
            gates=sidecar["gates"],
            metrics=sidecar["metrics"],
            model_uri=self.store.uri(f"{base}/model.txt"),
            sidecar_uri=self.store.uri(f"{base}/model.json"),
            model_sha256=sidecar["model_sha256"],
            sidecar=sidecar,
        )

    def versions(self, pipeline: str) -> list[ModelVersion]:
        """Every complete model of a pipeline, oldest first."""
        out = []
        for key in self.store.list(pipeline):
            if key.endswith("/model.json") and key.count("/") == 2:
                out.append(self._version(pipeline, json.loads(self.store.get(key))))
        return sorted(out, key=lambda v: (v.created_at, v.model_id))

    def get(self, pipeline: str, model_id: str) -> ModelVersion:
        key = f"{pipeline}/{model_id}/model.json"
        if not self.store.exists(key):
            raise NoApprovedModel(f"no model {model_id!r} for pipeline {pipeline!r}")
        return self._version(pipeline, json.loads(self.store.get(key)))

    def latest_passed(self, pipeline: str) -> ModelVersion:
        """The newest model of `pipeline` that passed every gate; raises if there is none."""
        versions = self.versions(pipeline)
        passed = [v for v in versions if v.gate_passed]
        if passed:
            return passed[-1]
        if not versions:
            raise NoApprovedModel(
                f"pipeline {pipeline!r} has no trained model yet: materialize {pipeline}/model first"
            )
        newest = versions[-1]
        failed = "; ".join(
            f"{g['metric']} = {g['observed']:.4f} (min {g['min']}, max {g['max']})"
            for g in newest.gates if not g["passed"]
        )
        raise NoApprovedModel(
            f"pipeline {pipeline!r}: no model has passed its gate yet, so no predictions are made. "
            f"{len(versions)} model(s) trained; the newest, {newest.model_id}, failed: {failed}"
        )

    def load_text(self, version: ModelVersion) -> str:
        text = self.store.get(f"{version.pipeline}/{version.model_id}/model.txt").decode()
        if hashlib.sha256(text.encode()).hexdigest() != version.model_sha256:
            raise ValueError(f"{version.model_uri}: content does not match its recorded sha256")
        return text
