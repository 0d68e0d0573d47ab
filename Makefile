# ml_assets developer tasks. Run `make help` for the list.
#
# Everything runs from the project virtualenv in .venv, built from the pinned
# requirements.lock (regenerate it with `make lock`).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Tool used by `make lock`; kept out of .venv so the lock never depends on it.
TOOLS_VENV := .venv-tools
UV_VERSION ?= 0.13.9
# pandas 3.0.x requires Python >= 3.11, so the universal lock starts at 3.11.
LOCK_PYTHON ?= 3.11
LOCK_CMD = uv pip compile pyproject.toml --extra test --universal --python-version $(LOCK_PYTHON) -o requirements.lock
# e.g. `make lock LOCK_ARGS=--upgrade` to move every pin to its newest allowed version.
LOCK_ARGS ?=

# Optional local settings: variables in .env (see .env.example) are read and
# exported to every recipe. Nothing requires the file. Write plain KEY=value
# lines, no quotes and no trailing comments. Empty values are not exported, so
# that e.g. `AWS_ENDPOINT_URL=` behaves like "unset".
-include .env
ifneq ($(wildcard .env),)
ENV_FILE_VARS := $(shell sed -n 's/^[[:space:]]*\(export[[:space:]]\+\)\{0,1\}\([A-Za-z_][A-Za-z0-9_]*\)[[:space:]]*=.*/\2/p' .env)
$(foreach v,$(ENV_FILE_VARS),$(if $(strip $($(v))),$(eval export $(v))))
endif

# Dagster wants an absolute path; a relative value (e.g. from .env) is taken
# relative to this directory.
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
override DAGSTER_HOME := $(abspath $(DAGSTER_HOME))

# Dagster's event settings for every process a recipe starts (`make ui`, the daemon it runs,
# `make demo`): one planned event per asset and run, not per partition. ml_assets/environment.py
# decides them (and `ml-assets run` applies them itself); set the variable in .env to override.
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS ?= true

.DEFAULT_GOAL := help

.PHONY: help venv dagster-home demo drift-demo drift-ui release bench-drift test test-fast deploy-check ui bench lint lock clean serve mlflow-ui

# `make serve`: the real-time API; `make mlflow-ui`: the MLflow UI on $(MLFLOW_TRACKING_URI).
SERVE_HOST ?= 127.0.0.1
SERVE_PORT ?= 8000
MLFLOW_PORT ?= 5000

help:
	@echo "make venv          create .venv from requirements.lock and install ml_assets (editable)"
	@echo "make demo          run the asset graph end to end on the sample window"
	@echo "make test          run the test suite"
	@echo "make test-fast     the suite without PostgreSQL, Celery, browser and process tests"
	@echo "make deploy-check  validate docker-compose.yml, Dockerfile, workflow, Helm values, IAM"
	@echo "make drift-demo    the closed loop on real seasonal drift, under the daemon"
	@echo "make drift-ui      the Dagster UI on the drift demo's instance"
	@echo "make ui            start the Dagster UI (dagster dev) on http://127.0.0.1:3000"
	@echo "make release       unit tests, then validate -> train -> evaluate -> deploy (+ git tag)"
	@echo "make bench         platform vs plain script vs bare script, full year and 7 x 1M (BENCH_ARGS=--quick)"
	@echo "make bench-drift   the drift engine against Evidently's DataDriftPreset (1M x 20)"
	@echo "make serve         the real-time API (uvicorn ml_assets.serving:app) on $(SERVE_HOST):$(SERVE_PORT)"
	@echo "make mlflow-ui     the MLflow UI on \$$MLFLOW_TRACKING_URI, http://127.0.0.1:$(MLFLOW_PORT)"
	@echo "make lint          ruff check"
	@echo "make lock          regenerate requirements.lock with uv $(UV_VERSION)"
	@echo "make clean         remove .venv, .dagster_home and .data"
	@echo "DAGSTER_HOME=$(DAGSTER_HOME)"

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.lock
	$(BIN)/python -m pip install --no-deps -e .
	touch $@

venv: $(STAMP)

