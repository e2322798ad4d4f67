-- The sampler on F1 without its foreign-key indexes and planner statistics (as PostgreSQL
-- leaves foreign keys and RelBench ships the data): every context is the same, row for
-- row and in order, as with the indexes; the statements switch to the set-based form only
-- for children whose key has no index; rdl_train names the indexes that would help; and
-- nothing newer than the anchor gets in.
CREATE EXTENSION rdl;
SELECT rdl_create_task('driver-dnf',
  'PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0
   FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL AS created;

-- With the indexes: 60 drivers at 4 times, and the training split's sampler figures. The
-- model is trained counting children (option counts), so both forms count them too.
\! psql -X -c "CALL rdl_train('driver-dnf', '{\"counts\": true, \"size\": \"tiny\", \"max_train\": 40, \"max_val\": 20, \"epochs\": 1}')" 2>&1 | grep -c 'ERROR'
CREATE TABLE seeds AS
SELECT d.driver_id, v.t FROM (SELECT driver_id FROM drivers ORDER BY driver_id LIMIT 60) d
CROSS JOIN (VALUES ('1985-01-01+00'::timestamptz), ('2000-06-01+00'), ('2010-01-01+00'), ('2017-01-01+00')) v(t);
CREATE TABLE ref AS SELECT s.driver_id, s.t, rdl_context('driver-dnf', s.driver_id, s.t) AS c FROM seeds s;
CREATE TABLE ref_stats AS SELECT rdl_sampler_stats('driver-dnf', 'train') AS j;
SELECT count(*) FILTER (WHERE s LIKE '%row_number()%') AS set_based,
       count(*) FILTER (WHERE s LIKE '%LATERAL%LIMIT%') AS lateral_limit
FROM rdl_sampler_statements('driver-dnf', 'train', 50) s;
\! psql -X -c "CALL rdl_train('driver-dnf', '{\"counts\": true, \"max_train\": 100, \"max_val\": 50, \"epochs\": 1}')" 2>&1 | grep -c 'without an index'

-- Drop every index but the keys', and the statistics (autovacuum kept off).
DO $$ DECLARE i regclass; BEGIN
  FOR i IN SELECT x.indexrelid::regclass FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid
           WHERE c.relnamespace = 'public'::regnamespace AND NOT x.indisunique LOOP
    EXECUTE format('DROP INDEX %s', i);
  END LOOP;
  FOR i IN SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' LOOP
    EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = off)', i);
  END LOOP; END $$;
DELETE FROM pg_statistic WHERE starelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace);
SELECT count(*) AS indexes_left FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid
WHERE c.relnamespace = 'public'::regnamespace AND NOT x.indisunique;

SELECT count(*) FILTER (WHERE s LIKE '%row_number()%') AS set_based,
       count(*) FILTER (WHERE s LIKE '%LATERAL%LIMIT%') AS lateral_limit
FROM rdl_sampler_statements('driver-dnf', 'train', 50) s;
SELECT count(*) AS contexts, count(*) FILTER (WHERE (r.c->>'row_count')::int > 1) AS with_children,
       count(*) FILTER (WHERE r.c = rdl_context('driver-dnf', r.driver_id, r.t)) AS identical
FROM ref r;
SELECT j->'contexts' = (SELECT j->'contexts' FROM ref_stats) AS same_contexts,
       j->'rows' = (SELECT j->'rows' FROM ref_stats) AS same_rows,
       j->'cells' = (SELECT j->'cells' FROM ref_stats) AS same_cells
FROM rdl_sampler_stats('driver-dnf', 'train') j;
-- rdl_train says which indexes would help (one per foreign key, with the time column).
\! psql -X -c "CALL rdl_train('driver-dnf', '{\"counts\": true, \"max_train\": 100, \"max_val\": 50, \"epochs\": 1}')" 2>&1 | grep -o 'foreign keys without an index\|CREATE INDEX ON [a-z_.]* ([a-z_, ]*);' | sort

