"""Shared test helpers: small configs, synthetic CSV datasets, and running assets for real."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import yaml

from ml_assets.config import PipelineConfig
from ml_assets.defs.io_manager import TableIOManager
from ml_assets.defs.names import range_tags
from ml_assets.defs.pipeline import build_pipeline
from ml_assets.defs.resources import AlertsResource, StorageResource

REPO = Path(__file__).resolve().parent.parent
FLIGHTS_YAML = REPO / "ml_assets" / "configs" / "flights.yaml"


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def flights_dict(**over: Any) -> dict:
    """The shipped flights config, shrunk for tests: January, 10-day window, 30 trees."""
    raw = yaml.safe_load(FLIGHTS_YAML.read_text())
    small = {
        "partitions": {"start": "2013-01-01", "end": "2013-02-01"},
        "training": {"window_days": 10, "validation_days": 3,
                     "params": {"num_boost_round": 30, "seed": 7}},
        "gates": {"roc_auc": {"min": 0.55}},
    }
    return deep_merge(deep_merge(raw, small), over)


def flights_config(**over: Any) -> PipelineConfig:
    return PipelineConfig.model_validate(flights_dict(**over))


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ---------------------------------------------------------------- a second, different dataset
STATIONS = ["north", "south", "east", "west", "harbor"]


def rentals_frame(day: dt.date, rows: int, seed: int) -> pd.DataFrame:
    """Synthetic bike rentals for one day: the ride duration (minutes) is the regression target."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp(day) + pd.to_timedelta(rng.integers(0, 24 * 3600, rows), unit="s")
    distance = rng.gamma(2.0, 1.5, rows).round(3)
    temperature = (12 + 8 * rng.standard_normal(rows)).round(1)
    station = rng.choice(STATIONS, rows)
    member = rng.choice(["yes", "no"], rows)
    duration = (4 + 3.2 * distance + 0.15 * np.abs(temperature - 18) + (member == "no") * 3
                + rng.normal(0, 1.5, rows)).round(2)
    ids = np.arange(rows) + int(day.strftime("%Y%m%d")) * 100_000
    return pd.DataFrame({
        "rental_id": ids.astype(str),
        "started_at": start.strftime("%Y-%m-%d %H:%M:%S"),
        "station": station,
        "member": member,
        "rider_email": [f"rider{n % 997}@example.com" for n in ids],
        "phone": [f"+1555{n % 10_000_000:07d}" for n in ids],
        "distance_km": distance.astype(str),
        "temperature_c": temperature.astype(str),
        "duration_min": duration.astype(str),
    })


def write_rentals(folder: Path, start: dt.date, days: int, rows: int = 300,
                  per_day: bool = True) -> list[Path]:
    """CSV files: one per day (`YYYY-MM-DD.csv`) or one file holding every day."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = [rentals_frame(start + dt.timedelta(days=i), rows, seed=i) for i in range(days)]
    if per_day:
        paths = []
        for i, frame in enumerate(frames):
            path = folder / f"{(start + dt.timedelta(days=i)).isoformat()}.csv"
            frame.to_csv(path, index=False)
            paths.append(path)
        return paths
    path = folder / "rentals.csv"
    pd.concat(frames).to_csv(path, index=False)
    return [path]


def rentals_dict(uri: str, start: str = "2024-03-01", end: str = "2024-03-15", **over: Any) -> dict:
    base = {
        "name": "rentals",
        "partitions": {"start": start, "end": end},
        "source": {"kind": "files", "uri": uri, "format": "csv", "timestamp_column": "started_at"},
        "schema": {
            "rental_id": {"dtype": "string", "nullable": False},
            "started_at": {"dtype": "datetime", "nullable": False},
            "station": {"dtype": "string", "nullable": False, "allowed": STATIONS},
            "member": {"dtype": "bool", "nullable": False},
            "rider_email": {"dtype": "string"},
            "phone": {"dtype": "string"},
            "distance_km": {"dtype": "float64", "nullable": False, "min": 0, "max": 100},
            "temperature_c": {"dtype": "float64", "min": -40, "max": 50},
            "duration_min": {"dtype": "float64", "min": 0, "max": 600},
        },
        "primary_key": ["rental_id"],
        "pii": {"rider_email": "hash", "phone": "drop"},
        "target": {"column": "duration_min", "task": "regression"},
        "features": {"numeric": ["distance_km", "temperature_c"],
                     "categorical": ["station", "member"]},
        "training": {"window_days": 8, "validation_days": 2,
                     "params": {"num_boost_round": 40, "seed": 3, "min_data_in_leaf": 20}},
        "gates": {"rmse": {"max": 4.0}, "r2": {"min": 0.5}},
        "checks": {"min_rows_per_day": 1, "max_quarantine_rate": 0.05},
        # 200 rows a day: sampling noise alone moves normalized Wasserstein by about 0.1
        "drift": {"numeric_threshold": 0.25, "categorical_threshold": 0.2},
    }
    return deep_merge(base, over)


# ---------------------------------------------------------------- running assets for real
def local_storage(root: Path) -> StorageResource:
    return StorageResource(tables_root=str(root / "tables"), models_root=str(root / "models"))


def materialize(
    cfg: PipelineConfig,
    storage: StorageResource,
    instance: dg.DagsterInstance,
    start: str,
    end: str | None = None,
    layers: list[str] | None = None,
    as_of: str | None = None,
    run_config: dict | None = None,
    alerts: AlertsResource | None = None,
    tags: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialize `layers` (default: all) for daily partitions start..end (inclusive)."""
    built = build_pipeline(cfg)
    names = built.names
    layers = layers or ["raw", "processed", "quarantine", "features", "model", "production_model",
                        "predictions", "drift", "model_performance"]
    run_config = dict(run_config or {})
    if "model" in layers and as_of is not None:
        run_config.setdefault("ops", {})[names.model_op] = {"config": {"as_of": as_of}}
    tags = dict(tags or {})
    if any(layer not in ("model", "production_model") for layer in layers):
        tags.update(range_tags(start, end or start))
    # features read the lookup tables their transforms join: materialized with them
    lookups = [names.lookup(n) for n in cfg.lookups] if "features" in layers else []
    return dg.materialize(
        built.assets,
        selection=[*lookups, *(names.key(layer) for layer in layers)],
        instance=instance,
        resources={"storage": storage, "alerts": alerts or AlertsResource(),
                   "table_io_manager": TableIOManager(storage=storage)},
        tags=tags,
        run_config=run_config or None,
        raise_on_error=False,
    )


def checks_by_name(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {f"{e.asset_key.path[-1]}.{e.check_name}": e for e in result.get_asset_check_evaluations()}


def failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    return sorted(name for name, e in checks_by_name(result).items() if not e.passed)


def error_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    """Failed checks at ERROR severity (warnings left out)."""
    return sorted(name for name, e in checks_by_name(result).items()
                  if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR)


def materializations(result: dg.ExecuteInProcessResult, layer: str) -> dict[str | None, Any]:
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        if mat.asset_key.path[-1] == layer:
            out[mat.partition] = mat
    return out


def step_errors(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(
        e.step_failure_data.error.message
        for e in result.all_events
        if e.is_step_failure and e.step_failure_data.error
    )
