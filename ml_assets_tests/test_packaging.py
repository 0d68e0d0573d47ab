"""What the build files promise: one Dagster release train, a lock that matches, a Dockerfile
built as the seed describes, secrets kept out of git."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from ml_assets_tests.helpers import REPO

TRAIN = {"dagster": "1.13.27", "dagster-webserver": "1.13.27", "dagster-aws": "0.29.27",
         "dagster-postgres": "0.29.27", "dagster-celery": "0.29.27", "dagster-k8s": "0.29.27"}


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;]+)", line)
        if m:
            pins[re.sub(r"\[.*\]", "", m.group(1)).lower()] = m.group(2)
    return pins


def test_dagster_family_is_one_pinned_train_in_pyproject_and_lock():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    lock = _lock()
    for name, version in TRAIN.items():
        assert f"{name}=={version}" in deps
        assert lock[name] == version
    assert lock["evidently"] == "0.7.23"
    assert lock["pandas"].startswith("3.0.")
    assert lock["lightgbm"].startswith("4.7.")
    # every direct dependency is pinned in the lock
    for dep in deps:
        name = re.split(r"[<>=\[ ]", dep, maxsplit=1)[0].lower()
        assert name in lock, f"{name} is not in requirements.lock"


def test_dockerfile_follows_the_seed():
    """The seed's promises, kept by the multi-stage image (details in deploy/test_compose...)."""
    text = (REPO / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if ln and not ln.lstrip().startswith("#")]
    assert lines[0].startswith("FROM python:3.12-slim")
    assert "libgomp1" in text
    lock_copy = next(i for i, ln in enumerate(lines) if ln.startswith("COPY requirements.lock"))
    lock_install = next(i for i, ln in enumerate(lines) if "-r /tmp/requirements.lock" in ln)
    code_copy = next(i for i, ln in enumerate(lines) if ln.startswith("COPY ml_assets/"))
    assert lock_copy < lock_install < code_copy  # dependencies cached in their own layer
    user = next(ln for ln in lines if ln.startswith("USER "))
    assert not user.split()[1].startswith(("root", "0"))
    assert "dagster-webserver" in lines[-1] and "workspace.yaml" in lines[-1]


def test_env_example_documents_the_seed_variables_and_env_is_ignored():
    example = (REPO / ".env.example").read_text()
    for var in ("ENV=", "DATA_PATH=", "MODEL_PATH=", "S3_BUCKET=", "DAGSTER_PG_HOST=",
                "DAGSTER_PG_PORT=", "DAGSTER_PG_USER=", "DAGSTER_PG_PASSWORD=", "DAGSTER_PG_DB=",
                "ML_ASSETS_EXECUTOR="):
        assert re.search(rf"^{var}", example, re.M), var
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert ".env" in ignored


# ---------------------------------------------------------------- the built package
def _package_copy(dest: Path) -> Path:
    """The files the Dockerfile's build stage copies (pyproject.toml, README.md, ml_assets/): a
    build in the copy leaves no build/ or egg-info in the checkout."""
    src = dest / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "ml_assets", src / "ml_assets",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return src


def _wheel_tools_present() -> str | None:
    """Why this interpreter cannot build a wheel offline (setuptools < 70.1 needs the `wheel`
    package for bdist_wheel), or None when it can."""
    import importlib.util

    import setuptools

    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    if (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None:
        return None
    return (f"setuptools {setuptools.__version__} without the `wheel` package cannot build a "
            "wheel offline (--no-build-isolation)")


def test_built_wheel_holds_the_default_configs(tmp_path):
    """`pip wheel .` (what the Dockerfile and `pip install .` do) puts ml_assets/configs/*.yaml
    in the wheel."""
    why_not = _wheel_tools_present()
    if why_not:
        pytest.skip(why_not + "; test_installed_package_finds_its_default_config checks the "
                    "same package data through setuptools' build_py")
    src = _package_copy(tmp_path)
    out = tmp_path / "wheels"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                           "--no-build-isolation", "--no-index", "-w", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [wheel] = out.glob("ml_assets-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "ml_assets/configs/flights.yaml" in names
        shipped = yaml.safe_load(zf.read("ml_assets/configs/flights.yaml"))
    assert shipped["name"] == "flights"
    assert "ml_assets/transforms/flights.py" in names
    assert not [n for n in names if n.startswith("ml_assets_tests/")]


def test_installed_package_finds_its_default_config(tmp_path):
    """The package as setuptools lays it out for a wheel (build_py: modules and package data),
    imported from a directory that has no configs/: the default config is the packaged flights
    one, and the CLI's default resolves to it."""
    src = _package_copy(tmp_path)
    lib = tmp_path / "lib"
    proc = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q",
                           "build_py", "--build-lib", str(lib)],
                          capture_output=True, text=True, timeout=120, cwd=src)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (lib / "ml_assets" / "configs" / "flights.yaml").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ML_ASSETS_CONFIG"}
    env["PYTHONPATH"] = str(lib)
    code = ("import ml_assets, ml_assets.config as c; "
            "print(ml_assets.__file__); print(c.default_config_location()); "
            "print([x.name for x in c.load_configs()])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=elsewhere, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    module, location, names = proc.stdout.strip().splitlines()
    assert Path(module).is_relative_to(lib)  # the built copy, not the checkout
    assert Path(location) == lib / "ml_assets" / "configs"
    assert names == "['flights']"


def test_a_configs_folder_in_the_working_directory_wins_and_config_flag_still_works(
        tmp_path, monkeypatch):
    from ml_assets.config import PACKAGED_CONFIGS, default_config_location, load_configs
    from ml_assets_tests.helpers import flights_dict, write_config

    monkeypatch.delenv("ML_ASSETS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_config_location() == PACKAGED_CONFIGS
    (tmp_path / "configs").mkdir()
    write_config(tmp_path / "configs" / "mine.yaml", flights_dict(name="mine"))
    assert default_config_location() == tmp_path / "configs"
    assert [c.name for c in load_configs()] == ["mine"]
    other = write_config(tmp_path / "other.yaml", flights_dict(name="other"))
    assert [c.name for c in load_configs(other)] == ["other"]
