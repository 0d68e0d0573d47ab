"""Scoring: a pure function of (model, feature rows)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml_assets.core.training import encode


@dataclass
class LoadedModel:
    model_id: str
    task: str
    numeric: list[str]
    categorical: dict[str, list[str]]
    booster: Any
    version: str = ""

    @classmethod
    def from_text(cls, model_id: str, text: str, sidecar: dict, version: str = "") -> LoadedModel:
        import lightgbm as lgb

        return cls(
            model_id=model_id,
            version=version or str(sidecar.get("version", "")),
            task=sidecar["task"],
            numeric=list(sidecar["features"]["numeric"]),
            categorical={k: list(v) for k, v in sidecar["features"]["categorical"].items()},
            booster=lgb.Booster(model_str=text),
        )


def score(model: LoadedModel, features: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One prediction per feature row: the keys, the prediction, the model's identity (id and
    semantic version)."""
    out = features[keys].reset_index(drop=True).copy()
    if len(features):
        x = encode(features.reset_index(drop=True), model.numeric, model.categorical)
        values = model.booster.predict(x)
    else:
        values = np.array([], dtype="float64")
    out["prediction"] = np.asarray(values, dtype="float64")
    if model.task == "binary":
        out["predicted_class"] = (out["prediction"] >= 0.5).astype("int64")
    out["model_id"] = pd.Series(model.model_id, index=out.index, dtype="string")
    out["model_version"] = pd.Series(model.version, index=out.index, dtype="string")
    return out
