"""The one place that decides the environment: where tables and models are stored.

Read from the environment when definitions are built (never at import time):

| variable         | meaning                                                   | default          |
|------------------|-----------------------------------------------------------|------------------|
| ENV              | development, staging or production                        | development      |
| DATA_PATH        | local folder for tables (when S3_BUCKET is empty)         | ./.data/tables   |
| MODEL_PATH       | local folder for models (when S3_BUCKET is empty)         | ./.data/models   |
| S3_BUCKET        | store tables at s3://BUCKET/tables, models at .../models  | (empty: local)   |
| AWS_ENDPOINT_URL | custom S3 endpoint (MinIO, moto)                          | (empty: AWS)     |
| AWS_REGION       | S3 region                                                 | (AWS default)    |
| S3_SSE           | server-side encryption: AES256, aws:kms or none           | AES256           |
| S3_SSE_KMS_KEY_ID| KMS key for aws:kms (setting it alone selects aws:kms)    | (none)           |
| ALERT_WEBHOOK_URL| Slack-compatible webhook for alerts                       | (none: log only) |
| MLFLOW_TRACKING_URI | MLflow tracking server or sqlite:///path/mlflow.db     | (none: no MLflow)|
| ML_ASSETS_PIPELINE | the pipeline the API serves, when several are configured | (the only one) |
| ML_ASSETS_ADMIN_TOKEN | bearer token for the API's /admin endpoints (>= 16 chars) | (none: off) |
| ML_ASSETS_SERVING_POLL_SECONDS | how often the API checks the aliases        | serving.poll_seconds |
| DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS | one planned event per asset and run | true |
| DAGSTER_EVENT_BATCH_SIZE | PostgreSQL event writes batched by N (see apply_dagster_event_settings) | 50 (staging/production) |

ENV=production requires S3_BUCKET: production data does not live on a container's disk.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ENVIRONMENTS = ("development", "staging", "production")


class EnvironmentError_(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    env: str
    tables_root: str
    models_root: str
    s3_endpoint_url: str | None
    s3_region: str | None
    s3_sse: str | None = "AES256"
    s3_kms_key_id: str | None = None
    alert_webhook_url: str | None = None


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    e = os.environ if environ is None else environ
    env = e.get("ENV", "development") or "development"
    if env not in ENVIRONMENTS:
        raise EnvironmentError_(f"ENV must be one of {list(ENVIRONMENTS)}, found {env!r}")
    bucket = (e.get("S3_BUCKET") or "").strip()
    if bucket.startswith("s3://") or "/" in bucket:
        raise EnvironmentError_(f"S3_BUCKET is a bucket name (no s3://, no '/'), found {bucket!r}")
    if env == "production" and not bucket:
        raise EnvironmentError_("ENV=production needs S3_BUCKET: tables and models go to S3")
    if bucket:
        tables, models = f"s3://{bucket}/tables", f"s3://{bucket}/models"
    else:
        tables = str(Path(e.get("DATA_PATH") or "./.data/tables").resolve())
        models = str(Path(e.get("MODEL_PATH") or "./.data/models").resolve())
    kms_key = (e.get("S3_SSE_KMS_KEY_ID") or "").strip() or None
    sse = (e.get("S3_SSE") or "").strip() or ("aws:kms" if kms_key else "AES256")
    if sse not in ("AES256", "aws:kms", "none"):
        raise EnvironmentError_(f"S3_SSE must be AES256, aws:kms or none, found {sse!r}")
    if kms_key and sse != "aws:kms":
        raise EnvironmentError_(f"S3_SSE_KMS_KEY_ID is set but S3_SSE is {sse!r}; use S3_SSE=aws:kms")
    webhook = (e.get("ALERT_WEBHOOK_URL") or "").strip() or None
    if webhook and not webhook.startswith(("http://", "https://")):
        raise EnvironmentError_(f"ALERT_WEBHOOK_URL must be an http(s) URL, found {webhook!r}")
    return Settings(
        env=env,
        tables_root=tables,
        models_root=models,
        s3_endpoint_url=(e.get("AWS_ENDPOINT_URL") or None),
        s3_region=(e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION") or None),
        s3_sse=None if sse == "none" else sse,
        s3_kms_key_id=kms_key,
        alert_webhook_url=webhook,
    )


# ---------------------------------------------------------------- experiment tracking, serving
#: Schemes MLflow accepts as a tracking store (a bare path would be MLflow's file store, which
#: MLflow 3 refuses unless MLFLOW_ALLOW_FILE_STORE=true).
TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks",
                    "file")


def tracking_uri_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """MLFLOW_TRACKING_URI, validated; None when unset (then nothing imports MLflow)."""
    e = os.environ if environ is None else environ
    uri = (e.get("MLFLOW_TRACKING_URI") or "").strip()
    if not uri:
        return None
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in uri else ""
    if scheme not in TRACKING_SCHEMES:
        raise EnvironmentError_(
            f"MLFLOW_TRACKING_URI must be a URI whose scheme is one of {list(TRACKING_SCHEMES)} "
            f"(e.g. sqlite:///path/mlflow.db or http://host:5000), found {uri!r}")
    if scheme == "file" and (e.get("MLFLOW_ALLOW_FILE_STORE") or "").lower() != "true":
        raise EnvironmentError_(
            f"MLFLOW_TRACKING_URI={uri!r} is MLflow's file store, which MLflow 3 refuses; use "
            "sqlite:///path/mlflow.db (or set MLFLOW_ALLOW_FILE_STORE=true)")
    return uri


MIN_ADMIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class ServingEnv:
    pipeline: str | None
    admin_token: str | None = field(default=None, repr=False)
    poll_seconds: float | None = None


def serving_env(environ: Mapping[str, str] | None = None) -> ServingEnv:
    """The API's own variables: which pipeline, the admin token, the alias poll interval."""
    e = os.environ if environ is None else environ
    pipeline = (e.get("ML_ASSETS_PIPELINE") or "").strip() or None
    token = e.get("ML_ASSETS_ADMIN_TOKEN") or None
    if token is not None and (len(token) < MIN_ADMIN_TOKEN_CHARS or token != token.strip()):
        raise EnvironmentError_(
            f"ML_ASSETS_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_CHARS} characters without "
            "surrounding spaces (e.g. `python3 -c \"import secrets; print(secrets.token_hex(32))\"`)"
            "; unset it to turn the admin endpoints off")
    poll = (e.get("ML_ASSETS_SERVING_POLL_SECONDS") or "").strip()
    seconds = None
    if poll:
        try:
            seconds = float(poll)
        except ValueError:
            seconds = -1.0
        if not 0.05 <= seconds <= 3600:
            raise EnvironmentError_(
                f"ML_ASSETS_SERVING_POLL_SECONDS must be a number of seconds in 0.05..3600, "
                f"found {poll!r}")
    return ServingEnv(pipeline=pipeline, admin_token=token, poll_seconds=seconds)


