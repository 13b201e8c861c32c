# Sourced by the bench scripts: starts a fresh server for one run, on a
# fresh PostgreSQL database $DB and Redis database $REDIS_DB of the local
# Redis (or REDIS_URL), flushed, at 127.0.0.1:$PORT, with the bench admin
# (admin@bench.test, bench-admin-pw) and no rate limits; builds this tree's
# server unless SERVER_BIN names one, and bsload to /tmp/bsload-bench. Sets
# pid; stops the server and drops the database on exit. DSN_PARAMS is
# appended to the database URL; the server inherits the environment
# (GOGC, GOMAXPROCS, ...).
PG=${PG:-postgres://postgres@127.0.0.1:5432}
redis_url=${REDIS_URL:-redis://127.0.0.1:6379/$REDIS_DB}
server=${SERVER_BIN:-/tmp/$DB-server}
[ -n "${SERVER_BIN:-}" ] || go build -o "$server" ./cmd/batteryswap
go build -o /tmp/bsload-bench ./cmd/bsload
pid=
fresh_server_stop() {
  set +e
  [ -z "$pid" ] || { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }
  psql -q "$PG/postgres" -c "drop database if exists $DB" >/dev/null 2>&1
}
trap fresh_server_stop EXIT
psql -q "$PG/postgres" -c "drop database if exists $DB" -c "create database $DB" >/dev/null
redis-cli -u "$redis_url" flushdb >/dev/null
ADDR=127.0.0.1:$PORT DATABASE_URL="$PG/$DB?sslmode=disable${DSN_PARAMS:-}" \
REDIS_URL=$redis_url REDIS_PREFIX=$DB: JWT_SECRET=bench-secret-bench-secret \
ADMIN_EMAIL=admin@bench.test ADMIN_PASSWORD=bench-admin-pw AUTH_RATE_LIMIT=-1 BOOKING_RATE_LIMIT=-1 \
MAX_STREAMS_PER_CLIENT=100000 LOG_LEVEL=warn "$server" serve > "/tmp/$DB-server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null || { echo "the server did not come up; its log:" >&2; cat "/tmp/$DB-server.log" >&2; exit 1; }
