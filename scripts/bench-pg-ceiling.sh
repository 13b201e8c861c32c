#!/usr/bin/env bash
# The PostgreSQL ceiling for bookings (docs/BENCHMARKS.md): pgbench runs the
# statements of a book + cancel (scripts/pgbench-booking-pair.sql) from
# CLIENTS connections, one station and rider each, on a fresh migrated
# database. Prints pgbench's tps, i.e. bookings/s with nothing but the
# database doing work. Loopback only; drops its database at the end.
#
#   scripts/bench-pg-ceiling.sh [CLIENTS] [SECONDS]
#   SETUP_SQL='DROP INDEX …' scripts/bench-pg-ceiling.sh   # a schema experiment
#   PIPELINE=1 scripts/bench-pg-ceiling.sh   # BEGIN … lock, and outbox … COMMIT,
#       each in one round trip (as the pgx path of aa6155c pipelined them; pgbench cannot
#       read a result inside a pipeline, so the change stays a trip of its own)
#   PG=postgres://postgres@ scripts/bench-pg-ceiling.sh      # over the Unix socket
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${PG:-postgres://postgres@127.0.0.1:5432}
DB=bs_bench_pg
CLIENTS=${1:-32}
go build -o /tmp/bsb-server ./cmd/batteryswap
psql -q "$PG/postgres" -c "drop database if exists $DB" -c "create database $DB" >/dev/null 2>&1
trap 'psql -q "$PG/postgres" -c "drop database if exists $DB" >/dev/null 2>&1' EXIT
DATABASE_URL="$PG/$DB?sslmode=disable" /tmp/bsb-server migrate up >/dev/null
psql -q "$PG/$DB" <<SQL
INSERT INTO users (email, name, password_hash) SELECT 'rider' || g || '@bench.test', 'Rider', 'x' FROM generate_series(1, $CLIENTS) g;
INSERT INTO stations (name) SELECT 'Station ' || g FROM generate_series(1, $CLIENTS) g;
INSERT INTO batteries (station_id, serial_number, charge_percent, status)
  SELECT s, 'B' || s || '-' || k, 100, 'available' FROM generate_series(1, $CLIENTS) s, generate_series(1, 3) k;
SQL
[ -n "${SETUP_SQL:-}" ] && psql -q "$PG/$DB" -c "$SETUP_SQL"
script=scripts/pgbench-booking-pair.sql
if [ -n "${PIPELINE:-}" ]; then
  script=$(mktemp)
  trap 'rm -f "$script"; psql -q "$PG/postgres" -c "drop database if exists $DB" >/dev/null 2>&1' EXIT
  awk '/^BEGIN;/ || /^WITH n AS/ { print "\\startpipeline" } { print } /^SELECT id, name, status FROM stations/ || /^COMMIT;/ { print "\\endpipeline" }' \
    scripts/pgbench-booking-pair.sql > "$script"
fi
pgbench "$PG/$DB" -n -M prepared -c "$CLIENTS" -j 2 -T "${2:-10}" -f "$script" 2>&1 | grep -E '^(tps|number of failed|latency average)'
