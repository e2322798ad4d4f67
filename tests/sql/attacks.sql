-- Attacks, mounted as an ordinary role would: nothing may let one role run code with
-- another's rights, read rows its row-level security hides, or take the server down.
--   1. Objects shadowing every name rdl's statements use (functions, aggregates,
--      operators, types, temporary relations), on the attacker's search path and on
--      victims' paths, while every rdl function runs (as the attacker, as a superuser).
--   2. Row-level security through the per-backend caches across SET ROLE and
--      SET SESSION AUTHORIZATION.
--   3. What a grantee and another database can learn: weights, configs, the worker listing.
--   4. Oversized settings and options; the advisory lock a training once waited on.
-- Every trap records that it ran (m.hits): the run passes when it never did, no role
-- gained an attribute or a membership, and the server never restarted.
CREATE EXTENSION rdl;
CREATE EXTENSION dblink;
SELECT pg_postmaster_start_time() AS started \gset
SET client_min_messages = warning;
DROP ROLE IF EXISTS rdl_mallory;
DROP ROLE IF EXISTS rdl_amy;
DROP ROLE IF EXISTS rdl_ben;
RESET client_min_messages;
CREATE ROLE rdl_mallory LOGIN;
CREATE ROLE rdl_amy LOGIN;
CREATE ROLE rdl_ben LOGIN;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO rdl_mallory, rdl_amy, rdl_ben;
CREATE SCHEMA m AUTHORIZATION rdl_mallory;
CREATE TABLE roles_before AS
SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls
FROM pg_roles WHERE rolname LIKE 'rdl\_%';
CREATE TABLE members_before AS SELECT roleid, member FROM pg_auth_members;

-- ============================================================================
-- 1. Shadowing. Mallory's schema m holds a trap behind every name rdl uses.
-- ============================================================================
SET ROLE rdl_mallory;
GRANT USAGE ON SCHEMA m TO PUBLIC;
CREATE TABLE m.hits (who name, what text);
GRANT INSERT ON m.hits TO PUBLIC;
-- The trap: records who ran it, and makes mallory a superuser when that was one.
CREATE FUNCTION m.trap(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO m.hits VALUES (pg_catalog.current_user(), what);
  IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r
      WHERE r.rolname OPERATOR(pg_catalog.=) pg_catalog.current_user()) THEN
    EXECUTE 'ALTER ROLE rdl_mallory SUPERUSER';
  END IF;
  RETURN true;
