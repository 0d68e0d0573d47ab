"""Benchmark: the ml_assets API under load, side by side with MLflow's scoring server on the same
model, and LightGBM's in-process predict on the same rows as the limit.

    python benchmarks/serving/bench.py [--quick] [--workdir DIR] [--wait-idle S]
                                       [--single N] [--batches N] [--batch-rows N]
                                       [--clients N] [--duration S] [--omp-threads N]

Setup (once per workdir, reused by later runs): `ml-assets run` on the shipped flights config
(2013-01-01..2013-04-01, the 60-day window ending 2013-03-31, 300 trees) with
MLFLOW_TRACKING_URI set, so the model asset itself logs the model to MLflow and the production
alias is mirrored there; then a second model (as of 2013-03-30) for the hot swap.

Sides, all on loopback, one after the other, on the same feature rows (the last 7 days):
- ours: `uvicorn ml_assets.serving:app` (one worker, --no-access-log), JSON records in;
- mlflow: `mlflow models serve -m models:/flights@production --env-manager local` (MLflow's
  default: one uvicorn worker), the same model, fed the already-encoded numeric rows as tensor
  input (`{"inputs": [[...]]}`): the format an `mlflow.lightgbm` model needs for categoricals;
- in-process: `booster.predict` on the encoded rows as numpy and as the pandas frame `encode`
  makes, and `ml_assets.core.scoring.score` (encode + predict), no HTTP.

Phases, each bounded in count and time:
1. one record per request, sequential (one keep-alive connection): p50 / p99 / mean latency;
2. batches of --batch-rows rows, sequential: rows per second;
3. --clients concurrent clients for --duration seconds of one-record requests (asyncio, one
   keep-alive connection per client, a minimal HTTP/1.1 client): requests/s, p50 / p99, errors. On ours, a hot swap (the production alias moves) at
   1/3 of the run and a canary start (share 0.1, via `ml-assets models canary`'s code) at 2/3,
   then counted: errors, and responses per version and role.

Results: benchmarks/results/serving.json (or serving_quick.json) and a table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import http.client
import importlib.util
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE.parent / "results"
BIN = Path(sys.executable).parent
TOKEN = "benchmark-admin-token-0123456789"

_spec = importlib.util.spec_from_file_location("bench_common", HERE.parent / "run.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)  # machine; sides: cpu_busy_s, wait_idle


# ----------------------------------------------------------------------------- setup
def setup(workdir: Path, quick: bool) -> dict:
    """Train (once) and return paths and the rows to send."""
    import yaml

    marker = workdir / "setup.json"
    if marker.exists():
        info = json.loads(marker.read_text())
        if not info.get("records_model_uri"):
            info["records_model_uri"] = log_records_model(workdir)
            marker.write_text(json.dumps(info, indent=2))
        return info
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    home = workdir / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    cfg = yaml.safe_load((ROOT / "ml_assets" / "configs" / "flights.yaml").read_text())
    if quick:  # the same model shape on a shorter window (too short for the 0.65 gate)
        cfg["training"].update({"window_days": 25, "validation_days": 5})
        cfg["gates"] = {"roc_auc": {"min": 0.55}}
        start, end, as_of, second = "2013-01-01", "2013-02-01", "2013-01-31", "2013-01-30"
    else:
        start, end, as_of, second = "2013-01-01", "2013-04-01", "2013-03-31", "2013-03-30"
    config = workdir / "flights.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = base_env(workdir)
    for args in (["--start", start, "--end", end, "--as-of", as_of],
                 ["--start", second, "--end", end, "--as-of", second]):
        t0 = time.perf_counter()
        proc = subprocess.run([str(BIN / "ml-assets"), "run", "--config", str(config), *args,
                               "--json"], env=env, capture_output=True, text=True, cwd=str(ROOT))
        summary = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
        if not summary.get("production", {}).get("model_id"):
            raise SystemExit(f"ml-assets run {args} failed:\n{proc.stderr[-3000:]}")
        print(f"setup: trained {summary['model']['version']} in {time.perf_counter() - t0:.0f} s; "
              f"production {summary['production'].get('model_version')}", flush=True)
    features = sorted((workdir / "data" / "flights" / "features").glob("*/*.parquet"))
    days = sorted({p.parent.name for p in features})[-7:]
    info = {"workdir": str(workdir), "config": str(config), "days": days,
            "feature_files": [str(p) for p in features if p.parent.name in days],
            "quick": quick, "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "records_model_uri": log_records_model(workdir)}
    marker.write_text(json.dumps(info, indent=2))
    return info


def log_records_model(workdir: Path) -> str:
    """Log the production model as a pyfunc that takes raw records (mlflow_records_model.py) in
    the same MLflow store; return its model URI."""
    import mlflow

    from ml_assets.core.registry import ModelStore
    from ml_assets.core.storage import LocalStore

    models = ModelStore(LocalStore(str(workdir / "models")))
    version = models.resolve("flights", "production")
    base = workdir / "models" / "flights" / version.model_id
    mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlflow.db")
    mlflow.set_experiment("flights")
    with mlflow.start_run(run_name=f"{version.version} records pyfunc (benchmark)"):
        info = mlflow.pyfunc.log_model(
            name="records", python_model=str(HERE / "mlflow_records_model.py"),
            artifacts={"model": str(base / "model.txt"), "sidecar": str(base / "model.json")},
            pip_requirements=["lightgbm", "pandas"])
    return info.model_uri


def base_env(workdir: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ML_ASSETS_", "MLFLOW_", "S3_", "AWS_"))}
    env.update({"DAGSTER_HOME": str(workdir / "dagster_home"), "DATA_PATH": str(workdir / "data"),
                "MODEL_PATH": str(workdir / "models"), "ENV": "development",
                "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db",
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
    return env


def load_rows(info: dict):
    """Feature rows of the last days: JSON records (ours), encoded matrix (MLflow, in-process)."""
    import numpy as np
    import pandas as pd

    from ml_assets.core.registry import ModelStore
    from ml_assets.core.scoring import LoadedModel
    from ml_assets.core.storage import LocalStore
    from ml_assets.core.training import encode

    frame = pd.concat([pd.read_parquet(p) for p in info["feature_files"]], ignore_index=True)
    frame = frame.drop(columns=["_label"])
    models = ModelStore(LocalStore(str(Path(info["workdir"]) / "models")))
    version = models.resolve("flights", "production")
    model = LoadedModel.from_text(version.model_id, models.load_text(version), version.sidecar,
                                  version=version.version)
    encoded = encode(frame, model.numeric, model.categorical)
    matrix = encoded.copy()
    for col in model.categorical:
        codes = encoded[col].cat.codes.astype("float64")
        matrix[col] = codes.where(codes >= 0, np.nan)
    matrix = matrix.to_numpy(dtype="float64")
    objects = frame.astype(object)
    records = objects.where(objects.notna(), None).to_dict(orient="records")
    tensors = [[None if np.isnan(x) else float(x) for x in row] for row in matrix]
    return {"frame": frame, "encoded": encoded, "matrix": matrix, "records": records,
            "tensors": tensors, "model": model, "version": version, "models": models}


# ----------------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name: str, cmd: list[str], env: dict, health: str, log: Path):
        self.name, self.health, self.log = name, health, log
        self.port = int(cmd[cmd.index("--port" if "--port" in cmd else "-p") + 1])
        self.fh = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.fh, stderr=subprocess.STDOUT,
                                     cwd=str(ROOT), start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{name} exited: {log.read_text()[-3000:]}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", health)
                if c.getresponse().status == 200:
                    return
            time.sleep(0.25)
        raise SystemExit(f"{name} did not become healthy; log {log}")

    def cpu_s(self) -> float:
        """CPU seconds of the server's process group (uvicorn and any worker children)."""
        total = 0.0
        tck = os.sysconf("SC_CLK_TCK")
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            with contextlib.suppress(OSError, IndexError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tck
        return total

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.fh.close()


def _children(pid: int) -> list[int]:
    out = []
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            out += [int(child), *_children(int(child))]
    return out


def start_ours(info: dict, log_dir: Path, omp_threads: int | None) -> Server:
    env = base_env(Path(info["workdir"]))
    env.update({"ML_ASSETS_CONFIG": info["config"], "ML_ASSETS_ADMIN_TOKEN": TOKEN,
                "ML_ASSETS_SERVING_POLL_SECONDS": "0.5"})
    env.pop("MLFLOW_TRACKING_URI")
    if omp_threads:
        env["OMP_NUM_THREADS"] = str(omp_threads)
    port = free_port()
    return Server("ours", [str(BIN / "python"), "-m", "uvicorn", "ml_assets.serving:app",
                           "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
                  env, "/ready", log_dir / "serving_ours.log")


def start_mlflow(info: dict, log_dir: Path, omp_threads: int | None,
                 model_uri: str = "models:/flights@production", name: str = "mlflow") -> Server:
    env = base_env(Path(info["workdir"]))
    if omp_threads:
        env["OMP_NUM_THREADS"] = str(omp_threads)
    port = free_port()
    return Server(name, [str(BIN / "mlflow"), "models", "serve", "-m", model_uri,
                         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                  env, "/ping", log_dir / f"serving_{name}.log")


# ----------------------------------------------------------------------------- load
def percentiles(seconds: list[float]) -> dict:
    if not seconds:
        return {"n": 0}
    ms = sorted(s * 1000 for s in seconds)

    def q(p: float) -> float:
        return round(ms[min(len(ms) - 1, int(round(p * (len(ms) - 1))))], 3)

    return {"n": len(ms), "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99),
            "max_ms": round(ms[-1], 3), "mean_ms": round(statistics.fmean(ms), 3)}


def sequential(port: int, path: str, bodies: list[bytes], count: int, limit_s: float,
               warmup: int = 50) -> dict:
    """One keep-alive connection, one request at a time."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": "application/json"}
    errors, times = 0, []
    for i in range(warmup):
        conn.request("POST", path, bodies[i % len(bodies)], headers)
        conn.getresponse().read()
    t_start = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        conn.request("POST", path, bodies[i % len(bodies)], headers)
        response = conn.getresponse()
        response.read()
        times.append(time.perf_counter() - t0)
        errors += response.status != 200
        if time.perf_counter() - t_start > limit_s:
            break
    wall = time.perf_counter() - t_start
    conn.close()
    return {**percentiles(times), "errors": errors, "wall_s": round(wall, 3),
            "requests_per_s": round(len(times) / wall, 1)}


class Connection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: the load generator.

    httpx's AsyncClient spent about 5 ms of CPU per request with 50 connections here, so it
    capped both servers at about 200 requests/s on these 2 cores; this needs ~0.1 ms.
    """

    def __init__(self, port: int):
        self.port = port
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes, key: str) -> tuple[int, dict[bytes, bytes]]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                          b"\r\nX-Request-Key: %s\r\nContent-Length: %d\r\n\r\n%s"
                          % (path.encode(), key.encode(), len(body), body))
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("connection closed by the server")
        headers = {}
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if headers.get(b"transfer-encoding") == b"chunked":
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            await self.reader.readexactly(int(headers.get(b"content-length", b"0")))
        if headers.get(b"connection") == b"close":
            await self.close()
        return int(status_line.split()[1]), headers

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def concurrent(port: int, bodies: list[bytes], path: str, clients: int, duration: float,
                     events: list[tuple[float, object]] | None = None,
                     max_requests: int = 1_000_000) -> dict:
    times: list[float] = []
    versions: dict[str, int] = {}
    errors: dict[str, int] = {}
    done = 0
    t_start = time.perf_counter()
    deadline = t_start + duration
    timeline: list[dict] = []

    async def worker(i: int) -> None:
        nonlocal done
        conn = Connection(port)
        n = i
        while time.perf_counter() < deadline and done < max_requests:
            body = bodies[n % len(bodies)]
            n += clients
            t0 = time.perf_counter()
            try:
                status, headers = await conn.post(path, body, f"user-{n % 1000}")
                label = (f"{headers.get(b'x-model-version', b'-').decode()}/"
                         f"{headers.get(b'x-model-role', b'-').decode()}")
            except Exception as exc:  # noqa: BLE001 - counted
                status, label = type(exc).__name__, "-"
                await conn.close()
            times.append(time.perf_counter() - t0)
            done += 1
            if status != 200:
                errors[str(status)] = errors.get(str(status), 0) + 1
            versions[label] = versions.get(label, 0) + 1
        await conn.close()

    async def scheduler() -> None:
        loop = asyncio.get_running_loop()
        for at, action in events or []:
            await asyncio.sleep(max(0.0, t_start + at - time.perf_counter()))
            t0 = time.perf_counter()
            what = await loop.run_in_executor(None, action)
            timeline.append({"at_s": round(t0 - t_start, 2), "what": what,
                             "took_s": round(time.perf_counter() - t0, 3)})

    await asyncio.gather(scheduler(), *(worker(i) for i in range(clients)))
    wall = time.perf_counter() - t_start
    return {**percentiles(times), "requests_per_s": round(len(times) / wall, 1),
            "errors": sum(errors.values()), "errors_by_type": errors, "wall_s": round(wall, 2),
            "responses_by_version": versions, "events": timeline, "clients": clients}


def in_process(rows: dict, batch_rows: int, single: int) -> dict:
    """LightGBM's predict without HTTP, on the same rows: the limit."""
    import numpy as np

    from ml_assets.core.scoring import score

    model, matrix, encoded = rows["model"], rows["matrix"], rows["encoded"]
    booster = model.booster

    def timed(fn, n: int) -> list[float]:
        fn(0)
        out = []
        for i in range(n):
            t0 = time.perf_counter()
            fn(i)
            out.append(time.perf_counter() - t0)
        return out

    n_rows = len(matrix)
    one_np = timed(lambda i: booster.predict(matrix[i % n_rows:i % n_rows + 1]), single)
    one_pd = timed(lambda i: booster.predict(encoded.iloc[i % n_rows:i % n_rows + 1]), single)
    one_np1 = timed(lambda i: booster.predict(matrix[i % n_rows:i % n_rows + 1], num_threads=1),
                    single)
    starts = [(i * batch_rows) % max(1, n_rows - batch_rows) for i in range(20)]
    batch_np = timed(lambda i: booster.predict(matrix[starts[i % 20]:starts[i % 20] + batch_rows]), 20)
    batch_pd = timed(lambda i: booster.predict(encoded.iloc[starts[i % 20]:starts[i % 20] + batch_rows]), 20)
    frame = rows["frame"]
    batch_score = timed(lambda i: score(model, frame.iloc[starts[i % 20]:starts[i % 20] + batch_rows], []), 20)
    # what a dict-built `encode` (one DataFrame constructor instead of 20 column inserts; the
    # same frame, checked) would give score(): the proposed change in core/training.py
    import ml_assets.core.scoring as scoring

    sample = frame.iloc[:batch_rows]
    pd_testing().assert_frame_equal(encode_dict(sample, model.numeric, model.categorical),
                                    scoring.encode(sample, model.numeric, model.categorical))
    original, scoring.encode = scoring.encode, encode_dict
    try:
        batch_score_dict = timed(lambda i: score(model, frame.iloc[starts[i % 20]:starts[i % 20] + batch_rows], []), 20)
    finally:
        scoring.encode = original

    def rate(ts):
        return round(batch_rows * len(ts) / sum(ts), 1)

    # what a numpy path for batches would give (the one-record path's encoding, vectorized by
    # column; checked identical to score() here), from validated columns to predictions
    records = rows["records"]
    columns = [{c: [r[c] for r in records[s:s + batch_rows]] for c in model.numeric
                + list(model.categorical)} for s in starts[:20]]
    codes = {c: {level: float(i) for i, level in enumerate(levels)}
             for c, levels in model.categorical.items()}

    def numpy_batch(i):
        cols = columns[i % len(columns)]
        matrix = np.empty((len(cols[model.numeric[0]]), len(model.numeric) + len(codes)))
        for j, c in enumerate(model.numeric):
            matrix[:, j] = np.array(cols[c], dtype="float64")
        for j, (c, table) in enumerate(codes.items(), start=len(model.numeric)):
            matrix[:, j] = [table.get(v, np.nan) if v is not None else np.nan for v in cols[c]]
        return booster.predict(matrix)

    first = frame.iloc[starts[0]:starts[0] + batch_rows]
    assert np.array_equal(numpy_batch(0), score(model, first, [])["prediction"].to_numpy())
    batch_numpy_path = timed(numpy_batch, 20)
    return {"one_numpy": percentiles(one_np), "one_pandas": percentiles(one_pd),
            "one_numpy_1_thread": percentiles(one_np1),
            "batch_numpy_path_rows_per_s": rate(batch_numpy_path),
            "batch_numpy_rows_per_s": rate(batch_np), "batch_pandas_rows_per_s": rate(batch_pd),
            "batch_score_rows_per_s": rate(batch_score),
            "batch_score_dict_encode_rows_per_s": rate(batch_score_dict),
            "batch_numpy": percentiles(batch_np), "batch_pandas": percentiles(batch_pd),
            "batch_score": percentiles(batch_score)}


def encode_dict(frame, numeric, categorical):
    """`ml_assets.core.training.encode`, building the columns in a dict first."""
    import pandas as pd

    missing = [c for c in [*numeric, *categorical] if c not in frame.columns]
    if missing:
        raise ValueError(f"feature rows lack the model's column(s) {missing}")
    data = {col: frame[col].astype("float64") for col in numeric}
    for col, levels in categorical.items():
        data[col] = pd.Categorical(frame[col].astype(object).where(frame[col].notna(), None),
                                   categories=levels)
    return pd.DataFrame(data, index=frame.index)


def pd_testing():
    import pandas.testing

    return pandas.testing


# ----------------------------------------------------------------------------- the run
def measured(fn, servers: list[Server]):
    """Run fn; return its result with the CPU the servers, this process and others used."""
    busy0, self0 = common.sides.cpu_busy_s(), _self_cpu()
    servers0 = [s.cpu_s() for s in servers]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - t0
    server_cpu = sum(s.cpu_s() - c for s, c in zip(servers, servers0, strict=True))
    own = _self_cpu() - self0
    busy = common.sides.cpu_busy_s() - busy0 if busy0 is not None else None
    result["cpu"] = {"server_s": round(server_cpu, 2), "load_generator_s": round(own, 2),
                     "other_processes_s": round(busy - server_cpu - own, 2) if busy else None,
                     "wall_s": round(wall, 2), "loadavg_1m_before_after":
                         [round(load0, 2), round(os.getloadavg()[0], 2)]}
    return result


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def swap_events(info: dict, rows: dict, duration: float) -> list:
    """A hot swap at 1/3 (production -> the other model) and a canary at 2/3 (the model that
    was production, share 0.1), through the model store like the CLI."""
    from ml_assets.commands.models import cmd_canary
    from ml_assets.config import load_config
    from ml_assets.core.lifecycle import set_alias_change

    models = rows["models"]
    cfg = load_config(info["config"])
    first = rows["version"]
    other = next(v for v in models.versions("flights") if v.model_id != first.model_id)

    def swap():
        models.move_aliases("flights", set_alias_change("production", other, {}))
        return f"production {first.version} -> {other.version}"

    def canary():
        cmd_canary(cfg, models, first.version, 0.1, False, True, "benchmark", "bench", False)
        return f"canary {first.version} at 10%"

    return [(duration / 3, swap), (2 * duration / 3, canary)]


def restore_aliases(rows: dict) -> None:
    """production back to the first model, no canary; MLflow's aliases set to match (the
    canary command synced them during the run: MLFLOW_TRACKING_URI is set in this process)."""
    from ml_assets.core.lifecycle import set_alias_change
    from ml_assets.core.tracking import sync_aliases

    models, first = rows["models"], rows["version"]
    models.move_aliases("flights", set_alias_change("production", first, {}))
    models.move_aliases("flights", set_alias_change("canary", None, {}))
    sync_aliases(os.environ["MLFLOW_TRACKING_URI"], "flights", models.aliases("flights").aliases)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller model window, fewer requests")
    p.add_argument("--workdir", type=Path, help="default benchmarks/results/serving_work[_quick]")
    p.add_argument("--wait-idle", type=float, default=None,
                   help="wait up to S seconds for a quiet machine before each phase")
    p.add_argument("--single", type=int, help="one-record requests per side")
    p.add_argument("--batches", type=int, help="batch requests per side")
    p.add_argument("--batch-rows", type=int, default=1000)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--duration", type=float, help="seconds of concurrent load per side")
    p.add_argument("--omp-threads", type=int, help="OMP_NUM_THREADS for both servers")
    p.add_argument("--sides", default="ours,mlflow,mlflow_records",
                   help="servers to run: ours, mlflow (native flavor, encoded tensor input), "
                        "mlflow_records (pyfunc taking raw records, like ours)")
    args = p.parse_args(argv)
    quick = args.quick
    single = args.single or (300 if quick else 3000)
    batches = args.batches or (10 if quick else 60)
    duration = args.duration or (10.0 if quick else 60.0)
    wait = args.wait_idle if args.wait_idle is not None else (0.0 if quick else 60.0)
    workdir = args.workdir or RESULTS / ("serving_work_quick" if quick else "serving_work")
    log_dir = RESULTS / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    info = setup(workdir, quick)
    os.environ["MLFLOW_TRACKING_URI"] = base_env(workdir)["MLFLOW_TRACKING_URI"]
    rows = load_rows(info)
    restore_aliases(rows)
    one = [json.dumps(r).encode() for r in rows["records"]]
    one_mlflow = [json.dumps({"inputs": [t]}).encode() for t in rows["tensors"]]
    n = args.batch_rows
    starts = list(range(0, len(one) - n, n))[:20] or [0]
    many = [json.dumps(rows["records"][s:s + n]).encode() for s in starts]
    many_mlflow = [json.dumps({"inputs": rows["tensors"][s:s + n]}).encode() for s in starts]
    bodies = {
        "ours": {"one": one, "many": many},
        "mlflow": {"one": one_mlflow, "many": many_mlflow},
        "mlflow_records": {
            "one": [json.dumps({"dataframe_records": [r]}).encode() for r in rows["records"]],
            "many": [json.dumps({"dataframe_records": rows["records"][s:s + n]}).encode()
                     for s in starts]},
    }
    result: dict = {"quick": quick, "machine": common.machine(), "setup": info,
                    "model": {"version": rows["version"].version,
                              "model_id": rows["version"].model_id,
                              "trees": rows["model"].booster.num_trees(),
                              "features": len(rows["model"].booster.feature_name())},
                    "rows_available": len(one), "batch_rows": n, "omp_threads": args.omp_threads,
                    "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    print(f"model {result['model']}; {len(one)} rows", flush=True)

    def idle():
        if wait > 0:
            waited = common.sides.wait_idle(wait)
            print(f"  (waited {waited} s for an idle machine)", flush=True)

    idle()
    result["in_process"] = measured(lambda: in_process(rows, n, min(single, 2000)), [])
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    for side in sides:
        result[side] = run_side(side, info, rows, bodies[side], starts[0], args, single, batches,
                                duration, idle, log_dir)
    result["ratios"] = ratios(result)
    result["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    path = RESULTS / ("serving_quick.json" if quick else "serving.json")
    path.write_text(json.dumps(result, indent=2, default=str))
    print(report(result))
    print(f"results: {path}")
    return 0


def run_side(side: str, info: dict, rows: dict, bodies: dict, first: int, args, single: int,
             batches: int, duration: float, idle, log_dir: Path) -> dict:
    n = args.batch_rows
    if side == "ours":
        server = start_ours(info, log_dir, args.omp_threads)
    elif side == "mlflow":
        server = start_mlflow(info, log_dir, args.omp_threads)
    else:
        server = start_mlflow(info, log_dir, args.omp_threads, info["records_model_uri"], side)
    path = "/predict" if side == "ours" else "/invocations"
    try:
        # the same model gives the same values: checked on a batch before timing anything
        answer = _post(server.port, path, bodies["many"][0])["predictions"]
        values = [p["prediction"] for p in answer] if side == "ours" else answer
        expected = rows["model"].booster.predict(rows["matrix"][first:first + n])
        diff = max(abs(a - b) for a, b in zip(values, expected, strict=True))
        out: dict = {"max_abs_diff_vs_in_process": diff}
        print(f"{side}: serving; max |prediction - in-process| = {diff:.3g}", flush=True)
        if diff > 1e-12:
            raise SystemExit(f"{side} does not serve the same model: predictions differ by {diff}")
        idle()
        out["single"] = measured(lambda: sequential(server.port, path, bodies["one"], single, 120),
                                 [server])
        print(f"  single: {_fmt(out['single'])}", flush=True)
        idle()
        out["batch"] = measured(lambda: sequential(server.port, path, bodies["many"], batches, 120,
                                                   warmup=3), [server])
        out["batch"]["rows_per_s"] = round(out["batch"]["requests_per_s"] * n, 1)
        print(f"  batch of {n}: {out['batch']['rows_per_s']:.0f} rows/s "
              f"({_fmt(out['batch'])})", flush=True)
        idle()
        events = swap_events(info, rows, duration) if side == "ours" else None
        out["concurrent"] = measured(lambda: asyncio.run(concurrent(
            server.port, bodies["one"], path, args.clients, duration, events)), [server])
        c = out["concurrent"]
        print(f"  {args.clients} clients x {duration:.0f} s: {c['requests_per_s']} req/s, "
              f"{_fmt(c)}, errors {c['errors']}, by version {c['responses_by_version']}, "
              f"events {c['events']}", flush=True)
        return out
    finally:
        server.stop()
        if side == "ours":
            restore_aliases(rows)


def _post(port: int, path: str, body: bytes) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", path, body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise SystemExit(f"{path} answered {response.status}: {data[:500]!r}")
    return json.loads(data)


def _fmt(r: dict) -> str:
    return f"p50 {r.get('p50_ms')} ms, p99 {r.get('p99_ms')} ms, n {r.get('n')}"


def ratios(r: dict) -> dict:
    out: dict = {}
    goals = {}
    ours, ip = r.get("ours"), r.get("in_process")
    for name in ("mlflow", "mlflow_records"):
        ml = r.get(name)
        if not (ours and ml):
            continue
        out[f"single_p99_ours_over_{name}"] = round(ours["single"]["p99_ms"] / ml["single"]["p99_ms"], 3)
        out[f"single_p50_ours_over_{name}"] = round(ours["single"]["p50_ms"] / ml["single"]["p50_ms"], 3)
        out[f"batch_rows_per_s_ours_over_{name}"] = round(
            ours["batch"]["rows_per_s"] / ml["batch"]["rows_per_s"], 2)
        out[f"concurrent_req_per_s_ours_over_{name}"] = round(
            ours["concurrent"]["requests_per_s"] / ml["concurrent"]["requests_per_s"], 2)
        goals[f"p99 <= 1/3 of {name}'s"] = out[f"single_p99_ours_over_{name}"] <= 1 / 3
        goals[f"batch rows/s >= 5x {name}'s"] = out[f"batch_rows_per_s_ours_over_{name}"] >= 5
        goals[f"concurrent req/s >= 4x {name}'s"] = out[f"concurrent_req_per_s_ours_over_{name}"] >= 4
    if ours and ip:
        out["batch_in_process_pandas_over_ours"] = round(
            ip["batch_pandas_rows_per_s"] / ours["batch"]["rows_per_s"], 2)
        out["batch_in_process_numpy_over_ours"] = round(
            ip["batch_numpy_rows_per_s"] / ours["batch"]["rows_per_s"], 2)
    if "batch_in_process_pandas_over_ours" in out:
        goals["batch within 2x of in-process predict (pandas)"] = \
            out["batch_in_process_pandas_over_ours"] <= 2
        goals["batch within 2x of in-process predict (numpy)"] = \
            out["batch_in_process_numpy_over_ours"] <= 2
    if ours:
        goals["zero errors under load, across a hot swap and a canary start"] = (
            ours["concurrent"]["errors"] == 0 and len(ours["concurrent"]["events"]) == 2)
    out["goals_met"] = goals
    return out


def report(r: dict) -> str:
    lines = ["", "| side | one record p50 ms | p99 ms | batch rows/s | "
             f"{r.get('ours', {}).get('concurrent', {}).get('clients', 50)} clients req/s | "
             "p50 ms | p99 ms | errors |", "|---|---|---|---|---|---|---|---|"]
    for side in ("ours", "mlflow", "mlflow_records"):
        s = r.get(side)
        if not s:
            continue
        c = s["concurrent"]
        lines.append(f"| {side} | {s['single']['p50_ms']} | {s['single']['p99_ms']} | "
                     f"{s['batch']['rows_per_s']:.0f} | {c['requests_per_s']} | {c['p50_ms']} | "
                     f"{c['p99_ms']} | {c['errors']} |")
    ip = r["in_process"]
    lines.append(f"| in-process numpy | {ip['one_numpy']['p50_ms']} | {ip['one_numpy']['p99_ms']} | "
                 f"{ip['batch_numpy_rows_per_s']:.0f} | | | | |")
    lines.append(f"| in-process numpy, 1 thread | {ip['one_numpy_1_thread']['p50_ms']} | "
                 f"{ip['one_numpy_1_thread']['p99_ms']} | | | | | |")
    lines.append(f"| in-process pandas | {ip['one_pandas']['p50_ms']} | "
                 f"{ip['one_pandas']['p99_ms']} | {ip['batch_pandas_rows_per_s']:.0f} | | | | |")
    lines.append(f"| in-process score() | | | {ip['batch_score_rows_per_s']:.0f} | | | | |")
    lines.append(f"| in-process score(), dict-built encode | | | "
                 f"{ip['batch_score_dict_encode_rows_per_s']:.0f} | | | | |")
    lines.append(f"| in-process numpy path from validated columns | | | "
                 f"{ip['batch_numpy_path_rows_per_s']:.0f} | | | | |")
    lines.append("")
    lines.append("ratios: " + json.dumps({k: v for k, v in r["ratios"].items() if k != "goals_met"}))
    lines.append("goals: " + json.dumps(r["ratios"]["goals_met"]))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
