#!/usr/bin/env bash
# Installs what cncwear needs and runs it on its embedded defaults (MLflow on SQLite under ./var).
source "$(dirname "$0")/bootstrap.sh"
export CNCWEAR_HOME="${CNCWEAR_HOME:-$PWD/var}"
if ! uv run python -c "
from cncwear.settings import get_settings
from cncwear.store import ModelStore
raise SystemExit(ModelStore(get_settings()).champion_version() is None)
" 2>/dev/null; then
    echo "no champion yet: training one (budget ${CNCWEAR_BUDGET:-fast})" >&2
    uv run cncwear train
fi
echo "champion ready in ${CNCWEAR_HOME}; MLflow UI: uv run mlflow ui --backend-store-uri sqlite:///${CNCWEAR_HOME}/mlflow.db" >&2
