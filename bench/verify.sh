#!/usr/bin/env bash
# Benchmark: finding one changed row between two servers holding the same
# sysbench tables, `drc verify` against pt-table-sync --print and against
# CHECKSUM TABLE on both servers at once, in one run.
#
#   bench/verify.sh
#
# 1. Starts a throwaway mariadbd in a temp dir removed on exit, runs sysbench
#    oltp_read_write `prepare` (BENCH_TABLES x BENCH_TABLE_SIZE rows), shuts
#    it down cleanly and copies its datadir: the two servers start from the
#    very same files. Both start; one row of the middle table is changed on
#    the target (its `c` column, in the middle of the key range).
# 2. Warms both buffer pools (one untimed CHECKSUM TABLE of every table),
#    then times, one after the other, by wall clock:
#      drc          drc verify --source A --target B --tables sbtest.* --json
#                   (exits 1: the servers differ; found = the differing rows
#                   it reports)
#      pt-table-sync  pt-table-sync --print --databases sbtest (A then B as
#                   two DSNs; no --execute): the statements that would sync B
#      checksum     CHECKSUM TABLE of every table, run on both servers at once
#                   (two mariadb clients in parallel, until both finish):
#                   whole-table only, it says which table differs, not which row
# 3. Checks that drc found exactly the changed row, with its key, and that
#    pt-table-sync printed a statement for it.
# 4. Prints the three times, the target lines, and last:
#      verify: drc_s=X pt_table_sync_s=Y checksum_table_s=Z found=N
#
# Targets (reported, not enforced): the changed row found,
# drc_s <= 1.2 x checksum_table_s and drc_s <= 0.25 x pt_table_sync_s.
#
# Settings (environment):
#   BENCH_TABLES=8             sysbench --tables
#   BENCH_TABLE_SIZE=1000000   sysbench --table-size
#   BENCH_DRC_PARALLEL=2       drc verify --parallel
#   BENCH_KEEP=0               1 keeps the temp dir (and prints where it is)
#   BENCH_DRC_BIN=             a drc binary to use instead of building one
#
# Needs cargo; installs mariadb-server, mariadb-client, sysbench,
# percona-toolkit and python3 with apt when missing (root, or sudo).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

TABLES="${BENCH_TABLES:-8}"
TABLE_SIZE="${BENCH_TABLE_SIZE:-1000000}"
DRC_PARALLEL="${BENCH_DRC_PARALLEL:-2}"
KEEP="${BENCH_KEEP:-0}"

export NO_COLOR=1

bench_require mariadbd:mariadb-server mariadb-install-db:mariadb-server \
    mariadb:mariadb-client sysbench:sysbench pt-table-sync:percona-toolkit python3:python3

bench_build_drc
bench_tmpdir
if [ "$KEEP" = 1 ]; then
    BENCH_EXIT_CMDS=()
    bench_on_exit "echo 'kept: $BENCH_TMP' >&2"
fi
TMP="$BENCH_TMP"
cp "$DRC_BIN" "$TMP/drc"
DRC="$TMP/drc"

# Enough buffer pool for the tables: every tool reads from memory.
POOL_MB=$((TABLES * TABLE_SIZE / 4000 + 256))
COMMON=(--innodb-buffer-pool-size="${POOL_MB}M" --character-set-server=utf8mb4
    --max-connections=200 --skip-log-bin)

