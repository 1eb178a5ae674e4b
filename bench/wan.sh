#!/usr/bin/env bash
# Benchmark: moving a binlog backlog across an emulated WAN, DRC against
# MariaDB native replication, in one run.
#
#   bench/wan.sh
#
# 1. Builds drc and wanem (release). Makes the backlog once, in a throwaway
#    mariadbd on 127.0.0.1 (ROW binlog, FULL row image and metadata):
#    sysbench oltp_write_only `prepare`, RESET MASTER (the binlog then holds
#    only what follows), `run` until the binlog holds BENCH_BINLOG_MB MB, then
#    FLUSH BINARY LOGS and a clean shutdown. The transactions in the backlog
#    are counted from @@gtid_binlog_pos (RESET MASTER restarts the sequence).
# 2. For each congestion control in BENCH_CONGCTL (default "cubic bbr"):
#    `wanem up` joins two namespaces, region A and region B, by a link of
#    50 ms each way, 1% loss each way, 100 Mbit/s each way, with the TCP
#    congestion control set per route (`--congctl`). A copy of the backlog's
#    datadir becomes the primary in A (port 3306 on A's address); a fresh
#    mariadbd in B is the native replica. Then, one after the other, each
#    timed by wall clock:
#      native             replica in B, IO thread only (START SLAVE IO_THREAD
#                         from the first binlog, position 4), until
#                         Read_Master_Log_Pos is the primary's last position
#      native compressed  the same with slave_compressed_protocol=ON
#      drc                `drc run` in A (relay A, TLS on A's address, and a
#                         capture of the primary with start = "start"), and
#                         `drc relay` in B replicating stream a.bench from A
#                         over mutual TLS: from the start of `drc run` until
#                         relay B's durable log holds one record per
#                         transaction of the backlog
#    The link's counters (`wanem stats`, IP bytes delivered, both directions)
#    are read before and after each; wire_ratio = those bytes / binlog bytes.
#    The route's congestion control is what mariadbd's sockets get; drc's
#    relays ask for TCP_CONGESTION=bbr on their own sockets where the kernel
#    allows it, so drc runs on bbr under both settings.
# 3. Checks that relay B holds what relay A holds (it fails at once if not),
#    and that relay A holds one record per transaction of the backlog. When
#    relay A stops short (no change for 20 s), drc_s is the time until B held
#    all A held, a COUNT MISMATCH line says so, and after printing the
#    figures the script exits non-zero.
# 4. Prints one line per congestion control, the target lines, and last,
#    for the bbr setting (or the last setting run, when bbr was not):
#      wan: drc_s=X native_s=Y native_compressed_s=Z wire_ratio=W
#
# Targets (per setting): drc_s <= 0.5 x the best native variant's seconds, and
# DRC's wire_ratio <= 0.35. They are reported, not enforced.
#
# A native variant (or DRC) that has not finished after its timeout is
# stopped; its line says `native_s>600 (~N est.)` with N extrapolated from the
# bytes moved so far, and the `wan:` line carries that estimate. The target
# check then uses the timeout as the variant's time (a lower bound).
#
# With cubic at 1% loss native replication moves a few Mbit/s, so the cubic
# setting alone takes 15 to 25 minutes with the defaults; bbr takes about 2.
#
# Settings (environment):
#   BENCH_CONGCTL="cubic bbr"  congestion controls to run, in order
#   BENCH_BINLOG_MB=160        size of the backlog (sysbench runs until the
#                              binlog holds this many MB)
#   BENCH_TABLES=4             sysbench --tables
#   BENCH_TABLE_SIZE=100000    sysbench --table-size
#   BENCH_THREADS=4            sysbench run --threads
#   BENCH_DELAY_MS=50          one-way delay of the link
#   BENCH_LOSS_PCT=1           loss of the link, each direction
#   BENCH_RATE_MBIT=100        rate cap of the link, each direction
#   BENCH_NATIVE_TIMEOUT=600   seconds before a native variant is given up
#   BENCH_DRC_TIMEOUT=600      seconds before the DRC transfer is given up
#   BENCH_KEEP=0               1 keeps the temp dir (and prints where it is)
#   BENCH_TRANSFER_RUNS=0      after the drc measurement, copy relay A's whole
#                              log to a fresh relay B this many more times and
#                              print each copy's seconds and bytes (the
#                              transfer alone, without the capture)
#   BENCH_DRC_BIN=             a drc binary to use instead of building one
#   BENCH_WANEM_BIN=           a wanem binary to use instead of building one
#
# Needs root (network namespaces, /dev/net/tun) and cargo; installs
# mariadb-server, mariadb-client, sysbench and iproute2 with apt when missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

