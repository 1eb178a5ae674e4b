#!/usr/bin/env bash
# The two-region demo: two MariaDB servers (regions a and b), both taking
# writes, kept identical by DRC.
#
#   scripts/demo.sh
#
# 1. Installs what is missing (apt: mariadb-server, mariadb-client,
#    protobuf-compiler, iproute2), builds drc, the WAN emulator and the load
#    tool in release mode.
# 2. Starts a MariaDB server and a `drc run` daemon per region. The relays
#    talk mutual TLS (certificates from `drc tls init`). When the machine
#    allows it (root, /dev/net/tun, network namespaces), each region lives in
#    its own network namespace and the regions are joined by the WAN emulator:
#    40 ms each way, 1% loss each way. Otherwise everything runs on loopback,
#    and the script says so.
# 3. Runs a write load on both regions for DEMO_SECONDS (default 30) at
#    DEMO_RATE transactions/s per region (default 100): each region inserts
#    into its own key range of shop.orders, and both update the shared
#    shop.stock rows, where concurrent updates of a row conflict. Region b's
#    applier takes region a's version of a conflicting row
#    (conflict_policy = "overwrite"), region a's keeps its own ("ignore"), so
#    both settle on region a's. Prints throughput and lag each way every
#    second.
# 4. Stops the load, waits until both regions hold every row, runs
#    `drc verify` both ways, prints `drc status` of each region and a summary
#    (transactions each way, p50/p99/max lag, conflicts), and ends with
#    `demo: regions identical` (exit 0), or says what differs (exit 1).
#    Leaves nothing running.
#
# Settings (environment): DEMO_SECONDS, DEMO_RATE, DEMO_KEEP=1 (keep the
# work directory), DEMO_LOOPBACK=1 (skip the WAN emulator).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
SECONDS_LOAD="${DEMO_SECONDS:-30}"
RATE="${DEMO_RATE:-100}"
A_IP=10.78.0.1
B_IP=10.78.0.2
LINK="drcdemo$$"

say() { printf 'demo: %s\n' "$*"; }
die() { printf 'demo: FAILED: %s\n' "$*" >&2; exit 1; }

SUDO=()
[ "$(id -u)" -eq 0 ] || SUDO=(sudo)
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
bin() { command -v "$1" 2>/dev/null || echo "/usr/sbin/$1"; }

# --- 1. what it needs ---------------------------------------------------------
missing=()
{ have mariadbd && have mariadb-install-db; } || missing+=(mariadb-server)
have mariadb || missing+=(mariadb-client)
have protoc || missing+=(protobuf-compiler)
have ip || missing+=(iproute2)
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 ||
    die "cargo is missing: install a Rust toolchain (rustup, Rust 1.89 or newer), then run this again"
say "building (release): drc, wanem, demo-load"
cargo build --release -q -p drc -p drc-wanem -p drc-demo-load || die "cargo build --release"
DRC="$ROOT/target/release/drc"
WANEM="$ROOT/target/release/wanem"
LOAD="$ROOT/target/release/demo-load"

