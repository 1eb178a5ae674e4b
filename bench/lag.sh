#!/usr/bin/env bash
# Benchmark: replication lag under a steady load over an emulated WAN, DRC
# against MariaDB native parallel replication, in one run.
#
#   bench/lag.sh
#
# 1. Builds drc and wanem (release). Makes the starting data once, in a
#    throwaway mariadbd on 127.0.0.1: sysbench oltp_write_only `prepare`
#    (BENCH_TABLES x BENCH_TABLE_SIZE rows), the probe table lag.probe (id,
#    src_ts DATETIME(6)) and the procedure lag.probes(secs, pause) that writes
#    one probe row, src_ts = SYSDATE(6), in a transaction of its own every
#    `pause` seconds for `secs` seconds; then RESET MASTER (the binlog holds
#    only what follows) and a clean shutdown. Both systems start from copies
#    of that datadir, so each run has fresh, identical data.
# 2. For each system (BENCH_SYSTEMS, default "drc native"), one after the
#    other: `wanem up` joins region A and region B by a link of 50 ms each
#    way, 1% loss each way, 100 Mbit/s each way, congestion control bbr on the
#    routes (as bench/wan.sh). The primary in A (ROW binlog, FULL image and
#    metadata, GTID) and the target in B start on copies of the datadir. B
#    gets the table lag.arrival and an AFTER INSERT trigger on lag.probe that
#    stamps each probe's arrival with SYSDATE(6): the wall clock of the moment
#    the target writes the row, inside the transaction that commits it (not
#    NOW(6): a native replica's SQL thread sets the session time to the
#    event's). Then:
#      drc     `drc run` in A (relay A with TLS on A's address and a capture
#              of the primary) and `drc run` in B (relay B replicating stream
#              a.bench from A over mutual TLS, and an applier into B's
#              mariadbd, MySQL sink with its defaults and triggers = "fire",
#              so the probe trigger runs for the applied rows)
#      native  B's mariadbd as a replica of A over the link (CHANGE MASTER
#              TO ... MASTER_USE_GTID=slave_pos, slave_parallel_threads=4,
#              slave_parallel_mode=optimistic, slave_run_triggers_for_rbr=YES)
#    A first probe must reach B before the load starts (the pipeline is up);
#    the measurement window starts after it. Then, at once, sysbench
#    oltp_write_only --rate=BENCH_RATE --time=BENCH_SECONDS on A and
#    lag.probes(BENCH_SECONDS, BENCH_PROBE_MS / 1000) on A. Once both end,
#    every probe written in the window must arrive in B within
#    BENCH_DRAIN_TIMEOUT seconds (a probe that does not is a failure), and B
#    must catch up with A's whole binlog; then CHECKSUM TABLE of every
#    sysbench table must agree between A and B (the script fails if not).
# 3. Lag per probe = dst_ts - src_ts, both read in B (the probe row carries
#    its src_ts across); both servers run on this machine's one clock.
#    Nothing is discarded but the probes before the window. p50, p99 and max
#    by nearest rank.
# 4. Prints per system p50, p99, max, the probe count and sysbench's txn/s,
#    the target line, and last:
#      lag: drc_p99_ms=X native_p99_ms=Y
#
# Target: DRC p99 <= 1000 ms and below native's p99. Reported, not enforced:
# the exit status is non-zero only when a step fails or a check fails.
#
# Settings (environment):
#   BENCH_SYSTEMS="drc native"  systems to run, in order
#   BENCH_RATE=500              sysbench --rate (transactions per second)
#   BENCH_SECONDS=60            sysbench --time, and how long probes are written
#   BENCH_THREADS=8             sysbench --threads (enough for the rate)
#   BENCH_TABLES=4              sysbench --tables
#   BENCH_TABLE_SIZE=100000     sysbench --table-size
#   BENCH_PROBE_MS=10           pause between two probes
#   BENCH_CONGCTL=bbr           congestion control of the link's routes
#   BENCH_DELAY_MS=50           one-way delay of the link
#   BENCH_LOSS_PCT=1            loss of the link, each direction
#   BENCH_RATE_MBIT=100         rate cap of the link, each direction
#   BENCH_NATIVE_THREADS=4      slave_parallel_threads of the native replica
#   BENCH_DRAIN_TIMEOUT=120     seconds after the load for every probe to arrive
#   BENCH_DRC_LOG=info          DRC_LOG of both `drc run`s (logs in the temp dir)
#   BENCH_KEEP=0                1 keeps the temp dir (and prints where it is)
#   BENCH_DRC_BIN=              a drc binary to use instead of building one
#   BENCH_WANEM_BIN=            a wanem binary to use instead of building one
#
# Needs root (network namespaces, /dev/net/tun) and cargo; installs
# mariadb-server, mariadb-client, sysbench and iproute2 with apt when missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