CONGCTLS="${BENCH_CONGCTL:-cubic bbr}"
BINLOG_MB="${BENCH_BINLOG_MB:-160}"
TABLES="${BENCH_TABLES:-4}"
TABLE_SIZE="${BENCH_TABLE_SIZE:-100000}"
THREADS="${BENCH_THREADS:-4}"
DELAY_MS="${BENCH_DELAY_MS:-50}"
LOSS_PCT="${BENCH_LOSS_PCT:-1}"
RATE_MBIT="${BENCH_RATE_MBIT:-100}"
NATIVE_TIMEOUT="${BENCH_NATIVE_TIMEOUT:-600}"
DRC_TIMEOUT="${BENCH_DRC_TIMEOUT:-600}"
KEEP="${BENCH_KEEP:-0}"
TIME_TARGET="0.5"
WIRE_TARGET="0.35"

A_IP="$BENCH_A_IP"
B_IP="$BENCH_B_IP"
REPL_PASSWORD="bench-repl"
STREAM="a.bench"
RELAY_PORT=7400
# How often both sides are checked for the end of the transfer: each figure
# is read to within this step (200 ms was 5% of a 4 s transfer).
POLL="0.05"
TRANSFER_RUNS="${BENCH_TRANSFER_RUNS:-0}"
TRANSFERS=()

# tracing-subscriber colours its output unless told not to.
export NO_COLOR=1

for cc in $CONGCTLS; do
    case "$cc" in
        cubic | bbr | reno) ;;
        *) bench_die "BENCH_CONGCTL: unknown congestion control '$cc' (use cubic, bbr, reno)" ;;
    esac
done
[ "$(id -u)" -eq 0 ] || bench_die "needs root (network namespaces and /dev/net/tun for wanem)"
[ -c /dev/net/tun ] || bench_die "/dev/net/tun is missing (wanem needs tun devices)"

bench_require mariadbd:mariadb-server mariadb-install-db:mariadb-server \
    mariadb:mariadb-client mariadb-binlog:mariadb-client \
    sysbench:sysbench ip:iproute2 ss:iproute2
bench_wan_prepare

PRIMARY_ARGS=(--server-id=1 --log-bin=binlog
    --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL
    --max-binlog-size=1G --max-allowed-packet=1G
    --innodb-buffer-pool-size=512M --innodb-flush-log-at-trx-commit=0
    --sync-binlog=0 --character-set-server=utf8mb4)

# --- the backlog, once ---------------------------------------------------------

mkdir -p "$TMP/gen"
bench_mariadb_start "$TMP/gen" "${PRIMARY_ARGS[@]}"
GEN_PID="$MARIADB_PID"
SERVER_VERSION="$(bench_sql 'SELECT VERSION()')"
bench_log "server: $SERVER_VERSION"

bench_sql "CREATE DATABASE sbtest;
    CREATE USER 'repl'@'%' IDENTIFIED BY '$REPL_PASSWORD';
    GRANT REPLICATION SLAVE, BINLOG MONITOR, SELECT ON *.* TO 'repl'@'%'"
SB=(sysbench oltp_write_only --db-driver=mysql --mysql-host=127.0.0.1
    --mysql-port="$MARIADB_PORT" --mysql-user=root --mysql-password=
    --mysql-db=sbtest --tables="$TABLES" --table-size="$TABLE_SIZE")
bench_log "sysbench prepare: $TABLES tables x $TABLE_SIZE rows"
"${SB[@]}" prepare >"$BENCH_LOGS/sysbench-prepare.log" 2>&1 ||
    { tail -n 30 "$BENCH_LOGS/sysbench-prepare.log" >&2; bench_die "sysbench prepare"; }
bench_sql 'RESET MASTER'

binlog_total() {
    bench_sql 'SHOW BINARY LOGS' | awk -F'\t' '{ s += $2 } END { printf "%.0f", s }'
}