WORK="$(mktemp -d -t drc-demo.XXXXXX)"
PIDS=()
cleanup() {
    local status=$? p
    trap - EXIT INT TERM
    for ((p = ${#PIDS[@]} - 1; p >= 0; p--)); do
        kill -TERM "${PIDS[p]}" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    ip netns del "$LINK-a" 2>/dev/null || true
    ip netns del "$LINK-b" 2>/dev/null || true
    if [ "${DEMO_KEEP:-0}" = 1 ]; then
        say "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 2. two regions -----------------------------------------------------------
WAN=0
if [ "${DEMO_LOOPBACK:-0}" != 1 ] && [ "$(id -u)" -eq 0 ] && [ -c /dev/net/tun ] &&
    ip netns add "$LINK-probe" 2>/dev/null; then
    ip netns del "$LINK-probe"
    WAN=1
fi

if [ "$WAN" = 1 ]; then
    "$WANEM" up --name "$LINK" --a-addr "$A_IP/30" --b-addr "$B_IP/30" \
        --delay-ms 40 --loss-pct 1 --rate-mbit 100 --congctl bbr \
        --control "$WORK/wanem.sock" >"$WORK/wanem.out" 2>"$WORK/wanem.err" &
    PIDS+=($!)
    for _ in $(seq 300); do grep -q '^wanem: ready' "$WORK/wanem.out" 2>/dev/null && break; sleep 0.1; done
    grep -q '^wanem: ready' "$WORK/wanem.out" || { cat "$WORK/wanem.err" >&2; die "the WAN emulator did not start"; }
    say "link: WAN emulator, 40 ms each way, 1% loss each way, regions in network namespaces $LINK-a and $LINK-b"
    IP_A="$A_IP"; IP_B="$B_IP"
    in_ns() { local r="$1"; shift; ip netns exec "$LINK-$r" "$@"; }
    # For background jobs: the job becomes the program itself, so that its
    # pid is the one cleanup stops.
    in_ns_exec() { local r="$1"; shift; exec ip netns exec "$LINK-$r" "$@"; }
else
    say "link: LOOPBACK (no WAN emulation: it needs root, /dev/net/tun and network namespaces)"
    IP_A=127.0.0.1; IP_B=127.0.0.1
    in_ns() { shift; "$@"; }
    in_ns_exec() { shift; exec "$@"; }
fi

free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 30000))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

# mariadb_start REGION SERVER_ID PORT: a fresh server for the region.
mariadb_start() {
    local r="$1" id="$2" port="$3" d="$WORK/db-$1"
    mkdir -p "$d/tmp"
    "$(bin mariadb-install-db)" --no-defaults --datadir="$d/data" --user=root \
        --auth-root-authentication-method=normal --skip-test-db >"$d/install.log" 2>&1 ||
        { tail -n 20 "$d/install.log" >&2; die "mariadb-install-db for region $r"; }
    in_ns_exec "$r" "$(bin mariadbd)" --no-defaults --user=root --datadir="$d/data" \
        --socket="$d/sock" --pid-file="$d/pid" --log-error="$d/error.log" --tmpdir="$d/tmp" \
        --port="$port" --bind-address=127.0.0.1 --skip-name-resolve \
        --server-id="$id" --gtid-domain-id="$id" --log-bin=binlog --binlog-format=ROW \
        --binlog-row-image=FULL --binlog-row-metadata=FULL --innodb-buffer-pool-size=128M \
        >"$d/stdout.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 300); do
        "$(bin mariadb)" --no-defaults -uroot --socket="$d/sock" -e 'SELECT 1' >/dev/null 2>&1 && return
        sleep 0.1
    done
    tail -n 20 "$d/error.log" >&2
    die "mariadbd of region $r did not start"
}
sql() { "$(bin mariadb)" --no-defaults -uroot --socket="$WORK/db-$1/sock" -N -B -e "$2"; }
# A URL the tools in this (root) namespace reach the region's server by.
url() { echo "mysql://root@localhost/?socket=$WORK/db-$1/sock"; }

if [ "$WAN" = 1 ]; then DB_A=3306; DB_B=3306; else DB_A="$(free_port)"; DB_B="$(free_port)"; fi
mariadb_start a 1 "$DB_A"
mariadb_start b 2 "$DB_B"
say "databases: region a and region b (MariaDB $(sql a 'SELECT VERSION()'))"

"$DRC" tls init "$WORK/tls" --regions a,b --san "a=$A_IP" --san "b=$B_IP" >/dev/null

if [ "$WAN" = 1 ]; then RELAY_A=7400; RELAY_B=7400; else RELAY_A="$(free_port)"; RELAY_B="$(free_port)"; fi
tls() { echo "{ ca = \"$WORK/tls/ca.pem\", cert = \"$WORK/tls/$1.pem\", key = \"$WORK/tls/$1.key\" }"; }
METRICS_A="$(free_port)"; METRICS_B="$(free_port)"
# region_config REGION OTHER MY_IP MY_RELAY OTHER_IP OTHER_RELAY DB_PORT POLICY METRICS_PORT
region_config() {
    local r="$1" o="$2" ip="$3" rp="$4" oip="$5" orp="$6" db="$7" policy="$8" mp="$9"
    cat <<EOF
region = "$r"

[metrics]
listen = "127.0.0.1:$mp"

[relay]
listen = "$ip:$rp"
data_dir = "$WORK/drc-$r/relay"
tls = $(tls "$r")

[[relay.upstreams]]
url = "https://$oip:$orp"
tls = $(tls "$r")
streams = ["$o.shop"]
subscriber = "relay-$r"

[[capture]]
stream = "$r.shop"
source = "mysql://root@127.0.0.1:$db"
start = "now"
include = ["shop.*"]
schema_history = "$WORK/drc-$r/schema-history.json"
server_id = $([ "$r" = a ] && echo 101 || echo 102)
relay = { url = "https://$ip:$rp", tls = $(tls "$r") }

[[apply]]
stream = "$o.shop"
subscriber = "apply-$r"
relay = { url = "https://$ip:$rp", tls = $(tls "$r") }
max_batch_delay_ms = 20
sink = { kind = "mysql", url = "mysql://root@127.0.0.1:$db", conflict_policy = "$policy" }
EOF
}
mkdir -p "$WORK/drc-a" "$WORK/drc-b"
region_config a b "$IP_A" "$RELAY_A" "$IP_B" "$RELAY_B" "$DB_A" ignore "$METRICS_A" >"$WORK/a.toml"
region_config b a "$IP_B" "$RELAY_B" "$IP_A" "$RELAY_A" "$DB_B" overwrite "$METRICS_B" >"$WORK/b.toml"
# Both regions start with the same schema (loading existing data into a new
# region is `drc migrate`'s job); the captures start at the current
# position, so only what follows is replicated.
schema="$("$LOAD" --a x --b x --print-schema)"
sql a "$schema"
sql b "$schema"
for r in a b; do
    in_ns "$r" "$DRC" config check "$WORK/$r.toml" >"$WORK/check-$r.log" 2>&1 ||
        { cat "$WORK/check-$r.log" >&2; die "drc config check of region $r"; }
done
for r in a b; do
    in_ns_exec "$r" env DRC_LOG=info "$DRC" run --config "$WORK/$r.toml" >"$WORK/drc-$r.log" 2>&1 &
    PIDS+=($!)
done
# Ready: every part of both daemons (relay, capture, replication from the
# other region, applier) answers ok on /readyz. The captures start at the
# position they find, so the load waits for this.
readyz() {
    in_ns "$1" bash -c "exec 3<>/dev/tcp/127.0.0.1/$2 && printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3 && head -n1 <&3" 2>/dev/null | grep -q ' 200 '
}
for _ in $(seq 600); do
    readyz a "$METRICS_A" && readyz b "$METRICS_B" && break
    sleep 0.1
done
readyz a "$METRICS_A" && readyz b "$METRICS_B" ||
    { tail -n 20 "$WORK/drc-a.log" "$WORK/drc-b.log" >&2; die "the daemons did not become ready within 60 s"; }
say "drc run ready in both regions (logs: drc-a.log, drc-b.log in the work directory)"

# --- 3. load ------------------------------------------------------------------
"$LOAD" --a "$(url a)" --b "$(url b)" --seconds "$SECONDS_LOAD" --rate "$RATE" | tee "$WORK/load.out" ||
    { tail -n 20 "$WORK/drc-a.log" "$WORK/drc-b.log" >&2; die "the load or the convergence failed"; }

# --- 4. verify and summary ----------------------------------------------------
say "drc verify a -> b"
"$DRC" verify --source "$(url a)" --target "$(url b)" --tables 'shop.*' | tee "$WORK/verify-ab.out" ||
    die "drc verify found region b different from region a"
say "drc verify b -> a"
"$DRC" verify --source "$(url b)" --target "$(url a)" --tables 'shop.*' | tee "$WORK/verify-ba.out" ||
    die "drc verify found region a different from region b"

for r in a b; do
    say "drc status (region $r)"
    in_ns "$r" "$DRC" status --config "$WORK/$r.toml" || true
done

summary="$(grep '^load: a_to_b=' "$WORK/load.out" | tail -1)"
conflicts_a="$(sql a 'SELECT COUNT(*) FROM drc.conflicts')"
conflicts_b="$(sql b 'SELECT COUNT(*) FROM drc.conflicts')"
errors="$(cat "$WORK/drc-a.log" "$WORK/drc-b.log" | grep -c ' ERROR ' || true)"
kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$summary"; }
echo
echo "summary"
echo "  link:              $([ "$WAN" = 1 ] && echo 'WAN emulator, 40 ms each way, 1% loss' || echo 'loopback (no WAN emulation)'), mutual TLS"
echo "  transactions:      a -> b $(kv a_to_b), b -> a $(kv b_to_a)"
echo "  lag (commit in one region to visible in the other): p50 $(kv p50_ms) ms, p99 $(kv p99_ms) ms, max $(kv max_ms) ms"
echo "  conflicts:         $conflicts_a recorded in region a (ignored: a's row kept), $conflicts_b in region b (overwritten with a's row)"
echo "  errors logged:     $errors"
[ "$errors" = 0 ] || die "drc logged errors (see the logs; DEMO_KEEP=1 keeps them)"
echo "demo: regions identical"
