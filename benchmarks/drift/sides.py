"""The benchmark's sides. Each runs in its own fresh child process (`spawn`); the parent reads the
child's wall time and peak RSS with `os.wait4`, so each side's memory is its own.

- evidently: `ml_assets.core.drift.evidently_drift(..., preset=True)`, that is
  `Report([DataDriftPreset(num_method, cat_method, num_threshold, cat_threshold)], include_tests=True)`
  on all rows, scores from the `ValueDrift` values and verdicts from their tests.
- ours: `ml_assets.core.drift.dataset_drift` on all rows (the verdicts), one thread.
- ours_threads: the same with `workers=os.cpu_count()` (columns computed in parallel threads).
- ours_html: `dataset_drift` plus `evidently_report_html` on a seeded sample of each side, that is
  everything a drift asset would do for one partition; the HTML is written beside the result.
  It also scores the samples with `dataset_drift` to measure the sample's error.

In the child, imports and the Parquet read are timed apart from the work (`import_s`, `load_s`,
`work_s`; `verdicts_s` is the part of `work_s` before the HTML report); `wall_s` is the whole
child as the parent sees it. Both sides load the data with the same `load`, and `rss_after_load_mb`
(resident memory once both frames are loaded) shows how much of the peak is the data itself.
Evidently's side does not render HTML: its time is `Report.run` alone, which favours Evidently.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

# the machine-load helpers are the pipeline benchmark's (both scripts put benchmarks/ on sys.path)
from pipeline.sides import cpu_busy_s, wait_idle  # noqa: E402

SIDES = ("evidently", "ours", "ours_threads", "ours_html")


def _settings(spec: dict):
    from ml_assets.core.drift import DriftSettings

    return DriftSettings(spec["numeric_method"], spec["categorical_method"])


def load(path: str):
    """Read one Parquet file into pandas one column at a time: the same frame (values and dtypes)
    as `pd.read_parquet`, without holding the whole Arrow table beside it (about 200 MB less
    resident memory at 1M x 20). Every side uses it."""
    import pandas as pd
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    columns = {name: parquet.read(columns=[name]).column(0).to_pandas() for name in parquet.schema_arrow.names}
    return pd.DataFrame(columns, copy=False)


def rss_mb() -> float | None:
    """This process's resident memory now, in MB (Linux)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def worker(side: str, spec: dict, out_path: Path) -> None:
    """Child process body: import, load both Parquet files, run the side, write its result JSON."""
    started = time.perf_counter()
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import scipy.spatial  # noqa: F401
    import scipy.stats  # noqa: F401

    from ml_assets.core import drift

    if side in ("evidently", "ours_html"):
        import evidently  # noqa: F401
        from evidently.presets import DataDriftPreset  # noqa: F401
    imported = time.perf_counter()
    reference = load(spec["files"]["reference"])
    current = load(spec["files"]["current"])
    loaded = time.perf_counter()
    rss_after_load = rss_mb()
    settings = _settings(spec)
    numeric, categorical = spec["numeric_columns"], spec["categorical_columns"]
    result: dict = {"side": side}
    if side == "evidently":
        verdicts = drift.evidently_drift(reference, current, numeric, categorical, settings, preset=True)
    else:
        workers = (os.cpu_count() or 1) if side == "ours_threads" else 1
        result["workers"] = workers
        verdicts = drift.dataset_drift(reference, current, numeric, categorical, settings, workers=workers)
    verdicts_done = time.perf_counter()
    if side == "ours_html":
        html = drift.evidently_report_html(
            reference, current, numeric, categorical, settings, sample_rows=spec["sample_rows"], seed=spec["seed"]
        )
        html_path = out_path.with_suffix(".html")
        html_path.write_text(html, encoding="utf-8")
        result["html_path"] = str(html_path)
        result["html_bytes"] = len(html.encode())
    work_done = time.perf_counter()
    if side == "ours_html":
        ref_sample = drift.seeded_sample(reference, spec["sample_rows"], spec["seed"])
        cur_sample = drift.seeded_sample(current, spec["sample_rows"], spec["seed"] + 1)
        sampled = drift.dataset_drift(ref_sample, cur_sample, numeric, categorical, settings)
        result["sample_records"] = sampled.to_records()
    result.update(
        {
            "import_s": round(imported - started, 3),
            "rss_after_load_mb": rss_after_load,
            "load_s": round(loaded - imported, 3),
            "verdicts_s": round(verdicts_done - loaded, 3),
            "work_s": round(work_done - loaded, 3),
            "share": verdicts.share,
            "records": verdicts.to_records(),
        }
    )
    out_path.write_text(json.dumps(result, indent=1))


def run_side(side: str, spec: dict, workdir: Path, script: Path, wait_s: float = 0.0) -> dict:
    """Run one side in a fresh child process; wall time, CPU time and peak RSS come from wait4."""
    spec_path = workdir / "spec.json"
    spec_path.write_text(json.dumps(spec))
    out_path = workdir / f"{side}.json"
    log_path = workdir / f"{side}.log"
    waited = wait_idle(wait_s) if wait_s > 0 else 0.0
    busy_before = cpu_busy_s()
    command = [sys.executable, str(script), "--worker", side, "--spec", str(spec_path), "--out", str(out_path)]
    started = time.perf_counter()
    with open(log_path, "w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    exit_code = os.waitstatus_to_exitcode(status)
    if exit_code != 0 or not out_path.exists():
        raise SystemExit(f"{side} side failed (exit {exit_code}); log {log_path}:\n{log_path.read_text()[-3000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    busy_after = cpu_busy_s()
    result = json.loads(out_path.read_text())
    result.update(
        {
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
            "waited_for_idle_s": waited,
            # CPU seconds other processes used meanwhile: contention that may have slowed this side.
            "other_processes_cpu_s": None if busy_before is None else round(busy_after - busy_before - cpu, 1),
            "log": str(log_path),
        }
    )
    return result