bench_log "sysbench run: $THREADS threads until the binlog holds $BINLOG_MB MB"
want_bytes=$((BINLOG_MB * 1048576))
"${SB[@]}" --threads="$THREADS" --time=7200 --report-interval=0 run \
    >"$BENCH_LOGS/sysbench-run.log" 2>&1 &
SB_PID=$!
bench_on_exit "kill -TERM $SB_PID 2>/dev/null"
sb_t0="$(bench_now)"
while :; do
    kill -0 "$SB_PID" 2>/dev/null ||
        { tail -n 30 "$BENCH_LOGS/sysbench-run.log" >&2; bench_die "sysbench run stopped early"; }
    [ "$(binlog_total)" -ge "$want_bytes" ] && break
    sleep 1
done
sb_secs="$(bench_elapsed "$sb_t0")"
kill -TERM "$SB_PID" 2>/dev/null || true
wait "$SB_PID" 2>/dev/null || true
bench_sql 'FLUSH BINARY LOGS'
sleep 2

gtid_pos="$(bench_sql 'SELECT @@gtid_binlog_pos')"
case "$gtid_pos" in
    *,*) bench_die "several GTID domains in the binlog ($gtid_pos)" ;;
esac
TXNS="${gtid_pos##*-}"
[ "${TXNS:-0}" -gt 0 ] 2>/dev/null || bench_die "no transactions in the binlog (gtid_binlog_pos '$gtid_pos')"
BINLOGS="$(bench_sql 'SHOW BINARY LOGS')"
BINLOG_BYTES="$(awk -F'\t' '{ s += $2 } END { printf "%.0f", s }' <<<"$BINLOGS")"
BINLOG_MB_REAL="$(awk -v b="$BINLOG_BYTES" 'BEGIN { printf "%.1f", b / 1048576 }')"
TPS="$(awk -v n="$TXNS" -v s="$sb_secs" 'BEGIN { printf "%.0f", n / s }')"
bench_log "backlog: $BINLOG_MB_REAL MB of binlog in $(wc -l <<<"$BINLOGS") files, $TXNS transactions" \
    "(sysbench ${sb_secs}s, about $TPS tps)"

bench_sql 'SHUTDOWN' || true
for ((i = 0; i < 600; i++)); do
    kill -0 "$GEN_PID" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$GEN_PID" 2>/dev/null && bench_die "mariadbd did not shut down"
rm -f "$TMP/gen/data/"*.pid
GEN_DATA="$TMP/gen/data"

# The replica's datadir, installed once and copied per setting.
PATH="$PATH:/usr/sbin:/usr/local/sbin" "$(_bench_bin mariadb-install-db)" --no-defaults \
    --datadir="$TMP/replica-template" --user=root \
    --auth-root-authentication-method=normal --skip-test-db >"$BENCH_LOGS/replica-install.log" 2>&1 ||
    { tail -n 30 "$BENCH_LOGS/replica-install.log" >&2; bench_die "mariadb-install-db (replica)"; }

bench_tls_init "$TMP/tls"

# --- one setting: link, servers ------------------------------------------------

# Total bytes of the backlog up to FILE at POS (the primary's binlog list).
moved_bytes() {
    awk -F'\t' -v f="$1" -v p="$2" '$1 == f { printf "%.0f", s + p; found = 1; exit } { s += $2 }
        END { if (!found) print 0 }' <<<"$PRIMARY_LOGS"
}

# --- native replication --------------------------------------------------------

# SHOW SLAVE STATUS of the replica, one `Name: value` a line.
slave_status() {
    "$(_bench_bin mariadb)" --no-defaults --user=root --socket="$REPLICA/sock" \
        -B -e 'SHOW SLAVE STATUS\G' 2>/dev/null || true
}

