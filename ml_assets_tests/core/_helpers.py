"""Small builders shared by the core tests (no Dagster)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd

from ml_assets.config import PipelineConfig
from ml_assets.core.features import LABEL
from ml_assets.core.frames import SOURCE_FILE, SOURCE_ROW

TRAIN_PARAMS = {"num_boost_round": 20, "num_leaves": 7, "min_data_in_leaf": 5, "seed": 7}


def config(**over: Any) -> PipelineConfig:
    """A small binary config; `over` replaces top-level keys of the dict."""
    base: dict[str, Any] = {
        "name": "syn",
        "partitions": {"start": "2024-01-01", "end": "2024-02-01"},
        "source": {"kind": "nycflights13"},
        "schema": {
            "id": {"dtype": "int64", "nullable": False},
            "x1": {"dtype": "float64"},
            "x2": {"dtype": "float64"},
            "c": {"dtype": "string"},
            "y": {"dtype": "int64"},
        },
        "primary_key": ["id"],
        "target": {"column": "y", "task": "binary", "positive_value": 1},
        "features": {"numeric": ["x1", "x2"], "categorical": ["c"]},
        "training": {"window_days": 12, "validation_days": 3, "params": dict(TRAIN_PARAMS)},
        "gates": {"roc_auc": {"min": 0.6}},
    }
    base.update(copy.deepcopy(over))
    return PipelineConfig.model_validate(base)


def raw_frame(file: str = "in.csv", **columns: list) -> pd.DataFrame:
    """A raw partition as the sources produce it: text values plus lineage columns."""
    n = len(next(iter(columns.values())))
    frame = pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in columns.items()})
    frame[SOURCE_FILE] = file
    frame[SOURCE_ROW] = pd.Series(range(1, n + 1), dtype="int64")
    return frame


def synthetic_days(
    n_days: int = 12, rows: int = 60, seed: int = 0, task: str = "binary", start_day: int = 1
) -> dict[str, pd.DataFrame]:
    """Daily feature frames with a learnable label: x1, x2 numeric, c categorical."""
    rng = np.random.default_rng(seed)
    frames = {}
    for i in range(n_days):
        x1 = rng.normal(size=rows)
        x2 = rng.normal(size=rows)
        c = rng.choice(["a", "b", "c"], size=rows)
        signal = 1.5 * x1 - x2 + (c == "a")
        if task == "binary":
            y = (rng.random(rows) < 1 / (1 + np.exp(-signal))).astype("int64")
        else:
            y = (signal + rng.normal(scale=0.3, size=rows)).astype("float64")
        frames[f"2024-01-{start_day + i:02d}"] = pd.DataFrame({
            "id": np.arange(rows, dtype="int64") + 1000 * i,
            "x1": x1,
            "x2": x2,
            "c": pd.array(c, dtype="string"),
            LABEL: y,
        })
    return frames
