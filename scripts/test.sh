#!/usr/bin/env bash
# Runs Samsa's whole test suite: installs the test clients, builds the broker binary that the
# end-to-end tests start, then runs every crate's tests with cargo-nextest.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bash scripts/setup-test.sh

# Keep build output outside the clone (DESIGN.md section 11).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/samsa-target}"
if [ "${CI:-}" = "true" ]; then
  export CARGO_INCREMENTAL=0
fi

# The Python build below reuses this build only if both resolve the same features.
python3 scripts/python-features.py

echo "test: cargo build --bin samsa (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
cargo build --bin samsa

echo "test: cargo nextest run --workspace"
status=0
cargo nextest run --workspace --no-fail-fast || status=$?

# The Python package: built with the workspace's dev profile into the same target dir, so
# it reuses `cargo build --bin samsa` above (same features, see python-features.py), then
# its pytest suite (python/tests).
venv="${SAMSA_VENV:-$HOME/.cache/samsa-venv}"
echo "test: pip install ./python into $venv"
export MATURIN_PEP517_ARGS="--profile dev"
PATH="$venv/bin:$PATH" "$venv/bin/python" -m pip install -q --no-build-isolation --force-reinstall --no-deps ./python
echo "test: pytest python/tests"
(cd python/tests && "$venv/bin/python" -m pytest -q) || status=$?
exit $status