# native_run COMPRESSED(0|1): sets RES_SECS, RES_TIMED_OUT, RES_EST, RES_WIRE.
native_run() {
    local comp="$1" label="native" st file pos io err t0 s0 s1 secs moved empty=0
    [ "$comp" = 1 ] && label="native compressed"
    bench_msql "$REPLICA/sock" "STOP SLAVE; RESET SLAVE ALL" >/dev/null 2>&1 || true
    bench_msql "$REPLICA/sock" "SET GLOBAL slave_compressed_protocol=$([ "$comp" = 1 ] && echo ON || echo OFF);
        CHANGE MASTER TO MASTER_HOST='$A_IP', MASTER_PORT=3306, MASTER_USER='repl',
            MASTER_PASSWORD='$REPL_PASSWORD', MASTER_USE_GTID=no,
            MASTER_LOG_FILE='$FIRST_LOG', MASTER_LOG_POS=4, MASTER_CONNECT_RETRY=1"
    s0="$(bench_link_bytes)"
    t0="$(bench_now)"
    bench_msql "$REPLICA/sock" "START SLAVE IO_THREAD"
    RES_TIMED_OUT=0
    while :; do
        st="$(slave_status)"
        file="$(awk -F': ' '$1 ~ /^ *Master_Log_File$/ { print $2 }' <<<"$st")"
        pos="$(awk -F': ' '$1 ~ /^ *Read_Master_Log_Pos$/ { print $2 }' <<<"$st")"
        io="$(awk -F': ' '$1 ~ /^ *Slave_IO_Running$/ { print $2 }' <<<"$st")"
        secs="$(bench_elapsed "$t0")"
        if [ "$file" = "$END_FILE" ] && [ "${pos:-0}" -ge "$END_POS" ]; then
            break
        fi
        err="$(awk -F': ' '$1 ~ /^ *Last_IO_Error$/ { print $2 }' <<<"$st")"
        if [ "$io" = "No" ]; then
            bench_die "$label: the IO thread stopped: ${err:-no error given}"
        fi
        if [ -n "$err" ] && [ "${pos:-4}" -le 4 ] &&
            awk -v s="$secs" 'BEGIN { exit !(s >= 30) }'; then
            bench_die "$label: the IO thread has not connected in 30 s: $err"
        fi
        # One empty answer is a busy server (the client timed out or could
        # not connect); only 10 s of them in a row stop the run.
        if [ -z "$io" ]; then
            empty=$((empty + 1))
        else
            empty=0
        fi
        if [ "$empty" -ge 50 ] && awk -v s="$secs" 'BEGIN { exit !(s >= 10) }'; then
            bench_die "$label: SHOW SLAVE STATUS has said nothing for 10 s: $st"
        fi
        if awk -v s="$secs" -v t="$NATIVE_TIMEOUT" 'BEGIN { exit !(s >= t) }'; then
            RES_TIMED_OUT=1
            break
        fi
        sleep "$POLL"
    done
    s1="$(bench_link_bytes)"
    bench_msql "$REPLICA/sock" "STOP SLAVE IO_THREAD" >/dev/null 2>&1 || true
    RES_SECS="$secs"
    RES_WIRE=$((s1 - s0))
    RES_EST="$secs"
    if [ "$RES_TIMED_OUT" = 1 ]; then
        moved="$(moved_bytes "$file" "${pos:-0}")"
        RES_EST="$(awk -v s="$secs" -v m="$moved" -v t="$PRIMARY_BYTES" \
            'BEGIN { if (m < 1) m = 1; printf "%.1f", s * t / m }')"
        # Wire bytes so far, scaled to the whole backlog.
        RES_WIRE="$(awk -v w="$RES_WIRE" -v m="$moved" -v t="$PRIMARY_BYTES" \
            'BEGIN { if (m < 1) m = 1; printf "%.0f", w * t / m }')"
        bench_log "$label: timed out after ${secs}s with $(bench_fmt1 "$(awk -v m="$moved" 'BEGIN { print m / 1048576 }')") MB" \
            "of $(bench_fmt1 "$(awk -v m="$PRIMARY_BYTES" 'BEGIN { print m / 1048576 }')") MB moved; about ${RES_EST}s for all"
    else
        bench_log "$label: ${secs}s, $(awk -v w="$RES_WIRE" 'BEGIN { printf "%.1f", w / 1048576 }') MB on the link"
    fi
}

# --- drc -----------------------------------------------------------------------

tls_table() { bench_tls_table "$TMP/tls" "$1"; }

# Payload bytes of a log directory's segments (file sizes less the 24-byte
# segment headers): equal in two logs holding the same records.
seg_bytes() {
    [ -d "$1" ] || { echo 0; return; }
    find "$1" -maxdepth 1 -name '*.seg' -printf '%s\n' | awk '{ s += $1 - 24 } END { printf "%.0f", s }'
}

# The records `drc log check DIR` counts (0 when it cannot tell).
log_records() {
    local out
    out="$("$DRC_BIN" log check "$1" 2>/dev/null || true)"
    awk '$1 == "records:" && !n { n = $2 } END { print n + 0 }' <<<"$out"
}

