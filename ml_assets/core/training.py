"""Training and evaluation: a LightGBM model from a window of daily feature tables.

Deterministic: with the same rows, config and seed, the model text is byte-identical
(`deterministic=True`, `force_row_wise=True`, a fixed `num_threads`, rows sorted by day).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml_assets.config import PipelineConfig
from ml_assets.core.features import LABEL

DEFAULT_PARAMS: dict[str, Any] = {
    "num_boost_round": 300,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "seed": 42,
    "num_threads": 2,
}


class TrainingError(ValueError):
    pass


@dataclass
class TrainedModel:
    model_text: str
    model_hash: str
    task: str
    params: dict[str, Any]
    feature_names: list[str]
    numeric: list[str]
    categorical: dict[str, list[str]]
    metrics: dict[str, float]
    importance: pd.DataFrame
    train_days: list[str]
    validation_days: list[str]
    train_rows: int
    validation_rows: int
    reference: dict[str, Any] = field(default_factory=dict)
    #: The validation rows' day, prediction and label (prediction drift compares with these).
    validation: pd.DataFrame | None = None


def split_days(days: list[str], validation_days: int) -> tuple[list[str], list[str]]:
    days = sorted(days)
    if len(days) <= validation_days:
        raise TrainingError(
            f"the window holds {len(days)} day(s) of features; training needs more than "
            f"validation_days={validation_days}"
        )
    return days[:-validation_days], days[-validation_days:]


def encode(frame: pd.DataFrame, numeric: list[str], categorical: dict[str, list[str]]) -> pd.DataFrame:
    """The model's input matrix: numeric as float64, categoricals with the training levels."""
    missing = [c for c in [*numeric, *categorical] if c not in frame.columns]
    if missing:
        raise TrainingError(f"feature rows lack the model's column(s) {missing}")
    columns: dict[str, Any] = {col: frame[col].astype("float64") for col in numeric}
    for col, levels in categorical.items():
        columns[col] = pd.Categorical(frame[col].astype(object).where(frame[col].notna(), None),
                                      categories=levels)
    return pd.DataFrame(columns, index=frame.index)  # one step: no column-by-column inserts


def reference_statistics(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> dict:
    """Per-feature summary of the training data, kept with the model for drift checks later."""
    stats: dict[str, Any] = {"rows": len(frame), "numeric": {}, "categorical": {}}
    for col in numeric:
        s = frame[col].astype("float64")
        q = s.quantile([0.01, 0.25, 0.5, 0.75, 0.99]) if s.notna().any() else None
        stats["numeric"][col] = {
            "null_rate": float(s.isna().mean()) if len(s) else 0.0,
            "mean": _num(s.mean()), "std": _num(s.std()), "min": _num(s.min()),
            "max": _num(s.max()),
            "quantiles": {str(k): _num(v) for k, v in q.items()} if q is not None else {},
        }
    for col in categorical:
        counts = frame[col].astype("string").value_counts(normalize=True, dropna=False).head(50)
        stats["categorical"][col] = {str(k): float(v) for k, v in counts.items()}
    return stats


def _num(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def compute_metrics(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn import metrics as skm

    if task == "binary":
        labels = (y_pred >= 0.5).astype(int)
        both = len(np.unique(y_true)) == 2
        clipped = np.clip(y_pred, 1e-15, 1 - 1e-15)
        return {
            "accuracy": float(skm.accuracy_score(y_true, labels)),
            "f1": float(skm.f1_score(y_true, labels, zero_division=0)),
            "roc_auc": float(skm.roc_auc_score(y_true, y_pred)) if both else math.nan,
            "log_loss": float(skm.log_loss(y_true, clipped, labels=[0, 1])),
            "positive_rate": float(np.mean(y_true)),
        }
    return {
        "rmse": float(math.sqrt(skm.mean_squared_error(y_true, y_pred))),
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "r2": float(skm.r2_score(y_true, y_pred)) if len(y_true) > 1 else math.nan,
    }


def train(frames: dict[str, pd.DataFrame], config: PipelineConfig) -> TrainedModel:
    """Fit on all but the last `validation_days` days of `frames`; evaluate on those days."""
    import lightgbm as lgb

    train_days, valid_days = split_days(list(frames), config.training.validation_days)
    train_df = pd.concat([frames[d] for d in train_days], ignore_index=True)
    valid_parts = [frames[d] for d in valid_days]
    valid_df = pd.concat(valid_parts, ignore_index=True)
    if train_df.empty or valid_df.empty:
        raise TrainingError(
            f"no rows to {'train on' if train_df.empty else 'validate on'} in days "
            f"{train_days[0] if train_df.empty else valid_days[0]}.."
            f"{train_days[-1] if train_df.empty else valid_days[-1]}"
        )
    numeric = list(config.features.numeric)
    cat_names = list(config.features.categorical)
    categorical = {
        c: sorted(train_df[c].dropna().astype(str).unique().tolist()) for c in cat_names
    }
    x_train = encode(train_df, numeric, categorical)
    x_valid = encode(valid_df, numeric, categorical)
    y_train = train_df[LABEL].to_numpy()
    y_valid = valid_df[LABEL].to_numpy()
    if config.target.task == "binary" and len(np.unique(y_train)) < 2:
        raise TrainingError(f"training labels hold one class only ({np.unique(y_train).tolist()})")

    params = {**DEFAULT_PARAMS, **config.training.params}
    rounds = int(params.pop("num_boost_round", params.pop("n_estimators", 300)))
    params.pop("n_estimators", None)
    params.update({
        "objective": params.get("objective", "binary" if config.target.task == "binary" else "regression"),
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    })
    dataset = lgb.Dataset(x_train, label=y_train, categorical_feature=cat_names or "auto",
                          free_raw_data=True)
    booster = lgb.train(params, dataset, num_boost_round=rounds)
    y_hat = booster.predict(x_valid)
    metrics = compute_metrics(config.target.task, y_valid, y_hat)
    text = booster.model_to_string()
    importance = pd.DataFrame({
        "feature": booster.feature_name(),
        "gain": booster.feature_importance("gain"),
        "splits": booster.feature_importance("split"),
    }).sort_values(["gain", "feature"], ascending=[False, True]).reset_index(drop=True)
    reference = reference_statistics(train_df, numeric, cat_names)
    reference["prediction"] = {
        "mean": float(np.mean(y_hat)), "std": float(np.std(y_hat)),
    }
    return TrainedModel(
        model_text=text,
        model_hash=hashlib.sha256(text.encode()).hexdigest(),
        task=config.target.task,
        params={**params, "num_boost_round": rounds},
        feature_names=numeric + cat_names,
        numeric=numeric,
        categorical=categorical,
        metrics=metrics,
        importance=importance,
        train_days=train_days,
        validation_days=valid_days,
        train_rows=len(train_df),
        validation_rows=len(valid_df),
        reference=reference,
        validation=pd.DataFrame({
            "day": pd.Series([d for d, p in zip(valid_days, valid_parts, strict=True)
                              for _ in range(len(p))], dtype="string"),
            "prediction": np.asarray(y_hat, dtype="float64"),
            "label": np.asarray(y_valid, dtype="float64"),
        }),
    )
