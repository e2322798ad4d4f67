-- rdl_context: the rows the model sees, and proof that nothing newer than the anchor
-- reaches them — at any hop, through timed parents or static tables.
CREATE EXTENSION rdl;
SELECT rdl_create_task('driver-dnf',
  'PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0
   FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL AS created;

-- Lewis Hamilton (driver 1) on 2010-01-01: his newest results, standings and qualifying
-- (hop 1), their races and constructors (hop 2).
SELECT c->>'entity' AS entity, c->>'as_of' AS as_of, c->'row_count' AS rows, c->'rows_by_table' AS by_table
FROM rdl_context('driver-dnf', 1, '2010-01-01 00:00:00+00') c;
SELECT r->>'table' AS "table", r->>'key' AS key, r->>'time' AS time, r->'hop' AS hop,
       r->>'via' AS via, r->'parents' AS parents
FROM jsonb_array_elements(rdl_context('driver-dnf', 1, '2010-01-01 00:00:00+00')->'rows') r
WHERE (r->>'hop')::int < 2 ORDER BY (r->>'hop')::int, r->>'table', r->>'time' DESC NULLS FIRST LIMIT 8;
SELECT r->'values' AS seed_values
FROM jsonb_array_elements(rdl_context('driver-dnf', 1, '2010-01-01 00:00:00+00')->'rows') r
WHERE (r->>'hop')::int = 0;

-- Leakage. Plant rows after 2010-01-01 at every hop and through every kind of path:
INSERT INTO constructors VALUES (9001, 'Future Racing', 'Nowhere');          -- static, reached only via the future
INSERT INTO races VALUES (9001, 2010, 99, 1, 'Future GP', '2010-06-01 12:00');
INSERT INTO races VALUES (9002, 2009, 98, 1, 'Late-dated GP', '2010-02-01 12:00');
INSERT INTO results (result_id, race_id, driver_id, constructor_id, position_order, status_id, date)
VALUES (900001, 9001, 1, 9001, 1, 1, '2010-06-01 12:00'),      -- future child of the seed
       (900002, 9002, 1, 1, 1, 1, '2009-12-31 12:00');         -- past child of a future parent race
INSERT INTO driver_standings VALUES (900001, 9001, 1, 999, 1, 9, '2010-06-01 12:00');
INSERT INTO qualifying VALUES (900001, 9001, 1, 9001, 44, 1, NULL, NULL, NULL, '2010-05-31 12:00');
INSERT INTO constructor_results VALUES (900001, 9001, 1, 99, NULL, '2010-06-01 12:00');
-- One second after the anchor is the future too.
INSERT INTO results (result_id, race_id, driver_id, constructor_id, position_order, status_id, date)
VALUES (900003, 1, 1, 1, 1, 1, '2010-01-01 00:00:01');

CREATE TEMP TABLE ctx AS
SELECT r FROM jsonb_array_elements(rdl_context('driver-dnf', 1, '2010-01-01 00:00:00+00')->'rows') r;
SELECT count(*) FILTER (WHERE (r->>'time')::timestamptz > '2010-01-01 00:00:00+00') AS rows_after_anchor,
       count(*) FILTER (WHERE r->>'key' IN ('900001', '900003', '9001', '9002')) AS planted_rows_seen,
       count(*) FILTER (WHERE r->>'table' = 'public.results' AND r->>'key' = '900002') AS past_child_kept
FROM ctx;
-- ... in any timezone.
SET TimeZone = 'Pacific/Kiritimati';
SELECT count(*) AS planted_rows_seen_kiritimati
FROM jsonb_array_elements(rdl_context('driver-dnf', 1, '2010-01-01 00:00:00+00')->'rows') r
WHERE r->>'key' IN ('900001', '900003', '9001', '9002');
RESET TimeZone;
-- After the planted rows' times they are visible: the sampler reads live data, no cache.
SELECT count(*) FILTER (WHERE r->>'key' IN ('900001', '900003')) AS planted_results_seen_later
FROM jsonb_array_elements(rdl_context('driver-dnf', 1, '2010-07-01 00:00:00+00')->'rows') r
WHERE r->>'table' = 'public.results';
-- A committed change shows in the very next call.
UPDATE drivers SET nationality = 'Martian' WHERE driver_id = 1;
SELECT r->'values'->>'nationality' AS nationality
FROM jsonb_array_elements(rdl_context('driver-dnf', 1, '2010-01-01 00:00:00+00')->'rows') r
WHERE (r->>'hop')::int = 0;

-- Many drivers, many anchors: no context holds a row newer than its anchor.
SELECT count(*) AS contexts, sum(jsonb_array_length(c->'rows')) > 1000 AS many_rows,
       count(*) FILTER (WHERE EXISTS (
         SELECT 1 FROM jsonb_array_elements(c->'rows') r
         WHERE (r->>'time')::timestamptz > t.anchor_time)) AS leaking_contexts
FROM (SELECT * FROM rdl_task_table('driver-dnf', 'val') ORDER BY anchor_time, entity_id LIMIT 40) t,
     LATERAL rdl_context('driver-dnf', t.entity_id::int, t.anchor_time) c;

-- Keys of other types work; bad input is a clear error.
SELECT rdl_context('driver-dnf', 1::bigint, '2010-01-01+00')->'row_count' AS bigint_key;
SELECT rdl_context('driver-dnf', '1'::text, '2010-01-01+00')->'row_count' AS text_key;
SELECT rdl_context('driver-dnf', NULL::int) IS NULL AS null_id_gives_null;
SELECT rdl_context('driver-dnf', 424242, '2010-01-01+00');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_context('driver-dnf', 1.5::float8);
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_context('no-such-task', 1);
\echo :LAST_ERROR_SQLSTATE
SET client_min_messages = warning;
DROP ROLE IF EXISTS rdl_ctx_reader;
RESET client_min_messages;
CREATE ROLE rdl_ctx_reader;
-- A task is its owner's: another role may not use it until granted it.
SET ROLE rdl_ctx_reader;
SELECT rdl_context('driver-dnf', 1);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT rdl_grant_task('driver-dnf', 'rdl_ctx_reader');
-- Granted the task but no table: the table privileges still apply.
SET ROLE rdl_ctx_reader;
SELECT rdl_context('driver-dnf', 1);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- Reading the entity table is not enough: a linked table the caller may not read is an
-- error naming it, never a silently smaller context.
GRANT SELECT ON drivers, races, circuits, constructors, driver_standings, results,
                constructor_results, constructor_standings TO rdl_ctx_reader;
SET ROLE rdl_ctx_reader;
SELECT rdl_context('driver-dnf', 1, '2010-01-01+00');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT SELECT ON qualifying TO rdl_ctx_reader;
SET ROLE rdl_ctx_reader;
SELECT (rdl_context('driver-dnf', 1, '2010-01-01+00')->>'row_count')::int > 0 AS readable_now;
RESET ROLE;
-- Row-level security applies to what the context holds: a policy hiding a driver's
-- results shrinks their context.
ALTER TABLE results ENABLE ROW LEVEL SECURITY;
CREATE POLICY before_2000 ON results TO rdl_ctx_reader USING (date < '2000-01-01');
SELECT (rdl_context('driver-dnf', 1, '2010-01-01+00')->'rows_by_table'->>'public.results')::int AS results_as_owner;
SET ROLE rdl_ctx_reader;
SELECT coalesce((rdl_context('driver-dnf', 1, '2010-01-01+00')->'rows_by_table'->>'public.results')::int, 0) AS results_under_rls;
RESET ROLE;

-- With the counts option, the entity's row carries, per foreign key referencing it, how
-- many rows reference it up to the anchor: exact, never counting a row after the anchor
-- (the planted result one second later), and only the rows the caller may read.
SET client_min_messages = warning;
CALL rdl_train('driver-dnf', '{"counts": true, "size": "tiny", "max_train": 60, "max_val": 30, "epochs": 1}');
RESET client_min_messages;
CREATE FUNCTION pg_temp.counted(as_of timestamptz) RETURNS TABLE (via text, n int) AS $$
  SELECT substring(v.key FROM ' via (.*)\)$'), round(exp(v.value::text::float8) - 1)::int
  FROM jsonb_array_elements(rdl_context('driver-dnf', 1, as_of)->'rows') r, jsonb_each(r->'values') v
  WHERE (r->>'hop')::int = 0 AND v.key LIKE 'ln(1 + rows of %' $$ LANGUAGE sql;
SELECT via, n,
       n = CASE via
         WHEN 'results_driver_id_fkey' THEN (SELECT count(*) FROM results WHERE driver_id = 1 AND date <= '2010-01-01 00:00:00')
         WHEN 'qualifying_driver_id_fkey' THEN (SELECT count(*) FROM qualifying WHERE driver_id = 1 AND date <= '2010-01-01 00:00:00')
         WHEN 'driver_standings_driver_id_fkey' THEN (SELECT count(*) FROM driver_standings WHERE driver_id = 1 AND date <= '2010-01-01 00:00:00')
       END AS exact
FROM pg_temp.counted('2010-01-01 00:00:00+00') ORDER BY via;
SELECT n AS results_one_second_later,
       n = (SELECT count(*) FROM results WHERE driver_id = 1 AND date <= '2010-01-01 00:00:01') AS exact
FROM pg_temp.counted('2010-01-01 00:00:01+00') WHERE via = 'results_driver_id_fkey';
SET ROLE rdl_ctx_reader;
SELECT n AS results_under_rls, n = (SELECT count(*) FROM results WHERE driver_id = 1 AND date < '2000-01-01') AS exact
FROM pg_temp.counted('2010-01-01 00:00:00+00') WHERE via = 'results_driver_id_fkey';
RESET ROLE;
