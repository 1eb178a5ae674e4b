#!/usr/bin/env bash
# Benchmark: moving a whole database to a new server, `drc migrate` against
# mydumper + myloader (MariaDB target) and against pgloader (PostgreSQL
# target), on the same rows, in one run.
#
#   bench/migrate.sh                          # 8 x 1,000,000 rows: the peers take about 2 minutes
#   BENCH_MIGRATE_ROWS=20000 bench/migrate.sh # a quick check
#
# 1. Starts three throwaway servers in a temp dir removed on exit: a source
#    mariadbd (ROW binlog, FULL row image and metadata), a target mariadbd
#    with the very same settings, and a PostgreSQL cluster (initdb as the
#    `postgres` user; shared_buffers=1GB, max_wal_size=4GB,
#    maintenance_work_mem=512MB, the same for both PostgreSQL runs). Every
#    mariadbd: innodb_flush_log_at_trx_commit=1, sync_binlog=1, a 1 GiB redo
#    log and a buffer pool that holds the tables.
# 2. sysbench oltp_read_write `prepare` (BENCH_MIGRATE_TABLES x
#    BENCH_MIGRATE_ROWS rows) into database sbtest of the source.
# 3. Times each of these once, one after the other, by wall clock:
#      mydumper+myloader  mydumper --threads P --rows R --trx-consistency-only
#                   into a dump dir, then myloader --threads P into the target
#                   mariadbd (no sbtest there before; the tools' defaults
#                   otherwise: uncompressed dump, 1 MB statements, 1000 queries
#                   per transaction, myloader's session binlog off). The time
#                   is the sum of both.
#      pgloader     pgloader --dynamic-space-size 8192 --with "prefetch rows =
#                   10000" from the source into a fresh PostgreSQL database
#                   (pgloader's defaults otherwise: 4 workers, concurrency 1,
#                   schema sbtest, indexes built after the data)
#      drc          drc migrate --parallel P into the target mariadbd (sbtest
#                   dropped before), then into a fresh PostgreSQL database
#                   (pgloader's dropped before; the rows land in schema
#                   sbtest): snapshot, catch-up and built-in verify, exit 0
#                   only when the target is identical
#    Before each timed step the servers write back what the step before
#    left dirty (see quiesce), so no tool pays for another's writes.
# 4. Checks after every run that the target holds as many rows in each table
#    as the source (and the source BENCH_MIGRATE_ROWS in each): a run that
#    lost rows fails the benchmark instead of counting as fast.
# 5. Prints the times and last two lines:
#      migrate: drc_pg_s=X2 pgloader_s=Z ratio_mysql=X/Y ratio_pg=X2/Z
#      migrate: drc_s=X mydumper_myloader_s=Y pgloader_s=Z
#    (X: drc into MariaDB, X2: drc into PostgreSQL; ratio < 1 means drc is
#    faster). When the drc binary has no `migrate` subcommand the drc runs
#    are skipped, said so, and their figures are NA.
#
# Settings (environment):
#   BENCH_MIGRATE_TABLES=8        sysbench --tables
#   BENCH_MIGRATE_ROWS=1000000    sysbench --table-size
#   BENCH_MIGRATE_PARALLEL=4      drc --parallel, mydumper and myloader --threads
#   BENCH_MYDUMPER_ROWS=100000    mydumper --rows (chunk size, so that myloader
#                                 loads one table with several threads; 0 is
#                                 mydumper's default, one file per table, and
#                                 was slower to load at 8 x 1,000,000 rows)
#   BENCH_KEEP=0                  1 keeps the temp dir (and prints where it is)
#   BENCH_DRC_BIN=                a drc binary to use instead of building one
#
# Needs cargo (unless BENCH_DRC_BIN is set) and root (or sudo): PostgreSQL
# runs as the `postgres` user. Installs mariadb-server, mariadb-client,
# sysbench, mydumper, pgloader, postgresql and python3 with apt when missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

TABLES="${BENCH_MIGRATE_TABLES:-8}"
ROWS="${BENCH_MIGRATE_ROWS:-1000000}"
PARALLEL="${BENCH_MIGRATE_PARALLEL:-4}"
DUMP_ROWS="${BENCH_MYDUMPER_ROWS:-100000}"
KEEP="${BENCH_KEEP:-0}"

