#!/bin/bash
# Runs a command on private Redis and NATS servers in a network namespace of its own, so that
# nothing else on the machine (tests, other load) touches the servers it measures: inside
# the namespace they listen on the default ports (127.0.0.1:6379, :4222), which the benches
# use. REDIS_PID and NATS_PID are exported for benches/cpu_per_saga.sh. Needs root (unshare)
# and redis-server + nats-server on the PATH. Everything started is stopped at the end.
#
# Usage: benches/isolated.sh <command> [args...]
#   e.g. benches/isolated.sh benches/cpu_per_saga.sh target/release/deps/saga_modes-... nats sync 3
set -euo pipefail
if [ "${SAGAFLOW_ISOLATED:-}" != "1" ]; then
  exec unshare --net env SAGAFLOW_ISOLATED=1 "$0" "$@"
fi
ip link set lo up
dir=$(mktemp -d /tmp/sagaflow-isolated.XXXXXX)
export REDIS_PID=
# ISOLATED_REDIS=0: no Redis here (the command starts its own, e.g. under valgrind).
if [ "${ISOLATED_REDIS:-1}" = 1 ]; then
  redis-server --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir "$dir" \
    --logfile "$dir/redis.log" &
  REDIS_PID=$!
fi
nats-server -a 127.0.0.1 -p 4222 -js -sd "$dir/nats" -l "$dir/nats.log" &
export NATS_PID=$!
cleanup() { kill $REDIS_PID "$NATS_PID" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 50); do
  if { [ -z "$REDIS_PID" ] || redis-cli -p 6379 ping >/dev/null 2>&1; } &&
    (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
    break
  fi
  sleep 0.1
done
"$@"
