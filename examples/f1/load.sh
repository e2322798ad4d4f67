#!/usr/bin/env bash
# Loads the Formula 1 database (RelBench rel-f1 shape) into the database psql connects to.
# Usage: examples/f1/load.sh [psql connection options...]   e.g. -h /tmp -p 28815 -d rdl
# Works from any working directory: \copy paths are resolved next to this script.
# RDL_F1_FK_INDEXES=0 leaves out the foreign-key indexes and the ANALYZE (as RelBench ships
# the data: parquet files, no indexes, and a table loaded a minute ago has no statistics).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
exec psql -X -q -v ON_ERROR_STOP=1 -v fk_indexes="${RDL_F1_FK_INDEXES:-1}" "$@" -f load.sql