drc_logs_tail() {
    echo "--- drc run (region A), last lines:" >&2
    tail -n 25 "$RUN/drc/a.log" >&2 2>/dev/null || true
    echo "--- drc relay (region B), last lines:" >&2
    tail -n 25 "$RUN/drc/b.log" >&2 2>/dev/null || true
}

# ns_drc NS LOG ARGS...: `drc ARGS` in namespace NS in the background, its
# output in LOG, killed with the link; sets NS_PID.
ns_drc() {
    local ns="$1" log="$2"
    shift 2
    ip netns exec "$ns" env DRC_LOG=info NO_COLOR=1 "$DRC_BIN" "$@" >"$log" 2>&1 &
    NS_PID=$!
    bench_ns_track "$NS_PID"
}

# transfer_runs DIR A_PID: with relay A holding the whole backlog (its log
# no longer grows), starts relay B afresh BENCH_TRANSFER_RUNS times and times
# each copy from B's start until B's log holds all A's does: the transfer
# alone, without the capture. Appends one line per run to TRANSFERS.
transfer_runs() {
    local d="$1" a_pid="$2" run b_pid t0 s0 s1 secs want got
    local a_dir="$d/a-data/streams/$STREAM" b_dir="$d/b-data/streams/$STREAM"
    want="$(seg_bytes "$a_dir")"
    for ((run = 1; run <= TRANSFER_RUNS; run++)); do
        rm -rf "$d/b-data"
        s0="$(bench_link_bytes)"
        t0="$(bench_now)"
        ns_drc "$BENCH_LINK-b" "$d/b-transfer-$run.log" relay --config "$d/b.toml"
        b_pid="$NS_PID"
        while :; do
            secs="$(bench_elapsed "$t0")"
            kill -0 "$a_pid" 2>/dev/null || bench_die "drc run (region A) exited during transfer run $run"
            kill -0 "$b_pid" 2>/dev/null || bench_die "drc relay (region B) exited during transfer run $run"
            got="$(seg_bytes "$b_dir")"
            [ "$got" -ge "$want" ] && break
            if awk -v s="$secs" -v t="$DRC_TIMEOUT" 'BEGIN { exit !(s >= t) }'; then
                bench_die "transfer run $run: not done after ${secs}s"
            fi
            sleep "$POLL"
        done
        s1="$(bench_link_bytes)"
        kill -TERM "$b_pid" 2>/dev/null || true
        wait "$b_pid" 2>/dev/null || true
        TRANSFERS+=("transfer[$cc] run $run: ${secs} s, $(awk -v w="$((s1 - s0))" 'BEGIN { printf "%.1f", w / 1048576 }') MB on the link")
        bench_log "${TRANSFERS[-1]}"
    done
}

