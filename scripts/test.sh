#!/usr/bin/env bash
# Runs every test rdl has: formatting and lints, the engine's unit tests, the pgrx tests
# against a real PostgreSQL, the SQL scenario tests against the installed extension, the
# concurrency test and the upgrade test.
# Expects the toolchain from scripts/install-deps.sh (run as root, like CI).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$RDL_ROOT"

# Idempotent: a no-op when the toolchain is already there.
bash "$RDL_ROOT/scripts/install-deps.sh"

phase_start "cargo fmt --check"
cargo fmt --all -- --check
phase_end

phase_start "layout (scripts/check_layout.py: src/ thin, no import circle, no long file or function)"
python3 "$RDL_ROOT/scripts/check_layout.py"
phase_end

phase_start "engine unit tests (cargo test -p rdl-engine)"
cargo test -p rdl-engine
phase_end

phase_start "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --features "pg${PG_MAJOR} pg_test" -- -D warnings
phase_end

phase_start "pgrx tests (cargo pgrx test pg${PG_MAJOR})"
mkdir -p "$RDL_ROOT/build/pgrx-test"
chown postgres "$RDL_ROOT/build/pgrx-test"
p="$RDL_ROOT/build"; while [ "$p" != "/" ]; do chmod o+x "$p" 2>/dev/null || true; p="$(dirname "$p")"; done
cargo pgrx test "pg${PG_MAJOR}" --runas postgres --pgdata "$RDL_ROOT/build/pgrx-test/data"
phase_end

phase_start "SQL scenario tests"
"$RDL_ROOT/tests/sql/run.sh"
phase_end

phase_start "concurrency test (tests/concurrency/run.sh: 16 clients while models swap)"
"$RDL_ROOT/tests/concurrency/run.sh"
phase_end

phase_start "upgrade test (tests/upgrade/run.sh: 0.1.0 -> this tree)"
"$RDL_ROOT/tests/upgrade/run.sh"
phase_end
