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
bin=$out/batteryswap
go build -o "$bin" ./cmd/batteryswap || exit 1
hubs="batteryswap mercure centrifugo nchan"
[ "${NEIGHBOUR:-}" = 1 ] && hubs="batteryswap mercure centrifugo"
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
      else
        OUT=$out bash ../shared/bench/scenario.sh "$hub" "$sc" > "$out/$hub-$sc-$r.txt" 2>&1
      fi
      [ -n "$nb" ] && { kill "$nb"; wait "$nb" 2>/dev/null; }
      grep -E '^(deliveries|latency ms|server CPU)' "$out/$hub-$sc-$r.txt" | sed 's/^/    /'
    done
  done
done
