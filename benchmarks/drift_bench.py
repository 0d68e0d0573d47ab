"""Benchmark: the fast drift engine (`ml_assets.core.drift.dataset_drift`) against Evidently
0.7.23's `DataDriftPreset` on the same seeded data, in one invocation.

    python benchmarks/drift_bench.py [--rows 1000000] [--reference-rows 1000000] [--columns 20]
                                     [--categorical 4] [--numeric-method wasserstein]
                                     [--categorical-method jensenshannon] [--sample-rows 20000]
                                     [--sides evidently,ours,ours_threads,ours_html] [--repeat N]
                                     [--wait-idle S] [--keep]

The parent writes the case's two frames as Parquet (not timed), then runs each side in its own
child process (see `benchmarks/drift/sides.py`), compares every per-column verdict with
Evidently's, prints the times, peak memory and ratios (with `--repeat N`, each side runs N times,
interleaved, and the fastest run of each side counts; all runs are in the JSON), and writes
`benchmarks/results/drift_<rows>x<columns>_ref<reference rows>.json`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
for path in (HERE, ROOT):  # `drift.*` from here, `ml_assets` from the repo when not installed
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from drift import cases, report, sides  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="current rows (default 1,000,000)")
    parser.add_argument("--reference-rows", type=int, default=1_000_000, help="reference rows (default 1,000,000)")
    parser.add_argument("--columns", type=int, default=20, help="columns in all (default 20)")
    parser.add_argument("--categorical", type=int, default=4, help="of which categorical (default 4)")
    parser.add_argument("--numeric-method", default="wasserstein")
    parser.add_argument("--categorical-method", default="jensenshannon")
    parser.add_argument("--sample-rows", type=int, default=20_000, help="rows per side in the HTML report's sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sides", default=",".join(sides.SIDES), help="comma-separated, from " + ", ".join(sides.SIDES))
    parser.add_argument("--repeat", type=int, default=1, help="runs per side, interleaved; the fastest counts")
    parser.add_argument("--wait-idle", type=float, default=0.0, help="wait up to S seconds for a quiet machine before each side")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (data, logs, HTML)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the temp folder goes")
    # internal: the child process
    parser.add_argument("--worker", choices=sides.SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        sides.worker(args.worker, json.loads(args.spec.read_text()), args.out)
        return 0

    from ml_assets.core.drift import DriftSettings

    DriftSettings(args.numeric_method, args.categorical_method)  # fail fast on a bad method
    chosen = [s for s in args.sides.split(",") if s]
    unknown = sorted(set(chosen) - set(sides.SIDES))
    if unknown:
        raise SystemExit(f"unknown sides {unknown}; choose from {list(sides.SIDES)}")
    case = cases.Case(args.rows, args.reference_rows, args.columns, args.categorical, args.seed)
    workdir = Path(tempfile.mkdtemp(prefix=f"{case.name}_", dir=args.workdir))
    try:
        started = time.perf_counter()
        files = cases.write_case(case, workdir / "data")
        print(f"{case.name}: data written in {time.perf_counter() - started:.1f} s to {workdir}", flush=True)
        spec = {
            "name": case.name,
            **asdict(case),
            "numeric_columns": case.numeric,
            "categorical_columns": case.categorical_columns,
            "planted": case.planted(),
            "numeric_method": args.numeric_method,
            "categorical_method": args.categorical_method,
            "sample_rows": args.sample_rows,
            "files": files,
        }
        runs: dict[str, list[dict]] = {side: [] for side in chosen}
        for repeat in range(args.repeat):
            for side in chosen:
                side_dir = workdir / f"{side}_{repeat}"
                side_dir.mkdir()
                print(f"running {side} ({repeat + 1}/{args.repeat}) ...", flush=True)
                res = sides.run_side(side, spec, side_dir, Path(__file__).resolve(), args.wait_idle)
                runs[side].append(res)
                print(
                    f"  {side}: work {res['work_s']:.2f} s, wall {res['wall_s']:.2f} s, peak {res['peak_rss_mb']:.0f} MB, "
                    f"other processes used {res['other_processes_cpu_s']} CPU s meanwhile",
                    flush=True,
                )
        case_record = {k: v for k, v in spec.items() if k != "files"}
        result = report.summarize(case_record, runs)
        report.print_summary(result)
        path = report.write_result(result, RESULTS)
        print(f"\nresult: {path}")
        agreements = result.get("agreement_with_evidently", {})
        return 0 if result.get("every_run_agrees", True) and all(a["verdicts_agree"] for a in agreements.values()) else 1
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
