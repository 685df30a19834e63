#!/usr/bin/env bash
# Installs what the tests need (uv, the locked environment) and runs the checks and the test suite.
source "$(dirname "$0")/bootstrap.sh"
./scripts/install-test-tools.sh
uv run ruff check .
uv run ruff format --check .
uv run mypy
./scripts/audit.sh
uv run pytest "$@"
