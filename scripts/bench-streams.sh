#!/usr/bin/env bash
# Runs `bsload streams` against a fresh server on a fresh PostgreSQL
# database and Redis keyspace (docs/BENCHMARKS.md, "WebSocket under load").
# Loopback only; everything it starts it stops. SERVER_BIN runs that server
# binary instead of building this tree's, so that two commits compare with
# one bsload.
#
#   scripts/bench-streams.sh SUBSCRIBERS RATE [TRANSPORT] [DURATION]
#   scripts/bench-streams.sh 1000 100 websocket 20s     # scenario A over WebSocket
#   SERVER_BIN=/tmp/other scripts/bench-streams.sh 10000 10 sse
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${PG:-postgres://postgres@127.0.0.1:5432}
DB=bs_bench_streams
PORT=${PORT:-8092}
server=${SERVER_BIN:-/tmp/bss-server}
[ -n "${SERVER_BIN:-}" ] || go build -o "$server" ./cmd/batteryswap
go build -o /tmp/bss-load ./cmd/bsload
psql -q "$PG/postgres" -c "drop database if exists $DB" -c "create database $DB" >/dev/null 2>&1
redis-cli -n 12 flushdb >/dev/null
ADDR=127.0.0.1:$PORT DATABASE_URL="$PG/$DB?sslmode=disable" \
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/12} REDIS_PREFIX=bsbench-streams: JWT_SECRET=bench-secret-bench-secret \
ADMIN_EMAIL=admin@bench.test ADMIN_PASSWORD=bench-admin-pw AUTH_RATE_LIMIT=-1 BOOKING_RATE_LIMIT=-1 \
MAX_STREAMS_PER_CLIENT=100000 LOG_LEVEL=warn "$server" serve > /tmp/bss-server.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; psql -q "$PG/postgres" -c "drop database if exists $DB" >/dev/null 2>&1' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
/tmp/bss-load streams -url "http://127.0.0.1:$PORT" -admin-email admin@bench.test -admin-password bench-admin-pw \
  -subscribers "${1:?usage: scripts/bench-streams.sh SUBSCRIBERS RATE [TRANSPORT] [DURATION]}" -rate "${2:?rate}" \
  -transport "${3:-sse}" -duration "${4:-20s}" -drain 20s -source-ips 4 -topic stations -server-pid "$pid"
