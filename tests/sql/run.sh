#!/usr/bin/env bash
# SQL scenario tests: runs every tests/sql/*.sql through psql against the installed
# extension in a throwaway cluster (build/sqltest, port ${RDL_TEST_PORT:-25416}) and diffs
# the output with tests/sql/expected/*.out. Each test gets a fresh database with the F1
# data loaded. Usage: tests/sql/run.sh [--no-install] [name ...]
#   RDL_ACCEPT=1 tests/sql/run.sh   rewrites the expected files (review the diff!).
# A file whose first line is `-- preload` runs after the others, with the cluster restarted
# with shared_preload_libraries = 'rdl' (the background worker). Scripts may run shell
# commands (\!) that connect back: PGHOST, PGPORT, PGUSER, PGDATABASE are set, RDL_PG_BIN
# names the server's binaries and RDL_TEST_OUT a scratch directory.
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/lib.sh"

install=1
if [ "${1:-}" = "--no-install" ]; then install=0; shift; fi
dir="$RDL_ROOT/build/sqltest"
port="${RDL_TEST_PORT:-25416}"
sqldir="$RDL_ROOT/tests/sql"
mkdir -p "$sqldir/results"

if [ $install = 1 ]; then install_extension >/dev/null; fi

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in "$sqldir"/*.sql; do
        n="$(basename "$f" .sql)"
        # Helper files (e.g. shared reference queries) start with an underscore.
        case "$n" in _*) continue ;; esac
        names+=("$n")
    done
fi
# Plain scenarios first, then those that need the library preloaded.
plain=(); preload=()
for n in "${names[@]}"; do
    if head -1 "$sqldir/$n.sql" | grep -q '^-- preload'; then preload+=("$n"); else plain+=("$n"); fi
done
# rdl.use_worker = on: the worker's own CPU device serves these tests (the default, auto,
# would keep predictions in the backend on a machine without a GPU).
preload_opts="-c shared_preload_libraries=rdl -c rdl.use_worker=on"

# A cluster left running by an interrupted run may have the other configuration.
cluster_stop "$dir"
if [ ${#plain[@]} -gt 0 ]; then cluster_start "$dir" "$port"; else cluster_start "$dir" "$port" "$preload_opts"; fi
trap 'cluster_stop "$dir"' EXIT
export PGHOST="$dir" PGPORT="$port" PGUSER=postgres RDL_PG_BIN="$PG_BIN" RDL_TEST_OUT="$sqldir/results"

psql_() { psql -X -h "$dir" -p "$port" -U postgres "$@"; }

# One template with F1 loaded, cloned per test: fast and isolated.
if ! psql_ -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'rdl_f1_template'" | grep -q 1; then
    psql_ -d postgres -qc "CREATE DATABASE rdl_f1_template"
    "$RDL_ROOT/examples/f1/load.sh" -h "$dir" -p "$port" -U postgres -d rdl_f1_template
fi

passed=0; failed=0; failures=()
run_one() {
    local n="$1"
    local db="rdl_test_${n}"
    psql_ -d postgres -qc "DROP DATABASE IF EXISTS ${db}" -qc "CREATE DATABASE ${db} TEMPLATE rdl_f1_template"
    local out="$sqldir/results/$n.out"
    # -a echoes the statements so the expected file reads as a transcript.
    (cd "$sqldir" && PGDATABASE="$db" psql_ -d "$db" -a -q -v VERBOSITY=default -v SHOW_CONTEXT=never \
        -f "$n.sql" >"$out" 2>&1) || true
    if [ "${RDL_ACCEPT:-0}" = 1 ]; then cp "$out" "$sqldir/expected/$n.out"; fi
    if diff -u "$sqldir/expected/$n.out" "$out" >"$sqldir/results/$n.diff" 2>&1; then
        echo "ok   $n"; passed=$((passed + 1)); rm -f "$sqldir/results/$n.diff"
    else
        echo "FAIL $n"; cat "$sqldir/results/$n.diff"; failed=$((failed + 1)); failures+=("$n")
    fi
    psql_ -d postgres -qc "DROP DATABASE IF EXISTS ${db}"
}
for n in "${plain[@]}"; do run_one "$n"; done
if [ ${#preload[@]} -gt 0 ]; then
    if [ ${#plain[@]} -gt 0 ]; then cluster_stop "$dir"; cluster_start "$dir" "$port" "$preload_opts"; fi
    for n in "${preload[@]}"; do run_one "$n"; done
fi
echo "sql scenarios: ${passed} passed, ${failed} failed${failures:+ (${failures[*]})}"
[ $failed -eq 0 ]
