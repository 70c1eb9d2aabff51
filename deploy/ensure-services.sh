#!/usr/bin/env bash
# Make sure the PostgreSQL and Redis the tests use answer, starting them when they are down
# (the commands of this machine class; on other hosts start them your own way).
set -euo pipefail
PGHOST=${PGHOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}

wait_for() {  # wait_for NAME CMD...: poll until CMD succeeds, 30 s at most
  local name=$1; shift
  for _ in $(seq 1 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "ensure-services: $name did not come up" >&2; return 1
}

if ! pg_isready -h "$PGHOST" -q 2>/dev/null; then
  echo "ensure-services: starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  wait_for PostgreSQL pg_isready -h "$PGHOST" -q
fi
if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  echo "ensure-services: starting Redis" >&2
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping
fi
echo "ensure-services: PostgreSQL and Redis answer" >&2
# promtool and prometheus (alert rule tests, the dashboard's live-scrape test): Debian's package.
# Only the binaries are used; the packaged service is not started by the tests.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  echo "ensure-services: installing prometheus (promtool)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends prometheus >/dev/null; }
fi

# The console's browser tests drive Debian's chromium (Playwright cannot download its own here).
if [ -z "${CRMSYNC_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-services: installing chromium (browser tests)" >&2
    (apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }) \
      || echo "ensure-services: could not install chromium; the browser tests will fail and say so" >&2
  else
    echo "ensure-services: chromium missing (install it, or set CRMSYNC_CHROMIUM=/path/to/chromium)" >&2
  fi
fi
