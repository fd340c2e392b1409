#!/usr/bin/env bash
# Runs every test. Checks (and, where it can, starts) the servers the tests need first;
# a server that cannot be reached is a failure with a clear message, never a skip.
#
#   scripts/test.sh            # all tests
#   scripts/test.sh --lint     # also feature checks, clippy -D warnings, rustfmt --check, cargo doc
#   scripts/test.sh --lint-unpinned  # the feature checks without pinned dependencies (slow)
#   scripts/test.sh -- CMD...  # start the servers, then run CMD instead (one test, say:
#                              # scripts/test.sh -- cargo test -p dbmanager --all-features --test integration -- hardening::)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> [%ss] %s\n' "$SECONDS" "$*"; }

# A clean build in CI: incremental compilation only costs there, and debug line tables
# only slow the link (a panic still names its file and line).
if [ -n "${CI:-}" ]; then
  export CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=false
fi
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

# The MongoDB test server: SecantusDB, a MongoDB-wire-compatible server from PyPI (GPL,
# used over a socket only). Installed into .venv/secantus, pinned; only pre-releases exist.
SECANTUS_VERSION=0.7.0b3
SECANTUS_VENV=.venv/secantus
# The SCRAM user the auth instance gets (tests/support/mongo.rs has the same values).
MONGO_USER=dbm_app
MONGO_PASSWORD='m0ng@:p/w?#%&x y'

ensure_build_deps() {
  # mssql-mock-tds (the SQL Server test server) links OpenSSL; the strict-TLS test makes a
  # self-signed certificate with the openssl tool.
  if pkg-config --exists openssl 2>/dev/null && command -v openssl >/dev/null; then return 0; fi
  say "installing libssl-dev, pkg-config and openssl (needed by the SQL Server test server)"
  if command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev pkg-config openssl >/dev/null \
      || die "could not install libssl-dev, pkg-config and openssl"
  else
    die "libssl-dev (OpenSSL headers), pkg-config and openssl are required"
  fi
}

