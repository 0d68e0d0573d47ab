# ml_assets: one image for the Dagster webserver, daemon, code server (and the serving API),
# chosen by the command. The Dagster instance is chosen at start by the entrypoint from ENV
# (SQLite for development, PostgreSQL for staging/production); nothing instance-specific is baked.
#   docker build -t ml_assets .
#   docker compose up            # see docker-compose.yml and README "Deploy"

# ---- dependencies: a virtualenv from the lock file, rebuilt only when the lock changes
FROM python:3.12-slim AS deps
ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir -r /tmp/requirements.lock

# ---- the package, built as a wheel (no build tools or sources in the final image)
FROM deps AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ml_assets/ ./ml_assets/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- runtime
FROM python:3.12-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# LightGBM needs the GNU OpenMP runtime.
# libgomp1 is not version-pinned (DL3008): the exact Debian version changes with
# every point/security release of the base image and a stale pin breaks the build;
# the python:3.12-slim tag fixes the Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app

COPY --from=deps /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels

WORKDIR /app
# The default pipeline configs ship inside the wheel (ml_assets/configs/); mount your own at
# /app/configs (found first, from the working directory) or point ML_ASSETS_CONFIG at them.
COPY workspace.yaml ./workspace.yaml
COPY deploy/docker/entrypoint.sh /usr/local/bin/ml-assets-entrypoint

ENV DAGSTER_HOME=/app/dagster_home \
    DATA_PATH=/app/data/tables \
    MODEL_PATH=/app/data/models \
    DAGSTER_EVENT_BATCH_SIZE=50 \
    DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=true

# $DAGSTER_HOME holds the workspace of Compose/Kubernetes (code location on the `code-server`
# service); dagster.yaml is written there at start by the entrypoint.
COPY deploy/docker/workspace.yaml /app/dagster_home/workspace.yaml
RUN mkdir -p "$DAGSTER_HOME/storage" "$DATA_PATH" "$MODEL_PATH" \
    && chown -R app:app "$DAGSTER_HOME" /app/data

# Numeric so that runtimes without the image's /etc/passwd (and runAsNonRoot checks) resolve it.
USER 10001:10001

EXPOSE 3000 4000

# The webserver's check; Compose and Helm give the daemon and the code server their own.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/server_info', timeout=5)"]

ENTRYPOINT ["ml-assets-entrypoint"]
# Alone (docker run), the webserver loads the code location in-process; Compose runs each role.
CMD ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", "/app/workspace.yaml"]
