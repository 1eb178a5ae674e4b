#!/usr/bin/env bash
# Benchmark: `drc capture` against mariadb-binlog, on the same binlog, in one run.
#
#   bench/capture.sh
#
# 1. Starts a throwaway mariadbd (ROW binlog, FULL row image and metadata) on a
#    free port of 127.0.0.1, in a temp dir removed on exit.
# 2. Fills it with sysbench oltp_write_only: `prepare`, then RESET MASTER so
#    the binlog holds only what follows (BENCH_INCLUDE_PREPARE=1 keeps it),
#    then `run`, then FLUSH BINARY LOGS so every event is in a closed file.
# 3. Counts the row changes in the binlog (mariadb-binlog -v: one
#    `### INSERT INTO` / `### UPDATE` / `### DELETE FROM` per row) and times,
#    over the same binlog, each read from the server as a replica does:
#      raw fetch   mariadb-binlog --read-from-remote-server --raw
#                  (the floor: moving the bytes, nothing decoded)
#      mariadb -v  mariadb-binlog --read-from-remote-server -v (decoding rows to text)
#      drc null    drc capture --from-start --stop-at-end --format null
#                  (every row decoded into DRC's model, then dropped)
#      drc jsonl   drc capture ... --format jsonl > /dev/null
#    rate = row changes / wall seconds, the same row count for every reader.
# 4. Checks that drc saw exactly the row changes mariadb-binlog printed (the
#    count in drc's "capture done" log line, and the changes in its JSON
#    lines, by operation), and fails if they differ.
# 5. Prints a table, whether the target (drc null >= 70% of the raw fetch rate)
#    is met, and last:
#      capture: drc_events_per_s=X raw_fetch_events_per_s=Y ratio=Z
#
# The target is reported, not enforced: the exit status is non-zero only when a
# step fails or the counts disagree.
#
# Settings (environment):
#   BENCH_TABLES=4           sysbench --tables
#   BENCH_TABLE_SIZE=100000  sysbench --table-size
#   BENCH_SECONDS=90         sysbench run --time
#   BENCH_THREADS=4          sysbench run --threads
#   BENCH_INCLUDE_PREPARE=0  1 keeps prepare's bulk inserts in the binlog
#   BENCH_REPEAT_UNDER=30    a reader whose first run took less than this many
#                            seconds runs again, and the faster run counts
#   BENCH_JSONL_CHECK=1      0 skips counting the JSON lines' changes
#   BENCH_KEEP=0             1 keeps the temp dir (and prints where it is)
#   BENCH_DRC_BIN=           a drc binary to use instead of building one
#
# Needs cargo; installs mariadb-server, mariadb-client, sysbench and python3
# with apt when missing (root, or sudo).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

TABLES="${BENCH_TABLES:-4}"
TABLE_SIZE="${BENCH_TABLE_SIZE:-100000}"
SECONDS_RUN="${BENCH_SECONDS:-90}"
THREADS="${BENCH_THREADS:-4}"
INCLUDE_PREPARE="${BENCH_INCLUDE_PREPARE:-0}"
JSONL_CHECK="${BENCH_JSONL_CHECK:-1}"
KEEP="${BENCH_KEEP:-0}"
TARGET="0.70"

# tracing-subscriber colours its output unless told not to.
export NO_COLOR=1

bench_require mariadbd:mariadb-server mariadb-install-db:mariadb-server \
    mariadb:mariadb-client mariadb-binlog:mariadb-client \
    sysbench:sysbench python3:python3
command -v cargo >/dev/null 2>&1 || bench_die "cargo not found (install a Rust toolchain)"

bench_build_drc

bench_tmpdir
if [ "$KEEP" = 1 ]; then
    BENCH_EXIT_CMDS=()
    bench_on_exit "echo 'kept: $BENCH_TMP' >&2"
fi
TMP="$BENCH_TMP"
mkdir -p "$TMP/raw"

bench_mariadb_start "$TMP" \
    --server-id=1 --log-bin="$TMP/data/binlog" \
    --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL \
    --max-binlog-size=1G --max-allowed-packet=1G \
    --innodb-buffer-pool-size=512M --innodb-flush-log-at-trx-commit=0 \
    --sync-binlog=0 --character-set-server=utf8mb4
PORT="$MARIADB_PORT"
bench_log "server: $(bench_sql 'SELECT VERSION()')"

# --- load --------------------------------------------------------------------

SB=(sysbench oltp_write_only --db-driver=mysql --mysql-host=127.0.0.1
    --mysql-port="$PORT" --mysql-user=root --mysql-password=
    --mysql-db=sbtest --tables="$TABLES" --table-size="$TABLE_SIZE")

