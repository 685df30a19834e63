#!/usr/bin/env bash
# Installs what cncwear needs, then runs the whole system on one machine on its embedded defaults:
# Redis (the one at CNCWEAR_REDIS_URL, or a local redis-server started here), a trainer worker and the
# API (and Celery beat when a retrain trigger is set, the MQTT bridge when CNCWEAR_MQTT_URL is set),
# with MLflow on SQLite under ./var. Queues a first retrain when there is no champion yet.
# A service that stops, or does not answer in time, stops everything started here: the script says
# which, shows the end of its log and exits 1. Ctrl-C stops everything this script started.
source "$(dirname "$0")/bootstrap.sh"
export CNCWEAR_HOME="${CNCWEAR_HOME:-$PWD/var}"
export CNCWEAR_REDIS_URL="${CNCWEAR_REDIS_URL:-redis://127.0.0.1:6379/0}"
logs="$CNCWEAR_HOME/logs"
mkdir -p "$logs"
# The services and the checks run from the environment's bin directly (not through `uv run`, which
# does not pass the stop signal on and syncs again each time), so that stop_all reaches the
# processes themselves.
bin="$PWD/.venv/bin"
STOP_SECONDS=30

# What was started here: the process ids, and each one's name and log (in the same order).
pids=()
names=()
service_logs=()
started() {
    pids+=("$1")
    names+=("$2")
    service_logs+=("$3")
}

still_running() {
    local pid
    for pid in "$@"; do
        if kill -0 "$pid" 2>/dev/null; then
            echo "$pid"
        fi
    done
}

stop_all() {
    trap - EXIT INT TERM
    if [ ${#pids[@]} -eq 0 ]; then
        return
    fi
    echo "stopping ${#pids[@]} process(es)" >&2
    kill "${pids[@]}" 2>/dev/null || true
    local waited=0 left
    left=$(still_running "${pids[@]}")
    while [ -n "$left" ] && [ "$waited" -lt $((STOP_SECONDS * 5)) ]; do
        sleep 0.2
        waited=$((waited + 1))
        left=$(still_running "${pids[@]}")
    done
    if [ -n "$left" ]; then
        echo "still running after ${STOP_SECONDS} s, killed: $(echo $left)" >&2
        # shellcheck disable=SC2086  # one id per word
        kill -KILL $left 2>/dev/null || true
    fi
    wait "${pids[@]}" 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# fail LOG MESSAGE: says what failed and shows the end of LOG (when there is one), then exits 1,
# which stops everything started here.
fail() {
    local log=$1
    echo "run.sh: $2" >&2
    if [ -n "$log" ] && [ -s "$log" ]; then
        echo "--- the last lines of $log:" >&2
        tail -n 25 "$log" >&2
        echo "---" >&2
    fi
    exit 1
}

# stopped NAME PID LOG [WHEN]: fails saying that NAME (process PID, started here) has stopped, with
# its exit status.
stopped() {
    local status=0
    wait "$2" 2>/dev/null || status=$?
    fail "$3" "$1 stopped (exit status $status)${4:-}"
}

# wait_until NAME PID LOG SECONDS CHECK...: runs CHECK (which must time out on its own within a few
# seconds) until it succeeds; fails naming NAME when its process PID ends first or SECONDS go by.
wait_until() {
    local name=$1 pid=$2 log=$3 seconds=$4
    shift 4
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            stopped "$name" "$pid" "$log" " before it answered"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            fail "$log" "$name did not answer within $seconds s"
        fi
        sleep 0.5
    done
}

redis_answers() {
    "$bin/python" -c "
import os, redis
redis.Redis.from_url(
    os.environ['CNCWEAR_REDIS_URL'], socket_connect_timeout=1, socket_timeout=2
).ping()" 2>/dev/null
}

if ! redis_answers; then
    port=$("$bin/python" -c "
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
        --logfile "$logs/redis.log" &
    redis=$!
    started $redis redis-server "$logs/redis.log"
    wait_until "redis-server (127.0.0.1:$port)" $redis "$logs/redis.log" 30 redis_answers
fi

# Settings are checked here first, so a bad one (a malformed CNCWEAR_RETRAIN_SCHEDULE) stops us with
# its message instead of leaving a worker that died at start.
triggers=$("$bin/python" -c "
from cncwear_trainer.settings import get_settings
print('on' if get_settings().triggers_enabled() else 'off')") || exit 1

"$bin/cncwear-trainer" worker >"$logs/trainer.log" 2>&1 &
started $! "the trainer worker (cncwear-trainer worker)" "$logs/trainer.log"
if [ "$triggers" = on ]; then
    # Celery beat fires the retrain triggers (schedule, new-data check); one per system.
    "$bin/cncwear-trainer" beat >"$logs/beat.log" 2>&1 &
    started $! "Celery beat (cncwear-trainer beat)" "$logs/beat.log"
fi
"$bin/cncwear-api" >"$logs/api.log" 2>&1 &
api=$!
started $api "the API (cncwear-api)" "$logs/api.log"

host="${CNCWEAR_HOST:-127.0.0.1}"
port="${CNCWEAR_PORT:-8000}"
api_answers() {
    # Each service started here must still be running; the API must answer /health in 2 s.
    local i
    for i in "${!pids[@]}"; do
        if [ "${pids[$i]}" != "$api" ] && ! kill -0 "${pids[$i]}" 2>/dev/null; then
            stopped "${names[$i]}" "${pids[$i]}" "${service_logs[$i]}" " at its start"
        fi
    done
    "$bin/python" -c "
import urllib.request
urllib.request.urlopen('http://$host:$port/health', timeout=2)" 2>/dev/null
}
wait_until "the API (cncwear-api, http://$host:$port/health)" "$api" "$logs/api.log" 300 api_answers

if [ -n "${CNCWEAR_MQTT_URL:-}" ]; then
    # The MQTT bridge (docs/bridge.md): reads the broker at CNCWEAR_MQTT_URL, scores through the API.
    export CNCWEAR_BRIDGE_API_URL="${CNCWEAR_BRIDGE_API_URL:-http://$host:$port}"
    "$bin/cncwear-bridge" >"$logs/bridge.log" 2>&1 &
    started $! "the MQTT bridge (cncwear-bridge)" "$logs/bridge.log"
fi

if ! "$bin/python" -c "
from cncwear.core.settings import get_settings
from cncwear.registry.store import ModelStore
raise SystemExit(ModelStore(get_settings()).champion_version() is None)" 2>/dev/null; then
    echo "no champion yet: queueing a first retrain (budget ${CNCWEAR_BUDGET:-fast})" >&2
    "$bin/cncwear" retrain --reason "first start"
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
  logs         $logs (api.log, trainer.log)
  MQTT bridge  $( [ -n "${CNCWEAR_MQTT_URL:-}" ] && echo "reading $CNCWEAR_MQTT_URL, log in $logs/bridge.log" || echo "off (set CNCWEAR_MQTT_URL)")
  triggers     $( [ "$triggers" = on ] && echo "beat running, log in $logs/beat.log" || echo "off (CNCWEAR_RETRAIN_SCHEDULE, CNCWEAR_NEW_DATA_CHECK_SECONDS)")
Ctrl-C stops everything started here.
INFO

# Until Ctrl-C: a service that stops stops the others.
while true; do
    for i in "${!pids[@]}"; do
        if ! kill -0 "${pids[$i]}" 2>/dev/null; then
            stopped "${names[$i]}" "${pids[$i]}" "${service_logs[$i]}"
        fi
    done
    sleep 1
done
