#!/bin/bash
# Interleaved side-by-side runs of benches/cpu_per_saga.sh: every round runs each binary once,
# in the order given, so slow drifts of a noisy machine hit them alike. A "binary" may be a
# wrapper script that adds flags (e.g. `exec saga_modes --history-limit 0 "$@"`).
# Usage: benches/rounds.sh <memory|nats|rabbitmq> <sync|async|throttled> <rounds> <seconds> <label>=<binary>...
#   e.g. benches/isolated.sh benches/rounds.sh nats sync 7 3 A=/tmp/bench_A B=/tmp/bench_B
set -euo pipefail
here=$(dirname "$0")
tr=$1; mode=$2; rounds=$3; secs=$4; shift 4
for r in $(seq "$rounds"); do
  for lb in "$@"; do
    label=${lb%%=*}; bin=${lb#*=}
    echo "round $r $label: $("$here/cpu_per_saga.sh" "$bin" "$tr" "$mode" "$secs" | tail -1)"
  done
done
