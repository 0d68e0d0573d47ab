"""A credit-like landing set for the hostile-file tests: one file per day (CSV or Parquet), read
through a glob or a `{date}` URI, and helpers to look at everything the store holds."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ml_assets.config import PipelineConfig
from ml_assets_tests.helpers import deep_merge

START = dt.date(2024, 3, 1)
DAYS = 6


def credit_frame(day: dt.date, rows: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed + day.toordinal())
    stamps = pd.Timestamp(day) + pd.to_timedelta(rng.integers(0, 24 * 3600, rows), unit="s")
    balance = rng.gamma(2.0, 800, rows).round(2)
    limit = rng.choice([1000, 2500, 5000, 10000], rows)
    ids = [f"C{day:%Y%m%d}{i:04d}" for i in range(rows)]
    return pd.DataFrame({
        "customer_id": ids,
        "observed_at": stamps.strftime("%Y-%m-%d %H:%M:%S"),
        "email": [f"{i.lower()}@bank.example" for i in ids],
        "balance": balance.astype(str),
        "credit_limit": limit.astype(str),
        "age": rng.integers(18, 90, rows).astype(str),
        "default": (balance / limit > 0.4).astype(int).astype(str),
    })


def day_name(day: dt.date, fmt: str) -> str:
    return f"credit-{day.isoformat()}.{fmt}"


def write_day(folder: Path, day: dt.date, frame: pd.DataFrame, fmt: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / day_name(day, fmt)
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        out = frame.copy()
        out["observed_at"] = pd.to_datetime(out["observed_at"])
        out.to_parquet(path, index=False)
    return path


def write_credit(folder: Path, fmt: str = "csv", days: int = DAYS, rows: int = 40) -> list[Path]:
    return [write_day(folder, START + dt.timedelta(days=i), credit_frame(START + dt.timedelta(days=i),
                                                                          rows), fmt)
            for i in range(days)]


def credit_dict(uri: str, fmt: str = "csv", **over: Any) -> dict:
    base = {
        "name": "credit",
        "partitions": {"start": START.isoformat(),
                       "end": (START + dt.timedelta(days=DAYS)).isoformat()},
        "source": {"kind": "files", "uri": uri, "format": fmt, "timestamp_column": "observed_at"},
        "schema": {
            "customer_id": {"dtype": "string", "nullable": False},
            "observed_at": {"dtype": "datetime", "nullable": False},
            "email": {"dtype": "string"},
            "balance": {"dtype": "float64", "nullable": False, "min": 0},
            "credit_limit": {"dtype": "float64", "nullable": False, "min": 0},
            "age": {"dtype": "int64", "min": 18, "max": 120},
            "default": {"dtype": "int64", "nullable": False, "allowed": [0, 1]},
        },
        "primary_key": ["customer_id"],
        "pii": {"email": "hash"},
        "target": {"column": "default", "task": "binary", "positive_when": "== 1"},
        "features": {"numeric": ["balance", "credit_limit", "age"]},
        "training": {"window_days": 3, "validation_days": 1, "params": {"num_boost_round": 5}},
        "gates": {"roc_auc": {"min": 0.5}},
        "checks": {"max_quarantine_rate": 0.5},
    }
    return deep_merge(base, over)


def credit_config(folder: Path, form: str, fmt: str = "csv", **over: Any) -> PipelineConfig:
    uri = str(folder / (f"credit-{{date}}.{fmt}" if form == "date" else f"credit-*.{fmt}"))
    return PipelineConfig.model_validate(credit_dict(uri, fmt, **over))


def stored_text(root: Path) -> str:
    """Every Parquet file under `root`, decoded to text (compressed bytes hide plain values)."""
    texts = []
    for path in sorted(root.rglob("*.parquet")):
        texts.append(pq.read_table(path).to_pandas().astype(str).to_csv(index=False))
    return "\n".join(texts)


def parquet_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))
