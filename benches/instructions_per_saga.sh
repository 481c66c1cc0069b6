#!/bin/bash
# Instructions per saga of the saga_modes process, counted by valgrind (callgrind) instead of
# timed: on this noisy 2-core VM the same binary's CPU time moves 20-40% between runs, while its
# instruction count moves by about 1%, so two builds or two settings can be compared to a few
# percent.
#
# Two runs of different lengths, each counted whole; the difference of their instructions over
# the difference of their sagas ("sagas run:" line) cancels the fixed costs (start-up,
# connections, the exporter, a wrapper script's shell), leaving the cost of one more saga.
# Threads run one at a time under valgrind, so the figure is that of a quiet machine.
#
# With COUNT_REDIS=1 (inside `ISOLATED_REDIS=0 benches/isolated.sh`, so that 127.0.0.1:6379 is
# free) each run also starts its own redis-server under valgrind and counts its instructions
# per saga too: the store's server-side cost (scripts, indexes, history).
#
# Usage: benches/instructions_per_saga.sh <binary or wrapper> <memory|nats|rabbitmq> <sync|async|throttled> [short_s] [long_s]
#   e.g. benches/isolated.sh benches/instructions_per_saga.sh target/release/deps/saga_modes-... nats sync
#        ISOLATED_REDIS=0 COUNT_REDIS=1 benches/isolated.sh benches/instructions_per_saga.sh ... nats sync
# OUT=<dir> keeps each run's callgrind profiles there (callgrind_annotate reads them).
set -euo pipefail
bin=$1; tr=$2; mode=$3; short=${4:-2}; long=${5:-6}
tmp=$(mktemp -d /tmp/sagaflow-instructions.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
collected() { awk '/Collected :/ {sum += $NF} END {print sum + 0}' "$@"; }
# One counted run of `$1` seconds: prints "<bench instructions> <sagas> <redis instructions>".
count() {
  local file=/dev/null redis_file=/dev/null redis_pid=
  if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"; file="$OUT/callgrind.$tr.$mode.$1s.%p"; redis_file="$OUT/redis.$tr.$mode.$1s.%p"
  fi
  if [ "${COUNT_REDIS:-}" = 1 ]; then
    valgrind --tool=callgrind --callgrind-out-file="$redis_file" --log-file="$tmp/redis.$1.log" \
      redis-server --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir "$tmp" \
      --logfile "$tmp/redis-server.log" &
    redis_pid=$!
    for _ in $(seq 100); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.2; done
  fi
  local out
  out=$(valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$file" \
    "$bin" --transports "$tr" --modes "$mode" --sagas 20 --duration "${1}s" --no-fault 2>&1)
  local redis_ir=0
  if [ -n "$redis_pid" ]; then
    redis-cli shutdown nosave >/dev/null 2>&1 || true
    wait "$redis_pid" || true
    redis_ir=$(collected "$tmp/redis.$1.log")
  fi
  local ir sagas
  ir=$(echo "$out" | collected)
  sagas=$(echo "$out" | awk '/^sagas run:/ {print $3}')
  if [ -z "$sagas" ] || [ "$ir" = 0 ]; then
    echo "no count from $bin ($1 s):" >&2
    echo "$out" | tail -20 >&2
    exit 1
  fi
  echo "$ir $sagas $redis_ir"
}
short_run=$(count "$short"); long_run=$(count "$long")
read -r ir_short sagas_short redis_short <<<"$short_run"
read -r ir_long sagas_long redis_long <<<"$long_run"
python3 -c "
d_sagas = $sagas_long - $sagas_short
bench = ($ir_long - $ir_short) / d_sagas
redis = ($redis_long - $redis_short) / d_sagas
extra = f' redis_instructions_per_saga={redis:.0f}' if '${COUNT_REDIS:-}' == '1' else ''
print(f'$tr $mode instructions_per_saga={bench:.0f}{extra} (runs of ${short}s and ${long}s: $sagas_short and $sagas_long sagas)')
"
