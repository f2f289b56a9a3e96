#!/usr/bin/env bash
# Replication cost, in one run on one machine: three release `samsa server` nodes on
# loopback, then `samsa bench produce` (1 KiB records, 6 partitions) twice:
#   replication factor 3 with acks=all  vs  replication factor 1 with acks=1.
#   scripts/bench-cluster.sh [RECORDS]   (default 300000)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/samsa-target}"
n="${1:-300000}"
cargo build --release --bin samsa -q
samsa="$CARGO_TARGET_DIR/release/samsa"
data="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kp=(); cp=()
for i in 1 2 3; do kp+=("$(free_port)"); cp+=("$(free_port)"); done
voters="1@127.0.0.1:${cp[0]},2@127.0.0.1:${cp[1]},3@127.0.0.1:${cp[2]}"
for i in 1 2 3; do
  "$samsa" server --node-id "$i" --data-dir "$data/n$i" --listen "127.0.0.1:${kp[$((i-1))]}" \
    --controller-listen "127.0.0.1:${cp[$((i-1))]}" --voters "$voters" >"$data/out$i" 2>"$data/log$i" &
  pids+=($!)
done
boot="127.0.0.1:${kp[0]},127.0.0.1:${kp[1]},127.0.0.1:${kp[2]}"
for _ in $(seq 100); do
  "$samsa" cluster status --bootstrap "$boot" 2>/dev/null | grep -q 'live, controller' && \
    [ "$("$samsa" cluster status --bootstrap "$boot" | grep -c ' live')" -ge 3 ] && break
  sleep 0.2
done
"$samsa" topic create rf3 --bootstrap "$boot" --partitions 6 --replication-factor 3 --config min.insync.replicas=2 >/dev/null
"$samsa" topic create rf1 --bootstrap "$boot" --partitions 6 --replication-factor 1 >/dev/null
echo "== replication factor 3, acks=all, min.insync.replicas=2: $n records of 1024 B, 6 partitions"
"$samsa" bench produce --bootstrap "$boot" --topic rf3 --partitions 6 --count "$n" --acks all
echo
echo "== replication factor 1, acks=1: same records"
"$samsa" bench produce --bootstrap "$boot" --topic rf1 --partitions 6 --count "$n" --acks 1
