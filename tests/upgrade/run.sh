#!/usr/bin/env bash
# Upgrade test, the way a user upgrades: each earlier release (0.1.0 and 0.2.0, built from
# their sources in tests/upgrade) is installed in turn, and with it a database gets a task
# and a model trained; then this tree is installed over them, the server restarted and
# `ALTER EXTENSION rdl UPDATE` run in each. The old models must predict exactly as before,
# a new version must train, and each upgraded schema must equal a fresh install's
# (tests/upgrade/schema.sql, diffed). The 0.1.0 database also carries a task whose
# `created_by` another role rewrote (0.1.0 let any role write it): after the upgrade it
# must belong to the extension's owner, not to that role.
# Cluster: build/upgradetest, port ${RDL_UPGRADE_PORT:-25418}. Leaves this tree installed.
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/lib.sh"
set -euo pipefail
old_versions=(0.1.0 0.2.0)   # each: tests/upgrade/rdl-$v-src.tar.gz and rdl--$v.sql
dir="$RDL_ROOT/build/upgradetest"; port="${RDL_UPGRADE_PORT:-25418}"
up="$RDL_ROOT/tests/upgrade"
new_version="$(grep -m1 '^version' "$RDL_ROOT/Cargo.toml" | sed 's/.*"\(.*\)".*/\1/')"

psql_() { psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres "$@"; }
db_of() { echo "up_${1//./_}"; }

cluster_stop "$dir"; rm -rf "$dir"
first=1
for v in "${old_versions[@]}"; do
    src="$RDL_ROOT/build/upgrade-src-$v"
    echo "==> building rdl $v from tests/upgrade/rdl-$v-src.tar.gz"
    rm -rf "$src"; mkdir -p "$src"
    # The released sources (git archive of the release commit), kept in the repository so
    # that the test needs no git history. Cargo decides freshness by modification times,
    # and the archive's files carry the commit's: touch them so the release is really
    # rebuilt (same target directory: the dependencies are built once).
    tar -xzf "$up/rdl-$v-src.tar.gz" -C "$src"
    find "$src" -type f -exec touch {} +
    cluster_stop "$dir"
    (cd "$src" && CARGO_TARGET_DIR="$RDL_ROOT/target" cargo pgrx install --pg-config "$PG_CONFIG" >/dev/null)
    # The released install script must be the one kept in tests/upgrade.
    diff <(grep -v '^--' "$("$PG_CONFIG" --sharedir)/extension/rdl--$v.sql") <(grep -v '^--' "$up/rdl--$v.sql") >/dev/null \
        || { echo "FAIL upgrade: the $v install script differs from tests/upgrade/rdl--$v.sql"; exit 1; }
    cluster_start "$dir" "$port"
    if [ $first = 1 ]; then
        trap 'cluster_stop "$dir"' EXIT
        psql_ -d postgres -c "CREATE DATABASE fresh"
        first=0
    fi
    db="$(db_of "$v")"
    psql_ -d postgres -c "CREATE DATABASE $db"
    "$RDL_ROOT/examples/f1/load.sh" -h "$dir" -p "$port" -U postgres -d "$db" >/dev/null
    psql_ -d "$db" -At >/dev/null <<'SQL'
