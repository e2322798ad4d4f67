#!/usr/bin/env bash
# Speed at the SQL level, as a user meets it: F1 driver-dnf (RelBench cutoffs), default
# sampler, on two copies of the F1 database in the bench cluster —
#   indexed:   examples/f1/load.sh as shipped (an index on every foreign key, ANALYZEd);
#   unindexed: RDL_F1_FK_INDEXES=0 (no index on any foreign key and no planner statistics:
#              data as RelBench ships it, loaded a minute ago; autovacuum is kept off it).
# For each it prints:
#   - labels: the training split's label query (rdl_task_table), seconds;
#   - sampler: contexts/s gathering every training context (rdl_sampler_stats, best of 3);
#   - training: rdl_train's own NOTICEs (examples, contexts gathered and encoded per second,
#     each epoch), then training examples/s = examples × epochs / time spent in epochs;
#   - rdl_predict_batch over every driver at 2010-01-01: entities/s (best of 3);
#   - the design card's form, SELECT rdl_predict(task, driver_id, at) FROM drivers: rows/s
#     (best of 3), and how many of its predictions differ from one statement per driver
#     (a statement's table copies and checked task against none);
#   - one rdl_predict on a warm backend, 500 calls over random drivers: p50/p99/max ms.
# Usage: bench/speed.sh [train options jsonb]   (default '{"time_budget_s": 120}': the
# rate, not the accuracy, is measured here; bench/relbench.sh measures accuracy).
# Last, the machine's own f32 matrix-product peak (one core, two cores) and the share of it
# the model's fast training and inference paths reach, from the engine's speed_bench (quick
# form, synthetic contexts of F1's shape; the full tables: cargo run --release -p
# rdl-engine --example speed_bench).
# Assumes the extension is installed (scripts/demo.sh or cargo pgrx install --release).
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/lib.sh"
opts="${1:-{\"time_budget_s\": 120\}}"
bench_db
if ! bench_psql -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'rdl_bench_unindexed'" | grep -q 1; then
    bench_psql -d postgres -c "CREATE DATABASE rdl_bench_unindexed"
    RDL_F1_FK_INDEXES=0 "$RDL_ROOT/examples/f1/load.sh" -h "$bench_dir" -p "$bench_port" -U postgres -d rdl_bench_unindexed
fi
# Keep it as loaded: no statistics, ever (autovacuum would ANALYZE it within a minute).
bench_psql -d rdl_bench_unindexed -v ON_ERROR_STOP=1 -q <<'SQL'
DO $$ DECLARE t regclass; BEGIN
  FOR t IN SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' LOOP
    EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = off)', t);
  END LOOP; END $$;
DELETE FROM pg_statistic WHERE starelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace);
SQL
bench_psql -d rdl_bench_unindexed -c "DROP EXTENSION IF EXISTS rdl CASCADE" -c "CREATE EXTENSION rdl" >/dev/null

q='PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0 FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0'
echo "train options: $opts"
for db in rdl_bench rdl_bench_unindexed; do
    case $db in rdl_bench) name=indexed ;; *) name=unindexed ;; esac
    echo "== F1 $name: $(bench_psql -d $db -Atc "SELECT count(*) || ' indexes, ' || (SELECT count(*) FROM pg_stats WHERE schemaname = 'public') || ' column statistics' FROM pg_indexes WHERE schemaname = 'public'")"
    bench_psql -d $db -v ON_ERROR_STOP=1 -v q="$q" -At <<'SQL' | sed "s/^/$name: /"