SYSTEMS="${BENCH_SYSTEMS:-drc native}"
RATE="${BENCH_RATE:-500}"
SECS="${BENCH_SECONDS:-60}"
THREADS="${BENCH_THREADS:-8}"
TABLES="${BENCH_TABLES:-4}"
TABLE_SIZE="${BENCH_TABLE_SIZE:-100000}"
PROBE_MS="${BENCH_PROBE_MS:-10}"
CONGCTL="${BENCH_CONGCTL:-bbr}"
DELAY_MS="${BENCH_DELAY_MS:-50}"
LOSS_PCT="${BENCH_LOSS_PCT:-1}"
RATE_MBIT="${BENCH_RATE_MBIT:-100}"
NATIVE_THREADS="${BENCH_NATIVE_THREADS:-4}"
DRAIN_TIMEOUT="${BENCH_DRAIN_TIMEOUT:-120}"
DRC_LOG_LEVEL="${BENCH_DRC_LOG:-info}"
KEEP="${BENCH_KEEP:-0}"
TARGET_MS=1000

A_IP="$BENCH_A_IP"
B_IP="$BENCH_B_IP"
REPL_PASSWORD="bench-repl"
STREAM="a.bench"
RELAY_PORT=7400

# tracing-subscriber colours its output unless told not to.
export NO_COLOR=1

for s in $SYSTEMS; do
    case "$s" in
        drc | native) ;;
        *) bench_die "BENCH_SYSTEMS: unknown system '$s' (use drc, native)" ;;
    esac
done
case "$CONGCTL" in
    cubic | bbr | reno) ;;
    *) bench_die "BENCH_CONGCTL: unknown congestion control '$CONGCTL' (use cubic, bbr, reno)" ;;
esac
for v in RATE SECS THREADS TABLES TABLE_SIZE PROBE_MS NATIVE_THREADS DRAIN_TIMEOUT; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || bench_die "$v must be a positive integer (got '${!v}')"
done
[ "$(id -u)" -eq 0 ] || bench_die "needs root (network namespaces and /dev/net/tun for wanem)"
[ -c /dev/net/tun ] || bench_die "/dev/net/tun is missing (wanem needs tun devices)"

bench_require mariadbd:mariadb-server mariadb-install-db:mariadb-server \
    mariadb:mariadb-client sysbench:sysbench ip:iproute2 ss:iproute2
bench_wan_prepare

PRIMARY_ARGS=(--server-id=1 --log-bin=binlog
    --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL
    --max-binlog-size=1G --max-allowed-packet=1G
    --innodb-buffer-pool-size=512M --innodb-flush-log-at-trx-commit=0
    --sync-binlog=0 --character-set-server=utf8mb4)
TARGET_ARGS=(--server-id=2 --skip-slave-start --relay-log=relay
    --max-allowed-packet=1G --innodb-buffer-pool-size=512M --character-set-server=utf8mb4)

# --- the starting data, once ---------------------------------------------------

mkdir -p "$TMP/gen"
bench_mariadb_start "$TMP/gen" "${PRIMARY_ARGS[@]}"
GEN_PID="$MARIADB_PID"
SERVER_VERSION="$(bench_sql 'SELECT VERSION()')"
bench_log "server: $SERVER_VERSION"
bench_sql "CREATE DATABASE sbtest;
    CREATE USER 'repl'@'%' IDENTIFIED BY '$REPL_PASSWORD';
    GRANT REPLICATION SLAVE, BINLOG MONITOR, SELECT ON *.* TO 'repl'@'%'"
bench_log "sysbench prepare: $TABLES tables x $TABLE_SIZE rows"
sysbench oltp_write_only --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$MARIADB_PORT" \
    --mysql-user=root --mysql-password= --mysql-db=sbtest --tables="$TABLES" \
    --table-size="$TABLE_SIZE" prepare >"$BENCH_LOGS/sysbench-prepare.log" 2>&1 ||
    { tail -n 30 "$BENCH_LOGS/sysbench-prepare.log" >&2; bench_die "sysbench prepare"; }