-- Leakage through the set-based form: rows one second and months after the anchor.
INSERT INTO results (result_id, race_id, driver_id, constructor_id, position_order, status_id, date)
VALUES (900001, 1, 1, 1, 1, 1, '2010-01-01 00:00:01'), (900002, 1, 1, 1, 1, 1, '2010-06-01 12:00');
INSERT INTO qualifying VALUES (900001, 1, 1, 1, 44, 1, NULL, NULL, NULL, '2010-05-31 12:00');
SELECT count(*) FILTER (WHERE (r->>'time')::timestamptz > '2010-01-01 00:00:00+00') AS rows_after_anchor,
       count(*) FILTER (WHERE r->>'key' IN ('900001', '900002')) AS planted_rows_seen
FROM jsonb_array_elements(rdl_context('driver-dnf', 1, '2010-01-01 00:00:00+00')->'rows') r;
SELECT count(*) FILTER (WHERE r->>'key' IN ('900001', '900002')) AS planted_rows_seen_later
FROM jsonb_array_elements(rdl_context('driver-dnf', 1, '2010-07-01 00:00:00+00')->'rows') r;
-- The count of children never includes a row after the anchor.
SELECT (SELECT round(exp(v.value::text::float8) - 1)::int
        FROM jsonb_array_elements(rdl_context('driver-dnf', 1, '2010-01-01 00:00:00+00')->'rows') r,
             jsonb_each(r->'values') v
        WHERE (r->>'hop')::int = 0 AND v.key LIKE 'ln(1 + rows of public.results via %')
     = (SELECT count(*) FROM results WHERE driver_id = 1 AND date <= '2010-01-01 00:00:00') AS count_has_no_future_row;

-- One statement over every driver: once its lookups of a table have cost what reading it
-- whole would, the table is read once for the statement (a copy, the planted rows in it)
-- and the later lookups are answered from it. Still nothing after the anchor, and every
-- context the same as when each is gathered by its own statement (a write between two
-- statements, even inside one DO block, starts the copies over).
\! psql -X -c "SET client_min_messages = debug1" -c "CREATE TABLE one_statement AS SELECT driver_id, rdl_context('driver-dnf', driver_id, '2010-01-01 00:00:00+00') AS c FROM drivers" 2>&1 | grep -o 'public.results read whole'
SELECT count(*) AS contexts,
       count(*) FILTER (WHERE (r->>'time')::timestamptz > '2010-01-01 00:00:00+00') AS rows_after_anchor,
       count(*) FILTER (WHERE r->>'key' IN ('900001', '900002')) AS planted_rows_seen
FROM one_statement o, jsonb_array_elements(o.c->'rows') r;
CREATE TABLE each_alone (driver_id int, c jsonb);
DO $$ DECLARE d int; BEGIN
  FOR d IN SELECT driver_id FROM drivers ORDER BY driver_id DESC LIMIT 100 LOOP
    INSERT INTO each_alone VALUES (d, rdl_context('driver-dnf', d, '2010-01-01 00:00:00+00'));
  END LOOP; END $$;
SELECT count(*) AS compared, count(*) FILTER (WHERE o.c = e.c) AS identical
FROM one_statement o JOIN each_alone e USING (driver_id);
DO $$ DECLARE n int; BEGIN
  PERFORM count(rdl_context('driver-dnf', driver_id, '2010-01-01 00:00:00+00')) FROM drivers;
  INSERT INTO results (result_id, race_id, driver_id, constructor_id, position_order, status_id, date)
  VALUES (900003, 1, 2, 1, 1, 1, '2009-12-31 12:00');
  SELECT count(*) INTO n FROM jsonb_array_elements(rdl_context('driver-dnf', 2, '2010-01-01 00:00:00+00')->'rows') r
  WHERE r->>'key' = '900003';
  RAISE NOTICE 'a row written after the copies were read is in the next statement''s context: %', n = 1;