export NO_COLOR=1

bench_require mariadbd:mariadb-server mariadb-install-db:mariadb-server \
    mariadb:mariadb-client sysbench:sysbench mydumper:mydumper myloader:mydumper \
    pgloader:pgloader /usr/lib/postgresql/15/bin/initdb:postgresql python3:python3

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
DRC_OK=1
if ! "$DRC" migrate --help >"$BENCH_LOGS/drc-migrate-help.log" 2>&1; then
    DRC_OK=0
    bench_log "SKIPPING the drc runs: '$DRC_BIN migrate --help' failed (no migrate subcommand in this binary?); drc figures will be NA"
fi

# Settings every mariadbd shares: durable commits, a redo log big enough for
# bulk loads, a buffer pool that holds the tables, one character set.
POOL_MB=$((TABLES * ROWS / 4000 + 256))
COMMON=(--innodb-flush-log-at-trx-commit=1 --sync-binlog=1
    --innodb-buffer-pool-size="${POOL_MB}M" --innodb-log-file-size=1G
    --max-allowed-packet=1G --character-set-server=utf8mb4 --max-connections=200
    --binlog-format=ROW --binlog-row-image=FULL --binlog-row-metadata=FULL
    --max-binlog-size=1G)
PG_ARGS=(-c shared_buffers=1GB -c max_wal_size=4GB -c maintenance_work_mem=512MB)

sql_at() {
    MARIADB_PORT="$1" bench_sql "$2"
}

# "sbtest1<TAB>N" lines, one per table in name order, from a mariadbd or from
# PostgreSQL (which may return the parts of a UNION ALL in any order).
count_sql() {
    local i sep="" q=""
    for ((i = 1; i <= TABLES; i++)); do
        q+="${sep}SELECT 'sbtest$i', COUNT(*) FROM sbtest.sbtest$i"
        sep=" UNION ALL "
    done
    echo "$q"
}
counts_mariadb() { sql_at "$1" "$(count_sql)" | LC_ALL=C sort; }
counts_pg() { bench_psql "$1" "$(count_sql)" | tr '|' '\t' | LC_ALL=C sort; }

# check_counts WHAT COUNTS: fails unless COUNTS equals the source's.
check_counts() {
    [ "$2" = "$SRC_COUNTS" ] || bench_die "$1: row counts differ from the source's:
$(diff <(echo "$SRC_COUNTS") <(echo "$2") || true)"
    bench_log "$1: row counts equal the source's ($TABLES tables x $ROWS rows)"
}

# quiesce: before each timed step, lets every server write back the pages
# the step before dirtied (InnoDB flushes hard while
# innodb_max_dirty_pages_pct is 0 and the I/O capacity is high, both set
# back to their defaults after; PostgreSQL gets a CHECKPOINT), at most 120 s
# per server, so that no tool pays for the one before it.
quiesce() {
    local port dirty deadline
    for port in "$SRC_PORT" "$DST_PORT"; do
        deadline=$((SECONDS + 120))
        sql_at "$port" 'SET GLOBAL innodb_io_capacity_max = 100000, innodb_io_capacity = 50000,
            innodb_max_dirty_pages_pct = 0'
        while :; do
            dirty="$(sql_at "$port" "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS
                WHERE VARIABLE_NAME = 'INNODB_BUFFER_POOL_PAGES_DIRTY'")"
            [ "${dirty:-0}" -lt 200 ] && break
            if [ "$SECONDS" -ge "$deadline" ]; then
                bench_log "quiesce: :$port still has $dirty dirty pages after 120 s"
                break
            fi
            sleep 1
        done
        sql_at "$port" 'SET GLOBAL innodb_max_dirty_pages_pct = 90, innodb_io_capacity = 200,
            innodb_io_capacity_max = 2000'
    done
    bench_psql postgres 'CHECKPOINT' >/dev/null
}

# --- servers and data -----------------------------------------------------------