# Each probe is a transaction of its own (autocommit), its src_ts the time
# it was written, just before its commit.
bench_mysql <<'SQL' || bench_die "create the probe table and procedure"
CREATE DATABASE lag;
CREATE TABLE lag.probe (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, src_ts DATETIME(6) NOT NULL);
DELIMITER //
CREATE PROCEDURE lag.probes(IN secs DOUBLE, IN pause_s DOUBLE)
BEGIN
    DECLARE t_end DATETIME(6) DEFAULT SYSDATE(6) + INTERVAL ROUND(secs * 1000000) MICROSECOND;
    WHILE SYSDATE(6) < t_end DO
        INSERT INTO lag.probe (src_ts) VALUES (SYSDATE(6));
        DO SLEEP(pause_s);
    END WHILE;
END//
DELIMITER ;
SQL
bench_sql 'RESET MASTER'
bench_sql 'SHUTDOWN' || true
for ((i = 0; i < 600; i++)); do
    kill -0 "$GEN_PID" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$GEN_PID" 2>/dev/null && bench_die "mariadbd did not shut down"
rm -f "$TMP/gen/data/"*.pid
GEN_DATA="$TMP/gen/data"

bench_tls_init "$TMP/tls"

# --- starting and checking a system ---------------------------------------------

# sql_a SQL / sql_b SQL: on region A's primary / region B's target.
sql_a() { bench_msql "$RUN/a/sock" "$1"; }
sql_b() { bench_msql "$RUN/b/sock" "$1"; }

DRC_PIDS=()