END $$;
-- Functions, each with the signature of the built-in it shadows.
CREATE FUNCTION m.now() RETURNS timestamptz LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('now'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION m.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('clock_timestamp'); RETURN pg_catalog.clock_timestamp(); END $$;
CREATE FUNCTION m.md5(text) RETURNS text LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('md5'); RETURN pg_catalog.md5($1); END $$;
CREATE FUNCTION m.to_regclass(text) RETURNS regclass LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('to_regclass'); RETURN pg_catalog.to_regclass($1); END $$;
CREATE FUNCTION m.unnest(anyarray) RETURNS SETOF anyelement LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('unnest'); RETURN QUERY SELECT pg_catalog.unnest($1); END $$;
CREATE FUNCTION m.left(text, integer) RETURNS text LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('left'); RETURN pg_catalog.left($1, $2); END $$;
CREATE FUNCTION m.hashtext(text) RETURNS integer LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('hashtext'); RETURN pg_catalog.hashtext($1); END $$;
CREATE FUNCTION m.cardinality(anyarray) RETURNS integer LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('cardinality'); RETURN pg_catalog.cardinality($1); END $$;
CREATE FUNCTION m.current_database() RETURNS name LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('current_database'); RETURN pg_catalog.current_database(); END $$;
CREATE FUNCTION m.pg_backend_pid() RETURNS integer LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('pg_backend_pid'); RETURN pg_catalog.pg_backend_pid(); END $$;
CREATE FUNCTION m.pg_advisory_lock(integer, integer) RETURNS void LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('pg_advisory_lock'); PERFORM pg_catalog.pg_advisory_lock($1, $2); END $$;
CREATE FUNCTION m.pg_has_role(oid, oid, text) RETURNS boolean LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('pg_has_role'); RETURN pg_catalog.pg_has_role($1, $2, $3); END $$;
CREATE FUNCTION m.has_table_privilege(oid, oid, text) RETURNS boolean LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('has_table_privilege'); RETURN pg_catalog.has_table_privilege($1, $2, $3); END $$;
CREATE FUNCTION m.has_table_privilege(oid, text) RETURNS boolean LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('has_table_privilege'); RETURN pg_catalog.has_table_privilege($1, $2); END $$;
CREATE FUNCTION m.pg_table_is_visible(oid) RETURNS boolean LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('pg_table_is_visible'); RETURN pg_catalog.pg_table_is_visible($1); END $$;
CREATE FUNCTION m.format_type(oid, integer) RETURNS text LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('format_type'); RETURN pg_catalog.format_type($1, $2); END $$;
-- Aggregates.
CREATE FUNCTION m.acc(s bigint) RETURNS bigint LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('count(*)'); RETURN s OPERATOR(pg_catalog.+) 1; END $$;
CREATE AGGREGATE m.count(*) (SFUNC = m.acc, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION m.keep(s anyelement, x anyelement) RETURNS anyelement LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('aggregate'); RETURN x; END $$;
DO $$
DECLARE a text; t text;
BEGIN
  FOREACH a IN ARRAY ARRAY['min', 'max', 'sum', 'avg'] LOOP
    FOREACH t IN ARRAY ARRAY['integer', 'bigint', 'double precision', 'numeric',
                             'timestamp', 'timestamptz', 'text'] LOOP
      EXECUTE pg_catalog.format('CREATE AGGREGATE m.%I(%s) (SFUNC = m.keep, STYPE = %s)', a, t, t);
    END LOOP;
  END LOOP;
END $$;
CREATE FUNCTION m.agg_keep(s anyarray, x anynonarray) RETURNS anyarray LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('array_agg'); RETURN s; END $$;
CREATE AGGREGATE m.array_agg(anynonarray) (SFUNC = m.agg_keep, STYPE = anyarray);
CREATE FUNCTION m.sagg(s text, x text, d text) RETURNS text LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('string_agg'); RETURN x; END $$;
CREATE AGGREGATE m.string_agg(text, text) (SFUNC = m.sagg, STYPE = text);
-- Comparison operators for every type rdl compares, and the arithmetic it does.
DO $$
DECLARE t text; o text; n int := 0;
BEGIN
  FOREACH t IN ARRAY ARRAY['integer', 'bigint', 'text', 'oid', 'name', 'timestamp',
                           'timestamptz', 'numeric', 'double precision', 'date', 'boolean',
                           'regrole', 'jsonb', '"char"'] LOOP
    FOREACH o IN ARRAY ARRAY['=', '<>', '<', '<=', '>', '>='] LOOP
      n := n OPERATOR(pg_catalog.+) 1;
      EXECUTE pg_catalog.format(
        'CREATE FUNCTION m.op%s(a %s, b %s) RETURNS boolean LANGUAGE plpgsql AS '
        '$f$ BEGIN PERFORM m.trap(%L); RETURN a OPERATOR(pg_catalog.%s) b; END $f$',
        n, t, t, o OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) t, o);
      EXECUTE pg_catalog.format('CREATE OPERATOR m.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = m.op%s)',
                                o, t, t, n);
    END LOOP;
  END LOOP;
END $$;
CREATE FUNCTION m.op_in(a integer, b numeric) RETURNS boolean LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('integer <> numeric'); RETURN a OPERATOR(pg_catalog.<>) b; END $$;
CREATE OPERATOR m.<> (LEFTARG = integer, RIGHTARG = numeric, FUNCTION = m.op_in);
CREATE FUNCTION m.op_ts_iv(a timestamp, b interval) RETURNS timestamp LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('timestamp + interval'); RETURN a OPERATOR(pg_catalog.+) b; END $$;
CREATE OPERATOR m.+ (LEFTARG = timestamp, RIGHTARG = interval, FUNCTION = m.op_ts_iv);
CREATE FUNCTION m.op_num_int(a numeric, b integer) RETURNS numeric LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('numeric * integer'); RETURN a OPERATOR(pg_catalog.*) b; END $$;
CREATE OPERATOR m.* (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = m.op_num_int);
CREATE FUNCTION m.op_cat(a text, b text) RETURNS text LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('text || text'); RETURN a OPERATOR(pg_catalog.||) b; END $$;
CREATE OPERATOR m.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = m.op_cat);
CREATE FUNCTION m.op_get(a jsonb, b text) RETURNS text LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('jsonb ->> text'); RETURN a OPERATOR(pg_catalog.->>) b; END $$;
CREATE OPERATOR m.->> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = m.op_get);
CREATE FUNCTION m.op_re(a name, b text) RETURNS boolean LANGUAGE plpgsql
  AS $$ BEGIN PERFORM m.trap('name ~ text'); RETURN a OPERATOR(pg_catalog.~) b; END $$;