mkdir -p "$TMP/src" "$TMP/dst"
bench_mariadb_start "$TMP/src" --server-id=1 --log-bin="$TMP/src/data/binlog" "${COMMON[@]}"
SRC_PORT="$MARIADB_PORT"
MARIADB_VERSION="$(sql_at "$SRC_PORT" 'SELECT VERSION()')"
bench_mariadb_start "$TMP/dst" --server-id=2 --log-bin="$TMP/dst/data/binlog" "${COMMON[@]}"
DST_PORT="$MARIADB_PORT"
bench_pg_start "$TMP/pg" "${PG_ARGS[@]}"
PG_VERSION="$(bench_psql postgres 'SHOW server_version')"
bench_log "servers: MariaDB $MARIADB_VERSION (source :$SRC_PORT, target :$DST_PORT), PostgreSQL $PG_VERSION (:$PG_PORT)"

sql_at "$SRC_PORT" 'CREATE DATABASE sbtest'
bench_log "sysbench prepare: $TABLES tables x $ROWS rows"
sysbench oltp_read_write --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$SRC_PORT" \
    --mysql-user=root --mysql-password= --mysql-db=sbtest --tables="$TABLES" \
    --table-size="$ROWS" --threads="$TABLES" prepare >"$BENCH_LOGS/sysbench-prepare.log" 2>&1 ||
    { tail -n 30 "$BENCH_LOGS/sysbench-prepare.log" >&2; bench_die "sysbench prepare"; }
SRC_COUNTS="$(counts_mariadb "$SRC_PORT")"
expected="$(for ((i = 1; i <= TABLES; i++)); do printf 'sbtest%s\t%s\n' "$i" "$ROWS"; done | LC_ALL=C sort)"
[ "$SRC_COUNTS" = "$expected" ] || bench_die "the source holds other row counts than sysbench was asked for:
$SRC_COUNTS"
SRC_MB="$(sql_at "$SRC_PORT" "SELECT ROUND(SUM(data_length + index_length) / 1048576)
    FROM information_schema.tables WHERE table_schema = 'sbtest'")"
bench_log "source: $TABLES tables x $ROWS rows, $SRC_MB MB (data + indexes)"

# --- mydumper + myloader --------------------------------------------------------

MYDUMPER_VERSION="$(mydumper --version 2>&1 | head -n 1)"
MYLOADER_VERSION="$(myloader --version 2>&1 | head -n 1)"
DUMP="$TMP/dump"
run_mydumper() {
    mydumper --host 127.0.0.1 --port "$SRC_PORT" --user root --database sbtest \
        --outputdir "$DUMP" --threads "$PARALLEL" --rows "$DUMP_ROWS" --trx-consistency-only
}
run_myloader() {
    myloader --host 127.0.0.1 --port "$DST_PORT" --user root --directory "$DUMP" \
        --threads "$PARALLEL"
}
bench_log "mydumper: --threads $PARALLEL --rows $DUMP_ROWS --trx-consistency-only ($MYDUMPER_VERSION)"
quiesce
BENCH_REPEAT_UNDER=0 bench_timed mydumper run_mydumper
DUMP_S="$BENCH_SECS"
DUMP_CPU="$BENCH_CPU"
DUMP_MB="$(du -sm "$DUMP" | cut -f1)"
bench_log "dump: $DUMP_MB MB in $(find "$DUMP" -type f | wc -l) files"
bench_log "myloader: --threads $PARALLEL ($MYLOADER_VERSION)"
BENCH_REPEAT_UNDER=0 bench_timed myloader run_myloader
LOAD_S="$BENCH_SECS"
LOAD_CPU="$BENCH_CPU"
check_counts "mydumper+myloader" "$(counts_mariadb "$DST_PORT")"
PEER_MYSQL_S="$(awk -v a="$DUMP_S" -v b="$LOAD_S" 'BEGIN { printf "%.3f", a + b }')"
rm -rf -- "$DUMP"
sql_at "$DST_PORT" 'DROP DATABASE sbtest'

# --- pgloader ---------------------------------------------------------------------

PGLOADER_VERSION="$(pgloader --version 2>&1 | head -n 1)"
bench_psql postgres 'CREATE DATABASE pgloader'
run_pgloader() {
    # --dynamic-space-size is an option of pgloader's Lisp runtime: it must
    # come first.
    pgloader --dynamic-space-size 8192 --with "prefetch rows = 10000" \
        --root-dir "$TMP/pgloader" --logfile "$BENCH_LOGS/pgloader.log" \
        --summary "$BENCH_LOGS/pgloader-summary.txt" \
        "mysql://root@127.0.0.1:$SRC_PORT/sbtest" "postgresql://postgres@127.0.0.1:$PG_PORT/pgloader" \
        >"$BENCH_LOGS/pgloader.out"
}
bench_log "pgloader: --dynamic-space-size 8192 --with 'prefetch rows = 10000' ($PGLOADER_VERSION)"
quiesce
BENCH_REPEAT_UNDER=0 bench_timed pgloader run_pgloader
PGLOADER_S="$BENCH_SECS"
PGLOADER_CPU="$BENCH_CPU"
check_counts "pgloader" "$(counts_pg pgloader)"
bench_psql postgres 'DROP DATABASE pgloader'

