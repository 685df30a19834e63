# syntax=docker/dockerfile:1.7
# The prediction service (cncwear-api). Build from the repository root:
#   docker build -f deploy/api.Dockerfile -t cncwear-api .
# Two stages: uv installs the locked environment of the cncwear-api package (dependencies first,
# then the workspace members, as uv's Docker guide does it), and a slim runtime receives the
# virtual environment only, run by an unprivileged user. The package needs
# cncwear[serve,explain,shared-registry]: no training library (FLAML, skl2onnx) is installed.

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
# Phase 1: the third-party dependencies only, from the lockfile; this layer is rebuilt only when
# the lockfile or a pyproject.toml changes.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    --mount=type=bind,source=libs/cncwear/pyproject.toml,target=libs/cncwear/pyproject.toml \
    --mount=type=bind,source=services/api/pyproject.toml,target=services/api/pyproject.toml \
    --mount=type=bind,source=services/trainer/pyproject.toml,target=services/trainer/pyproject.toml \
    --mount=type=bind,source=services/bridge/pyproject.toml,target=services/bridge/pyproject.toml \
    uv sync --locked --no-dev --no-install-workspace --package cncwear-api
# Phase 2: the workspace members the service needs, installed as wheels (not editable), so the
# runtime image needs no source tree.
COPY . /src
WORKDIR /src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --package cncwear-api

FROM ${PYTHON_IMAGE} AS runtime
# libgomp: OpenMP of LightGBM, one of the models the AutoML candidate may promote.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 cncwear \
    && useradd --system --uid 10001 --gid cncwear --home-dir /var/lib/cncwear --create-home cncwear
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CNCWEAR_HOME=/var/lib/cncwear \
    CNCWEAR_HOST=0.0.0.0 \
    CNCWEAR_PORT=8000 \
    CNCWEAR_LOG_FORMAT=json \
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
WORKDIR /var/lib/cncwear
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('CNCWEAR_PORT', '8000'), timeout=4)"]
CMD ["cncwear-api"]
