"""CI/CD: the GitHub Actions workflow passes actionlint and draws the seed's stages in order
(push -> data validation -> unit tests -> training -> evaluation -> deploy, deploy only when the
gates passed); `.ci/run` runs the README's test command and the demo with the services required."""

from __future__ import annotations

import subprocess

import yaml

from ml_assets_tests.deploy import services
from ml_assets_tests.helpers import REPO

WORKFLOW = REPO / ".github" / "workflows" / "ml-pipeline.yml"
STAGES = ["data-validation", "unit-tests", "training", "evaluation", "deploy"]


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _actionlint(path) -> subprocess.CompletedProcess:
    return subprocess.run([str(services.BIN / "actionlint"), "-no-color", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_workflow_passes_actionlint(tmp_path):
    ok = _actionlint(WORKFLOW)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = WORKFLOW.read_text().replace("needs: training", "needs: trainig")
    bad = tmp_path / ".github" / "workflows" / "broken.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(broken)
    failed = _actionlint(bad)
    assert failed.returncode != 0 and "trainig" in failed.stdout


def test_stages_run_in_the_seeds_order_and_deploy_only_when_gates_pass():
    wf = workflow()
    triggers = wf.get("on") or wf.get(True)  # YAML 1.1 reads a bare `on` as True
    assert "push" in triggers
    jobs = wf["jobs"]
    assert list(jobs) == STAGES
    for before, after in zip(STAGES, STAGES[1:], strict=False):
        assert jobs[after]["needs"] == before
    assert "needs.evaluation.outputs.passed == 'true'" in jobs["deploy"]["if"]
    runs = {name: "\n".join(s.get("run", "") for s in job["steps"]) for name, job in jobs.items()}
    assert "ml-assets release $RELEASE_ARGS --until validate" in runs["data-validation"]
    assert "make test" in runs["unit-tests"] and jobs["unit-tests"]["env"]["CI"] == "true"
    assert "--until train" in runs["training"]
    assert "--until evaluate" in runs["evaluation"] and "passed=true" in runs["evaluation"]
    assert "make release" in runs["deploy"] and "git push origin --tags" in runs["deploy"]
    assert jobs["deploy"]["permissions"]["contents"] == "write"


def test_ci_script_runs_make_test_and_make_demo_with_services_required():
    text = (REPO / ".ci" / "run").read_text()
    assert "make test" in text and "make demo" in text
    assert "pg_ctlcluster" in text and "rabbitmq-server" in text and "chromium" in text
    assert "set -euo pipefail" in text
