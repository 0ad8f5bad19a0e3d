# The codeflow image: the Prefect worker and the realtime server run from it (docker-compose.yml).
#   docker build -t codeflow:latest .
# Flows run in the worker's container from /app, the path `prefect deploy` records when run
# from /app (the `deploy` service in docker-compose.yml does that).
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY flows ./flows
COPY tasks ./tasks
COPY server ./server
COPY prefect.yaml ./
RUN pip install --no-cache-dir . prefect-dask cronsim \
    && useradd --create-home --uid 10001 codeflow \
    && mkdir -p /data && chown codeflow /data

USER codeflow
ENV CODEFLOW_HOME=/data \
    PREFECT_HOME=/data/prefect \
    DO_NOT_TRACK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_LOGGING_SETTINGS_PATH=/app/config/logging.yml \
    PREFECT_LOGGING_EXTRA_LOGGERS=tasks,flows \
    PYTHONUNBUFFERED=1
CMD ["codeflow", "--help"]
