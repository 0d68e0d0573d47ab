"""Benchmark: the processed and features steps per flights day, now against before.

    python benchmarks/contract_speed.py [--days N] [--repeat N]

"Before" is the column-at-a-time implementation kept as the test reference
(ml_assets_tests/core/_reference.py); both run in this process on the same days, so the numbers
to read are the ratios. Also times the key history (primary keys across the pipeline's history)
over a year of flights: loading 365 index files from a local store once, and the per-day lookup.
The outputs are checked equal before anything is timed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

from ml_assets.config import load_config  # noqa: E402
from ml_assets.core import keys  # noqa: E402
from ml_assets.core.contract import clean  # noqa: E402
from ml_assets.core.features import build_features  # noqa: E402
from ml_assets.core.frames import SOURCE_FILE, SOURCE_ROW  # noqa: E402
from ml_assets.core.sources import read_source  # noqa: E402
from ml_assets.core.storage import LocalStore  # noqa: E402
from ml_assets_tests.core._reference import (  # noqa: E402
    reference_build_features,
    reference_clean,
)


def per_day_ms(fn, frames: dict, repeat: int) -> float:
    """Median over `repeat` passes of the mean time per day (ms)."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for day, frame in frames.items():
            fn(frame, day)
        runs.append((time.perf_counter() - start) / len(frames) * 1000)
    return statistics.median(runs)


def as_text(raw: pd.DataFrame) -> pd.DataFrame:
    """The same rows as a CSV source delivers them (every value text)."""
    data = raw.drop(columns=[SOURCE_FILE, SOURCE_ROW])
    text = data.astype(str).where(data.notna(), None).astype(object)
    return pd.concat([text, raw[[SOURCE_FILE, SOURCE_ROW]]], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    cfg = load_config(REPO / "configs" / "flights.yaml")
    start = dt.date(2013, 1, 1)
    batch = read_source(cfg, start, start + dt.timedelta(days=args.days))
    typed = {d: batch.frames[d] for d in batch.frames}
    text = {d: as_text(f) for d, f in typed.items()}
    processed = {d: clean(f, cfg, d).processed for d, f in typed.items()}
    for frames in (typed, text):  # identical results first
        for day, raw in frames.items():
            new, old = clean(raw, cfg, day), reference_clean(raw, cfg, day)
            pd.testing.assert_frame_equal(new.processed, old.processed)
            pd.testing.assert_frame_equal(new.quarantine, old.quarantine)
    for frame in processed.values():
        pd.testing.assert_frame_equal(build_features(frame, cfg),
                                      reference_build_features(frame, cfg))
    rows = sum(len(f) for f in typed.values()) / len(typed)
    print(f"flights, {len(typed)} days, {rows:.0f} rows/day, median of {args.repeat} passes")
    for name, frames, new, old in (
        ("clean (typed source)", typed, lambda f, d: clean(f, cfg, d),
         lambda f, d: reference_clean(f, cfg, d)),
        ("clean (CSV text)", text, lambda f, d: clean(f, cfg, d),
         lambda f, d: reference_clean(f, cfg, d)),
        ("build_features", processed, lambda f, d: build_features(f, cfg),
         lambda f, d: reference_build_features(f, cfg)),
    ):
        before = per_day_ms(old, frames, args.repeat)
        after = per_day_ms(new, frames, args.repeat)
        print(f"  {name:22s} before {before:6.2f} ms/day   now {after:6.2f} ms/day   "
              f"ratio {after / before:.2f}")

    # key history over a year: 365 index files, read once; then a lookup per day
    year = read_source(cfg, start, dt.date(2014, 1, 1))
    spec = keys.key_spec(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(tmp)
        prefix = keys.index_prefix(["flights", "processed"])
        cleaned = {}
        for day in year.frames:
            c = clean(year.frames[day], cfg, day, keys.KeyHistory(list(cfg.primary_key)))
            cleaned[day] = c
            store.put(keys.index_key(prefix, day), keys.index_bytes(c.processed, c.key_hashes, spec))
        t = time.perf_counter()
        history = keys.KeyHistory.load(store, prefix, cfg, exclude=["2013-12-31"])
        load_s = time.perf_counter() - t
        last = year.frames["2013-12-31"]
        with_history = per_day_ms(lambda f, d: clean(f, cfg, d, history), {"2013-12-31": last},
                                  args.repeat * 5)
        without = per_day_ms(lambda f, d: clean(f, cfg, d), {"2013-12-31": last}, args.repeat * 5)
        total = sum(len(c.processed) for c in cleaned.values())
        print(f"  key history: {history.partitions_read} index files ({total} keys) loaded in "
              f"{load_s * 1000:.0f} ms once per run; clean of one day {without:.2f} ms without, "
              f"{with_history:.2f} ms with the year's keys (ratio {with_history / without:.2f})")


if __name__ == "__main__":
    main()