CREATE OPERATOR m.~ (LEFTARG = name, RIGHTARG = text, FUNCTION = m.op_re);
-- Types: a cast to one of these runs its CHECK, that is, the trap.
CREATE DOMAIN m.text AS pg_catalog.text CHECK (m.trap('::text'));
CREATE DOMAIN m.float8 AS pg_catalog.float8 CHECK (m.trap('::float8'));
CREATE DOMAIN m.int8 AS pg_catalog.int8 CHECK (m.trap('::int8'));
CREATE DOMAIN m.int4 AS pg_catalog.int4 CHECK (m.trap('::int4'));
CREATE DOMAIN m.bool AS pg_catalog.bool CHECK (m.trap('::bool'));
CREATE DOMAIN m.oid AS pg_catalog.oid CHECK (m.trap('::oid'));
CREATE DOMAIN m.jsonb AS pg_catalog.jsonb CHECK (m.trap('::jsonb'));
CREATE DOMAIN m.timestamptz AS pg_catalog.timestamptz CHECK (m.trap('::timestamptz'));
CREATE DOMAIN m.regclass AS pg_catalog.regclass CHECK (m.trap('::regclass'));
CREATE DOMAIN m.regrole AS pg_catalog.regrole CHECK (m.trap('::regrole'));
-- Temporary relations named like rdl's own and the catalogs it reads (the temporary
-- schema comes first for relations).
CREATE TEMP VIEW rdl_runs AS SELECT r.* FROM rdl.runs r WHERE m.trap('temp rdl_runs');
CREATE TEMP VIEW rdl_tasks AS SELECT t.* FROM rdl.tasks t WHERE m.trap('temp rdl_tasks');
CREATE TEMP VIEW tasks AS SELECT t.* FROM rdl.tasks t WHERE m.trap('temp tasks');
CREATE TEMP VIEW runs AS SELECT r.* FROM rdl.runs r WHERE m.trap('temp runs');
CREATE TEMP VIEW task_grants AS SELECT g.* FROM rdl.task_grants g WHERE m.trap('temp task_grants');
CREATE TEMP VIEW time_columns AS SELECT c.* FROM rdl.time_columns c WHERE m.trap('temp time_columns');
CREATE TEMP VIEW pg_roles AS SELECT r.* FROM pg_catalog.pg_roles r WHERE m.trap('temp pg_roles');
CREATE TEMP VIEW pg_class AS SELECT c.* FROM pg_catalog.pg_class c WHERE m.trap('temp pg_class');
CREATE TEMP VIEW pg_locks AS SELECT l.* FROM pg_catalog.pg_locks l WHERE m.trap('temp pg_locks');
CREATE TEMP VIEW pg_attribute AS SELECT a.attrelid, a.attname, a.atttypid, a.attnum, a.attisdropped
  FROM pg_catalog.pg_attribute a WHERE m.trap('temp pg_attribute');
