#!/usr/bin/env bash
# Benchmarks against a release `samsa server` on a temp dir (not tests: numbers depend on
# the machine). 1 KiB records, one partition, acks=1, in one run:
#   1. kcat (librdkafka) producing N records from a file  -> the reference
#   2. `samsa bench produce` (Samsa's own client), same records and settings
#   3. `samsa bench consume`, and confluent-kafka produce/consume (scripts/bench_client.py)
#   4. `samsa bench e2e` at 10,000 records/s for 10 s: produce-to-consume latency
#   scripts/bench.sh [RECORDS]   (default 500000)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/samsa-target}"
n="${1:-500000}"
bash scripts/setup-test.sh >/dev/null
cargo build --release --bin samsa -q
samsa="$CARGO_TARGET_DIR/release/samsa"
data="$(mktemp -d)"
out="$(mktemp)"
"$samsa" server --data-dir "$data/log" --listen 127.0.0.1:0 >"$out" 2>"$data/server.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data" "$out"' EXIT
for _ in $(seq 100); do grep -q 'samsa listening on' "$out" && break; sleep 0.1; done
addr="$(sed -n 's/^samsa listening on //p' "$out")"
[ -n "$addr" ] || { echo "bench: server did not start:"; cat "$data/server.log"; exit 1; }

"$samsa" topic create kcat-bench --bootstrap "$addr" --partitions 1 >/dev/null
# 1023 bytes of text plus the newline kcat strips: 1 KiB records, as samsa bench sends.
awk -v n="$n" 'BEGIN { s = sprintf("%1023s", ""); gsub(/ /, "x", s); for (i = 0; i < n; i++) print s }' >"$data/records"
echo "== kcat ($(kcat -V 2>&1 | grep -o 'librdkafka [0-9.]*')): $n records of 1024 B, 1 partition, acks=1"
start=$(date +%s.%N)
kcat -P -b "$addr" -t kcat-bench -X acks=1 -X linger.ms=5 -X batch.size=1000000 -X queue.buffering.max.messages=1000000 -l "$data/records"
end=$(date +%s.%N)
python3 - "$start" "$end" "$n" <<'PY'
import sys
s, e, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
t = e - s
print(f"records/s  MB/s\n{n / t:<10.0f} {n * 1024 / t / 1e6:.1f}")
PY
echo
echo "== samsa bench produce"
"$samsa" bench produce --bootstrap "$addr" --topic samsa-bench --count "$n" --acks 1 2>/dev/null
echo
echo "== samsa bench consume"
"$samsa" bench consume --bootstrap "$addr" --topic samsa-bench --count "$n" 2>/dev/null
echo
echo "== confluent-kafka"
python3 scripts/bench_client.py "$addr" "$n"
echo
echo "== samsa bench e2e"
"$samsa" bench e2e --bootstrap "$addr" --topic e2e-bench --rate 10000 --duration-secs 10 2>/dev/null
