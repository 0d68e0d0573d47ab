"""Which models the API serves, and hot swap.

The API serves the model behind the `production` alias and, when the `canary` alias is set, a
share of requests with the canary (its `share` in the alias entry, else `serving.canary_share`).
A watcher thread reads `<pipeline>/aliases.json` every `poll_seconds` (and on POST
/admin/reload). When production or canary moved, it loads the new model, warms it up and checks
its one-record path against `score()` (off the request path), and only then replaces the
serving state in one assignment. A request reads the state once when it starts, so a request in
flight finishes on the model it started with; none fails because of a swap. A model that cannot
be loaded leaves the current one serving (`reloads_total{result="failed"}`, logged, and shown
at GET /model).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import random
import threading
from dataclasses import dataclass, field
from typing import Any

from ml_assets.core.registry import ModelStore, ModelVersion
from ml_assets.core.scoring import LoadedModel
from ml_assets.serving.metrics import ServingMetrics
from ml_assets.serving.schema import RecordSchema, ServedModel

log = logging.getLogger("ml_assets.serving")

ROLES = ("production", "canary")


@dataclass(frozen=True)
class ServingState:
    """What the API serves right now: replaced whole, never changed in place."""

    production: ServedModel | None = None
    canary: ServedModel | None = None
    share: float = 0.0
    generation: int = 0
    etag: str | None = None
    loaded_at: str = ""

    def route(self, key: str | None) -> tuple[ServedModel, str]:
        """The model that answers a request, and its role. With a request key the choice is
        sticky: a key's bucket is a hash of it, the same in every process, so one key always
        sees the same version while the share stays the same (and a key on the canary stays
        there when the share grows)."""
        if self.canary is None or self.production is None:
            return self.production, "production"  # type: ignore[return-value]
        bucket = bucket_of(key) if key is not None else random.random()
        if bucket < self.share:
            return self.canary, "canary"
        return self.production, "production"


def bucket_of(key: str) -> float:
    """A request key's place in [0, 1)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def load_model(models: ModelStore, version: ModelVersion, keys: dict[str, str],
               batch_threads: int = 0) -> ServedModel:
    """Load, warm up and self-check one model (raises when it cannot serve)."""
    loaded = LoadedModel.from_text(version.model_id, models.load_text(version), version.sidecar,
                                   version=version.version)
    schema = RecordSchema(loaded, keys, title=f"{version.pipeline.capitalize()}Record")
    served = ServedModel(version.model_id, version.version, loaded, schema, version.sidecar,
                         batch_threads=batch_threads)
    if list(loaded.booster.feature_name()) != schema.features:
        served.fast_path = False
        log.warning("%s: the booster's feature order %s differs from the contract's; every "
                    "request goes through score()", version.label, loaded.booster.feature_name())
    problem = served.self_check() if served.fast_path else None
    if problem:
        served.fast_path = False
        log.warning("%s: one-record fast path disabled: %s", version.label, problem)
    return served


@dataclass
class ModelWatcher:
    """Keeps `state` in step with the aliases (see the module docstring)."""

    models: ModelStore
    pipeline: str
    keys: dict[str, str]
    default_share: float
    poll_seconds: float
    metrics: ServingMetrics
    batch_threads: int = 0
    state: ServingState = field(default_factory=ServingState)
    last_error: str | None = None
    last_check: str | None = None
    _cache: dict[str, ServedModel] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def refresh(self, force: bool = False) -> dict[str, Any]:
        """Read the aliases; swap in new models if production or canary moved. Returns what
        happened: {"result": "swapped" | "unchanged" | "failed", ...}."""
        with self._lock:
            self.last_check = _now()
            try:
                aliases = self.models.aliases(self.pipeline)
            except Exception as exc:  # the store is unreachable: keep serving what we have
                return self._failed(f"cannot read the aliases: {exc}")
            current = self.state
            if not force and aliases.etag is not None and aliases.etag == current.etag:
                self.metrics.reloads.labels("unchanged").inc()
                return {"result": "unchanged", "generation": current.generation}
            wanted = {role: aliases.aliases.get(role) for role in ROLES}
            loaded: dict[str, ServedModel | None] = {}
            try:
                for role, entry in wanted.items():
                    loaded[role] = self._get(entry["model_id"]) if entry else None
            except Exception as exc:
                return self._failed(f"cannot load {role} model {wanted[role]['model_id']}: {exc}")
            canary = loaded["canary"]
            production = loaded["production"]
            if canary is not None and production is not None and canary.model_id == production.model_id:
                canary = None  # promoted: the canary is production now
            share = 0.0
            if canary is not None:
                share = float((wanted["canary"] or {}).get("share") or self.default_share)
            new = ServingState(production, canary, share, aliases.generation, aliases.etag,
                               _now())
            changed = ((_id(new.production), _id(new.canary), new.share)
                       != (_id(current.production), _id(current.canary), current.share))
            self.state = new  # the swap: one reference assignment
            self._cache = {m.model_id: m for m in (production, canary) if m is not None}
            self.last_error = None
            self._publish(new)
            result = "swapped" if changed else "unchanged"
            self.metrics.reloads.labels(result).inc()
            if changed:
                log.info("serving production %s, canary %s (share %.3f), aliases generation %d",
                         _label(new.production), _label(new.canary), new.share, new.generation)
            return {"result": result, "generation": new.generation,
                    "production": _label(new.production), "canary": _label(new.canary),
                    "share": new.share}

    def _get(self, model_id: str) -> ServedModel:
        cached = self._cache.get(model_id)
        if cached is not None:
            return cached
        return load_model(self.models, self.models.get(self.pipeline, model_id), self.keys,
                          self.batch_threads)

    def _failed(self, reason: str) -> dict[str, Any]:
        self.last_error = reason
        self.metrics.reloads.labels("failed").inc()
        log.error("model reload failed, still serving %s: %s", _label(self.state.production), reason)
        return {"result": "failed", "error": reason, "generation": self.state.generation}

    def _publish(self, state: ServingState) -> None:
        def info(model: ServedModel | None) -> dict[str, str] | None:
            if model is None:
                return None
            return {"model_version": model.version, "model_id": model.model_id,
                    "created_at": str(model.sidecar.get("created_at", "")),
                    "fast_path": str(model.fast_path).lower()}

        self.metrics.set_models({"production": info(state.production),
                                 "canary": info(state.canary)})
        self.metrics.canary_share.set(state.share if state.canary else 0.0)
        self.metrics.alias_generation.set(state.generation)

    # ------------------------------------------------------------ the polling thread
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ml-assets-model-watcher",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # never let the watcher die
                log.exception("model watcher")

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def _id(model: ServedModel | None) -> str | None:
    return model.model_id if model else None


def _label(model: ServedModel | None) -> str:
    return f"{model.version} ({model.model_id})" if model else "none"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")

