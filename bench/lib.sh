# shellcheck shell=bash
# Helpers shared by the bench/*.sh scripts. Source it, don't run it:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# What it gives a benchmark script:
#   bench_log / bench_die          progress lines and fatal errors (stderr)
#   bench_repo_root                the repository root (from this file's place)
#   bench_require CMD:PKG ...      apt-installs the packages of missing commands
#                                  (one `apt-get update`, only if something is missing)
#   bench_build_drc                cargo build --release -p drc; sets DRC_BIN
#                                  (BENCH_DRC_BIN=PATH: use that binary, no build)
#   bench_build_wan                drc and wanem in one build; sets DRC_BIN, WANEM_BIN
#                                  (BENCH_DRC_BIN / BENCH_WANEM_BIN: no build)
#   bench_wan_prepare              tcp_bbr, drc + wanem built, temp dir (TMP), binary
#                                  copies, link down on exit (WAN benchmarks)
#   bench_target_dir               cargo's target directory (CARGO_TARGET_DIR honoured)
#   bench_tmpdir                   mktemp -d, removed on exit; sets BENCH_TMP, BENCH_LOGS
#   bench_on_exit CMD              runs CMD on exit (normal, failure, Ctrl-C), LIFO
#   bench_free_port                prints a free TCP port on 127.0.0.1
#   bench_mariadb_start DIR ARGS   a throwaway mariadbd in DIR; sets MARIADB_PORT,
#                                  MARIADB_PID, MARIADB_DATADIR; killed on exit
#   bench_mariadbd_run DIR ARGS    the same on an existing DIR/data (no install)
#   bench_sql SQL                  runs SQL as root on that server (-N -B output)
#   bench_timed NAME CMD ...       times CMD (best of 2 when quick); sets BENCH_SECS
#                                  (wall) and BENCH_CPU (CMD's user + system CPU)
#   bench_rate COUNT SECS          COUNT/SECS as an integer
#   bench_now / bench_elapsed T0   epoch seconds (ns); seconds since T0 (3 decimals)
#   bench_fmt1 X                   X with one decimal
#   bench_msql SOCKET SQL          SQL as root over a unix socket (-N -B output)
#   bench_pg_bin NAME              a PostgreSQL binary (newest /usr/lib/postgresql/N/bin)
#   bench_as_pg CMD ...            CMD as the `postgres` OS user
#   bench_pg_start DIR ARGS        a throwaway PostgreSQL cluster in DIR (initdb, trust,
#                                  UTF8, C locale); sets PG_PORT, PG_DATADIR; stopped
#                                  and removed on exit
#   bench_psql DB SQL              SQL as `postgres` on database DB (-A -t output)
#
# Two regions over an emulated WAN (root; bench_build_wan first):
#   bench_link_up NAME DIR CC      `wanem up`: namespaces NAME-a and NAME-b joined
#                                  by a link with BENCH_LINK_* settings, congestion
#                                  control CC on the routes; sets BENCH_LINK
#   bench_link_bytes               IP bytes the link delivered so far, both ways
#   bench_ns_mariadbd NS DIR ARGS  mariadbd inside namespace NS on DIR/data
#   bench_ns_track PID             a process to kill when the link goes down
#   bench_link_down                kills those processes, stops wanem, removes
#                                  the namespaces
#   bench_tls_init DIR             `drc tls init` for regions a and b on the link
#   bench_tls_table DIR REGION     a config's `tls = { ... }` value for REGION
#   bench_machine                  "N cores / X GiB RAM / CPU model"
#
# Scripts using it should `set -euo pipefail`.

