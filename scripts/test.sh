#!/usr/bin/env bash
# Runs every test. Checks (and, where it can, starts) the servers the tests need first;
# a server that cannot be reached is a failure with a clear message, never a skip.
#
#   scripts/test.sh            # all tests
#   scripts/test.sh --lint     # also clippy -D warnings and rustfmt --check
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo is not installed (https://rustup.rs)"

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds
  for _ in $(seq 1 "$2"); do tcp_open "$1" && return 0; sleep 1; done
  return 1
}

ensure_postgres() {
  if tcp_open 5432; then return 0; fi
  say "PostgreSQL is not listening on 127.0.0.1:5432; trying to start it"
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  wait_port 5432 30 || die "PostgreSQL is required on 127.0.0.1:5432 (trust auth, database 'test') and could not be started"
}

ensure_mariadb() {
  if tcp_open 3306; then return 0; fi
  say "MariaDB is not listening on 127.0.0.1:3306; trying to start it"
  if [ -x /usr/sbin/mariadbd ]; then
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  fi
  wait_port 3306 30 || die "MariaDB is required on 127.0.0.1:3306 (root, empty password, database 'test') and could not be started"
}

ensure_postgres
ensure_mariadb
# Throwaway PostgreSQL instances in the tests need the server binaries.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
  || die "PostgreSQL server binaries (initdb, pg_ctl) are required under /usr/lib/postgresql/*/bin"

say "cargo test --workspace --all-features"
cargo test --workspace --all-features

if [ "${1:-}" = "--lint" ]; then
  say "cargo clippy --workspace --all-targets --all-features -- -D warnings"
  cargo clippy --workspace --all-targets --all-features -- -D warnings
  say "cargo fmt --all -- --check"
  cargo fmt --all -- --check
fi