# Sets RES_SECS, RES_TIMED_OUT, RES_EST, RES_WIRE, DRC_RECORDS_A/B, DRC_LOG_BYTES.
drc_run() {
    local d="$RUN/drc" a_pid b_pid t0 s0 s1 i secs a_bytes b_bytes prev_a=-1 \
        checked=-1 a_still=0 n_b b_since="" done_secs=""
    DRC_A_SECS=0
    mkdir -p "$d"
    cat >"$d/a.toml" <<EOF
region = "a"

[relay]
listen = "$A_IP:$RELAY_PORT"
data_dir = "$d/a-data"
tls = $(tls_table a)

[[capture]]
stream = "$STREAM"
source = "mysql://root@127.0.0.1:3306"
start = "start"
schema_history = "$d/a-schema.jsonl"
relay = { url = "https://$A_IP:$RELAY_PORT", tls = $(tls_table a) }
EOF
    cat >"$d/b.toml" <<EOF
region = "b"

[relay]
listen = "$B_IP:$RELAY_PORT"
data_dir = "$d/b-data"
tls = $(tls_table b)

[[relay.upstreams]]
url = "https://$A_IP:$RELAY_PORT"
tls = $(tls_table b)
streams = ["$STREAM"]
subscriber = "relay-b"
EOF
    local a_dir="$d/a-data/streams/$STREAM" b_dir="$d/b-data/streams/$STREAM"
    s0="$(bench_link_bytes)"
    t0="$(bench_now)"
    ns_drc "$BENCH_LINK-a" "$d/a.log" run --config "$d/a.toml"
    a_pid="$NS_PID"
    # Relay B starts once relay A listens, so that its first connection
    # succeeds rather than waiting out a retry backoff.
    for ((i = 0; i < 300; i++)); do
        kill -0 "$a_pid" 2>/dev/null || { drc_logs_tail; bench_die "drc run (region A) exited"; }
        ip netns exec "$BENCH_LINK-a" ss -Hltn "sport = :$RELAY_PORT" 2>/dev/null | grep -q . && break
        sleep 0.05
    done
    ns_drc "$BENCH_LINK-b" "$d/b.log" relay --config "$d/b.toml"
    b_pid="$NS_PID"
    RES_TIMED_OUT=0
    while :; do
        secs="$(bench_elapsed "$t0")"
        kill -0 "$a_pid" 2>/dev/null || { drc_logs_tail; bench_die "drc run (region A) exited"; }
        kill -0 "$b_pid" 2>/dev/null || { drc_logs_tail; bench_die "drc relay (region B) exited"; }
        a_bytes="$(seg_bytes "$a_dir")"
        b_bytes="$(seg_bytes "$b_dir")"
        if [ "$b_bytes" -gt 0 ] && [ "$b_bytes" = "$a_bytes" ]; then
            [ -n "$b_since" ] || b_since="$secs"
            if [ "$b_bytes" != "$checked" ]; then
                checked="$b_bytes"
                n_b="$(log_records "$b_dir")"
                if [ "$n_b" -ge "$TXNS" ]; then
                    done_secs="$b_since"
                    break
                fi
            fi
        else
            b_since=""
        fi
        # A has stopped growing and B holds all of it, yet fewer records
        # than transactions: stop waiting (the count check below reports it).
        if [ "$a_bytes" = "$prev_a" ]; then
            a_still=$((a_still + 1))
        else
            a_still=0
            DRC_A_SECS="$secs"
        fi
        prev_a="$a_bytes"
        if [ -n "$b_since" ] && [ "$a_still" -ge 100 ]; then
            done_secs="$b_since"
            break
        fi
        if awk -v s="$secs" -v t="$DRC_TIMEOUT" 'BEGIN { exit !(s >= t) }'; then
            RES_TIMED_OUT=1
            break
        fi
        sleep "$POLL"
    done
    s1="$(bench_link_bytes)"
    if [ "$TRANSFER_RUNS" -gt 0 ] && [ "$RES_TIMED_OUT" = 0 ]; then
        kill -TERM "$b_pid" 2>/dev/null || true
        wait "$b_pid" 2>/dev/null || true
        transfer_runs "$d" "$a_pid"
    fi
    kill -TERM "$b_pid" "$a_pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 "$a_pid" 2>/dev/null || kill -0 "$b_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$a_pid" "$b_pid" 2>/dev/null || true
    wait "$a_pid" 2>/dev/null || true
    wait "$b_pid" 2>/dev/null || true
    RES_WIRE=$((s1 - s0))
    DRC_RECORDS_A="$(log_records "$a_dir")"
    DRC_RECORDS_B="$(log_records "$b_dir")"
    DRC_LOG_BYTES="$(seg_bytes "$a_dir")"
    local errs
    errs="$(grep -h -E '(^|[[:space:]])(ERROR|WARN)([[:space:]]|$)' "$d/a.log" "$d/b.log" 2>/dev/null | head -n 5 || true)"
    [ -z "$errs" ] || bench_log "drc logged warnings or errors (first 5):"$'\n'"$errs"
    if [ "$RES_TIMED_OUT" = 1 ]; then
        RES_SECS="$secs"
        RES_EST="$(awk -v s="$secs" -v b="$b_bytes" -v a="$a_bytes" -v n="$DRC_RECORDS_A" -v t="$TXNS" \
            'BEGIN { if (b < 1) b = 1; if (n < 1) n = 1; if (n < t) a = a * t / n; printf "%.1f", s * a / b }')"
        RES_WIRE="$(awk -v w="$RES_WIRE" -v b="$b_bytes" -v a="$a_bytes" -v n="$DRC_RECORDS_A" -v t="$TXNS" \
            'BEGIN { if (b < 1) b = 1; if (n < 1) n = 1; if (n < t) a = a * t / n; printf "%.0f", w * a / b }')"
        drc_logs_tail
        bench_log "drc: timed out after ${secs}s with $DRC_RECORDS_B of $TXNS records in region B; about ${RES_EST}s for all"
    else
        RES_SECS="$done_secs"
        RES_EST="$done_secs"
        bench_log "drc: ${done_secs}s, $(awk -v w="$RES_WIRE" 'BEGIN { printf "%.1f", w / 1048576 }') MB on the link," \
            "records A=$DRC_RECORDS_A B=$DRC_RECORDS_B; relay A's log stopped growing at ${DRC_A_SECS}s"
    fi
    DRC_COUNT_NOTE=""
    if [ "$RES_TIMED_OUT" = 0 ] && [ "$DRC_RECORDS_B" != "$DRC_RECORDS_A" ]; then
        drc_logs_tail
        bench_die "record counts: region A $DRC_RECORDS_A, region B $DRC_RECORDS_B (B stopped growing short of A)"
    fi
    if [ "$RES_TIMED_OUT" = 0 ] && [ "$DRC_RECORDS_A" != "$TXNS" ]; then
        # Reported with the figures (drc_s is then the time until region B
        # held everything relay A held), and the script exits non-zero.
        DRC_COUNT_NOTE="relay A holds $DRC_RECORDS_A records, the backlog has $TXNS transactions"
        DRC_COUNT_NOTE+=" (relay A stayed at $DRC_RECORDS_A for 20 s; region B holds $DRC_RECORDS_B)"
        bench_log "COUNT MISMATCH: $DRC_COUNT_NOTE"
    fi
}

