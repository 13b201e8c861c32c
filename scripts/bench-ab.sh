#!/usr/bin/env bash
# Compares the bookings throughput of this tree's server with another
# commit's, in interleaved runs of scripts/bench-bookings.sh with the same
# bsload (this tree's). On a noisy host only back-to-back pairs compare
# (docs/BENCHMARKS.md). Prints one table row per run, labelled.
#
#   scripts/bench-ab.sh REV [PAIRS] [CLIENTS] [DURATION]
#   scripts/bench-ab.sh HEAD~1 3 64 15s
#   GOGC=400 PG=postgres://postgres@ DSN_PARAMS='&host=/var/run/postgresql' scripts/bench-ab.sh HEAD~1
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: scripts/bench-ab.sh REV [PAIRS] [CLIENTS] [DURATION]}
other=$(mktemp -d)
trap 'git worktree remove --force "$other" >/dev/null 2>&1 || rm -rf "$other"' EXIT
git worktree add --detach "$other" "$rev" >/dev/null 2>&1
(cd "$other" && go build -o /tmp/bsb-server-ab ./cmd/batteryswap)
go build -o /tmp/bsb-server ./cmd/batteryswap
label=$(git rev-parse --short "$rev")
for i in $(seq 1 "${2:-3}"); do
  for side in this "$label"; do
    bin=/tmp/bsb-server
    [ "$side" = this ] || bin=/tmp/bsb-server-ab
    row=$(SERVER_BIN=$bin scripts/bench-bookings.sh "${3:-64}" "${4:-15s}" | grep -E '^\| [0-9]')
    printf 'pair %d %-8s %s\n' "$i" "$side" "$row"
  done
done
