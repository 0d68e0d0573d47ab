"""The one place that chooses the Dagster instance (`$DAGSTER_HOME/dagster.yaml`).

| what decides                  | instance                                                         |
|-------------------------------|------------------------------------------------------------------|
| `DAGSTER_INSTANCE_CONFIG=FILE` | that file, as is                                                |
| `ENV=development` (default)   | SQLite under `$DAGSTER_HOME` (`dagster.yaml` in the repo)        |
| `ENV=staging` / `production`  | PostgreSQL (`deploy/dagster/dagster.postgres.yaml`), credentials from `DAGSTER_PG_HOST`, `DAGSTER_PG_PORT`, `DAGSTER_PG_USER`, `DAGSTER_PG_PASSWORD`, `DAGSTER_PG_DB` |

Both built-in configs are rendered by `instance_config` below; the two YAML files in the repo are
its output (a test keeps them equal). Shared by both: a `QueuedRunCoordinator` with a run limit
and a tag limit (one run per value of the `ml_assets/training` tag), run monitoring, one automatic
retry of a run whose process crashed (not of a run whose step failed), telemetry off. PostgreSQL
adds a concurrency pool limit of 1 slot per pool: each pipeline's model step has its own pool, so
one training per pipeline runs at a time.

Dagster's event settings (`DAGSTER_EVENT_BATCH_SIZE`: multi-row event inserts on PostgreSQL;
`DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS`) are environment variables of each Dagster
process, not instance settings: `ml_assets.environment.dagster_event_settings` decides them (50
and true for the PostgreSQL instance), the image, Compose and Helm set them, and `init`/`check`
validate and print them.

Command line (`python -m ml_assets.instance ...`; the image's entrypoint runs `init`):

    init   [--home DIR] [--force]   write $DAGSTER_HOME/dagster.yaml for this environment
    check                           load that instance and query its storage (exit 1 if not)
    render sqlite|postgres          print a built-in config
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ml_assets.environment import ENVIRONMENTS, EnvironmentError_, dagster_event_settings

INSTANCE_CONFIG_ENV = "DAGSTER_INSTANCE_CONFIG"
POSTGRES_VARIABLES = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER",
                      "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")
KINDS = ("sqlite", "postgres")
MAX_CONCURRENT_RUNS = {"sqlite": 2, "postgres": 4}
TRAINING_TAG = "ml_assets/training"  # same value as ml_assets.defs.policies.TRAINING_TAG

_HEADER = {
    "sqlite": (
        "# Development instance (ENV=development): runs, event logs and schedules in SQLite files\n"
        "# under $DAGSTER_HOME. Rendered by `python -m ml_assets.instance render sqlite`; edit\n"
        "# ml_assets/instance.py, not this file. `make` copies it into $DAGSTER_HOME.\n"
    ),
    "postgres": (
        "# Staging/production instance (ENV=staging|production): runs, event logs and schedules in\n"
        "# PostgreSQL (dagster-postgres 0.29.27), credentials from the environment.\n"
        "# Rendered by `python -m ml_assets.instance render postgres`; edit ml_assets/instance.py.\n"
    ),
}


class InstanceConfigError(EnvironmentError_):
    """The instance cannot be chosen or written; the message names the variable or file."""


def instance_config(kind: str, max_concurrent_runs: int | None = None) -> dict[str, Any]:
    """The instance settings for `kind` ('sqlite' or 'postgres') as a dict."""
    if kind not in KINDS:
        raise InstanceConfigError(f"instance kind must be one of {list(KINDS)}, found {kind!r}")
    if kind == "sqlite":
        storage: dict[str, Any] = {"sqlite": {"base_dir": {"env": "DAGSTER_HOME"}}}
    else:
        storage = {"postgres": {"postgres_db": {
            # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3, which is not installed.
            "scheme": "postgresql+psycopg2",
            "hostname": {"env": "DAGSTER_PG_HOST"},
            "port": {"env": "DAGSTER_PG_PORT"},
            "username": {"env": "DAGSTER_PG_USER"},
            "password": {"env": "DAGSTER_PG_PASSWORD"},
            "db_name": {"env": "DAGSTER_PG_DB"},
        }}}
    concurrency: dict[str, Any] = {"runs": {
        "max_concurrent_runs": max_concurrent_runs or MAX_CONCURRENT_RUNS[kind],
        "tag_concurrency_limits": [
            {"key": TRAINING_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
        ],
    }}
    if kind == "postgres":
        # One slot per pool. Not in development: a `kill -9`ed in-process run (ml-assets run)
        # would keep its slot until someone frees it by hand.
        concurrency["pools"] = {"default_limit": 1, "granularity": "op"}
    return {
        "storage": storage,
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {"dequeue_interval_seconds": 2},
        },
        "concurrency": concurrency,
        "run_monitoring": {
            "enabled": True,
            "start_timeout_seconds": 180,
            "cancel_timeout_seconds": 180,
            "poll_interval_seconds": 30,
            "free_slots_after_run_end_seconds": 60,
        },
        "run_retries": {"enabled": True, "max_retries": 1, "retry_on_asset_or_op_failure": False},
        "telemetry": {"enabled": False},
    }


def render(kind: str, max_concurrent_runs: int | None = None) -> str:
    body = yaml.safe_dump(instance_config(kind, max_concurrent_runs), sort_keys=False)
    return _HEADER[kind] + body


def instance_kind(environ: Mapping[str, str] | None = None) -> str:
    """'sqlite' for ENV=development (the default), 'postgres' for staging and production."""
    e = os.environ if environ is None else environ
    env = e.get("ENV", "development") or "development"
    if env not in ENVIRONMENTS:
        raise InstanceConfigError(f"ENV must be one of {list(ENVIRONMENTS)}, found {env!r}")
    return "sqlite" if env == "development" else "postgres"


def missing_variables(kind: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """Variables the instance config reads that are not set (an empty password is allowed)."""
    e = os.environ if environ is None else environ
    if kind == "sqlite":
        return [] if e.get("DAGSTER_HOME") else ["DAGSTER_HOME"]
    missing = [v for v in POSTGRES_VARIABLES if v not in e]
    missing += [v for v in POSTGRES_VARIABLES if v != "DAGSTER_PG_PASSWORD" and v in e
                and not e[v].strip()]
    return missing


def chosen_config(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(where it comes from, YAML text) of the instance config for this environment; raises
    InstanceConfigError naming the variable when something it needs is missing or wrong."""
    e = os.environ if environ is None else environ
    explicit = (e.get(INSTANCE_CONFIG_ENV) or "").strip()
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise InstanceConfigError(f"{INSTANCE_CONFIG_ENV}={explicit}: no such file")
        text = path.read_text()
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InstanceConfigError(f"{INSTANCE_CONFIG_ENV}={explicit}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise InstanceConfigError(
                f"{INSTANCE_CONFIG_ENV}={explicit}: expected a mapping of instance settings")
        return f"{INSTANCE_CONFIG_ENV}={explicit}", text
    kind = instance_kind(e)
    missing = missing_variables(kind, e)
    if missing:
        env = e.get("ENV") or "development"
        raise InstanceConfigError(
            f"ENV={env} uses the {kind} instance, which needs {', '.join(missing)} "
            f"(missing or empty)")
    port = e.get("DAGSTER_PG_PORT", "5432").strip() if kind == "postgres" else "0"
    if not port.isdigit():
        raise InstanceConfigError(f"DAGSTER_PG_PORT must be a port number, found {port!r}")
    return f"ENV={e.get('ENV') or 'development'} -> {kind}", render(kind)


