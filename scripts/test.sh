#!/usr/bin/env bash
# Runs every check DRC's CI runs, on a fresh Debian machine or a developer's:
#   1. installs (apt) the servers and tools the tests start, if missing;
#   2. cargo fmt --check, 3. cargo clippy -D warnings, 4. the test suite.
#
# Run as root or as a user with sudo. The tests start their own throwaway
# servers on free ports in temp dirs; they never use a system service, so a
# mariadb or postgresql service that apt starts is harmless.
#
# Skipped tests: a test whose server binary is missing prints
# "SKIPPED: <test>: <reason>" to stderr, which the runners hide for passing
# tests; the harness also appends that line to the file named by
# $DRC_TEST_SKIP_LOG, and this script lists them at the end.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() {
    printf '\n==== %s ====\n' "$*"
}

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi

# command -v, also looking in the sbin directories a non-root $PATH may lack.
have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/local/sbin/$1" ]
}

step "system packages"
missing=()
if ! have mariadbd || ! have mariadb-install-db; then
    missing+=(mariadb-server mariadb-client)
elif ! have mariadb; then
    missing+=(mariadb-client)
fi
have protoc || missing+=(protobuf-compiler)
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || missing+=(postgresql)
have nats-server || missing+=(nats-server)

if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}"
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${missing[@]}"
else
    echo "all present"
fi

step "toolchain"
cargo --version
rustc --version

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "tests"
DRC_TEST_SKIP_LOG="$(mktemp)"
export DRC_TEST_SKIP_LOG
trap 'rm -f "$DRC_TEST_SKIP_LOG"' EXIT
status=0
if cargo nextest --version >/dev/null 2>&1; then
    echo "runner: cargo nextest"
    cargo nextest run --workspace --no-fail-fast --failure-output final || status=$?
else
    echo "runner: cargo test (cargo-nextest is not installed)"
    cargo test --workspace --no-fail-fast || status=$?
fi

step "skipped tests"
if [ -s "$DRC_TEST_SKIP_LOG" ]; then
    sort -u "$DRC_TEST_SKIP_LOG"
else
    echo "none"
fi

if [ "$status" -ne 0 ]; then
    step "FAILED (tests exited with status $status)"
    exit "$status"
fi
step "all checks passed"
