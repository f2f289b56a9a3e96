#!/usr/bin/env bash
# Installs everything Samsa's test suite needs on a fresh Debian machine (run as root).
# Idempotent and quick when everything is already there: each step checks before it installs.
#   - Debian packages: kcat (librdkafka CLI), libclang-dev (bindgen), python3/pip, node/npm,
#     postgresql (the PostgreSQL connector tests start their own server from it)
#   - Python clients pinned in tests/clients/requirements.txt (confluent-kafka, kafka-python)
#   - kafkajs pinned in tests/clients/js/package-lock.json (npm ci)
#   - a virtual environment for the Python package's tests ($SAMSA_VENV, default
#     ~/.cache/samsa-venv) with python/tests/requirements.txt
#   - cargo-nextest (preinstalled on the project's machines; built from crates.io otherwise)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

say() { echo "setup-test: $*"; }

# --- Debian packages --------------------------------------------------------------------
apt_missing=()
command -v kcat >/dev/null 2>&1 || apt_missing+=(kcat)
dpkg -s libclang-dev >/dev/null 2>&1 || apt_missing+=(libclang-dev)
command -v python3 >/dev/null 2>&1 || apt_missing+=(python3 python3-pip)
command -v node >/dev/null 2>&1 || apt_missing+=(nodejs)
command -v npm >/dev/null 2>&1 || apt_missing+=(npm)
compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || apt_missing+=(postgresql)
command -v openssl >/dev/null 2>&1 || apt_missing+=(openssl)
if [ ${#apt_missing[@]} -gt 0 ]; then
  say "apt-get install ${apt_missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${apt_missing[@]}"
else
  say "Debian packages present (kcat, libclang-dev, python3, node, npm, postgresql)"
fi

# --- Python clients ---------------------------------------------------------------------
req="tests/clients/requirements.txt"
if python3 - "$req" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
ok = True
for line in open(sys.argv[1]):
    line = line.split('#', 1)[0].strip()
    if not line:
        continue
    name, want = line.split('==')
    try:
        ok = ok and version(name) == want
    except PackageNotFoundError:
        ok = False
sys.exit(0 if ok else 1)
PY
then
  say "Python clients present ($(grep -v '^#' "$req" | tr '\n' ' '))"
else
  say "pip install -r $req"
  if ! python3 -m pip install -q -r "$req"; then
    # Debian's system Python refuses pip installs unless told otherwise (PEP 668).
    python3 -m pip install -q --break-system-packages -r "$req"
  fi
fi

# --- kafkajs ----------------------------------------------------------------------------
js="tests/clients/js"
want_js=$(node -e "console.log(require('./$js/package-lock.json').packages['node_modules/kafkajs'].version)")
have_js=$(node -e "try{console.log(require('./$js/node_modules/kafkajs/package.json').version)}catch(e){console.log('none')}")
if [ "$want_js" = "$have_js" ]; then
  say "kafkajs $have_js present"
else
  say "npm ci in $js (kafkajs $want_js)"
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
fi

# --- the Python package's test environment -------------------------------------------
# A virtual environment outside the clone with pytest, pyarrow, pandas, confluent-kafka and
# maturin (python/tests/requirements.txt); scripts/test.sh installs ./python into it.
venv="${SAMSA_VENV:-$HOME/.cache/samsa-venv}"
preq="python/tests/requirements.txt"
if [ ! -x "$venv/bin/python" ]; then
  say "python3 -m venv $venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's python3 needs its venv package for this.
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q python3-venv
    python3 -m venv "$venv"
  fi
fi
if cmp -s "$preq" "$venv/.samsa-requirements" 2>/dev/null; then
  say "Python test environment present ($venv)"
else
  say "pip install -r $preq into $venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -r "$preq"
  cp "$preq" "$venv/.samsa-requirements"
fi

# --- cargo-nextest ----------------------------------------------------------------------
if cargo nextest --version >/dev/null 2>&1; then
  say "cargo-nextest present"
else
  say "cargo install cargo-nextest (this takes a few minutes)"
  cargo install --locked cargo-nextest
fi

say "done"