END $$;

-- Scoring only reads: it takes no transaction id (a hot standby has none to give, and a
-- parallel worker may not take one), not even on a new connection's first call.
\c
BEGIN;
SELECT rdl_predict('driver-dnf', 1, '2010-01-01 00:00:00+00') BETWEEN 0 AND 1 AS scored;
SELECT pg_current_xact_id_if_assigned() IS NULL AS no_transaction_id;
COMMIT;

-- A table under row-level security is never read whole: a policy may depend on settings
-- that change between the rows of one statement. Here the policy hides results from 2000
-- on once test.hide is on, which this statement turns on for its last 100 drivers (ids
-- below 100: drivers of the 2000s), long after its first lookups of results.
DROP ROLE IF EXISTS rdl_unindexed_reader;
CREATE ROLE rdl_unindexed_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO rdl_unindexed_reader;
SELECT rdl_grant_task('driver-dnf', 'rdl_unindexed_reader') AS granted;
ALTER TABLE results ENABLE ROW LEVEL SECURITY;
CREATE POLICY hide ON results USING (current_setting('test.hide', true) IS DISTINCT FROM 'on' OR date < '2000-01-01');
SET ROLE rdl_unindexed_reader;
SELECT count(*) FILTER (WHERE x.driver_id >= 100 AND (r->>'time')::timestamptz >= '2000-01-01+00') > 0 AS seen_before_hiding,
       count(*) FILTER (WHERE x.driver_id < 100 AND (r->>'time')::timestamptz >= '2000-01-01+00') AS hidden_rows_seen
FROM (SELECT d.driver_id, set_config('test.hide', CASE WHEN d.driver_id < 100 THEN 'on' ELSE 'off' END, false) AS s,
             rdl_context('driver-dnf', d.driver_id, '2010-01-01 00:00:00+00') AS c
      FROM (SELECT driver_id FROM drivers ORDER BY driver_id DESC) d) x,
     jsonb_array_elements(x.c->'rows') r
WHERE r->>'table' = 'public.results';
RESET ROLE;

-- rdl opens a lookup of a few seeds with its generic plan (planned once, not per call),
-- setting the plan cache's mode as a function's SET clause would, around the open only:
-- the caller's own setting is back after the call, also when an error is raised inside
-- the open, and when code run inside it sets the mode itself (SET LOCAL). Here an
-- immutable function in a policy on drivers runs while the seed lookup is planned.
CREATE FUNCTION boom() RETURNS bool LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF current_setting('test.boom', true) = 'on' THEN
    RAISE EXCEPTION 'boom while planning with plan_cache_mode %', current_setting('plan_cache_mode');
  END IF;
  IF current_setting('test.tweak', true) = 'on' THEN
    PERFORM set_config('plan_cache_mode', 'auto', true);
  END IF;
  RETURN true;
END $$;
ALTER TABLE drivers ENABLE ROW LEVEL SECURITY;
CREATE POLICY boom ON drivers USING (boom());
SET ROLE rdl_unindexed_reader;
SET plan_cache_mode = force_custom_plan;
SET test.boom = on;
SELECT rdl_predict('driver-dnf', 1, '2010-01-01 00:00:00+00') AS failed_in_planning;
SHOW plan_cache_mode;
RESET test.boom;
SET test.tweak = on;
SELECT rdl_predict('driver-dnf', 1, '2010-01-01 00:00:00+00') BETWEEN 0 AND 1 AS scored;
SHOW plan_cache_mode;
RESET test.tweak;
RESET plan_cache_mode;
RESET ROLE;
DROP POLICY boom ON drivers;
ALTER TABLE drivers DISABLE ROW LEVEL SECURITY;
DROP FUNCTION boom();
DROP OWNED BY rdl_unindexed_reader;
DROP ROLE rdl_unindexed_reader;