bench_sql 'CREATE DATABASE sbtest'
bench_log "sysbench prepare: $TABLES tables x $TABLE_SIZE rows"
"${SB[@]}" prepare >"$BENCH_LOGS/sysbench-prepare.log" 2>&1 ||
    { tail -n 30 "$BENCH_LOGS/sysbench-prepare.log" >&2; bench_die "sysbench prepare"; }

# After FLUSH BINARY LOGS the server appends a binlog checkpoint event to the
# new file once InnoDB has made the old file's transactions durable (about a
# second with innodb_flush_log_at_trx_commit=0). Waits until SHOW BINARY LOGS
# has not changed for 2 s, so that every reader sees the same bytes.
wait_binlog_settled() {
    local prev="" cur i stable=0
    for ((i = 0; i < 120; i++)); do
        cur="$(bench_sql 'SHOW BINARY LOGS')"
        if [ "$cur" = "$prev" ]; then
            stable=$((stable + 1))
            [ "$stable" -ge 4 ] && return 0
        else
            stable=0
        fi
        prev="$cur"
        sleep 0.5
    done
    bench_die "the binlog kept changing for 60 s after FLUSH BINARY LOGS"
}

if [ "$INCLUDE_PREPARE" != 1 ]; then
    # RESET MASTER rather than PURGE: the binlog (and the GTID history) then
    # starts anew, so --from-start means "the oldest binlog" for every reader.
    bench_sql 'RESET MASTER'
    bench_log "prepare's binlog dropped (RESET MASTER); the benchmark binlog is sysbench run alone"
fi

bench_log "sysbench run: $THREADS threads for ${SECONDS_RUN}s"
"${SB[@]}" --threads="$THREADS" --time="$SECONDS_RUN" --report-interval=0 run \
    >"$BENCH_LOGS/sysbench-run.log" 2>&1 ||
    { tail -n 30 "$BENCH_LOGS/sysbench-run.log" >&2; bench_die "sysbench run"; }
tps="$(awk '/transactions:/ { gsub(/[()]/, "", $3); print $3; exit }' "$BENCH_LOGS/sysbench-run.log")"
bench_log "sysbench: ${tps:-?} transactions/s"
bench_sql 'FLUSH BINARY LOGS'
wait_binlog_settled

binlogs="$(bench_sql 'SHOW BINARY LOGS')"
first_log="$(head -n1 <<<"$binlogs" | cut -f1)"
nfiles="$(wc -l <<<"$binlogs")"
binlog_bytes="$(awk -F'\t' '{ s += $2 } END { printf "%.0f", s }' <<<"$binlogs")"
binlog_mb="$(awk -v b="$binlog_bytes" 'BEGIN { printf "%.1f", b / 1048576 }')"
bench_log "binlog: $nfiles files from $first_log, $binlog_mb MB"

REMOTE=(--no-defaults --read-from-remote-server --host=127.0.0.1 --port="$PORT" --user=root)
MB=(mariadb-binlog)

# --- raw fetch (the floor) ---------------------------------------------------

raw_fetch() {
    rm -rf "$TMP/raw" && mkdir -p "$TMP/raw"
    "${MB[@]}" "${REMOTE[@]}" --raw --result-file="$TMP/raw/" "$first_log" --to-last-log
}
bench_timed raw_fetch raw_fetch
raw_secs="$BENCH_SECS"
raw_cpu="$BENCH_CPU"
raw_bytes="$(cat "$TMP"/raw/* | wc -c)"
[ "$raw_bytes" -eq "$binlog_bytes" ] ||
    bench_die "raw fetch wrote $raw_bytes bytes, the server lists $binlog_bytes"

# --- the row count, from mariadb-binlog -v over the fetched copy -------------

bench_log "counting row changes (mariadb-binlog -v)"
read -r n_ins n_upd n_del < <(
    "${MB[@]}" --no-defaults -v --base64-output=DECODE-ROWS "$TMP"/raw/* |
        awk '/^### INSERT INTO / { i++ } /^### UPDATE / { u++ } /^### DELETE FROM / { d++ }
             END { printf "%d %d %d\n", i, u, d }'
)
rows=$((n_ins + n_upd + n_del))
bench_log "row changes: $rows (insert $n_ins, update $n_upd, delete $n_del)"
[ "$rows" -gt 0 ] || bench_die "the binlog has no row changes"

# --- mariadb-binlog -v, decoding from the server ------------------------------

decode() {
    "${MB[@]}" "${REMOTE[@]}" -v --base64-output=DECODE-ROWS "$first_log" --to-last-log >/dev/null
}
bench_timed mariadb_v decode
decode_secs="$BENCH_SECS"
decode_cpu="$BENCH_CPU"

# --- drc capture --------------------------------------------------------------

DRC=("$DRC_BIN" capture --source "mysql://root@127.0.0.1:$PORT" --from-start --stop-at-end)

# The changes=N of drc's "capture done" log line in $1.
drc_changes() {
    sed 's/\x1b\[[0-9;]*m//g' "$1" | grep 'capture done' | tail -n1 |
        sed -n 's/.*[^_]changes=\([0-9][0-9]*\).*/\1/p'
}