# --- the settings ----------------------------------------------------------------

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

# "12.3" or ">600 (~1450.2 est.)"
show_secs() {
    if [ "$2" = 1 ]; then
        printf '>%s (~%s est.)' "$(bench_fmt1 "$1")" "$(bench_fmt1 "$3")"
    else
        bench_fmt1 "$1"
    fi
}

SUMMARY=()
MISMATCH=0
declare -A FINAL

run_setting() {
    local cc="$1" i line best
    RUN="$TMP/run-$cc"
    mkdir -p "$RUN"
    bench_log "[$cc] wanem up: ${DELAY_MS} ms each way, ${LOSS_PCT}% loss, ${RATE_MBIT} Mbit/s, congctl $cc"
    bench_link_up "dw$$${cc:0:1}" "$RUN" "$cc"

    # The primary in region A: a copy of the backlog's datadir.
    PRIMARY="$RUN/primary"
    mkdir -p "$PRIMARY"
    cp -a "$GEN_DATA" "$PRIMARY/data"
    bench_ns_mariadbd "$BENCH_LINK-a" "$PRIMARY" "${PRIMARY_ARGS[@]}" --bind-address=0.0.0.0 --port=3306
    PRIMARY_LOGS="$(bench_msql "$PRIMARY/sock" 'SHOW BINARY LOGS')"
    PRIMARY_BYTES="$(awk -F'\t' '{ s += $2 } END { printf "%.0f", s }' <<<"$PRIMARY_LOGS")"
    FIRST_LOG="$(head -n1 <<<"$PRIMARY_LOGS" | cut -f1)"
    read -r END_FILE END_POS < <(bench_msql "$PRIMARY/sock" 'SHOW MASTER STATUS' | awk -F'\t' '{ print $1, $2 }')
    bench_log "[$cc] primary in $BENCH_LINK-a: binlog $FIRST_LOG to $END_FILE:$END_POS ($PRIMARY_BYTES bytes)"

    # The native replica in region B.
    REPLICA="$RUN/replica"
    mkdir -p "$REPLICA"
    cp -a "$TMP/replica-template" "$REPLICA/data"
    bench_ns_mariadbd "$BENCH_LINK-b" "$REPLICA" --server-id=2 --skip-slave-start --relay-log=relay \
        --bind-address=127.0.0.1 --port=3306 --innodb-buffer-pool-size=128M

    native_run 0
    local n_s="$RES_SECS" n_to="$RES_TIMED_OUT" n_est="$RES_EST" n_w="$RES_WIRE"
    native_run 1
    local c_s="$RES_SECS" c_to="$RES_TIMED_OUT" c_est="$RES_EST" c_w="$RES_WIRE"
    drc_run
    local d_s="$RES_SECS" d_to="$RES_TIMED_OUT" d_est="$RES_EST" d_w="$RES_WIRE"

    bench_link_down
    rm -rf -- "$RUN/primary" "$RUN/replica"

    local d_r n_r c_r
    d_r="$(ratio "$d_w" "$BINLOG_BYTES")"
    n_r="$(ratio "$n_w" "$BINLOG_BYTES")"
    c_r="$(ratio "$c_w" "$BINLOG_BYTES")"
    # Best native for the target: a timed-out variant counts its timeout.
    best="$(awk -v a="$n_s" -v b="$c_s" 'BEGIN { printf "%.3f", (a < b) ? a : b }')"
    line="wan[$cc]: drc_s=$(show_secs "$d_s" "$d_to" "$d_est") native_s=$(show_secs "$n_s" "$n_to" "$n_est")"
    line+=" native_compressed_s=$(show_secs "$c_s" "$c_to" "$c_est")"
    line+=" drc_wire_ratio=$d_r native_wire_ratio=$n_r native_compressed_wire_ratio=$c_r"
    SUMMARY+=("$line")
    local limit
    limit="$(awk -v b="$best" -v t="$TIME_TARGET" 'BEGIN { printf "%.1f", b * t }')"
    if [ "$d_to" = 0 ] && awk -v d="$d_s" -v l="$best" -v t="$TIME_TARGET" 'BEGIN { exit !(d <= l * t) }'; then
        SUMMARY+=("target[$cc] (drc_s <= $TIME_TARGET x best native, $(bench_fmt1 "$best") s: <= $limit s): met")
    else
        SUMMARY+=("target[$cc] (drc_s <= $TIME_TARGET x best native, $(bench_fmt1 "$best") s: <= $limit s): NOT met")
    fi
    if awk -v r="$d_r" -v t="$WIRE_TARGET" 'BEGIN { exit !(r <= t) }'; then
        SUMMARY+=("target[$cc] (drc wire_ratio <= $WIRE_TARGET): met")
    else
        SUMMARY+=("target[$cc] (drc wire_ratio <= $WIRE_TARGET): NOT met")
    fi
    SUMMARY+=("  [$cc] MB on the link: drc $(mb "$d_w"), native $(mb "$n_w"), native compressed $(mb "$c_w");\
 drc log $(mb "$DRC_LOG_BYTES") MB, $DRC_RECORDS_B records, relay A complete after $(bench_fmt1 "$DRC_A_SECS") s")
    FINAL[$cc]="wan: drc_s=$(bench_fmt1 "$d_est") native_s=$(bench_fmt1 "$n_est") native_compressed_s=$(bench_fmt1 "$c_est") wire_ratio=$d_r"
    if [ -n "$DRC_COUNT_NOTE" ]; then
        SUMMARY+=("COUNT MISMATCH[$cc]: $DRC_COUNT_NOTE; drc_s is the time until region B held all relay A held")
        MISMATCH=1
    fi
    LAST_CC="$cc"
    bench_log "$line"
}

