# syntax=docker/dockerfile:1.7
# The MQTT bridge (cncwear-bridge). Build from the repository root:
#   docker build -f deploy/bridge.Dockerfile -t cncwear-bridge .
# Two stages, as the API's: uv installs the locked environment of the cncwear-bridge package
# (dependencies first, then the workspace members, as wheels), and a slim runtime receives the
# virtual environment only, run by an unprivileged user. It scores through the API over HTTP: no
# serving, explaining or training library is installed.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.8

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# Phase 1: the third-party dependencies only, from the lockfile.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    --mount=type=bind,source=libs/cncwear/pyproject.toml,target=libs/cncwear/pyproject.toml \
    --mount=type=bind,source=services/api/pyproject.toml,target=services/api/pyproject.toml \
    --mount=type=bind,source=services/trainer/pyproject.toml,target=services/trainer/pyproject.toml \
    --mount=type=bind,source=services/bridge/pyproject.toml,target=services/bridge/pyproject.toml \
    uv sync --locked --no-dev --no-install-workspace --package cncwear-bridge
# Phase 2: the workspace members the service needs, installed as wheels (not editable).
COPY . /src
WORKDIR /src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --package cncwear-bridge

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 cncwear \
    && useradd --system --uid 10001 --gid cncwear --home-dir /var/lib/cncwear --create-home cncwear
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CNCWEAR_HOME=/var/lib/cncwear \
    CNCWEAR_BRIDGE_METRICS_HOST=0.0.0.0 \
    CNCWEAR_BRIDGE_METRICS_PORT=9103
WORKDIR /var/lib/cncwear
USER 10001:10001
EXPOSE 9103
# Alive while its metrics endpoint answers (served by the bridge process itself).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ.get('CNCWEAR_BRIDGE_METRICS_PORT', '9103'), timeout=4)"]
CMD ["cncwear-bridge"]