CREATE EXTENSION rdl;
SELECT rdl_create_task('dnf',
  'PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0
   FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL;
SET client_min_messages = warning;
CALL rdl_train('dnf', '{"max_train": 300, "epochs": 1, "seed": 1}');
CREATE TABLE before AS
SELECT driver_id, rdl_predict('dnf', driver_id, '2010-06-01+00') AS p
FROM drivers WHERE driver_id IN (1, 2, 3, 4, 8, 13, 17, 18, 20, 30);
SQL
    if [ "$v" = 0.1.0 ]; then
        # 0.1.0 let any role write rdl.tasks: an intruder claims a task as theirs.
        psql_ -d "$db" -At >/dev/null <<'SQL'
SET client_min_messages = warning;
DROP ROLE IF EXISTS rdl_intruder;
RESET client_min_messages;
CREATE ROLE rdl_intruder;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO rdl_intruder;
SET ROLE rdl_intruder;
SELECT rdl_create_task('claimed', 'PREDICT COUNT(results.*, 0, 30, days) > 0 FOR EACH drivers.driver_id',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL;
RESET ROLE;
SET ROLE rdl_intruder;
UPDATE rdl.tasks SET created_by = 'rdl_intruder' WHERE name = 'dnf';
RESET ROLE;
SQL
    fi
done

echo "==> installing this tree over them ($new_version)"
find "$RDL_ROOT/src" "$RDL_ROOT/engine/src" "$RDL_ROOT/Cargo.toml" "$RDL_ROOT/engine/Cargo.toml" -type f -exec touch {} +
cluster_stop "$dir"
install_extension >/dev/null
cluster_start "$dir" "$port"

for v in "${old_versions[@]}"; do
    db="$(db_of "$v")"
    out="$dir/result-$v.out"
    psql_ -d "$db" -At >"$out" 2>"$dir/notices-$v.out" <<'SQL'
ALTER EXTENSION rdl UPDATE;
SELECT 'version ' || extversion FROM pg_extension WHERE extname = 'rdl';
-- The old model, read by this version: the same predictions, to f32 rounding (this version's
-- CPU path sums in another order than candle's: a last-bit difference, 6e-8, is expected).
SELECT 'same predictions ' || bool_and(abs(b.p - rdl_predict('dnf', b.driver_id, '2010-06-01+00')) < 1e-6)
       || ' over ' || count(*) FROM before b;
SELECT 'owners ' || string_agg(name || ':' || owner::text, ',' ORDER BY name) FROM rdl_tasks;
SET client_min_messages = warning;
CALL rdl_train('dnf', '{"max_train": 300, "epochs": 1, "seed": 2}');
SELECT 'versions ' || string_agg(version::text || CASE WHEN active THEN '*' ELSE '' END, ',' ORDER BY version)
FROM rdl.models WHERE task = 'dnf';
SELECT 'runs ' || count(*) || ' ' || string_agg(status, ',') FROM rdl_runs WHERE task = 'dnf';
SELECT 'rollback ' || rdl_activate('dnf', 1);
SELECT 'same after rollback ' || bool_and(abs(b.p - rdl_predict('dnf', b.driver_id, '2010-06-01+00')) < 1e-6) FROM before b;
-- Explanations and evaluation work on the old model: the explained prediction is its own,
-- with the top rows asked for; the test split's size is RelBench's.
SELECT 'explained ' || bool_and(abs((e->>'prediction')::float8 - b.p) < 1e-6 AND jsonb_array_length(e->'top_rows') = 5)
FROM before b, rdl_explain('dnf', b.driver_id, '2010-06-01+00', 5) e WHERE b.driver_id = 1;
SELECT 'evaluated examples ' || (rdl_evaluate('dnf')->>'examples');
SQL
    cat "$out"
    expected_owners="owners dnf:postgres"
    # 0.1.0 recorded no runs; 0.2.0 recorded its own training's.
    expected_runs="runs 2 finished,finished"
    if [ "$v" = 0.1.0 ]; then
        expected_owners="owners claimed:postgres,dnf:postgres"
        expected_runs="runs 1 finished"
    fi
    expected="version $new_version
same predictions true over 10
$expected_owners
versions 1,2*
$expected_runs
rollback true
same after rollback true
explained true
evaluated examples 702"
    diff <(echo "$expected") "$out" || { echo "FAIL upgrade from $v: unexpected results"; exit 1; }
    if [ "$v" = 0.1.0 ]; then
        # The claims are reported, with the statement that hands a task over.
        grep -q 'task "dnf" (created_by says "rdl_intruder") now belongs to the extension.s owner' "$dir/notices-$v.out" \
            || { echo "FAIL upgrade from $v: the created_by claim was not reported"; cat "$dir/notices-$v.out"; exit 1; }
    fi
    psql_ -d "$db" -At -f "$up/schema.sql" >"$dir/schema.$v"
done

psql_ -d fresh -c "CREATE EXTENSION rdl"
psql_ -d fresh -At -f "$up/schema.sql" >"$dir/schema.fresh"
for v in "${old_versions[@]}"; do
    if ! diff -u "$dir/schema.fresh" "$dir/schema.$v"; then
        echo "FAIL upgrade: the schema upgraded from $v differs from a fresh install (- fresh, + upgraded)"; exit 1
    fi
    echo "ok   upgrade $v -> $new_version ($(wc -l <"$dir/schema.$v") schema facts equal)"
done
