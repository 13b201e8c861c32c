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
DB=bs_bench_streams PORT=${PORT:-8092} REDIS_DB=12
. scripts/fresh-server.sh
/tmp/bsload-bench streams -url "http://127.0.0.1:$PORT" -admin-email admin@bench.test -admin-password bench-admin-pw \
  -subscribers "${1:?usage: scripts/bench-streams.sh SUBSCRIBERS RATE [TRANSPORT] [DURATION]}" -rate "${2:?rate}" \
  -transport "${3:-sse}" -duration "${4:-20s}" -drain 20s -source-ips 4 -topic stations -server-pid "$pid"
