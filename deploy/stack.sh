#!/usr/bin/env bash
# `make stack`: the docker-compose.yml processes as local processes against the local PostgreSQL
# and Redis — ingest, the operations console, two workers, beat, Flower, the metrics collector and
# both sandbox CRMs. Ctrl-C stops them all.
# Logs: .crmsync/stack/<process>.log (also tailed to this terminal, prefixed).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
STATE=${CRMSYNC_HOME:-.crmsync}/stack
mkdir -p "$STATE"

PG_ADMIN_URL=${PG_ADMIN_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/postgres}
STACK_DB=${STACK_DB:-crmsync_stack}
REDIS=${STACK_REDIS:-redis://127.0.0.1:6379}
INGEST_PORT=${INGEST_PORT:-8000}
CONSOLE_PORT=${CONSOLE_PORT:-8200}
FLOWER_PORT=${FLOWER_PORT:-5555}
HUBSPOT_PORT=${HUBSPOT_PORT:-8101}
PIPEDRIVE_PORT=${PIPEDRIVE_PORT:-8102}
METRICS_PORT=${METRICS_PORT:-9540}                 # the state collector
WORKER_METRICS_PORT=${WORKER_METRICS_PORT:-9541}   # worker1; worker2 the next port

# A vault key kept for this machine's stack (never printed).
if [[ -z "${CRMSYNC_SECRET_KEY:-}" ]]; then
  [[ -s "$STATE/secret.key" ]] || (umask 077; "$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(32))' > "$STATE/secret.key")
  CRMSYNC_SECRET_KEY=$(cat "$STATE/secret.key")
fi
export CRMSYNC_SECRET_KEY
export CRMSYNC_DATABASE_URL=${CRMSYNC_DATABASE_URL:-${PG_ADMIN_URL%/*}/$STACK_DB}
export CRMSYNC_BROKER_URL=${CRMSYNC_BROKER_URL:-$REDIS/2}
export CRMSYNC_REDIS_URL=${CRMSYNC_REDIS_URL:-$REDIS/3}
export FLOWER_UNAUTHENTICATED_API=${FLOWER_UNAUTHENTICATED_API:-true}  # bound to 127.0.0.1 only

"$BIN/python" - "$PG_ADMIN_URL" "$STACK_DB" <<'PY'
import sys
from sqlalchemy import create_engine, text
admin, name = sys.argv[1], sys.argv[2]
engine = create_engine(admin, isolation_level="AUTOCOMMIT")
with engine.connect() as conn:
    if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}):
        conn.execute(text(f'CREATE DATABASE "{name}"'))
PY
"$BIN/crmsync" db upgrade

PIDS=()
start() {  # start NAME CMD...: run in the background, output to its log
  local name=$1; shift
  "$@" >"$STATE/$name.log" 2>&1 &
  PIDS+=($!)
  echo "stack: $name (pid $!)" >&2
}
stop() {
  trap - INT TERM EXIT
  echo "stack: stopping ${#PIDS[@]} processes" >&2
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 40); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.5
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  [[ -n "${TAIL_PID:-}" ]] && kill "$TAIL_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  exit 0
}
trap stop INT TERM EXIT

start sandbox-hubspot "$BIN/crmsync" sandbox serve --platform hubspot --port "$HUBSPOT_PORT" \
  --webhook-url "http://127.0.0.1:$INGEST_PORT/webhooks/hubspot"
start sandbox-pipedrive "$BIN/crmsync" sandbox serve --platform pipedrive --port "$PIPEDRIVE_PORT"
# Each process group adds up its processes' samples from a directory of its own (emptied at start).
PROMETHEUS_MULTIPROC_DIR="$STATE/metrics/ingest" \
  start ingest "$BIN/gunicorn" --config python:crmsync.ingest.gunicorn_conf --workers 2 \
  --bind "127.0.0.1:$INGEST_PORT" "crmsync.ingest:create_app()"
start console "$BIN/gunicorn" --workers 2 --bind "127.0.0.1:$CONSOLE_PORT" "crmsync.opsconsole:create_app()"
CRMSYNC_WORKER_METRICS_PORT=$WORKER_METRICS_PORT PROMETHEUS_MULTIPROC_DIR="$STATE/metrics/worker1" \
  start worker1 "$BIN/celery" -A workers worker -Q events,syncs,backfills -c 2 --pool prefork -n "worker1@%h" --loglevel INFO
CRMSYNC_WORKER_METRICS_PORT=$((WORKER_METRICS_PORT + 1)) PROMETHEUS_MULTIPROC_DIR="$STATE/metrics/worker2" \
  start worker2 "$BIN/celery" -A workers worker -Q events,syncs,backfills -c 2 --pool prefork -n "worker2@%h" --loglevel INFO
start beat "$BIN/celery" -A workers beat --loglevel INFO --schedule "$STATE/celerybeat-schedule"
start flower "$BIN/celery" -A workers flower --address=127.0.0.1 --port="$FLOWER_PORT" --read_only=true
start metrics "$BIN/crmsync" metrics serve --host 127.0.0.1 --port "$METRICS_PORT"

cat >&2 <<MSG
stack: ingest    http://127.0.0.1:$INGEST_PORT
stack: console   http://127.0.0.1:$CONSOLE_PORT   (users: crmsync console users create)
stack: flower    http://127.0.0.1:$FLOWER_PORT
stack: metrics   http://127.0.0.1:$INGEST_PORT/metrics  http://127.0.0.1:$WORKER_METRICS_PORT/metrics  http://127.0.0.1:$((WORKER_METRICS_PORT + 1))/metrics
stack:           http://127.0.0.1:$METRICS_PORT/metrics (the state collector)
stack: hubspot   http://127.0.0.1:$HUBSPOT_PORT   pipedrive http://127.0.0.1:$PIPEDRIVE_PORT
stack: database  $STACK_DB; broker $CRMSYNC_BROKER_URL; logs in $STATE/
stack: Ctrl-C stops everything
MSG
tail -n 0 -F "$STATE"/*.log &
TAIL_PID=$!
# Exit (and stop the rest) as soon as any process dies.
wait -n "${PIDS[@]}" || true
echo "stack: a process exited; see $STATE/*.log" >&2