CREATE TEMP VIEW drivers AS SELECT d.* FROM public.drivers d WHERE m.trap('temp drivers');
CREATE TEMP VIEW results AS SELECT r.* FROM public.results r WHERE m.trap('temp results');

-- Mallory's own table and tasks, every rdl function called with her path first.
CREATE TABLE m.t (id int PRIMARY KEY, ts timestamptz);
SET search_path = m, pg_catalog, public;
SET client_min_messages = warning;
SELECT rdl_set_time_column('m.t', 'ts') IS NOT NULL AS reported_attack_ran;
SELECT rdl_set_time_column('m.t', NULL) IS NOT NULL AS again;
SELECT pg_catalog.jsonb_array_length(rdl_schema_graph(ARRAY['public']) OPERATOR(pg_catalog.->) 'tables') AS tables_seen;
SELECT rdl_create_task('mal-dnf',
  'PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0
   FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL AS created;
SELECT rdl_create_task('mal-rank',
  'PREDICT LIST_DISTINCT(results.constructor_id, 0, 365, days) RANK TOP 3 FOR EACH drivers.driver_id',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL AS created;
SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 AS labels FROM rdl_task_table('mal-dnf', 'val');
SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 AS labels FROM rdl_labels('mal-dnf', '2009-06-01+00');
CALL rdl_train('mal-dnf', '{"max_train": 150, "max_val": 100, "epochs": 1}');
CALL rdl_train('mal-rank', '{"max_train": 150, "max_val": 60, "epochs": 1}');
SELECT rdl_predict('mal-dnf', 1, '2010-06-01+00') IS NOT NULL AS predicted;
SELECT pg_catalog.count(*) AS batch FROM rdl_predict_batch('mal-dnf', ARRAY[1, 2, 3], '2010-06-01+00');
SELECT rdl_explain('mal-dnf', 1, '2010-06-01+00') IS NOT NULL AS explained;
SELECT rdl_predict_detail('mal-dnf', 1, '2010-06-01+00') IS NOT NULL AS detailed;
SELECT rdl_context('mal-dnf', 1, '2010-06-01+00') IS NOT NULL AS context;
SELECT rdl_evaluate('mal-dnf') IS NOT NULL AS evaluated;
SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 AS importance FROM rdl_importance('mal-dnf', 20);
SELECT rdl_sampler_stats('mal-dnf', 'val', 20) IS NOT NULL AS stats;
SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 AS statements FROM rdl_sampler_statements('mal-dnf', 'val', 5);
SELECT rdl_recommend_prepare('mal-rank', '2010-06-01+00') IS NOT NULL AS prepared;
SELECT pg_catalog.count(*) AS recommended FROM rdl_recommend('mal-rank', 1, 3, '2010-06-01+00');
SELECT rdl_evaluate('mal-rank', 'val') IS NOT NULL AS evaluated;
SELECT rdl_grant_task('mal-dnf', 'rdl_amy') AS granted;
SELECT rdl_revoke_task('mal-dnf', 'rdl_amy') AS revoked;
SELECT rdl_activate('mal-dnf', 1) AS activated;
SELECT rdl_status() IS NOT NULL AS status;
SELECT pg_catalog.count(*) AS runs FROM rdl.runs;
RESET client_min_messages;
RESET search_path;
RESET ROLE;
SELECT pg_catalog.count(*) AS traps_sprung_by_mallory FROM m.hits;

-- The same calls by a superuser and by amy whose search paths hold mallory's schema
-- first (a schema another role writes to: the CVE-2018-1058 setting).
SET search_path = m, pg_catalog, public;
SET client_min_messages = warning;
SELECT rdl_predict('mal-dnf', 1, '2010-06-01+00') IS NOT NULL AS superuser_predicted;
SELECT rdl_explain('mal-dnf', 1, '2010-06-01+00') IS NOT NULL AS superuser_explained;
SELECT rdl_evaluate('mal-dnf') IS NOT NULL AS superuser_evaluated;
SELECT pg_catalog.count(*) AS superuser_recommended FROM rdl_recommend('mal-rank', 1, 3, '2010-06-01+00');
SELECT rdl_create_task('su-dnf', 'PREDICT COUNT(results.*, 0, 30, days) > 0 FOR EACH drivers.driver_id',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL AS superuser_created;
CALL rdl_train('su-dnf', '{"max_train": 100, "max_val": 50, "epochs": 1}');
SELECT rdl_set_time_column('m.t', 'ts') IS NOT NULL AS superuser_set_time;
SELECT rdl_drop_task('su-dnf') AS superuser_dropped;
RESET client_min_messages;
RESET search_path;
SELECT pg_catalog.count(*) AS traps_sprung_in_superuser_calls FROM m.hits;
-- The temporary traps belong to this session (SET ROLE kept it): gone from here on.
DISCARD TEMP;

-- ============================================================================
-- 2. Row-level security through the caches. Amy sees every result; Ben only those of
-- races before 2005.
-- ============================================================================
ALTER TABLE results ENABLE ROW LEVEL SECURITY;
CREATE POLICY amy_all ON results FOR SELECT TO rdl_amy USING (true);
CREATE POLICY ben_old ON results FOR SELECT TO rdl_ben
  USING (race_id IN (SELECT race_id FROM races WHERE date < '2005-01-01'));
CREATE TABLE fresh (who text, what text, driver int, v text);
GRANT INSERT, SELECT ON fresh TO PUBLIC;
SET ROLE rdl_amy;
SET client_min_messages = warning;
SELECT rdl_create_task('amy-dnf',
  'PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0
   FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL AS created;
CALL rdl_train('amy-dnf', '{"max_train": 200, "max_val": 100, "epochs": 1}');
SELECT rdl_create_task('amy-rank',
  'PREDICT LIST_DISTINCT(results.constructor_id, 0, 365, days) RANK TOP 3 FOR EACH drivers.driver_id',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL AS created;
CALL rdl_train('amy-rank', '{"max_train": 150, "max_val": 60, "epochs": 1}');
SELECT rdl_grant_task('amy-dnf', 'rdl_ben') AND rdl_grant_task('amy-rank', 'rdl_ben') AS granted;
RESET client_min_messages;
RESET ROLE;

-- What each role gets in a session of its own (nothing cached from anyone else).
\c - rdl_ben
INSERT INTO fresh
SELECT 'ben', 'predict', d, rdl_predict('amy-dnf', d, '2012-01-01+00')::text FROM unnest(ARRAY[1, 4, 8, 18, 20]) d;
INSERT INTO fresh
SELECT 'ben', 'context', d, (SELECT count(*) FROM jsonb_array_elements(rdl_context('amy-dnf', d, '2012-01-01+00')->'rows') r
                            WHERE r->>'table' = 'public.results')::text FROM unnest(ARRAY[1, 4, 8, 18, 20]) d;
INSERT INTO fresh
SELECT 'ben', 'context_key', d, r->>'key'
FROM unnest(ARRAY[1, 4, 8, 18, 20]) d, jsonb_array_elements(rdl_context('amy-dnf', d, '2012-01-01+00')->'rows') r
WHERE r->>'table' = 'public.results';
INSERT INTO fresh
SELECT 'ben', 'explain', d, (rdl_explain('amy-dnf', d, '2012-01-01+00')->'by_table')::text FROM unnest(ARRAY[1, 4, 8, 18, 20]) d;
INSERT INTO fresh SELECT 'ben', 'evaluate', 0, (rdl_evaluate('amy-dnf', 'val')->>'examples');
INSERT INTO fresh
SELECT 'ben', 'recommend', d, (SELECT string_agg(item_id, ',' ORDER BY rank) FROM rdl_recommend('amy-rank', d, 3, '2012-01-01+00'))
FROM unnest(ARRAY[1, 4, 8, 18, 20]) d;
\c - rdl_amy
INSERT INTO fresh
SELECT 'amy', 'predict', d, rdl_predict('amy-dnf', d, '2012-01-01+00')::text FROM unnest(ARRAY[1, 4, 8, 18, 20]) d;
\c - postgres
-- Ben's contexts hold no result his policy hides, and his answers differ from amy's
-- (so a leak would show).
SELECT count(*) > 0 AS ben_saw_results,
       count(*) FILTER (WHERE x.date >= '2005-01-01') AS hidden_rows_in_bens_contexts
FROM fresh f JOIN results x ON x.result_id = f.v::int WHERE f.what = 'context_key';
SELECT count(*) FILTER (WHERE a.v <> b.v) AS predictions_amy_and_ben_differ_on
FROM fresh a JOIN fresh b USING (what, driver) WHERE a.who = 'amy' AND b.who = 'ben' AND what = 'predict';

-- One pooled connection: amy warms every cache, then the role changes.
CREATE FUNCTION answers(who text) RETURNS TABLE (what text, driver int, v text) LANGUAGE sql AS $$
  SELECT 'predict', d, rdl_predict('amy-dnf', d, '2012-01-01+00')::text FROM unnest(ARRAY[1, 4, 8, 18, 20]) d
  UNION ALL
  SELECT 'context', d, (SELECT count(*) FROM jsonb_array_elements(rdl_context('amy-dnf', d, '2012-01-01+00')->'rows') r
                        WHERE r->>'table' = 'public.results')::text FROM unnest(ARRAY[1, 4, 8, 18, 20]) d
  UNION ALL
  SELECT 'explain', d, (rdl_explain('amy-dnf', d, '2012-01-01+00')->'by_table')::text FROM unnest(ARRAY[1, 4, 8, 18, 20]) d
  UNION ALL
  SELECT 'evaluate', 0, (rdl_evaluate('amy-dnf', 'val')->>'examples')
  UNION ALL
  SELECT 'recommend', d, (SELECT string_agg(item_id, ',' ORDER BY rank) FROM rdl_recommend('amy-rank', d, 3, '2012-01-01+00'))
  FROM unnest(ARRAY[1, 4, 8, 18, 20]) d
$$;
SET ROLE rdl_amy;
SELECT rdl_recommend_prepare('amy-rank', '2012-01-01+00') IS NOT NULL AS amy_prepared;
SELECT count(*) AS amy_answers FROM answers('amy');
SET ROLE rdl_ben;
CREATE TEMP TABLE after_set_role AS SELECT * FROM answers('ben');
RESET ROLE;
SELECT count(*) AS answers, count(*) FILTER (WHERE s.v IS NULL) AS missing,
       count(*) FILTER (WHERE f.v IS DISTINCT FROM s.v) AS differ_from_a_fresh_session
FROM fresh f JOIN after_set_role s USING (what, driver) WHERE f.who = 'ben';
-- The same with SET SESSION AUTHORIZATION.
SET SESSION AUTHORIZATION rdl_amy;
SELECT rdl_recommend_prepare('amy-rank', '2012-01-01+00') IS NOT NULL AS amy_prepared;
SELECT count(*) AS amy_answers FROM answers('amy');
SET SESSION AUTHORIZATION rdl_ben;
CREATE TEMP TABLE after_session_authorization AS SELECT * FROM answers('ben');
RESET SESSION AUTHORIZATION;
SELECT count(*) AS answers, count(*) FILTER (WHERE s.v IS NULL) AS missing,
       count(*) FILTER (WHERE f.v IS DISTINCT FROM s.v) AS differ_from_a_fresh_session
FROM fresh f JOIN after_session_authorization s USING (what, driver) WHERE f.who = 'ben';

-- ============================================================================
-- 3. What a grantee, and another database, may learn.
-- ============================================================================
SET ROLE rdl_ben;
SELECT count(*) AS models_ben_sees FROM (SELECT id, task, version, metrics FROM rdl.models) m;
SELECT weights FROM rdl.models LIMIT 1;
\echo :LAST_ERROR_SQLSTATE
SELECT config FROM rdl.models LIMIT 1;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE rdl_mallory;
-- Mallory's listing of the worker's cache (not preloaded here) and of tasks: only hers.
SELECT count(*) AS tasks_mallory_sees FROM rdl_tasks;
SELECT count(*) AS models_mallory_sees FROM (SELECT id FROM rdl.models) m;
RESET ROLE;

-- ============================================================================
-- 4. Settings and options that would let one call hold too much, and the lock.
-- ============================================================================
SET ROLE rdl_mallory;
SET rdl.max_memory_mb = '100GB';
\echo :LAST_ERROR_SQLSTATE
SET rdl.max_memory_ceiling_mb = '100GB';
\echo :LAST_ERROR_SQLSTATE
SET rdl.max_memory_mb = '64MB';
SHOW rdl.max_memory_mb;
RESET rdl.max_memory_mb;
ALTER ROLE rdl_mallory SET rdl.max_memory_mb = '100GB';
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_create_task('mal-hourly', 'PREDICT COUNT(results.*, 0, 1, hours) > 0 FOR EACH drivers.driver_id',
  '{"anchor_step": "1 hour"}');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_create_task('mal-windows', 'PREDICT COUNT(results.*, 0, 30, days) > 0 FOR EACH drivers.driver_id',
  '{"eval_windows": 1000000}');
\echo :LAST_ERROR_SQLSTATE
CALL rdl_train('mal-dnf', '{"fanout": 100000}');
\echo :LAST_ERROR_SQLSTATE
CALL rdl_train('mal-dnf', '{"max_rows": 1000000000}');
\echo :LAST_ERROR_SQLSTATE
-- Locking rdl's rows needs UPDATE on them, which no ordinary role has.
SELECT 1 FROM rdl.tasks FOR NO KEY UPDATE;
\echo :LAST_ERROR_SQLSTATE
SELECT 1 FROM rdl.tasks FOR SHARE;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET rdl.max_memory_mb = '100GB';
SHOW rdl.max_memory_mb;
RESET rdl.max_memory_mb;

-- Mallory, in another session, holds the advisory locks a training once took and the
-- run-liveness key of amy's next run: amy's training still finishes.
SELECT dblink_connect('mallory', format('dbname=%s port=%s host=%s user=rdl_mallory',
       current_database(), current_setting('port'),
       split_part(current_setting('unix_socket_directories'), ',', 1))) AS connected;
SELECT x AS mallory_holds FROM dblink('mallory', $$
  SELECT pg_advisory_lock(hashtext('rdl_train:amy-dnf'))::text
  UNION ALL SELECT pg_advisory_lock(1919183872, (SELECT coalesce(max(id), 0) + 1 FROM rdl.runs)::int)::text
$$) AS t(x text) LIMIT 1;
SET ROLE rdl_amy;
SET statement_timeout = '120s';
SET client_min_messages = warning;
CALL rdl_train('amy-dnf', '{"max_train": 100, "max_val": 50, "epochs": 1}');
RESET client_min_messages;
RESET statement_timeout;
SELECT version, active FROM rdl.models WHERE task = 'amy-dnf' ORDER BY version;
SELECT status FROM rdl_runs WHERE task = 'amy-dnf' ORDER BY id DESC LIMIT 1;
RESET ROLE;
SELECT dblink_disconnect('mallory');

-- ============================================================================
-- The verdict.
-- ============================================================================
SELECT count(*) AS traps_sprung, string_agg(DISTINCT what, ', ') AS which FROM m.hits;
SELECT count(*) AS roles_changed
FROM roles_before b JOIN pg_roles r USING (rolname)
WHERE (b.rolsuper, b.rolcreaterole, b.rolcreatedb, b.rolreplication, b.rolbypassrls)
   IS DISTINCT FROM (r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls);
SELECT count(*) AS memberships_added
FROM pg_auth_members a WHERE NOT EXISTS (
  SELECT 1 FROM members_before b WHERE b.roleid = a.roleid AND b.member = a.member);
SELECT pg_postmaster_start_time() = :'started' AS no_server_restart;