APT_UPDATED=""
apt_install() { # package...; runs `apt-get update` once per run
  command -v apt-get >/dev/null || return 1
  if [ -z "$APT_UPDATED" ]; then apt-get update -qq || return 1; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_prometheus() {
  # The observability test runs a real Prometheus (the Debian package) and checks the
  # alert rules with promtool. Not started as a service: the test starts its own.
  if command -v prometheus >/dev/null && command -v promtool >/dev/null; then return 0; fi
  say "installing prometheus (Debian package: prometheus and promtool)"
  apt_install prometheus || die "could not install the prometheus package (needed by tests/prometheus.rs)"
}

ensure_pgbouncer() {
  # tests/scaling runs its own PgBouncers (Debian package) in front of the shared
  # PostgreSQL; the packaged service is not used.
  if [ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null; then return 0; fi
  say "installing pgbouncer (Debian package)"
  apt_install pgbouncer || die "could not install the pgbouncer package (needed by tests/scaling)"
}

ensure_patroni() {
  # tests/scaling/patroni.rs runs a real Patroni cluster: its own etcd, two PostgreSQL
  # nodes under Patroni and an HAProxy, on free ports. The packaged services are not used
  # (Debian's policy keeps them from starting in a container; nothing here starts them).
  local missing=()
  command -v patroni >/dev/null || missing+=(patroni)
  command -v etcd >/dev/null || missing+=(etcd-server)
  command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing ${missing[*]} (Debian packages, for the Patroni cluster test)"
  apt_install "${missing[@]}" || die "could not install ${missing[*]} (needed by tests/scaling/patroni.rs)"
}

ensure_secantus() {
  local installed=""
  if [ -x "$SECANTUS_VENV/bin/secantusd-py" ]; then
    # Captured first: `pip show | grep -q` under pipefail fails when grep exits early.
    installed=$("$SECANTUS_VENV/bin/python" -m pip show secantusdb 2>/dev/null || true)
  fi
  if printf '%s\n' "$installed" | grep -qx "Version: $SECANTUS_VERSION"; then
    return 0
  fi
  command -v python3 >/dev/null || die "python3 is required to install the MongoDB test server (secantusdb)"
  say "installing secantusdb==$SECANTUS_VERSION into $SECANTUS_VENV"
  python3 -m venv "$SECANTUS_VENV" || die "python3 -m venv failed (install python3-venv)"
  "$SECANTUS_VENV/bin/python" -m pip install -q --disable-pip-version-check "secantusdb==$SECANTUS_VERSION" \
    || die "could not install secantusdb==$SECANTUS_VERSION from PyPI"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

MONGO_PIDS=()
MONGO_DIRS=()
stop_mongo() {
  for pid in "${MONGO_PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
  for pid in "${MONGO_PIDS[@]:-}"; do [ -n "$pid" ] && wait "$pid" 2>/dev/null || true; done
  for d in "${MONGO_DIRS[@]:-}"; do [ -n "$d" ] && rm -rf "$d"; done
}
trap stop_mongo EXIT

start_secantus() { # port storage [--auth]; sets LAST_PID
  mkdir -p target
  "$SECANTUS_VENV/bin/secantusd-py" --host 127.0.0.1 --port "$1" --storage-path "$2" ${3:-} \
    >>"target/secantus-$1.log" 2>&1 &
  LAST_PID=$!
  MONGO_PIDS+=("$LAST_PID")
  wait_port "$1" 30 || die "the MongoDB test server did not start on port $1 (see target/secantus-$1.log)"
}

start_mongo_servers() {
  local plain_port auth_port dir
  plain_port=$(free_port)
  start_secantus "$plain_port" :memory:
  export DBMANAGER_TEST_MONGO_URL="mongodb://127.0.0.1:$plain_port/?directConnection=true"

  # The auth instance: create the user without auth, then restart with --auth.
  auth_port=$(free_port)
  dir=$(mktemp -d)
  MONGO_DIRS+=("$dir")
  start_secantus "$auth_port" "$dir"
  MONGO_PORT=$auth_port MONGO_USER=$MONGO_USER MONGO_PASSWORD=$MONGO_PASSWORD \
    "$SECANTUS_VENV/bin/python" - <<'PY' || die "could not create the MongoDB test user"
import os
from pymongo import MongoClient
c = MongoClient(f"mongodb://127.0.0.1:{os.environ['MONGO_PORT']}/?directConnection=true",
                serverSelectionTimeoutMS=10000)
c.admin.command("createUser", os.environ["MONGO_USER"], pwd=os.environ["MONGO_PASSWORD"],
                roles=[{"role": "root", "db": "admin"}])
PY
  kill "$LAST_PID" && wait "$LAST_PID" 2>/dev/null || true
  for _ in $(seq 1 50); do tcp_open "$auth_port" || break; sleep 0.2; done
  start_secantus "$auth_port" "$dir" --auth
  export DBMANAGER_TEST_MONGO_AUTH_ADDR="127.0.0.1:$auth_port"
  # Throwaway instances (kill and restart tests) use the same binary.
  DBMANAGER_SECANTUSD="$(pwd)/$SECANTUS_VENV/bin/secantusd-py"
  export DBMANAGER_SECANTUSD
  say "MongoDB test servers: $DBMANAGER_TEST_MONGO_URL and $DBMANAGER_TEST_MONGO_AUTH_ADDR (auth)"
}

ensure_postgres
ensure_mariadb
ensure_build_deps
ensure_prometheus
ensure_pgbouncer
ensure_patroni
say "promtool check rules docs/prometheus/alerts.yml"
promtool check rules docs/prometheus/alerts.yml >/dev/null || die "docs/prometheus/alerts.yml does not pass promtool check rules"
ensure_secantus
start_mongo_servers
# Throwaway PostgreSQL instances in the tests need the server binaries.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
  || die "PostgreSQL server binaries (initdb, pg_ctl) are required under /usr/lib/postgresql/*/bin"

if [ "${1:-}" = "--" ]; then
  shift
  say "$*"
  "$@"
  exit $?
fi

# `cargo check -p dbmanager "$@"`, failing on any warning (without RUSTFLAGS, which would
# rebuild every dependency).
check_clean() {
  local out
  out=$(cargo check -q -p dbmanager "$@" 2>&1) || { printf '%s\n' "$out"; die "cargo check $* failed"; }
  if printf '%s\n' "$out" | grep -q '^warning'; then
    printf '%s\n' "$out"
    die "cargo check $* has warnings"
  fi
}

# The feature combinations a service may build, read from dbmanager/Cargo.toml so that a
# new engine is checked without an edit here: none at all; each engine alone (a feature
# that forwards to the providers crate's feature of the same name); each view with each
# sqlx engine it serves; the rest of `[package.metadata.feature-checks]`.
feature_combos() {
  python3 - <<'PY'
import tomllib
manifest = tomllib.load(open("dbmanager/Cargo.toml", "rb"))
features = manifest["features"]
checks = manifest["package"]["metadata"]["feature-checks"]
views = checks["views"]
engines = [f for f, on in features.items()
           if f"dbmanager-providers/{f}" in on and f not in views]
sqlx_engines = [f for f in engines if any(x.startswith("sqlx/") for x in features[f])]
combos = [""] + engines
combos += [f"{v},{e}" for v in views for e in sqlx_engines]
combos += [f"{f},{checks['with']}" for f in checks["with-an-engine"]]
combos += checks["alone"]
print("\n".join(combos))
PY
}

# The lint step: clippy -D warnings, cargo doc with warnings as errors, rustfmt, and each
# feature combination (a check of our two crates each, the dependencies pinned to what
# clippy checked them with: scripts/feature-check.py says why and what that leaves out).
# With --lint it runs beside the tests, in the build's target directory (its build
# scripts and proc-macros are shared): the tests run from their binaries, without cargo,
# so cargo's lock on the directory is free for the lint. At the lowest CPU priority: the
# tests mostly wait on servers, and some measure time.
lint() {
  say "cargo test --doc (the doc tests need cargo, so they run here)"
  cargo test -q --doc --workspace --all-features --exclude dbmanager-charts
  say "cargo clippy --workspace --all-targets --all-features -- -D warnings"
  cargo clippy -q --workspace --all-targets --all-features -- -D warnings
  say "cargo doc --no-deps, every feature (warnings are errors; dependencies as clippy checked them)"
  python3 scripts/feature-check.py ALL --doc
  say "cargo fmt --all -- --check"
  cargo fmt --all -- --check
  # The crates as they would be published (metadata, the files they carry); their build
  # is the default-features check below.
  say "cargo package -p dbmanager-providers -p dbmanager --no-verify"
  cargo package -q -p dbmanager-providers -p dbmanager --no-verify
  local combos combo_list
  combos=$(feature_combos) || die "could not read the feature combinations from dbmanager/Cargo.toml"
  mapfile -t combo_list <<< "$combos"
  say "feature checks, side by side in one cargo run: ${combo_list[*]@Q} and the default features"
  python3 scripts/feature-check.py "${combo_list[@]}" DEFAULT
  say "lint done"
}

# The same checks without the pin: every dependency resolved anew for each combination.
lint_unpinned() {
  local combos
  combos=$(feature_combos) || die "could not read the feature combinations from dbmanager/Cargo.toml"
  while IFS= read -r features; do
    say "cargo check -p dbmanager --no-default-features --features '$features'"
    check_clean --no-default-features --features "$features"
  done <<< "$combos"
}

if [ "${1:-}" = "--lint-unpinned" ]; then
  lint_unpinned
  exit 0
fi

run_examples() { # runner: how to start an example (`cargo run ... --example` or a binary path prefix)
  say "example: PostgreSQL and MongoDB from one file (examples/service.yaml)"
  MONGO_URL="$DBMANAGER_TEST_MONGO_URL" "$@" pg_and_mongo
  say "example: custom_provider (a provider of the service's own, pooled and supervised)"
  "$@" custom_provider
  say "example: keyed_devices (one pool per device, created on first use, closed when idle)"
  "$@" keyed_devices
  for view in sqlx_view sea_orm_view diesel_view; do
    say "example: $view (PostgreSQL)"
    "$@" "$view"
  done
}

cargo_example() { cargo run -q -p dbmanager --all-features --example "$1"; }
built_example() { "target/debug/examples/$1"; }

if [ "${1:-}" != "--lint" ]; then
  say "cargo test --workspace --all-features --exclude dbmanager-charts"
  cargo test --workspace --all-features --exclude dbmanager-charts
  run_examples cargo_example
  say "done"
  exit 0
fi

# tools/charts (the renderer of docs/observability.md's charts) has no tests; clippy
# checks it under --lint, and scripts/charts.sh runs it.
mkdir -p target
say "cargo test --no-run (the build: every test binary and example)"
cargo test -q --workspace --all-features --exclude dbmanager-charts --no-run \
  --message-format=json-render-diagnostics > target/test-build.json
# Each test binary, with the directory cargo would run it in (its package's).
python3 - > target/test-binaries.txt <<'PY' || die "could not read the test binaries from target/test-build.json"
import json, os
for line in open("target/test-build.json"):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(os.path.dirname(m["manifest_path"]) + "\t" + m["executable"])
PY

( renice -n 19 "$BASHPID" >/dev/null; lint ) > target/lint.log 2>&1 &
lint_pid=$!
say "lint started beside the tests, at the lowest priority (target/lint.log)"
# A failed test ends the script: the lint (and the cargo it runs) ends with it.
trap 'pkill -TERM -P "$lint_pid" 2>/dev/null; kill "$lint_pid" 2>/dev/null; stop_mongo' EXIT

while IFS=$'\t' read -r dir exe; do
  say "test binary: ${exe#"$PWD"/} (in ${dir#"$PWD"/})"
  (cd "$dir" && "$exe") || die "tests failed: $exe"
done < target/test-binaries.txt
run_examples built_example

say "waiting for the lint"
lint_ok=0
wait "$lint_pid" || lint_ok=$?
trap stop_mongo EXIT
cat target/lint.log
[ "$lint_ok" -eq 0 ] || die "the lint step failed (above)"
say "done"
