#!/usr/bin/env bash
# SQL scenario tests: runs every tests/sql/*.sql through psql against the installed
# extension in a throwaway cluster (build/sqltest, port ${RDL_TEST_PORT:-25416}) and diffs
# the output with tests/sql/expected/*.out. Each test gets a fresh database with the F1
# data loaded. Usage: tests/sql/run.sh [--no-install] [name ...]
#   RDL_ACCEPT=1 tests/sql/run.sh   rewrites the expected files (review the diff!).
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/lib.sh"

install=1
if [ "${1:-}" = "--no-install" ]; then install=0; shift; fi
dir="$RDL_ROOT/build/sqltest"
port="${RDL_TEST_PORT:-25416}"
sqldir="$RDL_ROOT/tests/sql"
mkdir -p "$sqldir/results"

if [ $install = 1 ]; then install_extension >/dev/null; fi
cluster_start "$dir" "$port"
trap 'cluster_stop "$dir"' EXIT

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in "$sqldir"/*.sql; do
        n="$(basename "$f" .sql)"
        # Helper files (e.g. shared reference queries) start with an underscore.
        case "$n" in _*) continue ;; esac
        names+=("$n")
    done
fi

psql_() { psql -X -h "$dir" -p "$port" -U postgres "$@"; }

# One template with F1 loaded, cloned per test: fast and isolated.
if ! psql_ -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'rdl_f1_template'" | grep -q 1; then
    psql_ -d postgres -qc "CREATE DATABASE rdl_f1_template"
    "$RDL_ROOT/examples/f1/load.sh" -h "$dir" -p "$port" -U postgres -d rdl_f1_template
fi

passed=0; failed=0; failures=()
for n in "${names[@]}"; do
    db="rdl_test_${n}"
    psql_ -d postgres -qc "DROP DATABASE IF EXISTS ${db}" -qc "CREATE DATABASE ${db} TEMPLATE rdl_f1_template"
    out="$sqldir/results/$n.out"
    # -a echoes the statements so the expected file reads as a transcript.
    (cd "$sqldir" && psql_ -d "$db" -a -q -v VERBOSITY=default -v SHOW_CONTEXT=never \
        -f "$n.sql" >"$out" 2>&1) || true
    if [ "${RDL_ACCEPT:-0}" = 1 ]; then cp "$out" "$sqldir/expected/$n.out"; fi
    if diff -u "$sqldir/expected/$n.out" "$out" >"$sqldir/results/$n.diff" 2>&1; then
        echo "ok   $n"; passed=$((passed + 1)); rm -f "$sqldir/results/$n.diff"
    else
        echo "FAIL $n"; cat "$sqldir/results/$n.diff"; failed=$((failed + 1)); failures+=("$n")
    fi
    psql_ -d postgres -qc "DROP DATABASE IF EXISTS ${db}"
done
echo "sql scenarios: ${passed} passed, ${failed} failed"
[ $failed -eq 0 ]