def init_instance(home: str | os.PathLike[str] | None = None,
                  environ: Mapping[str, str] | None = None, force: bool = False) -> Path:
    """Write the chosen config to `home/dagster.yaml` (home: $DAGSTER_HOME). An existing file is
    kept unless `force` (a container starts with none, so ENV decides; a file the platform
    mounts, like the Helm chart's, wins)."""
    e = os.environ if environ is None else environ
    home = home or e.get("DAGSTER_HOME")
    if not home:
        raise InstanceConfigError("DAGSTER_HOME is not set: it is where dagster.yaml is written")
    target = Path(home) / "dagster.yaml"
    if target.exists() and not force:
        return target
    _, text = chosen_config(e)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".yaml.tmp")
    tmp.write_text(text)
    tmp.replace(target)
    return target


def check_instance() -> str:
    """Load the instance at $DAGSTER_HOME and read from its run storage; returns a summary."""
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs_count()
        return f"{type(instance.run_storage).__name__}: {runs} run(s)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ml_assets.instance",
                                description="Choose and check the Dagster instance.")
    sub = p.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="write $DAGSTER_HOME/dagster.yaml for this environment")
    init.add_argument("--home", help="instance folder (default: $DAGSTER_HOME)")
    init.add_argument("--force", action="store_true", help="overwrite an existing dagster.yaml")
    sub.add_parser("check", help="load the instance and query its storage")
    show = sub.add_parser("render", help="print a built-in instance config")
    show.add_argument("kind", choices=KINDS)
    args = p.parse_args(argv)
    try:
        if args.command != "render":
            # Dagster reads its event settings from each process's environment, not from
            # dagster.yaml: checked here (the image's entrypoint runs `init`) and shown.
            events = dagster_event_settings()
            print("event settings (ml_assets.environment): "
                  + (", ".join(f"{k}={v}" for k, v in events.items()) or "Dagster's defaults"))
        if args.command == "render":
            sys.stdout.write(render(args.kind))
        elif args.command == "init":
            home = Path(args.home or os.environ.get("DAGSTER_HOME") or ".")
            if (home / "dagster.yaml").exists() and not args.force:
                print(f"instance config: keeping {home / 'dagster.yaml'}")
                return 0
            source, _ = chosen_config()
            path = init_instance(args.home, force=args.force)
            print(f"instance config {source}: {path}")
        else:
            chosen_config()  # names a missing variable before Dagster's own error
            print(check_instance())
    except EnvironmentError_ as exc:  # InstanceConfigError, or an event setting
        print(f"ml-assets instance: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a database that does not answer, bad credentials, ...
        print(f"ml-assets instance: cannot use the instance: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
