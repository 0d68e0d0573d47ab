"""`ml-assets`: run a pipeline's whole asset graph for a date range through Dagster.

    ml-assets run [--config PATH] [--pipeline NAME] [--start DATE] [--end DATE] [--as-of DATE]
                  [--json] [--log-level LEVEL]

Materializes raw -> processed -> features -> model -> predictions for the daily partitions in
[start, end) as one single-run backfill, recorded in the instance at $DAGSTER_HOME (so the UI
shows it). Exit status: 0 when every step and every blocking check passed; 1 when a blocking
check failed or a step failed (named on stderr); 2 for bad arguments or config.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys

from ml_assets.config import ConfigError, PipelineConfig, load_configs
from ml_assets.environment import EnvironmentError_
from ml_assets.runner import render, run_pipeline


class UsageError(ValueError):
    pass


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, found {value!r}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ml-assets", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize a pipeline's graph for a date range")
    run.add_argument("--config", help="a pipeline YAML file or a folder of them "
                     "(default: $ML_ASSETS_CONFIG, else ./configs)")
    run.add_argument("--pipeline", help="which pipeline, when the config folder holds several")
    run.add_argument("--start", type=_date, help="first day (default: the config's start)")
    run.add_argument("--end", type=_date, help="day after the last (exclusive; default: config end)")
    run.add_argument("--as-of", type=_date, dest="as_of",
                     help="last day of the training window (default: the last day of the range)")
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default="WARNING",
                     help="Dagster's console log level during the run (default WARNING)")
    return p


def _pick(configs: list[PipelineConfig], name: str | None) -> PipelineConfig:
    if name is not None:
        for cfg in configs:
            if cfg.name == name:
                return cfg
        raise UsageError(f"--pipeline {name!r}: no such pipeline; known: {[c.name for c in configs]}")
    if len(configs) > 1:
        raise UsageError(f"several pipelines configured {[c.name for c in configs]}; pass --pipeline")
    return configs[0]


def _range(cfg: PipelineConfig, start, end, as_of) -> tuple[dt.date, dt.date, dt.date]:
    start = start or cfg.partitions.start
    end = end or cfg.partitions.end
    if end <= start:
        raise UsageError(f"--end ({end}) must be after --start ({start}); end is exclusive")
    if start < cfg.partitions.start or end > cfg.partitions.end:
        raise UsageError(
            f"range {start}..{end} is outside pipeline {cfg.name!r}'s partitions "
            f"{cfg.partitions.start}..{cfg.partitions.end} (end exclusive)"
        )
    as_of = as_of or (end - dt.timedelta(days=1))
    if not (start <= as_of < end):
        raise UsageError(f"--as-of ({as_of}) must fall inside the range {start}..{end} (end exclusive)")
    return start, end, as_of


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        configs = load_configs(args.config)
        cfg = _pick(configs, args.pipeline)
        start, end, as_of = _range(cfg, args.start, args.end, args.as_of)
        if not os.environ.get("DAGSTER_HOME"):
            raise UsageError("DAGSTER_HOME is not set: runs are recorded in the instance there "
                             "(make demo sets it to ./.dagster_home)")
        summary = run_pipeline(cfg, start, end, as_of, log_level=args.log_level)
    except (ConfigError, UsageError, EnvironmentError_) as exc:
        print(f"ml-assets: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print(render(summary))
    if not summary["success"]:
        for c in summary["failed_blocking_checks"]:
            print(f"ml-assets: blocking check {c['check']} failed on {c['asset']} partition(s) "
                  f"{c['partitions']}: observed {c['observed']}, threshold {c['threshold']}",
                  file=sys.stderr)
        for f in summary["step_failures"]:
            print(f"ml-assets: step {f['step']} failed: {f['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