# --- drc migrate ----------------------------------------------------------------------

DRC_S=NA DRC_CPU=- DRC_PG_S=NA DRC_PG_CPU=-
run_drc() {
    local name="$1" target="$2"
    mkdir -p "$TMP/state-$name"
    "$DRC" migrate --source "mysql://root@127.0.0.1:$SRC_PORT" --target "$target" \
        --tables 'sbtest.*' --parallel "$PARALLEL" --state "$TMP/state-$name" \
        >"$BENCH_LOGS/drc-$name.out"
}
if [ "$DRC_OK" = 1 ]; then
    bench_log "drc migrate into MariaDB: --parallel $PARALLEL"
    quiesce
    BENCH_REPEAT_UNDER=0 bench_timed drc-mysql run_drc mysql "mysql://root@127.0.0.1:$DST_PORT"
    DRC_S="$BENCH_SECS"
    DRC_CPU="$BENCH_CPU"
    check_counts "drc migrate into MariaDB" "$(counts_mariadb "$DST_PORT")"

    bench_psql postgres 'CREATE DATABASE drc'
    bench_log "drc migrate into PostgreSQL: --parallel $PARALLEL"
    quiesce
    BENCH_REPEAT_UNDER=0 bench_timed drc-pg run_drc pg "postgres://postgres@127.0.0.1:$PG_PORT/drc"
    DRC_PG_S="$BENCH_SECS"
    DRC_PG_CPU="$BENCH_CPU"
    check_counts "drc migrate into PostgreSQL" "$(counts_pg drc)"
else
    bench_log "drc runs skipped (see above)"
fi

# --- report ---------------------------------------------------------------------------

ratio() {
    [ "$1" = NA ] && { echo NA; return; }
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'
}
R_MYSQL="$(ratio "$DRC_S" "$PEER_MYSQL_S")"
R_PG="$(ratio "$DRC_PG_S" "$PGLOADER_S")"
printf '\n%s, %s tables x %s rows (%s MB in InnoDB), MariaDB %s, PostgreSQL %s, %s\n' \
    "$(date +%F)" "$TABLES" "$ROWS" "$SRC_MB" "$MARIADB_VERSION" "$PG_VERSION" "$(bench_machine)"
printf 'peers: %s; %s; %s\n' "$MYDUMPER_VERSION" "$MYLOADER_VERSION" "$PGLOADER_VERSION"
printf '%-28s %10s %10s\n' "tool (target)" seconds cpu_s
printf '%-28s %10s %10s\n' "mydumper (dump dir)" "$DUMP_S" "$DUMP_CPU"
printf '%-28s %10s %10s\n' "myloader (MariaDB)" "$LOAD_S" "$LOAD_CPU"
printf '%-28s %10s %10s\n' "mydumper+myloader" "$PEER_MYSQL_S" "-"
printf '%-28s %10s %10s\n' "drc migrate (MariaDB)" "$DRC_S" "$DRC_CPU"
printf '%-28s %10s %10s\n' "pgloader (PostgreSQL)" "$PGLOADER_S" "$PGLOADER_CPU"
printf '%-28s %10s %10s\n' "drc migrate (PostgreSQL)" "$DRC_PG_S" "$DRC_PG_CPU"
[ "$DRC_OK" = 1 ] || printf 'drc: skipped, the binary has no migrate subcommand\n'
printf 'migrate: drc_pg_s=%s pgloader_s=%s ratio_mysql=%s ratio_pg=%s\n' \
    "$DRC_PG_S" "$PGLOADER_S" "$R_MYSQL" "$R_PG"
printf 'migrate: drc_s=%s mydumper_myloader_s=%s pgloader_s=%s\n' "$DRC_S" "$PEER_MYSQL_S" "$PGLOADER_S"
