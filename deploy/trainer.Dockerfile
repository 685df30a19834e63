# syntax=docker/dockerfile:1.7
# The training worker (cncwear-trainer) with the auto-sklearn sidecar. Build from the repository
# root:
#   docker build -f deploy/trainer.Dockerfile -t cncwear-trainer .
# Three stages: the sidecar (a Python 3.9 environment with auto-sklearn 0.15.0 and its pinned
# requirements, as scripts/setup-autosklearn.sh builds it), the locked environment of the
# cncwear-trainer package (uv's two-phase install; it needs cncwear[train,shared-registry]: no
# explainer is installed), and a slim runtime holding both, run by an unprivileged user.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.8
ARG SIDECAR_PYTHON=3.9.25

FROM ${UV_IMAGE} AS uv

# The sidecar: a uv-managed (relocatable, self-contained) CPython 3.9 under /opt/python and a
# virtual environment of it under /opt/autosklearn; both are copied to the same paths below.
FROM ${PYTHON_IMAGE} AS sidecar
ARG SIDECAR_PYTHON
COPY --from=uv /uv /usr/local/bin/uv
# swig and a C++ compiler build pyrfr (SMAC's random forest) where its wheel does not fit.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential swig \
    && rm -rf /var/lib/apt/lists/*
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_INSTALL_DIR=/opt/python
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=libs/cncwear/src/cncwear/training/automl/sidecar,target=/sidecar \
    uv python install "${SIDECAR_PYTHON}" \
    && uv venv --python "${SIDECAR_PYTHON}" /opt/autosklearn \
    && uv pip install --python /opt/autosklearn/bin/python \
        --build-constraint /sidecar/build-constraints.txt -r /sidecar/requirements.txt \
    && /opt/autosklearn/bin/python -c "import autosklearn.classification"

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
    uv sync --locked --no-dev --no-install-workspace --package cncwear-trainer
# Phase 2: the workspace members, as wheels.
COPY . /src
WORKDIR /src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --package cncwear-trainer

FROM ${PYTHON_IMAGE} AS runtime
# libgomp: OpenMP of LightGBM; libstdc++: pyrfr in the sidecar.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 libstdc++6 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 cncwear \
    && useradd --system --uid 10001 --gid cncwear --home-dir /var/lib/cncwear --create-home cncwear
COPY --from=sidecar /opt/python /opt/python
COPY --from=sidecar /opt/autosklearn /opt/autosklearn
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CNCWEAR_HOME=/var/lib/cncwear \
    CNCWEAR_AUTOSKLEARN_PYTHON=/opt/autosklearn/bin/python \
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
WORKDIR /var/lib/cncwear
USER 10001:10001
# Alive when the worker answers Celery's ping on the broker.
HEALTHCHECK --interval=30s --timeout=20s --start-period=60s --retries=3 \
    CMD ["cncwear-trainer", "ping"]
CMD ["cncwear-trainer", "worker"]
