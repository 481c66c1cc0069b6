#!/bin/bash
# One h2load run of HandleSyncBooking against the release booking example with --simulate:
# req/s, mean and max latency, and the server's and redis-server's CPU per saga.
# Needs h2load (apt-get install nghttp2-client), `cargo build --release --example booking`,
# and the gRPC body: printf '\x00\x00\x00\x00\x04\x08\x01\x10\x01' > /tmp/booking.grpc
# Usage: benches/h2load_sync.sh <label> [booking flags...]
label=$1; shift
prefix=h2load-$$-$RANDOM
RUST_LOG=warn "$(dirname "$0")/../target/release/examples/booking" --simulate --trace-ids generate \
  --listen 127.0.0.1:10500 --topic-prefix "$prefix" "$@" > /tmp/h2srv.log 2>&1 &
pid=$!
sleep 2
t0=$(awk '{print $14+$15}' /proc/$pid/stat); r0=$(awk '{print $14+$15}' /proc/$(pgrep -x redis-server | head -1)/stat)
out=$(h2load -D 15 -c 1 -m 50 -d /tmp/booking.grpc -H 'content-type: application/grpc' -H 'te: trailers' http://127.0.0.1:10500/pb.BookingService/HandleSyncBooking 2>&1)
t1=$(awk '{print $14+$15}' /proc/$pid/stat); r1=$(awk '{print $14+$15}' /proc/$(pgrep -x redis-server | head -1)/stat)
kill -INT $pid; wait $pid 2>/dev/null
# The run's records, when the store was Redis.
redis-cli --scan --pattern "$prefix*" | xargs -r redis-cli unlink > /dev/null
reqs=$(echo "$out" | awk '/^requests:/ {print $8}'); rps=$(echo "$out" | awk '/^finished in/ {print $4}')
mean=$(echo "$out" | awk '/^time for request:/ {print $6}'); max=$(echo "$out" | awk '/^time for request:/ {print $5}')
python3 -c "
hz=100; reqs=$reqs
print(f'$label: {float(\"$rps\"):.0f} req/s, mean $mean, max $max, succeeded {reqs}, server CPU {($t1-$t0)/hz/reqs*1e6:.0f} us/saga, redis CPU {($r1-$r0)/hz/reqs*1e6:.0f} us/saga, load $(cut -d' ' -f1 /proc/loadavg)')
"
