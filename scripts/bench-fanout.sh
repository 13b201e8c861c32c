#!/usr/bin/env bash
# Fan-out scenarios A, B and C (../shared/bench/scenario.sh) for batteryswap
# and the three anchors, interleaved, ROUNDS rounds; every report goes to
# OUTDIR (docs/BENCHMARKS.md, "Fan-out beside the anchors"). The anchors
# come from ../shared/bench/anchors/build.sh. With NEIGHBOUR=1 a loop busy
# on half of one core runs beside each run (A and B only, Go anchors only).
#
#   scripts/bench-fanout.sh OUTDIR [ROUNDS] [SCENARIOS]
#   scripts/bench-fanout.sh /tmp/fanout 3 "A B C"
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/bench-fanout.sh OUTDIR [ROUNDS] [SCENARIOS]}; rounds=${2:-3}; scs=${3:-"A B C"}
mkdir -p "$out"
anchors=${DIR:-$(dirname "$(mktemp -u)")/bs-anchors}
bin=$out/batteryswap
go build -o "$bin" ./cmd/batteryswap || exit 1
hubs="batteryswap mercure centrifugo nchan"
[ "${NEIGHBOUR:-}" = 1 ] && hubs="batteryswap mercure centrifugo"
# sseload measures one server process; Nchan runs two workers, so its
# "server CPU" is one worker's, divided by every delivery. nchan_workers
# samples the CPU of all of Nchan's workers (every 0.5 s, the last sample
# before they exit) for a whole-server figure beside it.
nchan_workers() { # OUTFILE: writes "ticks" of all workers, updated until nginx stops
  local pidf=$anchors/nchan/run/nginx.pid m t
  for _ in $(seq 1 50); do [ -s "$pidf" ] && break; sleep 0.1; done
  m=$(cat "$pidf" 2>/dev/null) || return
  while kill -0 "$m" 2>/dev/null; do
    t=0
    for w in $(ps --ppid "$m" -o pid=); do
      t=$((t + $(awk '{print $14 + $15}' "/proc/$w/stat" 2>/dev/null || echo 0)))
    done
    [ "$t" -gt 0 ] && echo "$t" > "$1"
    sleep 0.5
  done
}
neighbour() { # busy 50 ms, idle 50 ms, until killed
  exec python3 -c '
import time
while True:
    t = time.time()
    while time.time() - t < 0.05: pass
    time.sleep(0.05)'
}
for r in $(seq 1 "$rounds"); do
  for sc in $scs; do
    for hub in $hubs; do
      echo "=== round $r scenario $sc $hub $(date -u +%H:%M:%S)" | tee -a "$out/index.txt"
      nb=
      if [ "${NEIGHBOUR:-}" = 1 ]; then neighbour & nb=$!; fi
      if [ "$hub" = batteryswap ]; then
        OUT=$out bash ../shared/bench/scenario.sh "$hub" "$sc" "$bin" > "$out/$hub-$sc-$r.txt" 2>&1
      elif [ "$hub" = nchan ]; then
        rm -f "$anchors/nchan/run/nginx.pid" "$out/ticks"
        nchan_workers "$out/ticks" & sampler=$!
        OUT=$out bash ../shared/bench/scenario.sh "$hub" "$sc" > "$out/$hub-$sc-$r.txt" 2>&1
        wait "$sampler"
        d=$(sed -n 's/^deliveries *: \([0-9]*\)\/.*/\1/p' "$out/$hub-$sc-$r.txt")
        [ -s "$out/ticks" ] && [ -n "$d" ] && awk -v t="$(cat "$out/ticks")" -v d="$d" -v hz="$(getconf CLK_TCK)" \
          'BEGIN { printf "all workers  : %.2fs CPU over the whole run (connects included) => %.2f us/delivery\n", t/hz, t/hz*1e6/d }' \
          >> "$out/$hub-$sc-$r.txt"
      else
        OUT=$out bash ../shared/bench/scenario.sh "$hub" "$sc" > "$out/$hub-$sc-$r.txt" 2>&1
      fi
      [ -n "$nb" ] && { kill "$nb"; wait "$nb" 2>/dev/null; }
      grep -E '^(deliveries|latency ms|server CPU|all workers)' "$out/$hub-$sc-$r.txt" | sed 's/^/    /'
    done
  done
done
