#!/usr/bin/env bash
# Produce throughput over TLS beside plaintext, in one run (a benchmark, not a test):
# a throwaway release `samsa server` with a PLAINTEXT and an SSL listener (a throwaway CA
# and server certificate from openssl), then `samsa bench produce` against each, same
# settings, and a table of the two.
#   scripts/bench-tls.sh [RECORDS] [more `samsa bench produce` options, e.g. --acks all]
#   (RECORDS defaults to 2000000 records of 100 bytes)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/samsa-target}"
n=2000000
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then n="$1"; shift; fi
command -v openssl >/dev/null || { echo "bench-tls: openssl is missing; scripts/setup-test.sh installs it" >&2; exit 1; }
cargo build --release --bin samsa -q
samsa="$CARGO_TARGET_DIR/release/samsa"

data="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$data"
}
trap cleanup EXIT

ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
(
  cd "$data"
  openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 2 -subj "/CN=bench CA" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\n' > server.ext
  openssl req "${ec[@]}" -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext 2>/dev/null
  printf 'security.protocol=SSL\nssl.ca.location=%s/ca.pem\n' "$data" > ssl.properties
)
"$samsa" server --data-dir "$data/server" --no-http --listen 127.0.0.1:0 --listen SSL://127.0.0.1:0 \
  --set "ssl.certificate.location=$data/server.pem" --set "ssl.key.location=$data/server.key" > "$data/out" 2> "$data/server.log" &
server_pid=$!
for _ in $(seq 1 100); do
  grep -q "samsa listener SSL on" "$data/out" 2>/dev/null && break
  sleep 0.1
done
plain="$(sed -n 's/^samsa listening on //p' "$data/out")"
tls="$(sed -n 's/^samsa listener SSL on //p' "$data/out")"
[ -n "$plain" ] && [ -n "$tls" ] || { echo "bench-tls: the server did not start:" >&2; cat "$data/server.log" >&2; exit 1; }

echo "bench-tls: $n records of 100 bytes per run; plaintext $plain, TLS $tls"
"$samsa" bench produce --bootstrap "$plain" --topic bench-plain --count "$n" --record-size 100 "$@" | tee "$data/plain.txt"
"$samsa" bench produce --bootstrap "$tls" --command-config "$data/ssl.properties" --topic bench-tls --count "$n" --record-size 100 "$@" | tee "$data/tls.txt"
echo
summary() { grep -A1 '^records/s' "$1" | tail -n 1; }
echo "listener   $(grep -m1 '^records/s' "$data/plain.txt")"
echo "PLAINTEXT  $(summary "$data/plain.txt")"
echo "SSL        $(summary "$data/tls.txt")"
