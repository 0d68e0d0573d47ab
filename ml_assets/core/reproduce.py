"""Reproduce a registered model from exactly what its sidecar recorded, and say whether the
model file comes out byte-identical, and if not, what differs.

The inputs are all in the sidecar: the config the model was trained with (`manifest.config`,
checked against `manifest.config_sha256`), and each feature partition it trained and validated
on (`lineage.features`: URI and content hash). Each partition is re-read from its URI and its
content hash recomputed; the model is retrained with `ml_assets.core.training.train` (the
function the model asset calls) and its text compared with the stored `model.txt`.

Training is deterministic (see `ml_assets.core.training`), so on the same machine with the same
library versions the bytes must be identical. When they are not, the report names the changed
inputs (a partition whose content changed or vanished, a config that does not match its hash,
other parameters) and the environment differences (library versions, Python, platform, lock
file, git commit) that can explain it, and the first line of the model text that differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ml_assets.config import PipelineConfig
from ml_assets.core.manifest import LIBRARIES, environment_hash, git_state, lock_hash
from ml_assets.core.registry import ModelStore, UnknownModel
from ml_assets.core.tables import content_hash, from_parquet_bytes
from ml_assets.core.training import TrainingError, train


class ReproductionError(ValueError):
    """The model cannot be reproduced at all: unknown, or it records no manifest."""


@dataclass
class PartitionCheck:
    day: str
    uri: str
    recorded_hash: str
    found_hash: str | None = None
    problem: str | None = None


@dataclass
class Reproduction:
    pipeline: str
    version: str
    model_id: str
    identical: bool
    recorded_sha256: str
    reproduced_sha256: str | None
    reasons: list[str] = field(default_factory=list)
    partitions: list[PartitionCheck] = field(default_factory=list)
    environment: list[dict[str, Any]] = field(default_factory=list)
    first_difference: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        label = f"{self.version} ({self.model_id})"
        parts = f"{len(self.partitions)} feature partition(s)"
        if self.identical:
            lines = [f"{label}: reproduced byte-identical from {parts}; model.txt sha256 "
                     f"{self.recorded_sha256}"]
            if self.environment:
                lines.append("  (environment differences that did not change the bytes: "
                             + "; ".join(_env_text(e) for e in self.environment) + ")")
            return "\n".join(lines)
        lines = [f"{label}: NOT reproduced byte-identical from {parts}",
                 f"  recorded   sha256 {self.recorded_sha256}",
                 f"  reproduced sha256 {self.reproduced_sha256 or '(not trained)'}"]
        lines += [f"  - {r}" for r in self.reasons]
        if self.first_difference:
            lines.append(f"  first difference: {self.first_difference}")
        return "\n".join(lines)


def current_environment() -> dict[str, Any]:
    """The parts of a manifest that describe where code runs, as they are now."""
    import importlib.metadata
    import platform

    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {"git": git_state(), "lock_sha256": lock_hash(), "environment_sha256": environment_hash(),
            "libraries": {name: version(name) for name in LIBRARIES},
            "python": platform.python_version(), "platform": platform.platform()}


def environment_differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name in LIBRARIES:
        a = (recorded.get("libraries") or {}).get(name)
        b = (now.get("libraries") or {}).get(name)
        if a != b:
            out.append({"what": f"library {name}", "recorded": a, "now": b})
    for key in ("python", "platform", "lock_sha256", "environment_sha256"):
        if recorded.get(key) != now.get(key):
            out.append({"what": key, "recorded": recorded.get(key), "now": now.get(key)})
    git_a, git_b = recorded.get("git") or {}, now.get("git") or {}
    if git_a.get("commit") != git_b.get("commit"):
        out.append({"what": "git commit", "recorded": git_a.get("commit"), "now": git_b.get("commit")})
    if git_a.get("dirty") or git_b.get("dirty"):
        out.append({"what": "git work tree has uncommitted changes",
                    "recorded": bool(git_a.get("dirty")), "now": bool(git_b.get("dirty"))})
    return out


def _env_text(entry: dict[str, Any]) -> str:
    return f"{entry['what']}: recorded {entry['recorded']}, now {entry['now']}"


def first_difference(recorded: str, reproduced: str) -> str | None:
    a, b = recorded.splitlines(), reproduced.splitlines()
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"line {i + 1} of model.txt: recorded {x[:100]!r}, reproduced {y[:100]!r}"
    if len(a) != len(b):
        return f"model.txt has {len(a)} lines recorded, {len(b)} reproduced"
    return None if recorded == reproduced else "same lines, different line endings"


def reproduce(models: ModelStore, pipeline: str, ref: str, read: Callable[[str], bytes],
              now: dict[str, Any] | None = None) -> Reproduction:
    """Retrain `ref` (version, alias or id) from its recorded inputs; compare the bytes.
    `read(uri)` returns the bytes at a recorded URI (local path or s3://)."""
    try:
        version = models.resolve(pipeline, ref)
    except UnknownModel as exc:
        raise ReproductionError(str(exc)) from None
    sidecar = version.sidecar
    manifest = sidecar.get("manifest") or {}
    refs = (sidecar.get("lineage") or {}).get("features") or {}
    if not manifest.get("config"):
        raise ReproductionError(f"{version.label} records no reproduction manifest (trained "
                                "before manifests were recorded); it cannot be reproduced")
    if not refs:
        raise ReproductionError(f"{version.label} records no feature partitions in its lineage")
    report = Reproduction(pipeline, version.version, version.model_id, False,
                          version.model_sha256, None)
    report.environment = environment_differences(manifest, now or current_environment())

    recorded_config = manifest["config"]
    config_digest = hashlib.sha256(json.dumps(recorded_config, sort_keys=True).encode()).hexdigest()
    if config_digest != manifest.get("config_sha256"):
        report.reasons.append(f"the recorded config does not match its recorded hash "
                              f"(config_sha256 {manifest.get('config_sha256')}, content "
                              f"{config_digest}): the sidecar was edited")
    try:
        config = PipelineConfig.model_validate(recorded_config)
    except ValueError as exc:
        report.reasons.append(f"the recorded config no longer validates with this code: {exc}")
        return _explain(report)

    frames = {}
    for day in sorted(refs):
        entry = refs[day]
        check = PartitionCheck(day, entry["uri"], str(entry.get("content_hash", "")))
        report.partitions.append(check)
        try:
            frame = from_parquet_bytes(read(entry["uri"]))
        except (OSError, ValueError) as exc:
            check.problem = f"cannot be read: {exc}"
            continue
        check.found_hash = content_hash(frame)
        if check.found_hash != check.recorded_hash:
            check.problem = (f"content hash {check.found_hash[:16]}... differs from the recorded "
                             f"{check.recorded_hash[:16]}...: the file changed since training")
            continue
        frames[day] = frame
    bad = [c for c in report.partitions if c.problem]
    for c in bad:
        report.reasons.append(f"feature partition {c.day} ({c.uri}) {c.problem}")
    if bad:
        return _explain(report, trained=False)

    try:
        trained = train(frames, config)
    except TrainingError as exc:
        report.reasons.append(f"training failed: {exc}")
        return _explain(report, trained=False)
    report.reproduced_sha256 = trained.model_hash
    stored = models.load_text(version)
    if trained.model_text.encode() == stored.encode():
        report.identical = True
        report.reasons = []  # the bytes are the proof; anything noted above did not matter
        return report
    if trained.params != sidecar.get("params"):
        changed = sorted(k for k in {*trained.params, *(sidecar.get("params") or {})}
                         if trained.params.get(k) != (sidecar.get("params") or {}).get(k))
        report.reasons.append(f"training parameters differ from the recorded ones: {changed}")
    report.first_difference = first_difference(stored, trained.model_text)
    return _explain(report)


def _explain(report: Reproduction, trained: bool = True) -> Reproduction:
    """Add the environment differences as possible causes when the bytes are not the same."""
    if report.environment:
        report.reasons += [f"environment: {_env_text(e)}" for e in report.environment]
    elif trained and not report.reasons:
        report.reasons.append("same recorded inputs and environment, different bytes: "
                              "training is not deterministic here (threads, hardware)")
    return report
