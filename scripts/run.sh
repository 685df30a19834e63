#!/usr/bin/env bash
# Installs what cncwear needs, then runs the whole system on one machine on its embedded defaults:
# Redis (the one at CNCWEAR_REDIS_URL, or a local redis-server started here), a trainer worker and the
# API (and Celery beat when a retrain trigger is set), with MLflow on SQLite under ./var. Queues a
# first retrain when there is no champion yet.
# Ctrl-C stops everything this script started.
source "$(dirname "$0")/bootstrap.sh"
export CNCWEAR_HOME="${CNCWEAR_HOME:-$PWD/var}"
export CNCWEAR_REDIS_URL="${CNCWEAR_REDIS_URL:-redis://127.0.0.1:6379/0}"
mkdir -p "$CNCWEAR_HOME/logs"

pids=()
stop_all() {
    trap - EXIT INT TERM
    if [ ${#pids[@]} -gt 0 ]; then
        echo "stopping ${#pids[@]} process(es)" >&2
        kill "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
}
trap stop_all EXIT
trap 'exit 130' INT TERM

redis_answers() {
    uv run python -c "
import os, redis
redis.Redis.from_url(os.environ['CNCWEAR_REDIS_URL'], socket_connect_timeout=1).ping()" 2>/dev/null
}

if ! redis_answers; then
    port=$(uv run python -c "
import os; from urllib.parse import urlparse
u = urlparse(os.environ['CNCWEAR_REDIS_URL']); print(u.port or 6379 if u.hostname in ('127.0.0.1', 'localhost') else '')")
    if [ -z "$port" ]; then
        echo "Redis at $CNCWEAR_REDIS_URL does not answer, and it is not on this machine." >&2
        exit 1
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "Redis at $CNCWEAR_REDIS_URL does not answer and redis-server is not installed." >&2
        echo "Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)" >&2
        echo "or point CNCWEAR_REDIS_URL at a running Redis." >&2
        exit 1
    fi
    echo "starting redis-server on 127.0.0.1:$port" >&2
    redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
        --logfile "$CNCWEAR_HOME/logs/redis.log" &
    pids+=($!)
    for _ in $(seq 50); do redis_answers && break; sleep 0.2; done
fi

# Settings are checked here first, so a bad one (a malformed CNCWEAR_RETRAIN_SCHEDULE) stops us with
# its message instead of leaving a worker that died at start.
triggers=$(uv run python -c "
from cncwear_trainer.settings import get_settings
print('on' if get_settings().triggers_enabled() else 'off')") || exit 1

# The services run from the environment's bin directly (not through `uv run`, which does not pass
# the stop signal on), so that stop_all reaches the processes themselves.
bin="$PWD/.venv/bin"
"$bin/cncwear-trainer" worker >"$CNCWEAR_HOME/logs/trainer.log" 2>&1 &
pids+=($!)
if [ "$triggers" = on ]; then
    # Celery beat fires the retrain triggers (schedule, new-data check); one per system.
    "$bin/cncwear-trainer" beat >"$CNCWEAR_HOME/logs/beat.log" 2>&1 &
    pids+=($!)
fi
"$bin/cncwear-api" &
pids+=($!)

host="${CNCWEAR_HOST:-127.0.0.1}"
port="${CNCWEAR_PORT:-8000}"
for _ in $(seq 120); do
    uv run python -c "import httpx; httpx.get('http://$host:$port/health').raise_for_status()" \
        2>/dev/null && break
    sleep 0.5
done

if ! uv run python -c "
from cncwear.core.settings import get_settings
from cncwear.registry.store import ModelStore
raise SystemExit(ModelStore(get_settings()).champion_version() is None)" 2>/dev/null; then
    echo "no champion yet: queueing a first retrain (budget ${CNCWEAR_BUDGET:-fast})" >&2
    uv run cncwear retrain --reason "first start"
fi

cat >&2 <<INFO

cncwear is running on its embedded defaults (data in $CNCWEAR_HOME):
  API docs     http://$host:$port/docs
  dashboard    http://$host:$port/
  metrics      http://$host:$port/metrics
  drift        http://$host:$port/drift (ground truth: POST /feedback with the token)
  worker       http://127.0.0.1:${CNCWEAR_WORKER_METRICS_PORT:-9102}/metrics
  API token    ${CNCWEAR_API_TOKEN:+set by CNCWEAR_API_TOKEN}${CNCWEAR_API_TOKEN:-in $CNCWEAR_HOME/api-token (for /retrain)}
  MLflow UI    uv run mlflow ui --host 127.0.0.1 --backend-store-uri sqlite:///$CNCWEAR_HOME/mlflow.db
  trainer log  $CNCWEAR_HOME/logs/trainer.log
  triggers     $( [ "$triggers" = on ] && echo "beat running, log in $CNCWEAR_HOME/logs/beat.log" || echo "off (CNCWEAR_RETRAIN_SCHEDULE, CNCWEAR_NEW_DATA_CHECK_SECONDS)")
Ctrl-C stops everything started here.
INFO
wait