for cc in $CONGCTLS; do
    run_setting "$cc"
done

echo
echo "wan benchmark: $(bench_machine)"
echo "  server:  mariadbd $SERVER_VERSION, sysbench oltp_write_only $TABLES tables x $TABLE_SIZE rows," \
    "$THREADS threads (about $TPS tps)"
echo "  backlog: $BINLOG_MB_REAL MB of binlog ($BINLOG_BYTES bytes), $TXNS transactions"
echo "  link:    ${DELAY_MS} ms each way, ${LOSS_PCT}% loss each way, ${RATE_MBIT} Mbit/s each way (wanem)"
echo "  (seconds: wall clock to move the whole backlog into region B; wire_ratio: IP bytes on the link," \
    "both directions / binlog bytes)"
echo
for line in "${SUMMARY[@]}"; do
    echo "$line"
done
for line in "${TRANSFERS[@]}"; do
    echo "$line"
done
if [ -n "${FINAL[bbr]:-}" ]; then
    echo "${FINAL[bbr]}"
else
    echo "(no bbr setting was run; the last line is for $LAST_CC)"
    echo "${FINAL[$LAST_CC]}"
fi
[ "$MISMATCH" = 0 ] || bench_die "drc did not deliver every transaction of the backlog (COUNT MISMATCH above)"
