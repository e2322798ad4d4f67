# Shared helpers for rdl's scripts. Source it: . "$(dirname "$0")/lib.sh"
set -euo pipefail

RDL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_MAJOR="${PG_MAJOR:-15}"
# Override PG_BIN to work against another (e.g. relocated) PostgreSQL installation.
PG_BIN="${PG_BIN:-/usr/lib/postgresql/${PG_MAJOR}/bin}"
PG_CONFIG="${PG_CONFIG:-${PG_BIN}/pg_config}"
PGRX_VERSION="0.18.1"
export PATH="${HOME}/.cargo/bin:${PATH}"
# cargo-pgrx links the extension with -Wl,--no-gc-sections (it keeps pgrx's schema section
# where a linker drops it: seen on aarch64). The flag changes every crate's build hash, so
# `cargo pgrx test` compiled the whole dependency tree twice (its test binary without the
# flag, the extension it installs with it: 11 of CI's 23 minutes of pgrx tests). On x86_64
# with Debian 12's binutils the section is kept without it, so it is off there only; where
# the schema step says "no embedded pgrx schema section found", set RDL_PGRX_GC_WORKAROUND=1.
if [ "$(uname -m)" = x86_64 ] && [ "${RDL_PGRX_GC_WORKAROUND:-0}" != 1 ]; then
    export CARGO_PGRX_DISABLE_GC_SECTIONS_WORKAROUND=1
else
    unset CARGO_PGRX_DISABLE_GC_SECTIONS_WORKAROUND
fi

# Timestamped phase markers, so CI logs show where the time goes.
phase_start() { PHASE_NAME="$1"; PHASE_T0=$(date +%s); echo "==> $1"; }
phase_end() { echo "==> ${PHASE_NAME}: $(( $(date +%s) - PHASE_T0 ))s"; }

# Servers start without RUST_BACKTRACE: pgrx would append Rust backtraces to error DETAILs.
as_postgres() { env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE runuser -u postgres -- "$@"; }

# Starts (creating if needed) a throwaway cluster in $1 on port $2, socket in $1 itself;
# $3 (optional) adds server options, e.g. "-c shared_preload_libraries=rdl".
# The directory lives under build/ (git-ignored); the postgres OS user owns it.
cluster_start() {
    local dir="$1" port="$2" extra="${3:-}"
    mkdir -p "$dir"
    chown postgres "$dir"
    # The postgres user must be able to reach the directory through every parent.
    local p="$dir"; while [ "$p" != "/" ]; do chmod o+x "$p" 2>/dev/null || true; p="$(dirname "$p")"; done
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_postgres "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync >/dev/null
    fi
    if ! as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -w -l "$dir/log" \
            -o "-p $port -k $dir -c listen_addresses='' -c fsync=off $extra" start >/dev/null
    fi
    local i
    for i in $(seq 1 60); do
        "$PG_BIN/pg_isready" -q -h "$dir" -p "$port" -d postgres && return 0
        sleep 0.5
    done
    echo "PostgreSQL in $dir did not become ready; log:" >&2; tail -20 "$dir/log" >&2; return 1
}

cluster_stop() {
    local dir="$1"
    if [ -f "$dir/data/PG_VERSION" ]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
    fi
}

# Builds the extension and installs it into the system PostgreSQL.
install_extension() {
    (cd "$RDL_ROOT" && cargo pgrx install --pg-config "$PG_CONFIG" "$@")
}

# The benchmark cluster (build/bench, port ${RDL_BENCH_PORT:-25417}) with the F1 database
# loaded once into rdl_bench and a fresh rdl extension. Sets bench_dir and bench_port.
bench_db() {
    bench_dir="$RDL_ROOT/build/bench"; bench_port="${RDL_BENCH_PORT:-25417}"
    cluster_start "$bench_dir" "$bench_port"
    if ! bench_psql -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'rdl_bench'" | grep -q 1; then
        bench_psql -d postgres -c "CREATE DATABASE rdl_bench"
        "$RDL_ROOT/examples/f1/load.sh" -h "$bench_dir" -p "$bench_port" -U postgres -d rdl_bench
    fi
    bench_psql -d rdl_bench -c "DROP EXTENSION IF EXISTS rdl CASCADE" -c "CREATE EXTENSION rdl"
}
bench_psql() { psql -X -q -h "$bench_dir" -p "$bench_port" -U postgres "$@"; }