# Creates DAGSTER_HOME and seeds it with the repo's dagster.yaml, but never
# overwrites a dagster.yaml that is already there.
dagster-home:
	@mkdir -p "$(DAGSTER_HOME)"
	@if [ ! -f "$(DAGSTER_HOME)/dagster.yaml" ] && [ -f dagster.yaml ]; then \
		cp dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"; \
		echo "copied dagster.yaml to $(DAGSTER_HOME)/dagster.yaml"; \
	fi

demo: venv dagster-home
	$(BIN)/ml-assets run --start 2013-01-01 --end 2013-05-01 --as-of 2013-03-31

drift-demo: venv
	$(BIN)/python -m ml_assets.drift_demo

drift-ui: venv
	DAGSTER_HOME=$(CURDIR)/.drift_demo/dagster_home DATA_PATH=$(CURDIR)/.drift_demo/tables \
	MODEL_PATH=$(CURDIR)/.drift_demo/models $(BIN)/dagster dev -w workspace.yaml

# `make test` runs the suite on TEST_WORKERS pytest-xdist workers (`TEST_WORKERS=0`: one process).
# --dist loadgroup hands out one test at a time, except tests marked with one xdist_group, which
# run together on one worker (the serving tests share one trained model store); the slow tests
# are collected first (ml_assets_tests/conftest.py), so the workers end on the quick ones. Three
# workers on two cores: the long tests mostly wait (on a daemon's ticks, a browser, a server), and
# the third worker uses that time (measured on 2026-11-29: all 784 tests in 616 s with three; 627 s
# with two and the 85 s browser test skipped).
TEST_WORKERS ?= 3
TEST_ARGS = -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

test: venv dagster-home
	$(BIN)/python -m pytest -q $(TEST_ARGS)

test-fast: venv dagster-home
	$(BIN)/python -m pytest -q $(TEST_ARGS) -m "not postgres and not celery and not browser and not processes"

deploy-check: venv
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	$(BIN)/hadolint Dockerfile
	$(BIN)/actionlint .github/workflows/*.yml
	$(BIN)/python -m pytest -q ml_assets_tests/deploy/test_helm.py ml_assets_tests/deploy/test_iam.py

ui: venv dagster-home
	$(BIN)/dagster dev -w workspace.yaml

# The seed's CI/CD for ML, locally: unit tests, then validate -> train -> evaluate -> deploy.
# Exits non-zero and promotes nothing when a test, a check, a gate or the comparison fails.
RELEASE_ARGS ?= --start 2013-01-01 --end 2013-05-01 --as-of 2013-03-31
release: venv dagster-home
	$(BIN)/python -m pytest -q -p no:cacheprovider ml_assets_tests/core
	$(BIN)/ml-assets release $(RELEASE_ARGS)

# The platform against a plain script and a bare one (benchmarks/README.md); e.g.
# `make bench BENCH_ARGS="--quick"` or BENCH_ARGS="--case full_year --instance postgres".
BENCH_ARGS ?=
bench: venv
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

bench-drift: venv
	$(BIN)/python benchmarks/drift_bench.py
serve: venv
	$(BIN)/uvicorn ml_assets.serving:app --host $(SERVE_HOST) --port $(SERVE_PORT) --no-access-log

mlflow-ui: venv
	@test -n "$$MLFLOW_TRACKING_URI" || { echo "set MLFLOW_TRACKING_URI first (in .env or the environment), e.g. sqlite:///$(CURDIR)/.mlflow/mlflow.db" >&2; exit 2; }
	$(BIN)/mlflow ui --backend-store-uri "$$MLFLOW_TRACKING_URI" --host 127.0.0.1 --port $(MLFLOW_PORT)

lint: venv
	$(BIN)/ruff check ml_assets ml_assets_tests benchmarks

lock:
	@test -x $(TOOLS_VENV)/bin/uv || { $(PYTHON) -m venv $(TOOLS_VENV) && $(TOOLS_VENV)/bin/python -m pip install uv==$(UV_VERSION); }
	$(TOOLS_VENV)/bin/$(LOCK_CMD) $(LOCK_ARGS)

clean:
	rm -rf $(VENV) .dagster_home .data