sql_at() {
    local port="$1"
    shift
    MARIADB_PORT="$port" bench_sql "$1"
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

# --- two servers with the same rows ------------------------------------------

mkdir -p "$TMP/a" "$TMP/b"
bench_mariadb_start "$TMP/a" "${COMMON[@]}"
A_PORT="$MARIADB_PORT"
bench_log "server: $(sql_at "$A_PORT" 'SELECT VERSION()')"
sql_at "$A_PORT" 'CREATE DATABASE sbtest'
bench_log "sysbench prepare: $TABLES tables x $TABLE_SIZE rows"
sysbench oltp_read_write --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$A_PORT" \
    --mysql-user=root --mysql-password= --mysql-db=sbtest --tables="$TABLES" \
    --table-size="$TABLE_SIZE" --threads="$TABLES" prepare >"$BENCH_LOGS/sysbench-prepare.log" 2>&1 ||
    { tail -n 30 "$BENCH_LOGS/sysbench-prepare.log" >&2; bench_die "sysbench prepare"; }
shutdown_at "$A_PORT" "$MARIADB_PID"
cp -a "$TMP/a/data" "$TMP/b/data"
bench_log "datadir copied"
bench_mariadbd_run "$TMP/a" "${COMMON[@]}"
A_PORT="$MARIADB_PORT"
bench_mariadbd_run "$TMP/b" "${COMMON[@]}"
B_PORT="$MARIADB_PORT"

CHANGED_TABLE="sbtest$(((TABLES + 1) / 2))"
CHANGED_ID=$((TABLE_SIZE / 2 + 1))
sql_at "$B_PORT" "UPDATE sbtest.$CHANGED_TABLE SET c = 'changed by bench/verify.sh' WHERE id = $CHANGED_ID"
bench_log "changed sbtest.$CHANGED_TABLE id=$CHANGED_ID on the target"

tables="$(seq -f 'sbtest.sbtest%g' 1 "$TABLES" | paste -sd, -)"
checksum_both() {
    MARIADB_PORT="$A_PORT" bench_sql "CHECKSUM TABLE $tables" >"$TMP/sum-a" &
    local pa=$!
    MARIADB_PORT="$B_PORT" bench_sql "CHECKSUM TABLE $tables" >"$TMP/sum-b" &
    local pb=$!
    wait "$pa" && wait "$pb"
}
bench_log "warming both buffer pools"
checksum_both

# --- the three comparisons -----------------------------------------------------

drc_verify() {
    local rc=0
    "$DRC" verify --source "mysql://root@127.0.0.1:$A_PORT" --target "mysql://root@127.0.0.1:$B_PORT" \
        --tables 'sbtest.*' --parallel "$DRC_PARALLEL" --json >"$TMP/drc.json" || rc=$?
    [ "$rc" -eq 1 ] || { echo "drc verify exited $rc, expected 1 (differences)" >&2; return 1; }
}
bench_log "drc verify"
bench_timed drc drc_verify
DRC_S="$BENCH_SECS"
DRC_CPU="$BENCH_CPU"

# pt-table-sync exits 2 when a table differed (0: none, 1 or 3: an error).
pt_sync() {
    local rc=0
    pt-table-sync --print --databases sbtest --no-check-slave \
        "h=127.0.0.1,P=$A_PORT,u=root" "h=127.0.0.1,P=$B_PORT,u=root" >"$TMP/pt.sql" || rc=$?
    [ "$rc" -eq 0 ] || [ "$rc" -eq 2 ] || { echo "pt-table-sync exited $rc" >&2; return 1; }
}
bench_log "pt-table-sync --print"
bench_timed pt-table-sync pt_sync
PT_S="$BENCH_SECS"
PT_CPU="$BENCH_CPU"

bench_log "CHECKSUM TABLE on both servers at once"
bench_timed checksum checksum_both
SUM_S="$BENCH_SECS"
different_tables="$(diff "$TMP/sum-a" "$TMP/sum-b" | grep -c '^>' || true)"

# --- what each found -------------------------------------------------------------

read -r FOUND FOUND_KEYS < <(python3 - "$TMP/drc.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
keys = [f"{t['table']}:{d['kind']}:" + ",".join(f"{k}={v}" for k, v in d["key"])
        for t in r["tables"] for d in t["diffs"]]
print(sum(t["diff_count"] for t in r["tables"]), " ".join(keys) or "-")
PY
)
EXPECTED="sbtest.$CHANGED_TABLE:different:id=$CHANGED_ID"
[ "$FOUND_KEYS" = "$EXPECTED" ] || bench_die "drc verify found '$FOUND_KEYS', expected '$EXPECTED'"
PT_FOUND="$(grep -c -E '^(REPLACE|INSERT|DELETE|UPDATE)' "$TMP/pt.sql" || true)"
grep -q "\`id\`='$CHANGED_ID'" "$TMP/pt.sql" || bench_log "warning: pt-table-sync printed no statement naming id=$CHANGED_ID"
[ "$different_tables" = 1 ] || bench_log "warning: CHECKSUM TABLE saw $different_tables differing tables, expected 1"

# --- report -------------------------------------------------------------------------

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
met() { awk -v r="$1" -v t="$2" 'BEGIN { print (r <= t ? "met" : "NOT met") }'; }
R_SUM="$(ratio "$DRC_S" "$SUM_S")"
R_PT="$(ratio "$DRC_S" "$PT_S")"
printf '\n%s, %s tables x %s rows, one row changed on the target, %s\n' \
    "$(date +%F)" "$TABLES" "$TABLE_SIZE" "$(bench_machine)"
printf '%-16s %10s %10s  %s\n' tool seconds cpu_s found
printf '%-16s %10s %10s  %s\n' "drc verify" "$DRC_S" "$DRC_CPU" "$FOUND row ($FOUND_KEYS)"
printf '%-16s %10s %10s  %s\n' "pt-table-sync" "$PT_S" "$PT_CPU" "$PT_FOUND statements"
printf '%-16s %10s %10s  %s\n' "CHECKSUM TABLE" "$SUM_S" "-" "$different_tables differing tables (no rows)"
printf 'target: the changed row found: %s\n' "$([ "$FOUND" = 1 ] && echo met || echo 'NOT met')"
printf 'target: drc_s <= 1.2 x checksum_table_s: %s (%sx)\n' "$(met "$R_SUM" 1.2)" "$R_SUM"
printf 'target: drc_s <= 0.25 x pt_table_sync_s: %s (%sx)\n' "$(met "$R_PT" 0.25)" "$R_PT"
printf 'verify: drc_s=%s pt_table_sync_s=%s checksum_table_s=%s found=%s\n' "$DRC_S" "$PT_S" "$SUM_S" "$FOUND"
