#!/usr/bin/env bash
# Samsa's first command: build, then `samsa quickstart`: a single-node server on a local
# data dir with a demo pipeline (datagen connectors, a windowed SQL join), its results
# refreshing in the terminal until Ctrl-C. A second run resumes.
# Beyond the Rust toolchain, installs what is missing of: libclang-dev (bindgen, for the
# RocksDB that Samsa Streams bundles) and kcat (for the quickstart). Extra arguments go to
# `samsa quickstart` (e.g. --listen 127.0.0.1:0, --duration 30s, --output json).
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
echo "run: $bin quickstart --data-dir $data (Ctrl-C stops it cleanly; \`$bin server\` runs a server alone)"
exec "$bin" quickstart --data-dir "$data" "$@"
