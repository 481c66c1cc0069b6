#!/bin/bash
# CPU per saga of one saga_modes run: the bench process plus redis-server and nats-server
# (their /proc/<pid>/stat ticks before and after), over the sagas it ran.
# Usage: benches/cpu_per_saga.sh <saga_modes binary> <memory|nats|rabbitmq> <sync|async|throttled> <seconds>
# REDIS_PID / NATS_PID name the servers to count (default: the first of each found); see
# benches/isolated.sh to run on private servers nobody else uses.
bin=$1; tr=$2; mode=$3; dur=$4
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
rp=${REDIS_PID:-$(pgrep -x redis-server | head -1)}; np=${NATS_PID:-$(pgrep -x nats-server | head -1)}
r0=$(ticks $rp); n0=$(ticks $np)
out=$( { /usr/bin/time -f "TIME %U %S" $bin --transports $tr --modes $mode --sagas 50 --duration ${dur}s --no-fault; } 2>&1 )
r1=$(ticks $rp); n1=$(ticks $np)
rate=$(echo "$out" | awk -v t="$tr" '$1 ~ t"\\+" && $2=="'$mode'" {print $4}')
# Every saga the run started (warm-ups and the sequential runs too); older binaries without the
# line: the throughput run's sagas plus the 50 sequential ones.
run=$(echo "$out" | awk '/^sagas run:/ {print $3}')
bt=$(echo "$out" | awk '/^TIME/ {print $2+$3}')
hz=$(getconf CLK_TCK)
python3 -c "
rate=$rate; dur=$dur; b=$bt; r=($r1-$r0)/$hz; n=($n1-$n0)/$hz
sagas=${run:-0} or rate*dur+50
tot = b + (r+n if '$tr'!='memory' else 0)
print(f'$tr $mode rate={rate} cpu_us_per_saga={tot/sagas*1e6:.1f} (bench {b/sagas*1e6:.1f}, redis {r/sagas*1e6:.1f}, nats {n/sagas*1e6:.1f})')
"
