# ml_assets: Dagster webserver with the ml_assets code location.
#   docker build -t ml_assets .
#   docker run --rm -p 3000:3000 --env-file .env ml_assets
FROM python:3.12-slim

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

WORKDIR /app

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app

# Dependencies first, in their own layer: rebuilt only when the lock changes.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock

COPY pyproject.toml README.md workspace.yaml dagster.yaml ./
COPY ml_assets/ ./ml_assets/
COPY configs/ ./configs/
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build ./*.egg-info

ENV DAGSTER_HOME=/app/dagster_home \
    DATA_PATH=/app/data \
    MODEL_PATH=/app/models \
    ML_ASSETS_CONFIG=/app/configs

RUN mkdir -p "$DAGSTER_HOME" "$DATA_PATH" "$MODEL_PATH" \
    && cp dagster.yaml "$DAGSTER_HOME/dagster.yaml" \
    && chown -R app:app "$DAGSTER_HOME" "$DATA_PATH" "$MODEL_PATH"

# Numeric so that runtimes without the image's /etc/passwd (and runAsNonRoot checks) resolve it.
USER 10001:10001

EXPOSE 3000

HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/server_info', timeout=5)"]

CMD ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", "workspace.yaml"]
