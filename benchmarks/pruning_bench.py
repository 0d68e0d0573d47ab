"""Read pruning: a one-day run on a landing folder of 1,000 daily files against the same run on a
folder of 5 files, in one script run (a ratio, same machine, same moment).

Both folders hold daily CSV files of the same size, read through a glob (`credit-*.csv`). Each
folder is first ingested once (a cold run: the file manifest is built, every file scanned once);
then the same one-day run (raw, processed, quarantine) is timed `--repeats` times on each, and
the files read are counted through a wrapper around the source module's read function.

    .venv/bin/python benchmarks/pruning_bench.py [--files 1000] [--rows 1000] [--repeats 5]

Goal (issue 6, requirement 3): warm one-day run on 1,000 files <= 2x the same run on 5 files.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ml_assets.core.sources as sources  # noqa: E402
from ml_assets.config import PipelineConfig  # noqa: E402
from ml_assets.defs.io_manager import TableIOManager  # noqa: E402
from ml_assets.defs.names import range_tags  # noqa: E402
from ml_assets.defs.pipeline import build_pipeline  # noqa: E402
from ml_assets.defs.resources import AlertsResource, StorageResource  # noqa: E402

START = dt.date(2021, 1, 1)
LAYERS = ["raw", "processed", "quarantine"]


def write_folder(folder: Path, files: int, rows: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(files):
        day = START + dt.timedelta(days=i)
        stamps = pd.Timestamp(day) + pd.to_timedelta(rng.integers(0, 86400, rows), unit="s")
        pd.DataFrame({
            "customer_id": [f"C{day:%Y%m%d}{j:05d}" for j in range(rows)],
            "observed_at": stamps.strftime("%Y-%m-%d %H:%M:%S"),
            "balance": rng.gamma(2.0, 800, rows).round(2),
            "credit_limit": rng.choice([1000, 2500, 5000], rows),
            "default": rng.integers(0, 2, rows),
        }).to_csv(folder / f"credit-{day.isoformat()}.csv", index=False)


def config(folder: Path, days: int) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "name": "credit",
        "partitions": {"start": START.isoformat(),
                       "end": (START + dt.timedelta(days=days)).isoformat()},
        "source": {"kind": "files", "uri": str(folder / "credit-*.csv"), "format": "csv",
                   "timestamp_column": "observed_at"},
        "schema": {"customer_id": {"dtype": "string", "nullable": False},
                   "observed_at": {"dtype": "datetime", "nullable": False},
                   "balance": {"dtype": "float64"}, "credit_limit": {"dtype": "float64"},
                   "default": {"dtype": "int64", "allowed": [0, 1]}},
        "primary_key": ["customer_id"],
        "target": {"column": "default", "task": "binary", "positive_when": "== 1"},
        "features": {"numeric": ["balance", "credit_limit"]},
        "training": {"window_days": 3, "validation_days": 1},
        "gates": {"roc_auc": {"min": 0.5}},
    })


class Case:
    def __init__(self, root: Path, files: int, rows: int):
        self.folder = root / f"landing_{files}"
        write_folder(self.folder, files, rows)
        self.cfg = config(self.folder, files)
        self.built = build_pipeline(self.cfg)
        storage = StorageResource(tables_root=str(root / f"tables_{files}"),
                                  models_root=str(root / f"models_{files}"))
        self.resources = {"storage": storage, "alerts": AlertsResource(),
                          "table_io_manager": TableIOManager(storage=storage)}
        self.home = root / f"home_{files}"  # one Dagster instance (SQLite) per case
        self.home.mkdir()

    def run(self, instance: dg.DagsterInstance, day: str) -> float:
        t = time.perf_counter()
        result = dg.materialize(self.built.assets, selection=[self.built.names.key(x) for x in LAYERS],
                                instance=instance, resources=self.resources,
                                tags=range_tags(day, day), raise_on_error=False)
        elapsed = time.perf_counter() - t
        if not result.success:
            raise SystemExit(f"run of {day} on {self.folder} failed")
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1000, help="rows per daily file")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    reads: list[str] = []
    real_read = sources.read_uri

    def counting_read(uri, client=None):
        reads.append(uri)
        return real_read(uri, client)

    sources.read_uri = counting_read
    out: dict = {"files": args.files, "rows_per_file": args.rows, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cases = {"big": Case(root, args.files, args.rows), "small": Case(root, 5, args.rows)}
        with contextlib.ExitStack() as stack:
            instances = {name: stack.enter_context(dg.instance_for_test(temp_dir=str(case.home)))
                         for name, case in cases.items()}
            for name, case in cases.items():
                reads.clear()
                out[f"{name}_cold_s"] = round(case.run(instances[name], START.isoformat()), 3)
                out[f"{name}_cold_files_read"] = len(reads)
            day = (START + dt.timedelta(days=2)).isoformat()
            times: dict[str, list[float]] = {n: [] for n in cases}
            counts: dict[str, list[int]] = {n: [] for n in cases}
            for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits both
                for name, case in cases.items():
                    reads.clear()
                    times[name].append(case.run(instances[name], day))
                    counts[name].append(len(reads))
            for name in cases:
                out[f"{name}_warm_s_median"] = round(statistics.median(times[name]), 3)
                out[f"{name}_warm_s_all"] = [round(t, 3) for t in times[name]]
                out[f"{name}_warm_files_read"] = max(counts[name])
    out["ratio_warm_big_over_small"] = round(out["big_warm_s_median"] / out["small_warm_s_median"], 3)
    out["goal"] = "ratio <= 2.0"
    out["met"] = out["ratio_warm_big_over_small"] <= 2.0
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
