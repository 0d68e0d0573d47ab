"""A `kill -9` of `ml-assets run` no longer leaves its run STARTED forever: the next
`ml-assets run` on the host marks it failed, and the range can be run again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest

from ml_assets import stale_runs
from ml_assets_tests.helpers import flights_dict, write_config

pytestmark = pytest.mark.slow

EXE = Path(sys.executable).parent / "ml-assets"
ARGS = ["--start", "2013-01-01", "--end", "2013-01-15", "--as-of", "2013-01-12"]


def _run(pid: int, host: str | None = None, start: str | None = None, run_id: str = "r"):
    tags = {stale_runs.TAG_HOST: host or socket.gethostname(), stale_runs.TAG_PID: str(pid)}
    if start is not None:
        tags[stale_runs.TAG_PID_START] = start
    return SimpleNamespace(run_id=run_id, tags=tags)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_dead_processes_are_found_and_live_or_foreign_ones_are_not():
    me = os.getpid()
    dead = _dead_pid()
    runs = [
        _run(me, start=stale_runs.process_start(me), run_id="alive"),
        _run(dead, run_id="dead"),
        _run(dead, host="another-host", run_id="elsewhere"),  # cannot be judged from here
        _run(me, start="1", run_id="recycled"),  # same pid, a different process start time
        SimpleNamespace(run_id="untagged", tags={}),
    ]
    assert stale_runs.dead_run_ids(runs, socket.gethostname()) == [("dead", dead),
                                                                    ("recycled", me)]


def test_process_tags_name_this_process():
    tags = stale_runs.process_tags()
    assert tags[stale_runs.TAG_PID] == str(os.getpid())
    assert tags[stale_runs.TAG_HOST] == socket.gethostname()
    assert stale_runs.is_alive(os.getpid(), tags.get(stale_runs.TAG_PID_START))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_killed_cli_run_is_marked_failed_by_the_next_run_and_the_range_reruns(cli_env,
                                                                              tmp_path):
    home = tmp_path / "home"
    env = dict(os.environ)
    config = write_config(tmp_path / "flights.yaml", flights_dict())
    cmd = [str(EXE), "run", "--config", str(config), *ARGS, "--json"]
    # the instance's storage exists before two processes open it (the test's polling and the
    # victim): creating a SQLite instance's tables from two processes at once can race
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs_count()

    victim = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        started = []
        while time.monotonic() < deadline and not started:
            time.sleep(0.5)
            assert victim.poll() is None, "the run finished before it could be killed"
            with dg.DagsterInstance.from_config(str(home)) as instance:
                started = instance.get_runs(filters=dg.RunsFilter(
                    statuses=[dg.DagsterRunStatus.STARTED]))
        assert started, "the run never reached STARTED"
        os.killpg(victim.pid, signal.SIGKILL)
    finally:
        victim.kill()
        victim.wait()
    run_id = started[0].run_id
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED

    retry = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert retry.returncode == 0, retry.stderr[-3000:]
    import json

    summary = json.loads(retry.stdout)
    assert summary["stale_runs_failed"] == [run_id]
    assert summary["success"] is True and summary["partitions"]["predictions"] == 14
    with dg.DagsterInstance.from_config(str(home)) as instance:
        killed = instance.get_run_by_id(run_id)
        assert killed.status == dg.DagsterRunStatus.FAILURE
        failure = [e for e in instance.all_logs(run_id)
                   if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_FAILURE"]
        assert failure and f"pid {victim.pid}" in failure[-1].dagster_event.message