# ---------------------------------------------------------------- Dagster's event settings
#: Dagster reads these from the environment of the process that plans or executes a run (the
#: CLI, the webserver, the daemon, run workers); dagster.yaml cannot set them. This is the one
#: place that decides them: `apply_dagster_event_settings()` runs before `ml-assets run` executes,
#: and the Makefile, docker-compose.yml, the Dockerfile, the Helm values and the drift demo's
#: launcher export the same values for the processes they start.
EMIT_PARTITION_SUBSET = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"
EVENT_BATCH_SIZE = "DAGSTER_EVENT_BATCH_SIZE"
#: One "materialization planned" event per asset per run (with the run's partition subset), not
#: one per asset and partition: 9 assets x 365 days = 3,285 events -> 9 for a year's backfill.
#: The price (Dagster PR 28113): a failed run's partitions are not marked failed in the asset
#: status; ml_assets names them itself (ml_assets.failed_partitions: the summary, --json and
#: the run's `ml_assets/failed_partitions` tag).
DAGSTER_EVENT_DEFAULTS = {EMIT_PARTITION_SUBSET: "true"}
#: PostgreSQL only (ENV=staging|production): events written as multi-row inserts of up to 50.
#: SQLite has no batch writer (its store_event_batch loops over store_event), so it is left unset.
POSTGRES_EVENT_DEFAULTS = {EVENT_BATCH_SIZE: "50"}
_BOOLEAN = ("true", "false", "1", "0", "")


def dagster_event_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The values of Dagster's event variables this process should run with: what the
    environment sets (validated) and, where it sets nothing, the defaults above."""
    e = os.environ if environ is None else environ
    env = e.get("ENV", "development") or "development"
    defaults = dict(DAGSTER_EVENT_DEFAULTS)
    if env in ("staging", "production"):
        defaults.update(POSTGRES_EVENT_DEFAULTS)
    out = {}
    for name in (EMIT_PARTITION_SUBSET, EVENT_BATCH_SIZE):
        value = e.get(name)
        if value is None:
            if name in defaults:
                out[name] = defaults[name]
            continue
        value = value.strip()
        if name == EMIT_PARTITION_SUBSET and value.lower() not in _BOOLEAN:
            raise EnvironmentError_(f"{name} must be true or false, found {e.get(name)!r}")
        if name == EVENT_BATCH_SIZE and value and not (value.isdigit() and int(value) <= 10_000):
            raise EnvironmentError_(
                f"{name} must be a whole number of events in 0..10000 (0: no batching), "
                f"found {e.get(name)!r}")
        out[name] = value
    return out


def apply_dagster_event_settings(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set Dagster's event variables in `environ` (default os.environ) where they are unset;
    return the values in effect. Call before a run is planned (Dagster reads them at that time)."""
    e = os.environ if environ is None else environ
    settings = dagster_event_settings(e)
    for name, value in settings.items():
        e.setdefault(name, value)
    return settings
