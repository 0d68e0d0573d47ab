"""Runs of `ml-assets run` whose process died.

`ml-assets run` executes its run in its own process (`execute_in_process`), so Dagster's run
monitoring, which watches runs started by a run launcher, never sees it: after a `kill -9` (or an
out-of-memory kill, or a lost machine) the run stays STARTED forever and its partitions look as if
they are still being written.

Each `ml-assets run` therefore tags its run with the host, the process id and the process's start
time (so a recycled pid is not mistaken for the original process). Before it starts a new run it
calls `fail_dead_runs`: every STARTED run launched by `ml-assets run` on this host whose process no
longer exists is marked FAILURE with a message naming the pid, and can be run again (storage is
content-addressed, so a retry rewrites the same files). Runs from other hosts are left alone: this
host cannot tell whether their process is alive.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

TAG_HOST = "ml_assets/host"
TAG_PID = "ml_assets/pid"
TAG_PID_START = "ml_assets/pid_start"


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux `/proc/<pid>/stat`, field 22),
    or None where /proc does not exist or the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after it
    return stat.rsplit(")", 1)[1].split()[19]


def process_tags() -> dict[str, str]:
    """Tags naming this process, for the run it is about to execute."""
    pid = os.getpid()
    tags = {TAG_HOST: socket.gethostname(), TAG_PID: str(pid)}
    start = process_start(pid)
    if start is not None:
        tags[TAG_PID_START] = start
    return tags


def is_alive(pid: int, start: str | None) -> bool:
    """Whether the process `pid` exists and (where its start time was recorded) is the same
    process, not a later one that was given the same pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    if start is not None:
        now = process_start(pid)
        if now is not None and now != start:
            return False
    return True


def dead_run_ids(runs, host: str) -> list[tuple[str, int]]:
    """(run id, pid) of the runs in `runs` that were executed on `host` by a process that is gone.
    Pure apart from looking at the processes; `runs` are DagsterRun records."""
    dead = []
    for run in runs:
        tags = run.tags or {}
        if tags.get(TAG_HOST) != host or not tags.get(TAG_PID, "").isdigit():
            continue
        pid = int(tags[TAG_PID])
        if not is_alive(pid, tags.get(TAG_PID_START)):
            dead.append((run.run_id, pid))
    return dead


def fail_dead_runs(instance, launched_by_tag: str, launched_by: str) -> list[str]:
    """Mark FAILURE every STARTED/STARTING run launched by `launched_by` on this host whose
    process is gone. Returns their run ids."""
    import dagster as dg

    runs = instance.get_runs(filters=dg.RunsFilter(
        statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING],
        tags={launched_by_tag: launched_by}))
    by_id = {run.run_id: run for run in runs}
    failed = []
    for run_id, pid in dead_run_ids(runs, socket.gethostname()):
        instance.report_run_failed(
            by_id[run_id],
            message=(f"the process that executed this run (pid {pid} on {socket.gethostname()}) "
                     "is gone (killed or crashed); marked failed by the next `ml-assets run`. "
                     "Run the same range again to retry it."))
        failed.append(run_id)
    return failed


def ensure_pool(instance, pool: str, attempts: int = 4) -> None:
    """Create the concurrency pool's limit row before a run needs it.

    Dagster creates a pool's limit (and its slot rows) lazily, when the first step claims a slot;
    two runs that start at once on a fresh PostgreSQL instance can both create it, and one of them
    fails with a unique violation (seen with two `ml-assets run` processes started together). So
    `ml-assets run` creates it first, one process at a time on this host (an advisory file lock in
    $DAGSTER_HOME), retrying if another host won the same race."""
    import fcntl
    import tempfile
    import time

    storage = instance.event_log_storage
    if not getattr(storage, "supports_global_concurrency_limits", False):
        return
    root = instance.root_directory if getattr(instance, "root_directory", None) else None
    lock_path = Path(root or tempfile.gettempdir()) / ".ml_assets_pool.lock"
    for attempt in range(attempts):
        try:
            with open(lock_path, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if pool not in set(storage.get_concurrency_keys()):
                    storage.initialize_concurrency_limit_to_default(pool)
            return
        except Exception:  # the database's unique constraint: another process created it first
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
