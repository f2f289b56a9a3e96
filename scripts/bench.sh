#!/usr/bin/env bash
# Throughput benchmark: a release `samsa server` on a temp dir, driven by confluent-kafka
# (librdkafka). 1 KiB records, one partition, acks=1. Prints a table of MB/s and records/s.
#   scripts/bench.sh [RECORDS]   (default 500000)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/samsa-target}"
bash scripts/setup-test.sh >/dev/null
cargo build --release --bin samsa -q
data="$(mktemp -d)"
out="$(mktemp)"
"$CARGO_TARGET_DIR/release/samsa" server --data-dir "$data" --listen 127.0.0.1:0 >"$out" 2>"$data.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data" "$data.log" "$out"' EXIT
for _ in $(seq 100); do grep -q 'samsa listening on' "$out" && break; sleep 0.1; done
addr="$(sed -n 's/^samsa listening on //p' "$out")"
[ -n "$addr" ] || { echo "bench: server did not start:"; cat "$data.log"; exit 1; }
python3 scripts/bench_client.py "$addr" "${1:-500000}"
