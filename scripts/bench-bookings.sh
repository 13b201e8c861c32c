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
DB=bs_bench_book PORT=${PORT:-8093} REDIS_DB=13
. scripts/fresh-server.sh
[ -n "${SETUP_SQL:-}" ] && psql -q "$PG/$DB" -c "$SETUP_SQL"
/tmp/bsload-bench bookings -url "http://127.0.0.1:$PORT" -admin-email admin@bench.test -admin-password bench-admin-pw \
  -clients "${1:-1,8,64}" -duration "${2:-10s}" -server-pid "$pid" ${3:-}
