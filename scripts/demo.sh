#!/usr/bin/env bash
# The demo, from a bare Debian 12 machine (run as root): installs the toolchain, builds and
# installs the extension, starts a throwaway PostgreSQL cluster in build/demo on port
# ${RDL_DEMO_PORT:-25415}, loads the Formula 1 database, and shows rdl working on it.
# The cluster keeps running afterwards so you can explore; `scripts/demo.sh --stop` stops it.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
dir="$RDL_ROOT/build/demo"
port="${RDL_DEMO_PORT:-25415}"

if [ "${1:-}" = "--stop" ]; then cluster_stop "$dir"; echo "demo cluster stopped"; exit 0; fi

bash "$RDL_ROOT/scripts/install-deps.sh"

phase_start "build and install the extension"
install_extension
phase_end

phase_start "start the demo cluster and load Formula 1"
cluster_start "$dir" "$port"
psql_() { psql -X -h "$dir" -p "$port" -U postgres "$@"; }
if ! psql_ -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'rdl_demo'" | grep -q 1; then
    psql_ -d postgres -qc "CREATE DATABASE rdl_demo"
fi
if ! psql_ -d rdl_demo -Atc "SELECT to_regclass('public.results') IS NOT NULL" | grep -q t; then
    "$RDL_ROOT/examples/f1/load.sh" -h "$dir" -p "$port" -U postgres -d rdl_demo
fi
phase_end

psql_ -d rdl_demo -f "$RDL_ROOT/examples/demo.sql"

cat <<MSG

The demo cluster is still running. Explore it with:
    psql -h $dir -p $port -U postgres rdl_demo
Stop it with:
    bash $RDL_ROOT/scripts/demo.sh --stop
MSG
