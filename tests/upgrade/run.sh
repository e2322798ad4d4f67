#!/usr/bin/env bash
# Upgrade test, the way a user upgrades: the previous release (0.1.0, built from its sources
# in tests/upgrade) is installed, a task is created and a model trained with it; then this
# tree is installed over it, the server restarted and `ALTER EXTENSION rdl UPDATE` run. The
# model trained by 0.1.0 must predict exactly as before, a new version must train, and the
# upgraded schema must equal a fresh install's (tests/upgrade/schema.sql, diffed).
# Cluster: build/upgradetest, port ${RDL_UPGRADE_PORT:-25418}. Leaves this tree installed.
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/lib.sh"
set -euo pipefail
old_version=0.1.0
old_commit=575227e   # the commit released as 0.1.0 (its schema: tests/upgrade/rdl--0.1.0.sql)
dir="$RDL_ROOT/build/upgradetest"; port="${RDL_UPGRADE_PORT:-25418}"
src="$RDL_ROOT/build/upgrade-src"
up="$RDL_ROOT/tests/upgrade"

echo "==> building rdl $old_version from tests/upgrade/rdl-$old_version-src.tar.gz"
rm -rf "$src"; mkdir -p "$src"
# The released sources (git archive of $old_commit: Cargo files, rdl.control, src, engine),
# kept in the repository so that the test needs no git history.
tar -xzf "$up/rdl-$old_version-src.tar.gz" -C "$src"
# Both trees build in the same target directory (dependencies built once). Cargo decides
# freshness by modification times, and the archive's files carry the commit's (older than
# the last build): touch them so the old release is really rebuilt, and this tree's files
# afterwards so it is rebuilt in turn.
find "$src" -type f -exec touch {} +
# The released install script must be the one kept in tests/upgrade.
# Same target directory: the dependencies are built once.
(cd "$src" && CARGO_TARGET_DIR="$RDL_ROOT/target" cargo pgrx install --pg-config "$PG_CONFIG" >/dev/null)
diff <(grep -v '^--' "$("$PG_CONFIG" --sharedir)/extension/rdl--$old_version.sql") <(grep -v '^--' "$up/rdl--$old_version.sql") >/dev/null \
    || { echo "FAIL upgrade: the $old_version install script differs from tests/upgrade/rdl--$old_version.sql"; exit 1; }

cluster_stop "$dir"; rm -rf "$dir"
cluster_start "$dir" "$port"
trap 'cluster_stop "$dir"' EXIT
psql_() { psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres "$@"; }
psql_ -d postgres -c "CREATE DATABASE up" -c "CREATE DATABASE fresh"
"$RDL_ROOT/examples/f1/load.sh" -h "$dir" -p "$port" -U postgres -d up >/dev/null

psql_ -d up -At >/dev/null <<'SQL'
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

echo "==> installing this tree over it ($(cargo pkgid 2>/dev/null | sed 's/.*[#@]//'))"
find "$RDL_ROOT/src" "$RDL_ROOT/engine/src" "$RDL_ROOT/Cargo.toml" "$RDL_ROOT/engine/Cargo.toml" -type f -exec touch {} +
install_extension >/dev/null
cluster_stop "$dir"; cluster_start "$dir" "$port"

out="$RDL_ROOT/build/upgradetest/result.out"
psql_ -d up -At >"$out" <<'SQL'
ALTER EXTENSION rdl UPDATE;
SELECT 'version ' || extversion FROM pg_extension WHERE extname = 'rdl';
-- The 0.1.0 model, read by this version: the same predictions, to the last digit.
SELECT 'same predictions ' || bool_and(abs(b.p - rdl_predict('dnf', b.driver_id, '2010-06-01+00')) < 1e-9)
       || ' over ' || count(*) FROM before b;
SELECT 'owner ' || owner::text FROM rdl_tasks WHERE name = 'dnf';
SET client_min_messages = warning;
CALL rdl_train('dnf', '{"max_train": 300, "epochs": 1, "seed": 2}');
SELECT 'versions ' || string_agg(version::text || CASE WHEN active THEN '*' ELSE '' END, ',' ORDER BY version) FROM rdl.models;
SELECT 'runs ' || count(*) || ' ' || string_agg(status, ',') FROM rdl_runs;
SELECT 'rollback ' || rdl_activate('dnf', 1);
SELECT 'same after rollback ' || bool_and(abs(b.p - rdl_predict('dnf', b.driver_id, '2010-06-01+00')) < 1e-9) FROM before b;
SELECT 'explain ' || (rdl_explain('dnf', 1, '2010-06-01+00') ? 'sentence');
SELECT 'evaluate ' || (rdl_evaluate('dnf') ? 'auroc');
SQL
cat "$out"
expected="version 0.2.0
same predictions true over 10
owner postgres
versions 1,2*
runs 1 finished
rollback true
same after rollback true
explain true
evaluate true"
diff <(echo "$expected") "$out" || { echo "FAIL upgrade: unexpected results"; exit 1; }

psql_ -d fresh -c "CREATE EXTENSION rdl"
psql_ -d up -At -f "$up/schema.sql" >"$dir/schema.up"
psql_ -d fresh -At -f "$up/schema.sql" >"$dir/schema.fresh"
if ! diff -u "$dir/schema.fresh" "$dir/schema.up"; then
    echo "FAIL upgrade: the upgraded schema differs from a fresh install (- fresh, + upgraded)"; exit 1
fi
echo "ok   upgrade $old_version -> $(psql_ -d up -Atc "SELECT extversion FROM pg_extension WHERE extname = 'rdl'") ($(wc -l <"$dir/schema.up") schema facts equal)"
