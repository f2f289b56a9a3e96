#!/usr/bin/env bash
# Samsa's first command: build and run a single-node server on a local data dir.
# Beyond the Rust toolchain, installs what is missing of: libclang-dev (bindgen, for the
# RocksDB that Samsa Streams bundles) and kcat (for the quickstart). Extra arguments go to
# `samsa server` (e.g. --listen 127.0.0.1:0).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/samsa-target}"

missing=()
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "run: apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  else
    echo "run: missing Debian packages ${missing[*]}; install them as root (sudo apt-get install ${missing[*]})" >&2
  fi
fi
echo "run: cargo build --release --bin samsa"
cargo build --release --bin samsa
bin="$CARGO_TARGET_DIR/release/samsa"
data="${SAMSA_DATA_DIR:-$root/samsa-data}"
cat <<TEXT
run: starting samsa server with data in $data (Ctrl-C stops it cleanly)
run: connect any Kafka client to the address printed below, e.g.
       echo 'hello' | kcat -b 127.0.0.1:9092 -P -t demo
       kcat -b 127.0.0.1:9092 -C -t demo -e -o beginning
run: SQL over topics: $bin sql   (the shell; the server answers on the http address below)
TEXT
exec "$bin" server --data-dir "$data" "$@"
