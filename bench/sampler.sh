#!/usr/bin/env bash
# Sampler throughput: gathers the context of every example of F1 driver-dnf's training
# table (11,411 seeds) at the default depth and fan-out, through SPI as rdl_train does, and
# compares it with PostgreSQL emitting the same rows with COPY:
#   - "same statements": every statement the sampler ran, parameters inlined, run as
#     COPY (...) TO '/dev/null' — exactly the rows the sampler fetched, by the same plans;
#   - "whole tables": COPY (SELECT * FROM t) of every table the contexts read — a sequential
#     scan, the fastest PostgreSQL emits rows at all (an upper bound, not the same rows).
# Prints rows/s of each and the ratios. Usage: bench/sampler.sh [runs]  (best of `runs`, default 3)
# Assumes the extension is installed (scripts/demo.sh or cargo pgrx install).
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/lib.sh"
runs="${1:-3}"
bench_db
bench_psql -d rdl_bench -v ON_ERROR_STOP=1 -v runs="$runs" -At <<'SQL'
SELECT rdl_create_task('driver-dnf',
  'PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0 FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL AS created \gset
-- A warm-up pass prepares the statements and fills the buffer cache, as in training.
SELECT rdl_sampler_stats('driver-dnf', 'train', 500) IS NOT NULL AS warm \gset
CREATE TEMP TABLE s AS
SELECT rdl_sampler_stats('driver-dnf', 'train') AS j FROM generate_series(1, :runs);
SELECT format('sampler: %s contexts, %s rows (%s per context, max %s), depth %s, fan-out %s, %s statements',
              j->>'contexts', j->>'rows', round((j->>'mean_rows_per_context')::numeric, 1),
              j->>'max_rows_per_context', j->>'depth', j->>'fanout', j->>'statements')
FROM s LIMIT 1;
SELECT format('sampler: best of %s runs: %s s (SQL %s s, datum conversion %s s, assembly %s s), %s contexts/s, %s rows/s',
              count(*), round(min((j->>'seconds')::numeric), 2),
              round(min((j->>'sql_seconds')::numeric), 2), round(min((j->>'convert_seconds')::numeric), 2),
              round(min((j->>'assemble_seconds')::numeric), 2),
              round(max((j->>'contexts_per_s')::numeric)), round(max((j->>'rows_per_s')::numeric)))
FROM s;

SELECT set_config('rdl_bench.runs', :'runs', false) IS NOT NULL AS set \gset
-- The same statements through COPY.
CREATE TEMP TABLE stmts AS SELECT row_number() OVER () AS i, sql FROM rdl_sampler_statements('driver-dnf', 'train') AS sql;
CREATE TEMP TABLE cs (run int, n bigint, secs float8);
DO $$
DECLARE r int; q text; n bigint; total bigint; t0 timestamptz;
BEGIN
  FOR r IN 1..current_setting('rdl_bench.runs')::int LOOP
    total := 0;
    t0 := clock_timestamp();
    FOR q IN SELECT sql FROM stmts ORDER BY i LOOP
      EXECUTE format('COPY (%s) TO ''/dev/null''', q);
      GET DIAGNOSTICS n = ROW_COUNT;
      total := total + n;
    END LOOP;
    INSERT INTO cs VALUES (r, total, extract(epoch FROM clock_timestamp() - t0));
  END LOOP;
END $$;
SELECT format('COPY of the same %s statements: %s rows in %s s, %s rows/s', (SELECT count(*) FROM stmts),
              n, round(secs::numeric, 3), round(n / secs)) FROM cs ORDER BY secs LIMIT 1;

-- Whole tables through COPY.
CREATE TEMP TABLE c (run int, tbl text, n bigint, secs float8);
DO $$
DECLARE r int; t text; n bigint; t0 timestamptz;
BEGIN
  FOR r IN 1..current_setting('rdl_bench.runs')::int LOOP
    FOR t IN SELECT jsonb_object_keys(rdl_context('driver-dnf', 1, '2010-01-01+00')->'rows_by_table') LOOP
      t0 := clock_timestamp();
      EXECUTE format('COPY (SELECT * FROM %s) TO ''/dev/null''', t);
      GET DIAGNOSTICS n = ROW_COUNT;
      INSERT INTO c VALUES (r, t, n, extract(epoch FROM clock_timestamp() - t0));
    END LOOP;
  END LOOP;
END $$;
CREATE TEMP TABLE best AS
SELECT run, sum(n) AS n, count(*) AS tables, sum(secs) AS secs FROM c GROUP BY run ORDER BY 4 LIMIT 1;
SELECT format('COPY of whole tables: %s rows of %s tables in %s s, %s rows/s', n, tables, round(secs::numeric, 3),
              round(n / secs)) FROM best;

SELECT format('ratio sampler/COPY of the same statements (rows/s): %s%%',
              round(100 * (SELECT max((j->>'rows_per_s')::numeric) FROM s)
                    / (SELECT max(n / secs) FROM cs)::numeric, 1));
SELECT format('ratio sampler/COPY of whole tables (rows/s): %s%%',
              round(100 * (SELECT max((j->>'rows_per_s')::numeric) FROM s) / (n / secs)::numeric, 1))
FROM best;
SQL