bench_log() {
    printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

bench_die() {
    printf '[bench %s] FAILED: %s\n' "$(date +%H:%M:%S)" "$*" >&2
    exit 1
}

bench_repo_root() {
    (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
}

# --- cleanup -----------------------------------------------------------------

BENCH_EXIT_CMDS=()

_bench_run_exit_cmds() {
    local status=$?
    local i
    trap - EXIT INT TERM HUP
    for ((i = ${#BENCH_EXIT_CMDS[@]} - 1; i >= 0; i--)); do
        eval "${BENCH_EXIT_CMDS[i]}" || true
    done
    exit "$status"
}

# Registers a command (a string, eval'd) to run when the script exits, for
# whatever reason. Commands run in reverse order of registration.
bench_on_exit() {
    if [ "${#BENCH_EXIT_CMDS[@]}" -eq 0 ]; then
        trap _bench_run_exit_cmds EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        trap 'exit 129' HUP
    fi
    BENCH_EXIT_CMDS+=("$1")
}

# Creates a temp dir that is removed on exit and puts its path in BENCH_TMP;
# BENCH_LOGS is its logs/ folder (where bench_timed puts each command's stderr).
bench_tmpdir() {
    BENCH_TMP="$(mktemp -d -t drc-bench.XXXXXX)"
    BENCH_LOGS="$BENCH_TMP/logs"
    mkdir -p "$BENCH_LOGS"
    bench_on_exit "rm -rf -- '$BENCH_TMP'"
}

# --- packages and tools ------------------------------------------------------

# command -v, also looking in the sbin directories a non-root $PATH may lack.
bench_have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/local/sbin/$1" ]
}

# bench_require CMD:PKG ... installs (apt) the PKG of every CMD that is missing.
bench_require() {
    local spec cmd pkg missing=()
    for spec in "$@"; do
        cmd="${spec%%:*}"
        pkg="${spec#*:}"
        if ! bench_have "$cmd"; then
            case " ${missing[*]-} " in
                *" $pkg "*) ;;
                *) missing+=("$pkg") ;;
            esac
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    bench_log "installing: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    for spec in "$@"; do
        bench_have "${spec%%:*}" || bench_die "${spec%%:*} still missing after installing ${spec#*:}"
    done
}

# Builds the drc binary (release) and sets DRC_BIN to it. With BENCH_DRC_BIN
# set, uses that binary instead and builds nothing.
bench_build_drc() {
    local root
    if [ -n "${BENCH_DRC_BIN:-}" ]; then
        [ -x "$BENCH_DRC_BIN" ] || bench_die "BENCH_DRC_BIN=$BENCH_DRC_BIN is not an executable"
        DRC_BIN="$(cd "$(dirname "$BENCH_DRC_BIN")" && pwd)/$(basename "$BENCH_DRC_BIN")"
        bench_log "using BENCH_DRC_BIN=$DRC_BIN (not built)"
        return 0
    fi
    root="$(bench_repo_root)"
    bench_log "cargo build --release -p drc"
    (cd "$root" && cargo build --release -p drc) >&2 || bench_die "cargo build --release -p drc"
    DRC_BIN="$(bench_target_dir)/release/drc"
    [ -x "$DRC_BIN" ] || bench_die "no binary at $DRC_BIN after the build"
}

# Prints cargo's target directory: CARGO_TARGET_DIR when set (relative to the
# repository root, as cargo takes it there), else the root's target/.
bench_target_dir() {
    local root
    root="$(bench_repo_root)"
    case "${CARGO_TARGET_DIR:-}" in
        "") echo "$root/target" ;;
        /*) echo "$CARGO_TARGET_DIR" ;;
        *) echo "$root/$CARGO_TARGET_DIR" ;;
    esac
}

# What a WAN benchmark does before its first link: loads tcp_bbr (a route's
# congctl needs it), builds drc and wanem (bench_build_wan), makes the temp
# dir (kept, and said, with BENCH_KEEP=1; sets TMP), copies both binaries
# into it so that a rebuild during the run changes nothing, and takes the
# link down on exit, before the temp dir goes.
bench_wan_prepare() {
    modprobe tcp_bbr 2>/dev/null || true
    bench_build_wan
    bench_tmpdir
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        BENCH_EXIT_CMDS=()
        bench_on_exit "echo 'kept: $BENCH_TMP' >&2"
    fi
    TMP="$BENCH_TMP"
    mkdir -p "$TMP/bin"
    cp "$DRC_BIN" "$TMP/bin/drc" && DRC_BIN="$TMP/bin/drc"
    cp "$WANEM_BIN" "$TMP/bin/wanem" && WANEM_BIN="$TMP/bin/wanem"
    # Exit commands run last-registered first.
    bench_on_exit "bench_link_down"
}

# Builds drc and wanem (release) in one cargo call and sets DRC_BIN and
# WANEM_BIN. BENCH_DRC_BIN / BENCH_WANEM_BIN name binaries to use instead;
# with both set nothing is built.
bench_build_wan() {
    local root target
    root="$(bench_repo_root)"
    target="$(bench_target_dir)"
    if [ -z "${BENCH_DRC_BIN:-}" ] || [ -z "${BENCH_WANEM_BIN:-}" ]; then
        command -v cargo >/dev/null 2>&1 || bench_die "cargo not found (install a Rust toolchain)"
        bench_log "cargo build --release -p drc -p drc-wanem"
        (cd "$root" && cargo build --release -p drc -p drc-wanem) >&2 ||
            bench_die "cargo build --release -p drc -p drc-wanem"
    fi
    if [ -n "${BENCH_DRC_BIN:-}" ]; then
        bench_build_drc
    else
        DRC_BIN="$target/release/drc"
    fi
    if [ -n "${BENCH_WANEM_BIN:-}" ]; then
        [ -x "$BENCH_WANEM_BIN" ] || bench_die "BENCH_WANEM_BIN=$BENCH_WANEM_BIN is not an executable"
        WANEM_BIN="$(cd "$(dirname "$BENCH_WANEM_BIN")" && pwd)/$(basename "$BENCH_WANEM_BIN")"
        bench_log "using BENCH_WANEM_BIN=$WANEM_BIN (not built)"
    else
        WANEM_BIN="$target/release/wanem"
    fi
    [ -x "$DRC_BIN" ] || bench_die "no drc binary at $DRC_BIN"
    [ -x "$WANEM_BIN" ] || bench_die "no wanem binary at $WANEM_BIN"
}

# --- ports and servers -------------------------------------------------------

# Prints a TCP port on 127.0.0.1 that was free a moment ago.
bench_free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
        return
    fi
    local port i
    for ((i = 0; i < 200; i++)); do
        port=$((20000 + RANDOM % 40000))
        # A refused connection means nothing listens there.
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    bench_die "no free port found"
}

_bench_bin() {
    local name="$1" d
    if command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
        return
    fi
    for d in /usr/sbin /usr/local/sbin /usr/bin; do
        [ -x "$d/$name" ] && { echo "$d/$name"; return; }
    done
    bench_die "$name not found"
}

# Runs the mariadb client as root against the bench server; extra args pass on.
bench_mysql() {
    "$(_bench_bin mariadb)" --no-defaults --user=root --host=127.0.0.1 \
        --port="$MARIADB_PORT" --default-character-set=utf8mb4 "$@"
}

# Runs SQL and prints the result without headers, tab-separated.
bench_sql() {
    bench_mysql -N -B -e "$1"
}

# bench_msql SOCKET SQL: SQL as root over the unix socket (whatever network
# namespace the server runs in), -N -B output.
bench_msql() {
    "$(_bench_bin mariadb)" --no-defaults --user=root --socket="$1" \
        --default-character-set=utf8mb4 -N -B -e "$2"
}

# bench_mariadb_start DIR [MARIADBD_ARGS...]
# Installs a fresh datadir in DIR/data and starts mariadbd on a free port of
# 127.0.0.1 (socket DIR/sock, error log DIR/error.log), with root and an empty
# password. The server is killed on exit. Extra args go last, after
# `--port`, `--socket` and friends.
bench_mariadb_start() {
    local dir="$1"
    shift
    MARIADB_DATADIR="$dir/data"
    local install_log="$dir/install.log"
    PATH="$PATH:/usr/sbin:/usr/local/sbin" "$(_bench_bin mariadb-install-db)" --no-defaults \
        --datadir="$MARIADB_DATADIR" --user=root \
        --auth-root-authentication-method=normal --skip-test-db >"$install_log" 2>&1 ||
        { tail -n 30 "$install_log" >&2; bench_die "mariadb-install-db"; }

    bench_mariadbd_run "$dir" "$@"
}

# bench_mariadbd_run DIR [MARIADBD_ARGS...]
# Starts mariadbd on the existing datadir DIR/data (a copy of another
# server's, say), as bench_mariadb_start does after installing one.
bench_mariadbd_run() {
    local dir="$1"
    shift
    MARIADB_DATADIR="$dir/data"
    local attempt
    for attempt in 1 2 3 4 5; do
        MARIADB_PORT="$(bench_free_port)"
        "$(_bench_bin mariadbd)" --no-defaults --user=root \
            --datadir="$MARIADB_DATADIR" --port="$MARIADB_PORT" --socket="$dir/sock" \
            --pid-file="$dir/mariadbd.pid" --log-error="$dir/error.log" \
            --bind-address=127.0.0.1 --skip-name-resolve "$@" \
            >"$dir/stdout.log" 2>&1 &
        MARIADB_PID=$!
        bench_on_exit "kill -KILL $MARIADB_PID 2>/dev/null; wait $MARIADB_PID 2>/dev/null"
        local i
        for ((i = 0; i < 600; i++)); do
            if ! kill -0 "$MARIADB_PID" 2>/dev/null; then
                break
            fi
            if bench_sql 'SELECT 1' >/dev/null 2>&1; then
                bench_log "mariadbd up on 127.0.0.1:$MARIADB_PORT (pid $MARIADB_PID)"
                return 0
            fi
            sleep 0.1
        done
        kill -KILL "$MARIADB_PID" 2>/dev/null || true
        wait "$MARIADB_PID" 2>/dev/null || true
        if ! grep -q -e 'Address already in use' -e 'Bind on TCP/IP port' "$dir/error.log" 2>/dev/null; then
            break
        fi
        bench_log "port $MARIADB_PORT was taken, retrying (attempt $attempt)"
    done
    tail -n 30 "$dir/error.log" >&2 2>/dev/null || true
    bench_die "mariadbd did not start"
}

# --- PostgreSQL ----------------------------------------------------------------

# bench_pg_bin NAME prints the path of a PostgreSQL binary: from the newest
# /usr/lib/postgresql/<major>/bin (Debian keeps server binaries off $PATH),
# else from $PATH.
bench_pg_bin() {
    local name="$1" d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5n | tail -n 1)"
    if [ -n "$d" ] && [ -x "$d/$name" ]; then
        echo "$d/$name"
        return
    fi
    command -v "$name" 2>/dev/null || bench_die "$name not found (install postgresql)"
}

# bench_as_pg CMD ...: runs CMD as the `postgres` OS user, which PostgreSQL
# needs (it refuses to run as root).
bench_as_pg() {
    if [ "$(id -un)" = postgres ]; then
        "$@"
    elif [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        sudo -u postgres -- "$@"
    fi
}

# bench_pg_start DIR [POSTGRES_ARGS...]
# Makes DIR (owned by `postgres`), runs initdb in DIR/data (trust
# authentication, UTF8, C locale) and starts the server on a free port of
# 127.0.0.1 (socket in DIR, log DIR/postgres.log). Extra args (`-c name=value`
# pairs) go last. Sets PG_PORT and PG_DATADIR. On exit the server is stopped
# (immediate mode) and DIR removed.
bench_pg_start() {
    local dir="$1" attempt i
    shift
    id postgres >/dev/null 2>&1 || bench_die "no OS user postgres (installing postgresql creates it)"
    mkdir -p "$dir"
    chown postgres: "$dir"
    # The postgres user must reach DIR through its parents.
    chmod o+x "$(dirname "$dir")"
    PG_DATADIR="$dir/data"
    bench_as_pg "$(bench_pg_bin initdb)" -D "$PG_DATADIR" --auth=trust --username=postgres \
        --encoding=UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
        { tail -n 30 "$dir/initdb.log" >&2; bench_die "initdb"; }
    bench_on_exit "bench_as_pg '$(bench_pg_bin pg_ctl)' -D '$PG_DATADIR' -m immediate stop >/dev/null 2>&1; rm -rf -- '$dir'"
    for attempt in 1 2 3 4 5; do
        PG_PORT="$(bench_free_port)"
        : >"$dir/postgres.log"
        chown postgres: "$dir/postgres.log"
        if bench_as_pg "$(bench_pg_bin pg_ctl)" -D "$PG_DATADIR" -l "$dir/postgres.log" -w -t 120 \
            -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir $*" \
            start >"$dir/pg_ctl.log" 2>&1; then
            for ((i = 0; i < 600; i++)); do
                bench_psql postgres 'SELECT 1' >/dev/null 2>&1 && {
                    bench_log "postgres up on 127.0.0.1:$PG_PORT"
                    return 0
                }
                sleep 0.1
            done
        fi
        bench_as_pg "$(bench_pg_bin pg_ctl)" -D "$PG_DATADIR" -m immediate stop >/dev/null 2>&1 || true
        grep -q 'Address already in use' "$dir/postgres.log" 2>/dev/null || break
        bench_log "port $PG_PORT was taken, retrying (attempt $attempt)"
    done
    tail -n 30 "$dir/postgres.log" >&2 2>/dev/null || true
    bench_die "postgres did not start"
}

# bench_psql DB SQL: SQL as `postgres` on database DB of the bench cluster,
# unaligned tuples-only output (`|` between columns); stops at the first error.
bench_psql() {
    "$(bench_pg_bin psql)" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" \
        -U postgres -d "$1" -c "$2"
}

# --- timing ------------------------------------------------------------------

# CPU seconds (user + system) used so far by this shell's finished children.
# `times` must run in this shell (in a pipe or $(...) it would be a subshell's,
# with children of its own), so it writes to a file.
_bench_children_cpu() {
    times >"$BENCH_LOGS/.times"
    awk 'NR == 2 {
        n = split($0, f, /[ ms]+/); t = 0
        for (i = 1; i + 1 <= n; i += 2) if (f[i] != "") t += f[i] * 60 + f[i + 1]
        printf "%.3f\n", t
    }' "$BENCH_LOGS/.times"
}

# bench_timed NAME CMD ...: runs CMD (a command or a shell function) and times
# it by wall clock (date +%s.%N). CMD's stderr goes to $BENCH_LOGS/NAME.err,
# its stdout wherever the caller's goes. When the first run takes less than
# BENCH_REPEAT_UNDER seconds (default 30) it runs a second time, and the faster
# run counts. Sets BENCH_SECS (wall seconds) and BENCH_CPU (user + system CPU
# seconds of CMD's processes: a server they talk to is not counted). A failing
# CMD fails the script, showing the end of its stderr.
bench_timed() {
    local name="$1" best="" best_cpu="" t0 t1 c0 c1 cpu status run
    shift
    for run in 1 2; do
        _bench_children_cpu >"$BENCH_LOGS/.cpu0"
        t0="$(date +%s.%N)"
        status=0
        "$@" 2>"$BENCH_LOGS/$name.err" || status=$?
        t1="$(date +%s.%N)"
        _bench_children_cpu >"$BENCH_LOGS/.cpu1"
        if [ "$status" -ne 0 ]; then
            tail -n 30 "$BENCH_LOGS/$name.err" >&2
            bench_die "$name exited with status $status: $*"
        fi
        read -r c0 <"$BENCH_LOGS/.cpu0"
        read -r c1 <"$BENCH_LOGS/.cpu1"
        BENCH_SECS="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
        cpu="$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')"
        if [ -z "$best" ] || awk -v a="$BENCH_SECS" -v b="$best" 'BEGIN { exit !(a < b) }'; then
            best="$BENCH_SECS"
            best_cpu="$cpu"
        fi
        bench_log "$name: run $run took ${BENCH_SECS}s (cpu ${cpu}s)"
        awk -v s="$BENCH_SECS" -v u="${BENCH_REPEAT_UNDER:-30}" 'BEGIN { exit !(s < u) }' || break
    done
    BENCH_SECS="$best"
    # shellcheck disable=SC2034 # for the caller
    BENCH_CPU="$best_cpu"
}

# bench_rate COUNT SECS: COUNT/SECS rounded to an integer.
bench_rate() {
    awk -v n="$1" -v s="$2" 'BEGIN { if (s <= 0) s = 0.001; printf "%.0f", n / s }'
}

bench_now() { date +%s.%N; }
bench_elapsed() { awk -v a="$1" -v b="$(bench_now)" 'BEGIN { printf "%.3f", b - a }'; }
bench_fmt1() { awk -v x="$1" 'BEGIN { printf "%.1f", x }'; }

# --- two regions over an emulated WAN ------------------------------------------
#
# The link is tools/wanem: a user-space forwarder between the tun devices of
# two network namespaces, NAME-a (address BENCH_A_IP) and NAME-b (BENCH_B_IP),
# with a delay, random loss and a rate cap each way. Its settings come from
# the environment: BENCH_DELAY_MS (50), BENCH_LOSS_PCT (1), BENCH_RATE_MBIT
# (100). The congestion control is set per route (`congctl`), because sysctl
# cannot change it inside a namespace; it is what mariadbd's sockets get.

BENCH_A_IP="${BENCH_A_IP:-10.77.0.1}"
BENCH_B_IP="${BENCH_B_IP:-10.77.0.2}"
BENCH_LINK=""
BENCH_WANEM_PID=""
BENCH_WANEM_CONTROL=""
BENCH_NS_PIDS=()

# bench_link_up NAME DIR CONGCTL: starts `wanem up` (output in DIR) and waits
# for its ready line; checks the route carries CONGCTL. Needs WANEM_BIN.
bench_link_up() {
    local name="$1" dir="$2" cc="$3" i
    bench_link_down
    ip netns del "$name-a" 2>/dev/null || true
    ip netns del "$name-b" 2>/dev/null || true
    mkdir -p "$dir"
    BENCH_LINK="$name"
    BENCH_WANEM_CONTROL="$dir/wanem.sock"
    "$WANEM_BIN" up --name "$name" --a-addr "$BENCH_A_IP/30" --b-addr "$BENCH_B_IP/30" \
        --delay-ms "${BENCH_DELAY_MS:-50}" --loss-pct "${BENCH_LOSS_PCT:-1}" \
        --rate-mbit "${BENCH_RATE_MBIT:-100}" --congctl "$cc" --control "$BENCH_WANEM_CONTROL" \
        >"$dir/wanem.out" 2>"$dir/wanem.err" &
    BENCH_WANEM_PID=$!
    for ((i = 0; i < 600; i++)); do
        grep -q '^wanem: ready' "$dir/wanem.out" 2>/dev/null && break
        kill -0 "$BENCH_WANEM_PID" 2>/dev/null || { cat "$dir/wanem.err" >&2; bench_die "wanem up exited"; }
        sleep 0.1
    done
    grep -q '^wanem: ready' "$dir/wanem.out" || { cat "$dir/wanem.err" >&2; bench_die "wanem: no 'ready' in 60 s"; }
    ip -n "$name-a" route show "$BENCH_B_IP" | grep -q "congctl $cc" ||
        bench_die "the route to region B does not carry congctl $cc: $(ip -n "$name-a" route show "$BENCH_B_IP")"
}

# IP bytes delivered by the link so far, both directions.
bench_link_bytes() {
    "$WANEM_BIN" stats --control "$BENCH_WANEM_CONTROL" |
        awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^bytes=/) { sub(/^bytes=/, "", $i); s += $i } }
             END { printf "%.0f", s }'
}

# bench_ns_track PID: a process (in a namespace of the link) that
# bench_link_down kills.
bench_ns_track() {
    BENCH_NS_PIDS+=("$1")
}

# Stops what runs on the link (the tracked processes, SIGKILL), then wanem
# (SIGTERM: it deletes its namespaces), and removes the namespaces.
bench_link_down() {
    local p i
    for p in "${BENCH_NS_PIDS[@]+"${BENCH_NS_PIDS[@]}"}"; do
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    BENCH_NS_PIDS=()
    if [ -n "$BENCH_WANEM_PID" ]; then
        kill -TERM "$BENCH_WANEM_PID" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$BENCH_WANEM_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$BENCH_WANEM_PID" 2>/dev/null || true
        wait "$BENCH_WANEM_PID" 2>/dev/null || true
        BENCH_WANEM_PID=""
    fi
    if [ -n "$BENCH_LINK" ]; then
        ip netns del "$BENCH_LINK-a" 2>/dev/null || true
        ip netns del "$BENCH_LINK-b" 2>/dev/null || true
        BENCH_LINK=""
    fi
}

# bench_ns_mariadbd NS DIR ARGS...: mariadbd inside namespace NS on DIR/data
# (socket DIR/sock, error log DIR/error.log), tracked for bench_link_down;
# sets NS_PID once it answers.
bench_ns_mariadbd() {
    local ns="$1" dir="$2" i
    shift 2
    mkdir -p "$dir/tmp"
    ip netns exec "$ns" "$(_bench_bin mariadbd)" --no-defaults --user=root \
        --datadir="$dir/data" --socket="$dir/sock" --pid-file="$dir/mariadbd.pid" \
        --log-error="$dir/error.log" --tmpdir="$dir/tmp" --skip-name-resolve \
        "$@" >"$dir/stdout.log" 2>&1 &
    NS_PID=$!
    bench_ns_track "$NS_PID"
    for ((i = 0; i < 600; i++)); do
        kill -0 "$NS_PID" 2>/dev/null || break
        bench_msql "$dir/sock" 'SELECT 1' >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    tail -n 30 "$dir/error.log" >&2 2>/dev/null || true
    bench_die "mariadbd in $ns did not start"
}

# bench_tls_init DIR: a CA and certificates for regions a and b, each valid
# for its address on the link. Needs DRC_BIN.
bench_tls_init() {
    bench_log "drc tls init (regions a and b, with the link's addresses)"
    "$DRC_BIN" tls init "$1" --regions a,b --san "a=$BENCH_A_IP" --san "b=$BENCH_B_IP" \
        >"$1.log" 2>&1 || { cat "$1.log" >&2; bench_die "drc tls init"; }
}

# bench_tls_table DIR REGION: the inline TOML table of REGION's TLS files.
bench_tls_table() {
    printf '{ ca = "%s", cert = "%s", key = "%s" }' "$1/ca.pem" "$1/$2.pem" "$1/$2.key"
}

# --- the machine -------------------------------------------------------------

# "2 cores / 23 GiB RAM / AMD EPYC": what the results table's machine column holds.
bench_machine() {
    local cores mem model
    cores="$(nproc)"
    mem="$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)"
    model="$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    printf '%s cores / %s GiB RAM / %s' "$cores" "$mem" "${model:-unknown CPU}"
}
