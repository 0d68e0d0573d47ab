"""The reproduction manifest recorded with every model: what code, libraries, config and seed
made it. With the training lineage (each feature partition's URI and content hash), this is
everything needed to retrain the same model and compare the bytes."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

from ml_assets.config import PipelineConfig

#: Libraries whose versions decide the model bytes.
LIBRARIES = ("lightgbm", "pandas", "numpy", "pyarrow", "scikit-learn", "dagster", "ml_assets")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def config_hash(config: PipelineConfig) -> str:
    return hashlib.sha256(
        json.dumps(config.model_dump(mode="json", by_alias=True), sort_keys=True).encode()
    ).hexdigest()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def environment_hash() -> str:
    """A hash of every installed distribution and its version."""
    pairs = sorted({(d.metadata["Name"].lower(), d.version) for d in importlib.metadata.distributions()
                    if d.metadata["Name"]})
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


def git_state(path: Path = PROJECT_ROOT) -> dict[str, Any] | None:
    """The git commit and whether the work tree has changes, when `path` is in a checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=path, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def lock_hash(path: Path = PROJECT_ROOT / "requirements.lock") -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def build_manifest(config: PipelineConfig, seed: int | None) -> dict[str, Any]:
    return {
        "git": git_state(),
        "lock_sha256": lock_hash(),
        "environment_sha256": environment_hash(),
        "config_sha256": config_hash(config),
        "config": config.model_dump(mode="json", by_alias=True),
        "seed": seed,
        "libraries": {name: _version(name) for name in LIBRARIES},
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
