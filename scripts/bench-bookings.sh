#!/usr/bin/env bash
# Runs `bsload bookings` against a fresh server on a fresh PostgreSQL
# database (docs/BENCHMARKS.md). Loopback only; everything it starts it stops.
#
#   scripts/bench-bookings.sh [CLIENTS] [DURATION] [EXTRA_BSLOAD_FLAGS]
#   scripts/bench-bookings.sh 1,8,64 10s
#   scripts/bench-bookings.sh 64 10s -shared-station
#
# Experiments (docs/BENCHMARKS.md): DSN_PARAMS is appended to the database
# URL (e.g. '&plan_cache_mode=force_generic_plan'); SETUP_SQL runs on the
# migrated database before the load (e.g. 'DROP INDEX events_topic_seq').
# Over PostgreSQL's Unix socket instead of TCP (docs/operations.md):
#   PG=postgres://postgres@ DSN_PARAMS='&host=/var/run/postgresql' scripts/bench-bookings.sh
# The server inherits the environment, so GOGC=400 etc. apply to it.
# SERVER_BIN runs that server binary instead of building this tree's
# (scripts/bench-ab.sh uses it to compare two commits with one bsload).
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${PG:-postgres://postgres@127.0.0.1:5432}
DB=bs_bench_book
PORT=${PORT:-8093}
server=${SERVER_BIN:-/tmp/bsb-server}
[ -n "${SERVER_BIN:-}" ] || go build -o "$server" ./cmd/batteryswap
go build -o /tmp/bsb-load ./cmd/bsload
psql -q "$PG/postgres" -c "drop database if exists $DB" -c "create database $DB" >/dev/null 2>&1
ADDR=127.0.0.1:$PORT DATABASE_URL="$PG/$DB?sslmode=disable${DSN_PARAMS:-}" \
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/13} REDIS_PREFIX=bsbench-book: JWT_SECRET=bench-secret-bench-secret \
ADMIN_EMAIL=admin@bench.test ADMIN_PASSWORD=bench-admin-pw AUTH_RATE_LIMIT=-1 BOOKING_RATE_LIMIT=-1 \
MAX_STREAMS_PER_CLIENT=100000 LOG_LEVEL=warn "$server" serve > /tmp/bsb-server.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; psql -q "$PG/postgres" -c "drop database if exists $DB" >/dev/null 2>&1' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
[ -n "${SETUP_SQL:-}" ] && psql -q "$PG/$DB" -c "$SETUP_SQL"
/tmp/bsb-load bookings -url "http://127.0.0.1:$PORT" -admin-email admin@bench.test -admin-password bench-admin-pw \
  -clients "${1:-1,8,64}" -duration "${2:-10s}" -server-pid "$pid" ${3:-}