drc_null() { "${DRC[@]}" --format null >/dev/null; }
bench_timed drc_null drc_null
null_secs="$BENCH_SECS"
null_cpu="$BENCH_CPU"
null_changes="$(drc_changes "$BENCH_LOGS/drc_null.err")"

drc_jsonl() { "${DRC[@]}" --format jsonl >/dev/null; }
bench_timed drc_jsonl drc_jsonl
jsonl_secs="$BENCH_SECS"
jsonl_cpu="$BENCH_CPU"
jsonl_changes="$(drc_changes "$BENCH_LOGS/drc_jsonl.err")"

# --- the counts must agree ----------------------------------------------------

mismatch=0
check_count() {
    if [ "$2" != "$rows" ]; then
        echo "COUNT MISMATCH: $1 says ${2:-nothing}, mariadb-binlog -v has $rows row changes" >&2
        mismatch=1
    fi
}
check_count "drc --format null (capture done changes=)" "$null_changes"
check_count "drc --format jsonl (capture done changes=)" "$jsonl_changes"

if [ "$JSONL_CHECK" = 1 ]; then
    bench_log "counting the changes in drc's JSON lines"
    read -r j_ins j_upd j_del j_other < <(
        "${DRC[@]}" --format jsonl 2>"$BENCH_LOGS/drc_jsonl_count.err" | python3 -c '
import json, sys
n = {"insert": 0, "update": 0, "delete": 0}
other = 0
for line in sys.stdin:
    for c in json.loads(line).get("changes") or ():
        op = c.get("op")
        if op in n:
            n[op] += 1
        else:
            other += 1
print(n["insert"], n["update"], n["delete"], other)
'
    ) || bench_die "drc capture --format jsonl | count"
    [ -n "${j_ins:-}" ] || { tail -n 30 "$BENCH_LOGS/drc_jsonl_count.err" >&2; bench_die "counting JSON lines"; }
    bench_log "JSON lines: insert $j_ins, update $j_upd, delete $j_del, other $j_other"
    if [ "$j_ins $j_upd $j_del $j_other" != "$n_ins $n_upd $n_del 0" ]; then
        echo "COUNT MISMATCH: drc's JSON lines have insert $j_ins update $j_upd delete $j_del other $j_other;" \
            "mariadb-binlog -v has insert $n_ins update $n_upd delete $n_del" >&2
        mismatch=1
    fi
fi
[ "$mismatch" -eq 0 ] || bench_die "drc and mariadb-binlog disagree on the number of row changes"

# --- report -------------------------------------------------------------------

raw_rate="$(bench_rate "$rows" "$raw_secs")"
null_rate="$(bench_rate "$rows" "$null_secs")"
ratio="$(awk -v a="$null_rate" -v b="$raw_rate" 'BEGIN { printf "%.2f", a / b }')"

row() {
    awk -v name="$1" -v s="$2" -v c="$3" -v n="$rows" -v b="$binlog_bytes" -v raw="$raw_rate" 'BEGIN {
        r = n / s
        printf "%-44s %8.3f %7.2f %14.0f %7.1f %7.2f\n", name, s, c, r, b / 1048576 / s, r / raw
    }'
}

echo
echo "capture benchmark: $(bench_machine)"
echo "  server:   mariadbd $(bench_sql 'SELECT VERSION()'), sysbench oltp_write_only" \
    "$TABLES tables x $TABLE_SIZE rows, $THREADS threads, ${SECONDS_RUN}s (${tps:-?} tps)"
echo "  binlog:   $binlog_mb MB in $nfiles files, $rows row changes" \
    "(insert $n_ins, update $n_upd, delete $n_del)"
echo
printf '%-44s %8s %7s %14s %7s %7s\n' "reader" "seconds" "cpu s" "row changes/s" "MB/s" "vs raw"
row "mariadb-binlog --raw (raw fetch, the floor)" "$raw_secs" "$raw_cpu"
row "mariadb-binlog -v (decode to text)" "$decode_secs" "$decode_cpu"
row "drc capture --format null" "$null_secs" "$null_cpu"
row "drc capture --format jsonl" "$jsonl_secs" "$jsonl_cpu"
echo "(seconds: wall clock; cpu s: the reader's user + system CPU, the server's not included)"
echo
if awk -v r="$ratio" -v t="$TARGET" 'BEGIN { exit !(r >= t) }'; then
    echo "target (>= $TARGET): met"
else
    echo "target (>= $TARGET): NOT met"
fi
echo "capture: drc_events_per_s=$null_rate raw_fetch_events_per_s=$raw_rate ratio=$ratio"
