"""Which executor runs a run's steps, chosen by `ML_ASSETS_EXECUTOR` when the code location
loads (never at import time):

| value          | steps run                                                           | needs |
|----------------|---------------------------------------------------------------------|-------|
| `multiprocess` | in child processes of the run worker (Dagster's default)            | -     |
| `in_process`   | one after another inside the run worker                             | -     |
| `celery`       | on `dagster-celery worker` processes, via the broker                | `ML_ASSETS_CELERY_BROKER` |
| `k8s`          | each step in its own Kubernetes Job (`dagster-k8s` `k8s_job_executor`) | a cluster |

`ML_ASSETS_CELERY_BACKEND` sets the Celery result backend (default `rpc://`). The broker URL is
passed by reference (`{"env": ...}`), so no credential lands in the definitions the UI shows.
Celery and Kubernetes steps run in other processes: the instance must be shared (PostgreSQL).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

from ml_assets.environment import EnvironmentError_

EXECUTOR_ENV = "ML_ASSETS_EXECUTOR"
BROKER_ENV = "ML_ASSETS_CELERY_BROKER"
BACKEND_ENV = "ML_ASSETS_CELERY_BACKEND"
EXECUTORS = ("multiprocess", "in_process", "celery", "k8s")


class ExecutorConfigError(EnvironmentError_):
    """A bad executor setting; the message names the variable."""


def executor_name(environ: Mapping[str, str] | None = None) -> str:
    e = os.environ if environ is None else environ
    name = (e.get(EXECUTOR_ENV) or "multiprocess").strip()
    if name not in EXECUTORS:
        raise ExecutorConfigError(
            f"{EXECUTOR_ENV} must be one of {list(EXECUTORS)}, found {name!r}"
        )
    return name


def executor_from_env(environ: Mapping[str, str] | None = None) -> dg.ExecutorDefinition:
    """The executor named by `ML_ASSETS_EXECUTOR` (default `multiprocess`)."""
    e = os.environ if environ is None else environ
    name = executor_name(e)
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "in_process":
        return dg.in_process_executor
    if name == "celery":
        if not (e.get(BROKER_ENV) or "").strip():
            raise ExecutorConfigError(
                f"{EXECUTOR_ENV}=celery needs {BROKER_ENV}, the Celery broker URL "
                "(e.g. pyamqp://guest:guest@rabbitmq:5672//)"
            )
        from dagster_celery import celery_executor

        config: dict = {"broker": {"env": BROKER_ENV}}
        if (e.get(BACKEND_ENV) or "").strip():
            config["backend"] = {"env": BACKEND_ENV}
        return celery_executor.configured(config, name="celery_executor")
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor
