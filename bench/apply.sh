#!/usr/bin/env bash
# Benchmark: applying a replication backlog, DRC against MariaDB native
# parallel replication, on the same backlog, in one run.
#
#   bench/apply.sh
#
# 1. Starts a source mariadbd (ROW binlog, FULL row image and metadata,
#    innodb_flush_log_at_trx_commit=1, sync_binlog=1) in a temp dir removed
#    on exit, runs sysbench oltp_write_only `prepare` (BENCH_TABLES x
#    BENCH_TABLE_SIZE rows), RESET MASTER, and shuts it down cleanly.
# 2. Copies its datadir twice: the DRC target and the native replica start
#    from the very same rows. The source starts again and sysbench
#    oltp_write_only `run` (BENCH_THREADS threads, BENCH_SECONDS seconds)
#    makes the backlog while nothing consumes it. The backlog's transactions
#    are counted from @@gtid_binlog_pos (RESET MASTER restarted it).
# 3. Applies the backlog twice, one after the other, each timed by wall clock:
#      native  the replica (server_id 3, log_bin + log_slave_updates,
#              innodb_flush_log_at_trx_commit=1, sync_binlog=1,
#              slave_parallel_threads=BENCH_NATIVE_THREADS (4),
#              slave_parallel_mode=optimistic): CHANGE MASTER TO the first
#              binlog at position 4, START SLAVE, until @@gtid_slave_pos is
#              the source's @@gtid_binlog_pos
#      drc     `drc run` with a relay, a capture of the source from its first
#              binlog and a MySQL sink into the DRC target (server_id 2,
#              log_bin, innodb_flush_log_at_trx_commit=1, sync_binlog=1;
#              parallel = BENCH_DRC_PARALLEL (2), group_rows = BENCH_DRC_GROUP_ROWS (4000)): from the start of `drc run`
#              until the target's drc.checkpoints row holds the backlog's last
#              offset. Capture, relay (fsync'd log) and apply all run, on this
#              machine, inside the timed window.
#    txn_per_s = backlog transactions / seconds.
# 4. Checks that both targets hold exactly the source's rows (CHECKSUM TABLE
#    of every sysbench table on the three servers) and fails if not.
# 5. Prints both rates, whether the target (ratio >= 3) is met, and last:
#      apply: drc_txn_per_s=X native_txn_per_s=Y ratio=Z
#
# The target is reported, not enforced: the exit status is non-zero only when
# a step fails or the data differ.
#
# Settings (environment):
#   BENCH_TABLES=8              sysbench --tables
#   BENCH_TABLE_SIZE=100000     sysbench --table-size
#   BENCH_SECONDS=30            sysbench run --time
#   BENCH_THREADS=16            sysbench run --threads
#   BENCH_NATIVE_THREADS=4      slave_parallel_threads of the native replica
#   BENCH_DRC_PARALLEL=2        the MySQL sink's `parallel` (2: the best of 2, 3
#                               and 4 on a 2-core machine, see BENCHMARKS.md)
#   BENCH_DRC_GROUP_ROWS=4000   the MySQL sink's `group_rows`
#   BENCH_DRC_BATCH_ROWS=20000  the applier's `max_batch_rows`
#   BENCH_TIMEOUT=900           seconds before an apply is given up
#   BENCH_DRC_LOG=info          DRC_LOG of `drc run` (its log is logs/drc-run.log)
#   BENCH_KEEP=0                1 keeps the temp dir (and prints where it is)
#   BENCH_DRC_BIN=              a drc binary to use instead of building one
#
# Needs cargo; installs mariadb-server, mariadb-client, sysbench and python3
# with apt when missing (root, or sudo).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

TABLES="${BENCH_TABLES:-8}"
TABLE_SIZE="${BENCH_TABLE_SIZE:-100000}"
SECONDS_RUN="${BENCH_SECONDS:-30}"
THREADS="${BENCH_THREADS:-16}"
NATIVE_THREADS="${BENCH_NATIVE_THREADS:-4}"
DRC_PARALLEL="${BENCH_DRC_PARALLEL:-2}"
DRC_GROUP_ROWS="${BENCH_DRC_GROUP_ROWS:-4000}"
TIMEOUT="${BENCH_TIMEOUT:-900}"
KEEP="${BENCH_KEEP:-0}"
TARGET="3"

export NO_COLOR=1

bench_require mariadbd:mariadb-server mariadb-install-db:mariadb-server \
    mariadb:mariadb-client mariadb-admin:mariadb-client sysbench:sysbench python3:python3
command -v cargo >/dev/null 2>&1 || bench_die "cargo not found (install a Rust toolchain)"

bench_build_drc
bench_tmpdir
if [ "$KEEP" = 1 ]; then
    BENCH_EXIT_CMDS=()
    bench_on_exit "echo 'kept: $BENCH_TMP' >&2"
fi
TMP="$BENCH_TMP"
# The binary is copied so that a rebuild during the run changes nothing.
cp "$DRC_BIN" "$TMP/drc"
DRC="$TMP/drc"

# Settings every server shares: durable commits, enough buffer pool for the
# tables, one character set.
COMMON=(--innodb-flush-log-at-trx-commit=1 --sync-binlog=1
    --innodb-buffer-pool-size=1G --max-allowed-packet=1G
    --character-set-server=utf8mb4 --max-connections=200)
SOURCE_ARGS=(--server-id=1 --log-bin="$TMP/src/data/binlog" --binlog-format=ROW
    --binlog-row-image=FULL --binlog-row-metadata=FULL --max-binlog-size=1G "${COMMON[@]}")

sql_at() {
    local port="$1"
    shift
    MARIADB_PORT="$port" bench_sql "$1"
}

# CPU seconds (user + system) a process has used so far.
proc_cpu() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}

shutdown_at() {
    local port="$1" pid="$2"
    MARIADB_PORT="$port" bench_mysql -e 'SHUTDOWN' || true
    local i
    for ((i = 0; i < 600; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    bench_die "mariadbd $pid did not shut down"
}

# --- the prepared source and its two copies -----------------------------------

mkdir -p "$TMP/src" "$TMP/drc-target" "$TMP/native"
bench_mariadb_start "$TMP/src" "${SOURCE_ARGS[@]}"
SRC_PORT="$MARIADB_PORT"
bench_log "server: $(sql_at "$SRC_PORT" 'SELECT VERSION()')"
SB=(sysbench oltp_write_only --db-driver=mysql --mysql-host=127.0.0.1
    --mysql-port="$SRC_PORT" --mysql-user=root --mysql-password=
    --mysql-db=sbtest --tables="$TABLES" --table-size="$TABLE_SIZE")
sql_at "$SRC_PORT" 'CREATE DATABASE sbtest'
bench_log "sysbench prepare: $TABLES tables x $TABLE_SIZE rows"
"${SB[@]}" --threads="$TABLES" prepare >"$BENCH_LOGS/sysbench-prepare.log" 2>&1 ||
    { tail -n 30 "$BENCH_LOGS/sysbench-prepare.log" >&2; bench_die "sysbench prepare"; }
sql_at "$SRC_PORT" 'RESET MASTER'
shutdown_at "$SRC_PORT" "$MARIADB_PID"
cp -a "$TMP/src/data" "$TMP/drc-target/data"
cp -a "$TMP/src/data" "$TMP/native/data"
bench_log "datadir copied for the DRC target and the native replica"

bench_mariadbd_run "$TMP/src" "${SOURCE_ARGS[@]}"
SRC_PORT="$MARIADB_PORT"
SRC_PID="$MARIADB_PID"
SB=(sysbench oltp_write_only --db-driver=mysql --mysql-host=127.0.0.1
    --mysql-port="$SRC_PORT" --mysql-user=root --mysql-password=
    --mysql-db=sbtest --tables="$TABLES" --table-size="$TABLE_SIZE")

# --- the backlog --------------------------------------------------------------

bench_log "sysbench run: $THREADS threads for ${SECONDS_RUN}s"
"${SB[@]}" --threads="$THREADS" --time="$SECONDS_RUN" --report-interval=0 run \
    >"$BENCH_LOGS/sysbench-run.log" 2>&1 ||
    { tail -n 30 "$BENCH_LOGS/sysbench-run.log" >&2; bench_die "sysbench run"; }
sql_at "$SRC_PORT" 'FLUSH BINARY LOGS'
GTID_END="$(sql_at "$SRC_PORT" 'SELECT @@gtid_binlog_pos')"
TXNS="${GTID_END##*-}"
[[ "$GTID_END" =~ ^0-1-[0-9]+$ ]] || bench_die "unexpected source GTID state '$GTID_END'"
binlogs="$(sql_at "$SRC_PORT" 'SHOW BINARY LOGS')"
FIRST_LOG="$(head -n1 <<<"$binlogs" | cut -f1)"
BINLOG_MB="$(awk -F'\t' '{ s += $2 } END { printf "%.1f", s / 1048576 }' <<<"$binlogs")"
bench_log "backlog: $TXNS transactions, $BINLOG_MB MB of binlog from $FIRST_LOG"

# --- native parallel replication ------------------------------------------------

bench_mariadbd_run "$TMP/native" --server-id=3 --log-bin="$TMP/native/data/replica-bin" \
    --log-slave-updates --binlog-format=ROW --relay-log="$TMP/native/data/relay-bin" \
    --skip-slave-start "${COMMON[@]}"
NATIVE_PORT="$MARIADB_PORT"
NATIVE_PID="$MARIADB_PID"
sql_at "$NATIVE_PORT" "SET GLOBAL slave_parallel_threads = $NATIVE_THREADS;
    SET GLOBAL slave_parallel_mode = 'optimistic';
    CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = $SRC_PORT, MASTER_USER = 'root',
      MASTER_PASSWORD = '', MASTER_USE_GTID = no, MASTER_LOG_FILE = '$FIRST_LOG', MASTER_LOG_POS = 4"

native_apply() {
    sql_at "$NATIVE_PORT" 'START SLAVE'
    local deadline=$((SECONDS + TIMEOUT)) pos
    while :; do
        pos="$(sql_at "$NATIVE_PORT" 'SELECT @@gtid_slave_pos')"
        [ "$pos" = "$GTID_END" ] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "native replica at $pos after ${TIMEOUT}s" >&2
            return 1
        fi
        sleep 0.1
    done
}

bench_log "native: slave_parallel_threads=$NATIVE_THREADS, optimistic"
c_src0="$(proc_cpu "$SRC_PID")"
c_dst0="$(proc_cpu "$NATIVE_PID")"
BENCH_REPEAT_UNDER=0 bench_timed native native_apply
NATIVE_S="$BENCH_SECS"
NATIVE_CPU="replica mariadbd $(awk -v a="$c_dst0" -v b="$(proc_cpu "$NATIVE_PID")" 'BEGIN { printf "%.1f", b - a }')s, source mariadbd $(awk -v a="$c_src0" -v b="$(proc_cpu "$SRC_PID")" 'BEGIN { printf "%.1f", b - a }')s"
bench_log "native cpu: $NATIVE_CPU"
sql_at "$NATIVE_PORT" 'STOP SLAVE'

# --- drc: capture -> relay -> apply -------------------------------------------------

bench_mariadbd_run "$TMP/drc-target" --server-id=2 --log-bin="$TMP/drc-target/data/target-bin" \
    --binlog-format=ROW "${COMMON[@]}"
DST_PORT="$MARIADB_PORT"
DST_PID="$MARIADB_PID"
RELAY_PORT="$(bench_free_port)"
cat >"$TMP/region.toml" <<EOF
region = "a"

[relay]
listen = "127.0.0.1:$RELAY_PORT"
data_dir = "$TMP/relay"
insecure_plaintext = true

[[capture]]
stream = "a.bench"
source = "mysql://root@127.0.0.1:$SRC_PORT"
start = "start"
relay = { url = "http://127.0.0.1:$RELAY_PORT", insecure_plaintext = true }

[[apply]]
stream = "a.bench"
subscriber = "apply-b"
max_batch_rows = ${BENCH_DRC_BATCH_ROWS:-20000}
relay = { url = "http://127.0.0.1:$RELAY_PORT", insecure_plaintext = true }
sink = { kind = "mysql", url = "mysql://root@127.0.0.1:$DST_PORT", parallel = $DRC_PARALLEL, group_rows = $DRC_GROUP_ROWS, check_before_image = ${BENCH_DRC_CHECK_IMAGE:-true} }
EOF

drc_apply() {
    DRC_LOG="${BENCH_DRC_LOG:-info}" "$DRC" run --config "$TMP/region.toml" >"$BENCH_LOGS/drc-run.log" 2>&1 &
    local pid=$! deadline=$((SECONDS + TIMEOUT)) at
    while :; do
        at="$(sql_at "$DST_PORT" "SELECT \`offset\` FROM drc.checkpoints WHERE stream = 'a.bench'" 2>/dev/null || true)"
        [ "${at:-0}" -ge "$TXNS" ] && break
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$BENCH_LOGS/drc-run.log" >&2
            echo "drc run exited with the target at offset ${at:-0}" >&2
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            kill "$pid" 2>/dev/null || true
            echo "drc at offset ${at:-0} after ${TIMEOUT}s" >&2
            return 1
        fi
        sleep 0.1
    done
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

bench_log "drc: parallel=$DRC_PARALLEL, group_rows=$DRC_GROUP_ROWS"
c_src0="$(proc_cpu "$SRC_PID")"
c_dst0="$(proc_cpu "$DST_PID")"
BENCH_REPEAT_UNDER=0 bench_timed drc drc_apply
DRC_S="$BENCH_SECS"
DRC_CPU="drc ${BENCH_CPU}s, target mariadbd $(awk -v a="$c_dst0" -v b="$(proc_cpu "$DST_PID")" 'BEGIN { printf "%.1f", b - a }')s, source mariadbd $(awk -v a="$c_src0" -v b="$(proc_cpu "$SRC_PID")" 'BEGIN { printf "%.1f", b - a }')s"
bench_log "drc cpu: $DRC_CPU"

# --- same rows everywhere ---------------------------------------------------------

tables="$(seq -f 'sbtest.sbtest%g' 1 "$TABLES" | paste -sd, -)"
sum_src="$(sql_at "$SRC_PORT" "CHECKSUM TABLE $tables")"
sum_native="$(sql_at "$NATIVE_PORT" "CHECKSUM TABLE $tables")"
sum_drc="$(sql_at "$DST_PORT" "CHECKSUM TABLE $tables")"
[ "$sum_src" = "$sum_native" ] || bench_die "the native replica differs from the source:
$sum_src
---
$sum_native"
[ "$sum_src" = "$sum_drc" ] || bench_die "the DRC target differs from the source:
$sum_src
---
$sum_drc"
bench_log "CHECKSUM TABLE: source, native replica and DRC target are equal"

# --- report -------------------------------------------------------------------------

DRC_RATE="$(bench_rate "$TXNS" "$DRC_S")"
NATIVE_RATE="$(bench_rate "$TXNS" "$NATIVE_S")"
RATIO="$(awk -v a="$DRC_RATE" -v b="$NATIVE_RATE" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')"
MET="$(awk -v r="$RATIO" -v t="$TARGET" 'BEGIN { print (r >= t ? "met" : "NOT met") }')"
printf '\n%s, %s transactions (%s MB of binlog), %s\n' "$(date +%F)" "$TXNS" "$BINLOG_MB" "$(bench_machine)"
printf '%-8s %10s %14s\n' applier seconds txn_per_s
printf '%-8s %10s %14s\n' native "$NATIVE_S" "$NATIVE_RATE" drc "$DRC_S" "$DRC_RATE"
printf 'cpu: native: %s; drc: %s\n' "$NATIVE_CPU" "$DRC_CPU"
printf 'target: drc >= %sx native: %s (%sx)\n' "$TARGET" "$MET" "$RATIO"
printf 'apply: drc_txn_per_s=%s native_txn_per_s=%s ratio=%s\n' "$DRC_RATE" "$NATIVE_RATE" "$RATIO"
