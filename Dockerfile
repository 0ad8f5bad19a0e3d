# The codeflow image: Redis, the Prefect server, workers, the S3 server of the stack and
# `codeflow serve` all run from it (docker-compose.yml). Built offline by scripts/build-images,
# on the Debian base that script imports and the wheels it collects (no registry, no index).
ARG BASE=codeflow-base:latest
FROM ${BASE}

# Dependencies first: this layer is reused until the wheelhouse changes. The wheels come over
# HTTP from the building machine (build-images serves them), so they are not a layer too.
ARG WHEELS_URL
ARG WHEELS_DIGEST
RUN echo "wheelhouse $WHEELS_DIGEST" && python3 -m venv /opt/codeflow \
    && /opt/codeflow/bin/pip install --quiet --no-index --find-links "$WHEELS_URL" \
       -r "$WHEELS_URL/requirements.txt" \
    && { /opt/codeflow/bin/python -m compileall -q -j 0 /opt/codeflow >/dev/null 2>&1 || true; }

WORKDIR /app
COPY pyproject.toml README.md prefect.yaml ./
COPY config ./config
COPY tasks ./tasks
COPY server ./server
COPY flows ./flows
RUN printf '#!/opt/codeflow/bin/python\nfrom flows.cli.commands import main\nraise SystemExit(main())\n' \
      > /opt/codeflow/bin/codeflow \
    && chmod 755 /opt/codeflow/bin/codeflow \
    && /opt/codeflow/bin/python -m compileall -q /app >/dev/null

# Not the sandbox's user (10001): on the host, a sandboxed program and codeflow never share a uid.
USER 10010:10010
ENV PYTHONPATH=/app \
    CODEFLOW_HOME=/data \
    PREFECT_HOME=/data/prefect \
    DO_NOT_TRACK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_LOGGING_SETTINGS_PATH=/app/config/logging.yml \
    PREFECT_LOGGING_EXTRA_LOGGERS=tasks,flows \
    PYTHONUNBUFFERED=1
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["codeflow", "--help"]
