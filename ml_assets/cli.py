"""`ml-assets`: run a pipeline's whole asset graph through Dagster, and manage its models.

    ml-assets run [--config PATH] [--pipeline NAME] [--start DATE] [--end DATE] [--as-of DATE]
                  [--json] [--log-level LEVEL]
    ml-assets models list | show VERSION|ALIAS | promote VERSION [--git-tag] | rollback [VERSION]
                  | audit | canary [VERSION --share S | --stop] | reproduce VERSION
                  [--config PATH] [--pipeline NAME] [--json]
    ml-assets release [--config PATH] [--pipeline NAME] [--start D] [--end D] [--as-of D]
                  [--until STAGE] [--no-tag] [--json]
    ml-assets instance init [--home DIR] [--force] | check | render sqlite|postgres

`run` materializes raw -> processed -> features -> model -> production_model -> predictions and
monitoring for the daily partitions in [start, end) as one single-run backfill, recorded in the
instance at $DAGSTER_HOME (so the UI shows it). Exit status: 0 when every step and every blocking
check passed; 1 when a blocking check failed or a step failed (named on stderr, one line each); 2
for bad arguments, config or environment (a missing PII key, or one that differs from the key the
pipeline's stored data was hashed with, included).

Dagster's beta/preview/supersession warnings are ours to know, not the user's: they are silenced
unless `--log-level DEBUG`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import warnings

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
    run.add_argument("--no-train", action="store_true", dest="no_train",
                     help="train nothing: ingest, features, predictions by the production model "
                          "and monitoring (the pipeline's daily job)")
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default="WARNING",
                     help="Dagster's console log level during the run (default WARNING)")

    rel = sub.add_parser("release", help="validate -> train -> evaluate -> deploy; promotes only "
                         "when every stage passes (make release)")
    rel.add_argument("--config", help="a pipeline YAML file or a folder of them")
    rel.add_argument("--pipeline", help="which pipeline, when the config folder holds several")
    rel.add_argument("--start", type=_date, help="first day to validate (default: config start)")
    rel.add_argument("--end", type=_date, help="day after the last (exclusive; default: config end)")
    rel.add_argument("--as-of", type=_date, dest="as_of", help="last day of the training window")
    rel.add_argument("--until", choices=["validate", "train", "evaluate", "deploy"], default="deploy",
                     help="stop after this stage (default: deploy)")
    rel.add_argument("--no-tag", action="store_true", help="do not create the model-vX.Y.Z git tag")
    rel.add_argument("--json", action="store_true", help="print the report as one JSON object")
    rel.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default="ERROR")

    models = sub.add_parser("models", help="list, show, promote, roll back models; read the audit log")
    msub = models.add_subparsers(dest="models_command", required=True)

    def common(cmd: argparse.ArgumentParser) -> argparse.ArgumentParser:
        cmd.add_argument("--config", help="a pipeline YAML file or a folder of them")
        cmd.add_argument("--pipeline", help="which pipeline, when the config folder holds several")
        cmd.add_argument("--json", action="store_true", help="print one JSON object")
        return cmd

    common(msub.add_parser("list", help="every model: version, id, created, metrics, gates, aliases"))
    show = common(msub.add_parser("show", help="one model by version, alias or id"))
    show.add_argument("ref", metavar="VERSION|ALIAS", help="v1.2.0, production, previous, "
                      "candidate, canary, or a model id")
    promote = common(msub.add_parser("promote", help="make a model production (audited)"))
    promote.add_argument("ref", metavar="VERSION", help="v1.2.0, an alias or a model id")
    promote.add_argument("--force", action="store_true", help="allow a model that failed its gates")
    promote.add_argument("--reason", help="why (written to the audit log)")
    promote.add_argument("--git-tag", action="store_true", dest="git_tag",
                         help="also tag the commit the model was trained at as model-vX.Y.Z "
                              "(run in that git checkout)")
    rollback = common(msub.add_parser("rollback", help="production back to previous (or VERSION)"))
    rollback.add_argument("ref", metavar="VERSION", nargs="?", help="default: the previous alias")
    rollback.add_argument("--force", action="store_true", help="allow a model that failed its gates")
    rollback.add_argument("--reason", help="why (written to the audit log)")
    inst = sub.add_parser("instance", help="choose, write and check the Dagster instance config "
                          "(init [--home DIR] [--force] | check | render sqlite|postgres)",
                          add_help=False)
    inst.add_argument("args", nargs=argparse.REMAINDER)
    audit = common(msub.add_parser("audit", help="the append-only audit log, oldest first"))
    audit.add_argument("--limit", type=_positive, help="only the last N entries")
    canary = common(msub.add_parser("canary", help="send a share of API requests to another "
                                    "version (audited); without arguments: the current canary"))
    canary.add_argument("ref", metavar="VERSION", nargs="?", help="v1.2.0, an alias or a model id")
    canary.add_argument("--share", type=_share, help="share of requests in (0, 1] "
                        "(default: the config's serving.canary_share)")
    canary.add_argument("--stop", action="store_true", help="stop the canary")
    canary.add_argument("--force", action="store_true", help="allow a model that failed its gates")
    canary.add_argument("--reason", help="why (written to the audit log)")
    reproduce = common(msub.add_parser("reproduce", help="retrain a version from its recorded "
                                       "inputs; exit 0 if the model file is byte-identical"))
    reproduce.add_argument("ref", metavar="VERSION", help="v1.2.0, an alias or a model id")
    return p


def _share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share in (0, 1], found {value!r}") from None
    if not 0 < share <= 1:
        raise argparse.ArgumentTypeError(f"expected a share in (0, 1], found {value!r}")
    return share


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {value!r}")
    return number


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


def quiet_dagster_warnings(log_level: str | None) -> None:
    """Silence Dagster's BetaWarning, PreviewWarning and SupersessionWarning (about the APIs this
    package uses, nothing a user can act on) unless the log level is DEBUG. Called before any
    definitions load."""
    if log_level == "DEBUG":
        return
    import dagster as dg

    for category in (dg.BetaWarning, dg.PreviewWarning, dg.SupersessionWarning):
        warnings.filterwarnings("ignore", category=category)


def check_pii_keys(cfg: PipelineConfig) -> None:
    """A pipeline that hashes PII needs its HMAC key before anything runs, and the key its stored
    data was hashed with (or an explicit rotation): configuration, so exit 2 naming the variable
    (not a step failure deep inside the run)."""
    hashed = sorted(col for col, action in cfg.pii.items() if action == "hash")
    if hashed and not os.environ.get(cfg.pii_key_env):
        raise UsageError(
            f"{cfg.pii_key_env} is not set: pipeline {cfg.name!r} hashes PII column(s) {hashed} "
            f"with the HMAC key in that environment variable (pii_key_env); set it to a long "
            f"random secret (see .env.example)")
    if hashed:  # the key the stored data was hashed with: read only, the raw step records it
        from ml_assets.core.pii import ROTATE_ENV, PiiKeyRefused, check_key
        from ml_assets.definitions import storage_for
        from ml_assets.environment import settings_from_env

        store = storage_for(settings_from_env()).tables()
        try:
            check_key(store, cfg.name, os.environ[cfg.pii_key_env], cfg.pii_key_env,
                      os.environ.get(ROTATE_ENV))
        except PiiKeyRefused as exc:
            raise UsageError(f"pipeline {cfg.name!r}: {exc}") from None
        except Exception:  # noqa: BLE001 - the store cannot be read: the raw step checks again
            return        # and fails naming the store, as for any other storage problem


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["instance"]:  # its own argument parser (ml_assets.instance)
        from ml_assets.instance import main as instance_main

        quiet_dagster_warnings(None)
        return instance_main(argv[1:])
    args = parser().parse_args(argv)
    quiet_dagster_warnings(getattr(args, "log_level", None))
    if args.command == "models":
        return models_main(args)
    if args.command == "release":
        return release_main(args)
    try:
        configs = load_configs(args.config)
        cfg = _pick(configs, args.pipeline)
        if args.no_train and args.as_of:
            raise UsageError("--as-of is the last day of the training window; --no-train trains "
                             "nothing, so give one or the other")
        start, end, as_of = _range(cfg, args.start, args.end, args.as_of)
        if not os.environ.get("DAGSTER_HOME"):
            raise UsageError("DAGSTER_HOME is not set: runs are recorded in the instance there "
                             "(make demo sets it to ./.dagster_home)")
        check_instance_usable()
        check_pii_keys(cfg)
        summary = run_pipeline(cfg, start, end, as_of, log_level=args.log_level,
                               train=not args.no_train)
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
            print(f"ml-assets: {f['line']}", file=sys.stderr)
        return 1
    return 0


def release_main(args: argparse.Namespace) -> int:
    from ml_assets.release import StageFailed, release

    try:
        cfg = _pick(load_configs(args.config), args.pipeline)
        start, end, as_of = _range(cfg, args.start, args.end, args.as_of)
        if not os.environ.get("DAGSTER_HOME"):
            raise UsageError("DAGSTER_HOME is not set: the release's runs are recorded there")
        check_pii_keys(cfg)
        try:
            report = release(cfg, start, end, as_of, until=args.until, tag=not args.no_tag,
                             log_level=args.log_level)
            code = 0
        except StageFailed as exc:
            report = {"pipeline": cfg.name, "failed_stage": exc.stage, "error": str(exc)}
            code = 1
    except (ConfigError, UsageError, EnvironmentError_) as exc:
        print(f"ml-assets: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, default=str))
    elif code == 0:
        for stage, info in report["stages"].items():
            detail = {k: v for k, v in info.items() if k not in ("run_id", "comparisons")}
            print(f"  {stage:<9} passed  {detail}")
        print("  result    RELEASED" if "deploy" in report["stages"] else "  result    OK (nothing deployed)")
    if code:
        print(f"ml-assets release: stage {report['failed_stage']} failed, nothing promoted: "
              f"{report['error']}", file=sys.stderr)
    return code


#: exception classes (by name, anywhere in the class's MRO) that mean the environment cannot be
#: reached: the instance's database, the object store, its credentials
_UNREACHABLE = {"BotoCoreError", "ClientError", "OSError", "DagsterPostgresException",
                "OperationalError", "PostProcessingError", "DagsterInvalidConfigError"}


def unreachable(exc: BaseException) -> str | None:
    """One line for an instance or a store that cannot be used (no server, no credentials, a
    variable it needs unset), else None: anything else is a bug and keeps its traceback."""
    if not {c.__name__ for c in type(exc).__mro__} & _UNREACHABLE:
        return None
    errors = getattr(exc, "errors", None)  # a config error's own messages, not its repr
    text = "; ".join(str(getattr(e, "message", e)) for e in errors) if errors else str(exc)
    text = text.split("Stack Trace:")[0]  # Dagster appends the trace to the message
    return f"{type(exc).__name__}: {' '.join(text.split())[:500]}"


def check_instance_usable() -> None:
    """Open the Dagster instance at $DAGSTER_HOME before a run: a database that cannot be reached
    or a variable its dagster.yaml reads that is unset is an environment error (exit 2), not
    a stack trace after the run began."""
    from ml_assets.instance import check_instance

    try:
        check_instance()
    except Exception as exc:  # noqa: BLE001 - sorted by unreachable(); the rest is re-raised
        line = unreachable(exc)
        if line is None:
            raise
        raise UsageError(f"cannot use the Dagster instance at DAGSTER_HOME="
                         f"{os.environ.get('DAGSTER_HOME')}: {line}") from None


def models_main(args: argparse.Namespace) -> int:
    from ml_assets.commands import models as cmd
    from ml_assets.defs.lifecycle import cli_actor

    try:
        cfg = _pick(load_configs(args.config), args.pipeline)
        store = cmd.store_for_env()
        what = args.models_command
        if what == "list":
            code, text = cmd.cmd_list(cfg, store, args.json)
        elif what == "show":
            code, text = cmd.cmd_show(cfg, store, args.ref, args.json)
        elif what == "audit":
            code, text = cmd.cmd_audit(cfg, store, args.limit, args.json)
        elif what == "canary":
            if args.stop and (args.ref or args.share is not None):
                raise UsageError("canary --stop takes no VERSION and no --share")
            if args.share is not None and not args.ref:
                raise UsageError("canary --share needs the VERSION to send the traffic to")
            code, text = cmd.cmd_canary(cfg, store, args.ref, args.share, args.stop, args.force,
                                        args.reason, cli_actor(), args.json)
        elif what == "reproduce":
            code, text = cmd.cmd_reproduce(cfg, cmd.storage_for_env(), args.ref, args.json)
        else:
            if not os.environ.get("DAGSTER_HOME"):
                raise UsageError("DAGSTER_HOME is not set: the move is recorded as a "
                                 "materialization in the instance there")
            config: dict = {"force": bool(args.force)}
            if args.reason:
                config["reason"] = args.reason
            tag_plan = None
            if what == "promote":
                target = cmd.resolve_or_fail(cfg, store, args.ref)
                config["version"] = target.version
                if args.git_tag:  # checked before anything moves
                    tag_plan = cmd.git_tag_plan(target)
            else:
                config["rollback"] = True
                target = args.ref or "previous"
                target = cmd.resolve_or_fail(cfg, store, target)
                config["version"] = target.version
            if not target.gate_passed and not args.force:  # refused before any run, as canary
                raise cmd.CommandError(
                    f"{what}: {target.label} failed its gates ({target.gate_summary()}); add "
                    "--force to do it anyway (it is audited)")
            out = cmd.move_production(cfg, store, config, cli_actor())
            code = 0 if out["success"] else 1
            text = json.dumps(out, default=str) if args.json else (
                f"{out.get('action', what)}: production is {out.get('model_version')} "
                f"({out.get('model_id')}); {out.get('reason', '')}  run {out['run_id']}"
                if out["success"] else f"{what} failed: {out.get('error', 'see the run ' + out['run_id'])}")
            if tag_plan is not None and out["success"]:
                try:
                    out["git_tag"] = cmd.create_git_tag(tag_plan, target, cli_actor())
                except RuntimeError as exc:  # production moved; only the tag is missing
                    code, out["git_tag"] = 1, f"promoted, but not tagged: {exc}"
                text = json.dumps(out, default=str) if args.json else f"{text}\n{out['git_tag']}"
    except (ConfigError, UsageError, EnvironmentError_, cmd.CommandError) as exc:
        print(f"ml-assets: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a store or instance that cannot be used: one line
        line = unreachable(exc)
        if line is None:
            raise
        print(f"ml-assets: error: cannot use the model store or the instance: {line}",
              file=sys.stderr)
        return 2
    # a reproduction that differs is still a report (like diff): stdout
    print(text, file=sys.stdout if code == 0 or args.models_command == "reproduce" else sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