drc_logs_tail() {
    local f
    for f in "$RUN"/drc/*.log; do
        [ -f "$f" ] || continue
        echo "--- $(basename "$f"), last lines:" >&2
        tail -n 25 "$f" >&2 || true
    done
}

native_status() {
    "$(_bench_bin mariadb)" --no-defaults --user=root --socket="$RUN/b/sock" \
        -B -e 'SHOW SLAVE STATUS\G' 2>/dev/null || true
}

# Fails the script when what carries the stream has stopped.
check_alive() {
    local p st
    case "$SYS" in
        drc)
            for p in "${DRC_PIDS[@]}"; do
                kill -0 "$p" 2>/dev/null || { drc_logs_tail; bench_die "drc: a drc run exited (see above)"; }
            done
            ;;
        native)
            st="$(native_status)"
            if grep -qE '^ *Slave_(IO|SQL)_Running: No' <<<"$st"; then
                grep -E 'Running:|Last_(IO|SQL)_Error:' <<<"$st" >&2
                bench_die "native: a replication thread stopped (see above)"
            fi
            ;;
    esac
}

start_drc() {
    local d="$RUN/drc" i
    mkdir -p "$d"
    cat >"$d/a.toml" <<EOF
region = "a"

[relay]
listen = "$A_IP:$RELAY_PORT"
data_dir = "$d/a-data"
tls = $(bench_tls_table "$TMP/tls" a)

[[capture]]
stream = "$STREAM"
source = "mysql://root@127.0.0.1:3306"
start = "start"
schema_history = "$d/a-schema.jsonl"
relay = { url = "https://$A_IP:$RELAY_PORT", tls = $(bench_tls_table "$TMP/tls" a) }
EOF
    cat >"$d/b.toml" <<EOF
region = "b"

[relay]
listen = "$B_IP:$RELAY_PORT"
data_dir = "$d/b-data"
tls = $(bench_tls_table "$TMP/tls" b)

[[relay.upstreams]]
url = "https://$A_IP:$RELAY_PORT"
tls = $(bench_tls_table "$TMP/tls" b)
streams = ["$STREAM"]
subscriber = "relay-b"

[[apply]]
stream = "$STREAM"
subscriber = "apply-b"
relay = { url = "https://$B_IP:$RELAY_PORT", tls = $(bench_tls_table "$TMP/tls" b) }
sink = { kind = "mysql", url = "mysql://root@127.0.0.1:3306", triggers = "fire" }
EOF
    ip netns exec "$BENCH_LINK-a" env DRC_LOG="$DRC_LOG_LEVEL" NO_COLOR=1 \
        "$DRC_BIN" run --config "$d/a.toml" >"$d/a.log" 2>&1 &
    DRC_PIDS=($!)
    bench_ns_track "$!"
    # Region B starts once relay A listens, so that its first connection
    # succeeds rather than waiting out a retry backoff.
    for ((i = 0; i < 300; i++)); do
        check_alive
        ip netns exec "$BENCH_LINK-a" ss -Hltn "sport = :$RELAY_PORT" 2>/dev/null | grep -q . && break
        sleep 0.05
    done
    ip netns exec "$BENCH_LINK-b" env DRC_LOG="$DRC_LOG_LEVEL" NO_COLOR=1 \
        "$DRC_BIN" run --config "$d/b.toml" >"$d/b.log" 2>&1 &
    DRC_PIDS+=($!)
    bench_ns_track "$!"
    bench_log "[drc] drc run in $BENCH_LINK-a (relay A, capture) and $BENCH_LINK-b (relay B, applier)"
}

start_native() {
    sql_b "SET GLOBAL slave_parallel_threads = $NATIVE_THREADS;
        SET GLOBAL slave_parallel_mode = 'optimistic';
        SET GLOBAL slave_run_triggers_for_rbr = 'YES';
        SET GLOBAL gtid_slave_pos = '';
        CHANGE MASTER TO MASTER_HOST='$A_IP', MASTER_PORT=3306, MASTER_USER='repl',
            MASTER_PASSWORD='$REPL_PASSWORD', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;
        START SLAVE" || bench_die "native: set up replication in region B"
    local got
    got="$(sql_b 'SELECT @@slave_parallel_threads, @@slave_parallel_mode, @@slave_run_triggers_for_rbr')"
    bench_log "[native] replica in $BENCH_LINK-b: slave_parallel_threads, mode, triggers for rbr: $(tr '\t' ' ' <<<"$got")"
}

# Probes counted in region B (arrived) and their source rows there, of the
# probes with id >= $1.
arrived() {
    sql_b "SELECT COUNT(*) FROM lag.arrival WHERE id >= $1" 2>/dev/null || echo 0
}

# The offset (drc) or GTID position (native) region B has applied, and
# whether it covers A's whole binlog ($A_GTID).
caught_up() {
    case "$SYS" in
        drc)
            local txns at
            txns="${A_GTID##*-}"
            at="$(sql_b "SELECT \`offset\` FROM drc.checkpoints WHERE stream = '$STREAM'" 2>/dev/null || true)"
            [ "${at:-0}" -ge "$txns" ]
            ;;
        native)
            [ "$(sql_b 'SELECT @@gtid_slave_pos' 2>/dev/null || true)" = "$A_GTID" ]
            ;;
    esac
}

# Percentiles (nearest rank) of the numbers on stdin, one a line, in
# microseconds: prints "p50_ms p99_ms max_ms count".
percentiles() {
    sort -n | awk '{ v[NR] = $1 }
        function rank(p,   r) { r = int(p * NR + 0.999999); if (r < 1) r = 1; if (r > NR) r = NR; return v[r] }
        END {
            if (NR == 0) { print "0 0 0 0"; exit }
            printf "%.1f %.1f %.1f %d\n", rank(0.50) / 1000, rank(0.99) / 1000, v[NR] / 1000, NR
        }'
}

# --- one system ------------------------------------------------------------------

declare -A P50 P99 MAX PROBES TPS

run_system() {
    SYS="$1"
    RUN="$TMP/run-$SYS"
    local i n t0 w sb_pid probe_pid first n_a max_a got elapsed_s last_n=0
    mkdir -p "$RUN/a" "$RUN/b"
    bench_log "[$SYS] wanem up: ${DELAY_MS} ms each way, ${LOSS_PCT}% loss, ${RATE_MBIT} Mbit/s, congctl $CONGCTL"
    bench_link_up "dl$$${SYS:0:1}" "$RUN" "$CONGCTL"
    cp -a "$GEN_DATA" "$RUN/a/data"
    cp -a "$GEN_DATA" "$RUN/b/data"
    bench_ns_mariadbd "$BENCH_LINK-a" "$RUN/a" "${PRIMARY_ARGS[@]}" --bind-address=0.0.0.0 --port=3306
    bench_ns_mariadbd "$BENCH_LINK-b" "$RUN/b" "${TARGET_ARGS[@]}" --bind-address=127.0.0.1 --port=3306
    # The arrival stamp: SYSDATE(6) is the time the target writes the row,
    # whatever session time the writer set.
    sql_b "CREATE TABLE lag.arrival (id BIGINT NOT NULL PRIMARY KEY, dst_ts DATETIME(6) NOT NULL);
        CREATE TRIGGER lag.probe_arrival AFTER INSERT ON lag.probe FOR EACH ROW
            INSERT INTO lag.arrival (id, dst_ts) VALUES (NEW.id, SYSDATE(6))" ||
        bench_die "[$SYS] create the arrival table and trigger in region B"

    case "$SYS" in
        drc) start_drc ;;
        native) start_native ;;
    esac

    # The pipeline is up once a first probe has come through.
    sql_a "INSERT INTO lag.probe (src_ts) VALUES (SYSDATE(6))"
    t0="$(bench_now)"
    while [ "$(arrived 0)" -lt 1 ]; do
        check_alive
        if awk -v s="$(bench_elapsed "$t0")" 'BEGIN { exit !(s >= 60) }'; then
            if [ "$(sql_b 'SELECT COUNT(*) FROM lag.probe' 2>/dev/null || echo 0)" -ge 1 ]; then
                bench_die "[$SYS] the first probe reached region B but its trigger did not fire"
            fi
            [ "$SYS" = drc ] && drc_logs_tail
            bench_die "[$SYS] the first probe did not reach region B in 60 s"
        fi
        sleep 0.1
    done
    bench_log "[$SYS] first probe arrived after $(bench_elapsed "$t0") s; starting the load"
    first="$(sql_a 'SELECT COALESCE(MAX(id), 0) + 1 FROM lag.probe')"
    w="$(sql_a 'SELECT SYSDATE(6)')"

    sysbench oltp_write_only --db-driver=mysql --mysql-socket="$RUN/a/sock" \
        --mysql-user=root --mysql-password= --mysql-db=sbtest --tables="$TABLES" \
        --table-size="$TABLE_SIZE" --threads="$THREADS" --rate="$RATE" --time="$SECS" \
        --report-interval=10 run >"$RUN/sysbench.log" 2>&1 &
    sb_pid=$!
    bench_on_exit "kill -TERM $sb_pid 2>/dev/null"
    bench_msql "$RUN/a/sock" "CALL lag.probes($SECS, $PROBE_MS / 1000)" >"$RUN/probes.log" 2>&1 &
    probe_pid=$!
    bench_on_exit "kill -TERM $probe_pid 2>/dev/null"
    t0="$(bench_now)"
    while kill -0 "$sb_pid" 2>/dev/null || kill -0 "$probe_pid" 2>/dev/null; do
        sleep 1
        check_alive
        elapsed_s="$(bench_elapsed "$t0")"
        if [ "${elapsed_s%.*}" -ge "$((last_n + 10))" ] 2>/dev/null; then
            last_n=$((last_n + 10))
            bench_log "[$SYS] ${last_n} s: probes written $(sql_a "SELECT COUNT(*) FROM lag.probe WHERE id >= $first" 2>/dev/null || echo '?')," \
                "arrived $(arrived "$first")"
        fi
    done
    wait "$sb_pid" || { tail -n 30 "$RUN/sysbench.log" >&2; bench_die "[$SYS] sysbench run failed"; }
    wait "$probe_pid" || { cat "$RUN/probes.log" >&2; bench_die "[$SYS] the probe writer failed"; }
    TPS[$SYS]="$(awk '/^ *transactions:/ { gsub(/[()]/, "", $3); print $3; exit }' "$RUN/sysbench.log")"
    [ -n "${TPS[$SYS]}" ] || { tail -n 30 "$RUN/sysbench.log" >&2; bench_die "[$SYS] no transaction rate in sysbench's output"; }
    read -r n_a max_a < <(sql_a "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM lag.probe WHERE id >= $first")
    A_GTID="$(sql_a 'SELECT @@gtid_binlog_pos')"
    bench_log "[$SYS] load done: sysbench ${TPS[$SYS]} txn/s, $n_a probes written; waiting for region B"
    [ "$n_a" -gt 0 ] || bench_die "[$SYS] no probe was written during the load"
    # The ids of one session's inserts are dense: the window is ids
    # first..max_a, and their src_ts are all at or after $w.
    n="$(sql_a "SELECT COUNT(*) FROM lag.probe WHERE id >= $first AND src_ts < '$w'")"
    [ "$n" = 0 ] || bench_die "[$SYS] $n probes of the window carry a src_ts before its start"

    t0="$(bench_now)"
    while :; do
        got="$(arrived "$first")"
        [ "$got" -ge "$n_a" ] && caught_up && break
        check_alive
        if awk -v s="$(bench_elapsed "$t0")" -v t="$DRAIN_TIMEOUT" 'BEGIN { exit !(s >= t) }'; then
            [ "$SYS" = drc ] && drc_logs_tail
            if [ "$got" -lt "$n_a" ]; then
                bench_die "[$SYS] only $got of $n_a probes reached region B ${DRAIN_TIMEOUT} s after the load"
            fi
            bench_die "[$SYS] region B has all probes but did not catch up with A's binlog ($A_GTID) in ${DRAIN_TIMEOUT} s"
        fi
        sleep 0.2
    done
    bench_log "[$SYS] region B caught up $(bench_elapsed "$t0") s after the load"

    # Every sysbench table must hold the same rows on both sides.
    local tables="" ca cb
    for ((i = 1; i <= TABLES; i++)); do tables+="${tables:+, }sbtest.sbtest$i"; done
    ca="$(sql_a "CHECKSUM TABLE $tables")"
    cb="$(sql_b "CHECKSUM TABLE $tables")"
    [ "$ca" = "$cb" ] || {
        printf 'region A:\n%s\nregion B:\n%s\n' "$ca" "$cb" >&2
        bench_die "[$SYS] the sysbench tables differ between region A and region B"
    }
    [ "$(sql_b "SELECT COUNT(*) FROM lag.probe p JOIN lag.arrival a ON a.id = p.id WHERE p.id BETWEEN $first AND $max_a")" = "$n_a" ] ||
        bench_die "[$SYS] region B's probe rows and arrivals do not match A's $n_a probes"

    sql_b "SELECT TIMESTAMPDIFF(MICROSECOND, p.src_ts, a.dst_ts) FROM lag.probe p
        JOIN lag.arrival a ON a.id = p.id WHERE p.id BETWEEN $first AND $max_a" >"$RUN/lag-us.txt"
    read -r P50["$SYS"] P99["$SYS"] MAX["$SYS"] PROBES["$SYS"] < <(percentiles <"$RUN/lag-us.txt")
    bench_log "[$SYS] p50_ms=${P50[$SYS]} p99_ms=${P99[$SYS]} max_ms=${MAX[$SYS]} probes=${PROBES[$SYS]} sysbench_txn_per_s=${TPS[$SYS]}"

    if [ "$SYS" = drc ]; then
        local errs
        errs="$(grep -h -E '(^|[[:space:]])(ERROR|WARN)([[:space:]]|$)' "$RUN"/drc/*.log 2>/dev/null | head -n 5 || true)"
        [ -z "$errs" ] || bench_log "[drc] drc logged warnings or errors (first 5):"$'\n'"$errs"
        local p
        for p in "${DRC_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
        for ((i = 0; i < 100; i++)); do
            kill -0 "${DRC_PIDS[0]}" 2>/dev/null || kill -0 "${DRC_PIDS[1]}" 2>/dev/null || break
            sleep 0.1
        done
        DRC_PIDS=()
    fi
    bench_link_down
    [ "$KEEP" = 1 ] || rm -rf -- "$RUN/a/data" "$RUN/b/data"
}

for s in $SYSTEMS; do
    run_system "$s"
done

echo
echo "lag benchmark: $(bench_machine)"
echo "  server: mariadbd $SERVER_VERSION; load: sysbench oltp_write_only --rate=$RATE --time=$SECS" \
    "--threads=$THREADS, $TABLES tables x $TABLE_SIZE rows"
echo "  link:   ${DELAY_MS} ms each way, ${LOSS_PCT}% loss each way, ${RATE_MBIT} Mbit/s each way," \
    "congctl $CONGCTL (wanem)"
echo "  lag:    a probe row every ${PROBE_MS} ms on A (src_ts = SYSDATE(6)), stamped on B by a trigger" \
    "(SYSDATE(6)); ms, nearest rank"
echo
for s in $SYSTEMS; do
    printf '%-7s p50_ms=%s p99_ms=%s max_ms=%s probes=%s sysbench_txn_per_s=%s\n' \
        "$s:" "${P50[$s]}" "${P99[$s]}" "${MAX[$s]}" "${PROBES[$s]}" "${TPS[$s]}"
done
if [ -n "${P99[drc]:-}" ] && [ -n "${P99[native]:-}" ]; then
    if awk -v d="${P99[drc]}" -v n="${P99[native]}" -v t="$TARGET_MS" 'BEGIN { exit !(d <= t && d < n) }'; then
        echo "target (drc p99 <= $TARGET_MS ms and below native's ${P99[native]} ms): met"
    else
        echo "target (drc p99 <= $TARGET_MS ms and below native's ${P99[native]} ms): NOT met"
    fi
else
    echo "(the target needs both systems; BENCH_SYSTEMS=\"$SYSTEMS\")"
fi
echo "lag: drc_p99_ms=${P99[drc]:-n/a} native_p99_ms=${P99[native]:-n/a}"