SELECT rdl_create_task('driver-dnf', :'q', '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL AS created \gset
CREATE TEMP TABLE t0 AS SELECT clock_timestamp() AS t;
CREATE TEMP TABLE labels AS SELECT * FROM rdl_task_table('driver-dnf', 'train');
SELECT format('labels: %s training examples in %s s', count(*),
              round(extract(epoch FROM clock_timestamp() - (SELECT t FROM t0))::numeric, 2)) FROM labels;
CREATE TEMP TABLE s AS SELECT rdl_sampler_stats('driver-dnf', 'train') AS j FROM generate_series(1, 3);
SELECT format('sampler: %s contexts, %s rows, best of 3: %s contexts/s (SQL %s s of %s s)',
              j->>'contexts', j->>'rows', round((j->>'contexts_per_s')::numeric),
              round((j->>'sql_seconds')::numeric, 2), round((j->>'seconds')::numeric, 2))
FROM s ORDER BY (j->>'contexts_per_s')::float8 DESC LIMIT 1;
SQL
    log=$(mktemp)
    t0=$(date +%s.%N)
    echo "CALL rdl_train('driver-dnf', :'o')" | bench_psql -d $db -v ON_ERROR_STOP=1 -v o="$opts" >"$log" 2>&1
    t1=$(date +%s.%N)
    sed "s/^/$name:   /" "$log"
    awk -v name="$name" -v wall="$(echo "$t1 - $t0" | bc)" '
        /training and [0-9]+ validation examples/ { for (i = 1; i <= NF; i++) if ($i == "training") { n = $(i - 1); break } }
        /contexts gathered and encoded in/ { match($0, /in [0-9.]+s/); g = substr($0, RSTART + 3, RLENGTH - 4) }
        / epoch [0-9]+\/[0-9]+ / { e++; match($0, /elapsed [0-9.]+s/); last = substr($0, RSTART + 8, RLENGTH - 9) }
        END { if (e > 0 && last + 0 > g + 0) printf "%s: training: %d epochs of %d examples in %.0f s after gathering: %.0f examples/s; rdl_train %.0f s in all\n", name, e, n, last - g, n * e / (last - g), wall }' "$log"
    rm -f "$log"
    bench_psql -d $db -v ON_ERROR_STOP=1 -At <<'SQL' | sed "s/^/$name: /"
CREATE TEMP TABLE ids AS SELECT driver_id FROM drivers;
CREATE TEMP TABLE runs (what text, n bigint, secs float8);
DO $$
DECLARE t0 timestamptz; n bigint; i int;
BEGIN
  FOR i IN 1..3 LOOP
    t0 := clock_timestamp();
    SELECT count(*) INTO n FROM rdl_predict_batch('driver-dnf', ARRAY(SELECT driver_id FROM ids), '2010-01-01 00:00:00+00');
    INSERT INTO runs VALUES ('batch', n, extract(epoch FROM clock_timestamp() - t0));
    t0 := clock_timestamp();
    SELECT count(p) INTO n FROM (SELECT rdl_predict('driver-dnf', driver_id, '2010-01-01 00:00:00+00') AS p FROM ids) x;
    INSERT INTO runs VALUES ('per-row', n, extract(epoch FROM clock_timestamp() - t0));
  END LOOP;
END $$;
SELECT format('rdl_predict_batch over every driver: %s entities, best of 3: %s entities/s', n, round(n / secs))
FROM runs WHERE what = 'batch' ORDER BY secs LIMIT 1;
SELECT format('SELECT rdl_predict(task, driver_id, at) FROM drivers: %s rows, best of 3: %s rows/s', n, round(n / secs))
FROM runs WHERE what = 'per-row' ORDER BY secs LIMIT 1;
CREATE TEMP TABLE one_statement AS
  SELECT driver_id, rdl_predict('driver-dnf', driver_id, '2010-01-01 00:00:00+00') AS p FROM ids;
CREATE TEMP TABLE one_call_each (driver_id int, p float8);
DO $$ DECLARE d int; BEGIN FOR d IN SELECT driver_id FROM ids LOOP
  INSERT INTO one_call_each VALUES (d, rdl_predict('driver-dnf', d, '2010-01-01 00:00:00+00'));
END LOOP; END $$;
SELECT format('the same drivers in one statement and one statement each: %s differ, max difference %s',
              count(*) FILTER (WHERE a.p IS DISTINCT FROM b.p), coalesce(max(abs(a.p - b.p)), 0))
FROM one_statement a JOIN one_call_each b USING (driver_id);
CREATE TEMP TABLE lat (ms float8);
DO $$
DECLARE t0 timestamptz; d int;
BEGIN
  PERFORM setseed(0.42);
  FOR i IN 1..500 LOOP
    SELECT driver_id INTO d FROM ids ORDER BY random() LIMIT 1;
    t0 := clock_timestamp();
    PERFORM rdl_predict('driver-dnf', d, '2010-01-01 00:00:00+00');
    INSERT INTO lat VALUES (extract(epoch FROM clock_timestamp() - t0) * 1000);
  END LOOP;
END $$;
SELECT format('one rdl_predict, warm backend, %s calls: p50 %s ms, p99 %s ms, max %s ms', count(*),
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2),
              round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2),
              round(max(ms)::numeric, 2)) FROM lat;
SQL
done
echo "== machine peak and the model's share of it (engine speed_bench, quick)"
(cd "$RDL_ROOT" && cargo run --release -q -p rdl-engine --example speed_bench -- quick 2>/dev/null) |
    grep -E '^# ModelConfig|^## |^peak used|\| fast \| 2 \||^\| (batch|256x256)' | sed 's/^/engine: /'
