#!/usr/bin/env bash
# Samsa Connect throughput (a benchmark, not a test: numbers depend on the machine), against
# a throwaway release `samsa server` and a throwaway PostgreSQL (Debian's package), both on
# temp dirs and free loopback ports, removed on exit:
#   1. datagen source (pageviews, fixed seed) -> a topic         records/s
#   2. that topic -> JDBC sink (upsert by key, auto.create)     records/s
# PostgreSQL runs with its defaults, so fsync and synchronous_commit are on: every sink
# transaction (one per put of --batch-size records) waits for its WAL flush. Set PG_OPTS
# to change that, e.g. PG_OPTS='-c synchronous_commit=off'. As root, PostgreSQL runs as
# the postgres user (it refuses to run as root).
#   scripts/bench-connect.sh [RECORDS] [more `samsa bench connect` options, e.g. --tasks 2]
#   (RECORDS defaults to 1000000)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/samsa-target}"
n=1000000
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then n="$1"; shift; fi

pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[ -x "$pg_bin/pg_ctl" ] || { echo "bench-connect: PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl); scripts/setup-test.sh installs it" >&2; exit 1; }
cargo build --release --bin samsa -q
samsa="$CARGO_TARGET_DIR/release/samsa"

data="$(mktemp -d)"
chmod 755 "$data" # the postgres user goes through it to its own directory
server_pid=""
pg_started=""
as_pg=()
if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); fi
cleanup() {
  if [ -n "$pg_started" ]; then
    (cd "$data/pg" && "${as_pg[@]}" "$pg_bin/pg_ctl" stop -D "$data/pg/data" -m immediate -w >/dev/null 2>&1) || true
  fi
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$data"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Samsa.
"$samsa" server --data-dir "$data/log" --listen 127.0.0.1:0 --no-http >"$data/server.out" 2>"$data/server.log" &
server_pid=$!
for _ in $(seq 100); do grep -qs 'samsa listening on' "$data/server.out" && break; sleep 0.1; done
addr="$(sed -n 's/^samsa listening on //p' "$data/server.out")"
[ -n "$addr" ] || { echo "bench-connect: samsa server did not start:" >&2; cat "$data/server.log" >&2; exit 1; }

# PostgreSQL: a fresh cluster, trusting local connections.
mkdir "$data/pg"
[ ${#as_pg[@]} -eq 0 ] || chown postgres:postgres "$data/pg"
pg_port="$(free_port)"
(cd "$data/pg" && "${as_pg[@]}" "$pg_bin/initdb" -D "$data/pg/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >/dev/null)
pg_started=1
(cd "$data/pg" && "${as_pg[@]}" "$pg_bin/pg_ctl" start -D "$data/pg/data" -w -t 60 -l "$data/pg/postgres.log" \
  -o "-p $pg_port -k $data/pg -c listen_addresses=127.0.0.1 ${PG_OPTS:-}" >/dev/null) ||
  { echo "bench-connect: PostgreSQL did not start:" >&2; cat "$data/pg/postgres.log" >&2; exit 1; }
"$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres bench

echo "== samsa bench connect: $n records; samsa server $addr, PostgreSQL $("$pg_bin/postgres" --version | grep -o '[0-9][0-9.]*' | head -n 1) on 127.0.0.1:$pg_port${PG_OPTS:+ ($PG_OPTS)}"
"$samsa" bench connect --bootstrap "$addr" --records "$n" --postgres "jdbc:postgresql://127.0.0.1:$pg_port/bench" "$@"
