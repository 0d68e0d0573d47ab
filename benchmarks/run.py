"""Benchmark: the ml_assets platform (Dagster) against a plain script and a bare one.

    python benchmarks/run.py [--case full_year|scale|all] [--quick] [--sides platform,plain,bare]
                             [--instance sqlite|postgres] [--event-batch-size N]
                             [--planned-events subset|per-partition] [--rows-per-day N]
                             [--scale-days N] [--repeat N] [--wait-idle S] [--keep]

Cases are in benchmarks/pipeline/cases.py, the three sides in benchmarks/pipeline/sides.py
(platform, plain) and benchmarks/pipeline/bare.py, ratios/targets/table in
benchmarks/pipeline/report.py. Each side runs in its own child process, one after the other;
results go to benchmarks/results/<case>[_quick][_postgres].json, logs to benchmarks/results/logs/.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform as _platform
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import cases, report, sides  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    import dagster
    import lightgbm
    import pandas

    info = {"nproc": os.cpu_count(), "python": sys.version.split()[0],
            "platform": _platform.platform(),
            "versions": {"dagster": dagster.__version__, "pandas": pandas.__version__,
                         "lightgbm": lightgbm.__version__},
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    with contextlib.suppress(OSError, StopIteration):
        info["cpu"] = next(line.split(":", 1)[1].strip()
                           for line in Path("/proc/cpuinfo").read_text().splitlines()
                           if line.startswith("model name"))
    return info


def run_case(case: str, args, base: Path) -> dict:
    spec = cases.build(case, args.quick, base / case, args.rows_per_day, args.scale_days)
    spec["instance"] = args.instance
    event_env = {}
    if args.event_batch_size is not None:
        event_env["DAGSTER_EVENT_BATCH_SIZE"] = args.event_batch_size
    if args.planned_events == "per-partition":
        event_env["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] = "false"
    spec["event_env"] = event_env
    stem = cases.stem(spec) + ("" if args.instance == "sqlite" else f"_{args.instance}")
    stem += args.suffix
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {s: [] for s in args.sides}
    for rep in range(args.repeat):
        for side in args.sides:
            print(f"== {stem}: {side} ({rep + 1}/{args.repeat})", flush=True)
            r = sides.run(side, spec, base / case / f"{side}_{rep}",
                          logs / f"{stem}_{side}_{rep}.log", args.wait_idle)
            print(f"   wall {r['wall_s']} s, work {r['work_s']} s, peak {r['peak_rss_mb']} MB; "
                  f"other processes {r['other_processes_cpu_s']} CPU s "
                  f"({r['other_processes_share']} of the machine), waited {r['waited_for_idle_s']} s",
                  flush=True)
            runs[side].append(r)
    best = {s: dict(min(rs, key=lambda r: r["wall_s"])) for s, rs in runs.items()}
    for s, rs in runs.items():
        if len(rs) > 1:
            best[s]["repeats_wall_s"] = [r["wall_s"] for r in rs]
    prints = sorted({r["code_fingerprint"] for rs in runs.values() for r in rs
                     if "code_fingerprint" in r})
    if len(prints) > 1:
        print(f"   WARNING: ml_assets changed while this case ran (fingerprints {prints})")
    ratios = report.ratios(best)
    result = {
        "stem": stem, "case": case, "quick": args.quick, "instance": args.instance,
        "command": "python benchmarks/run.py " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "spec": {k: v for k, v in spec.items() if k != "workdir"},
        "code_fingerprints": prints,
        "ratios": ratios,
        "targets": report.targets(case, args.quick, ratios),
        "consistency": {**report.consistency(best), "predictions": report.same_predictions(
            {side: str(base / case / f"{side}_0") for side in best},
            [spec["start"], spec["as_of"]])},
        "sides": best,
    }
    if "platform" in best and "plain" in best:
        result["where_time_goes"] = report.where_time_goes(best["platform"], best["plain"])
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", choices=[*cases.CASES, "all"], default="all")
    ap.add_argument("--quick", action="store_true",
                    help="small versions: full_year on 35 days, scale on 3 days x 50k rows")
    ap.add_argument("--sides", default=",".join(sides.SIDES),
                    help="comma-separated subset of platform,plain,bare (default all three)")
    ap.add_argument("--instance", choices=["sqlite", "postgres"], default="sqlite",
                    help="the platform's Dagster instance; postgres: a fresh database on "
                         "127.0.0.1:5432 (user postgres, trust auth), dropped afterwards")
    ap.add_argument("--event-batch-size", type=int, default=None,
                    help="DAGSTER_EVENT_BATCH_SIZE for the platform (default: ml_assets' "
                         "setting for the instance: unset on sqlite, 50 on postgres)")
    ap.add_argument("--planned-events", choices=["subset", "per-partition"], default="subset",
                    help="per-partition: DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=false")
    ap.add_argument("--rows-per-day", type=int, default=None)
    ap.add_argument("--scale-days", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=1, help="runs per side; the fastest is kept")
    ap.add_argument("--wait-idle", type=float, default=None, metavar="S",
                    help="before each run wait up to S s for the machine to be quiet "
                         "(default 60; --quick 0)")
    ap.add_argument("--suffix", default="", help="appended to the result file's name")
    ap.add_argument("--keep", action="store_true", help="keep the temp folders")
    ap.add_argument("--workdir", default=None, help="where temp folders go (default $TMPDIR)")
    args = ap.parse_args(argv)
    args.sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    bad = [s for s in args.sides if s not in sides.SIDES]
    if bad or not args.sides:
        ap.error(f"--sides: unknown side(s) {bad}; choose from {list(sides.SIDES)}")
    if args.event_batch_size is not None and not 0 <= args.event_batch_size <= 10_000:
        ap.error(f"--event-batch-size must be in 0..10000, found {args.event_batch_size}")
    if args.wait_idle is None:
        args.wait_idle = 0.0 if args.quick else 60.0
    RESULTS.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="ml_assets_bench_", dir=args.workdir))
    done = []
    try:
        for case in (cases.CASES if args.case == "all" else [args.case]):
            result = run_case(case, args, base)
            path = RESULTS / f"{result['stem']}.json"
            path.write_text(json.dumps(result, indent=1, default=str))
            print(f"   ratios {result['ratios']}")
            print(f"   targets {json.dumps(result['targets'])}")
            print(f"   consistency: rows equal {result['consistency']['rows_equal']}, "
                  f"roc_auc {result['consistency']['roc_auc']}, same predictions "
                  f"{result['consistency']['predictions']}")
            print(f"   wrote {path}", flush=True)
            done.append(result)
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print()
    print(report.table(done))
    return 0


if __name__ == "__main__":
    sys.exit(main())
