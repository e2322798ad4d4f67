-- Who may do what: a task belongs to the role that created it; other roles use it only
-- when granted, and always read data with their own privileges; rdl's tables are written
-- only through rdl's functions; no rdl function runs with elevated rights.
CREATE EXTENSION rdl;
SELECT pg_postmaster_start_time() AS started \gset
SET client_min_messages = warning;
DROP ROLE IF EXISTS rdl_alice;
DROP ROLE IF EXISTS rdl_bob;
DROP ROLE IF EXISTS rdl_carol;
RESET client_min_messages;
CREATE ROLE rdl_alice;
CREATE ROLE rdl_bob;
CREATE ROLE rdl_carol;
GRANT rdl_alice TO rdl_carol;   -- carol acts for alice's role
GRANT SELECT ON ALL TABLES IN SCHEMA public TO rdl_alice;

-- No function of the extension is SECURITY DEFINER.
SELECT count(*) AS security_definer_functions
FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
JOIN pg_extension e ON e.oid = d.refobjid
WHERE e.extname = 'rdl' AND d.deptype = 'e' AND p.prosecdef;

SET ROLE rdl_alice;
SELECT rdl_create_task('alice-dnf',
  'PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0
   FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL AS created;
SELECT name, owner FROM rdl_tasks;
SET client_min_messages = warning;
CALL rdl_train('alice-dnf', '{"max_train": 200, "epochs": 1}');
RESET client_min_messages;
RESET ROLE;

-- Bob sees nothing of alice's task and may do nothing with it.
SET ROLE rdl_bob;
SELECT count(*) AS tasks_bob_sees FROM rdl_tasks;
SELECT count(*) AS models_bob_sees FROM rdl.models;
SELECT count(*) AS runs_bob_sees FROM rdl_runs;
SELECT rdl_predict('alice-dnf', 1, '2010-01-01+00');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_evaluate('alice-dnf');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_context('alice-dnf', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM rdl_task_table('alice-dnf', 'test');
\echo :LAST_ERROR_SQLSTATE
CALL rdl_train('alice-dnf', '{"max_train": 100, "epochs": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_activate('alice-dnf', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_grant_task('alice-dnf', 'rdl_bob');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_drop_task('alice-dnf');
\echo :LAST_ERROR_SQLSTATE
-- ... nor write rdl's tables directly.
UPDATE rdl.models SET active = false;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM rdl.tasks;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO rdl.task_grants VALUES ('alice-dnf', 'rdl_bob', 'rdl_bob');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO rdl.runs (task, started_by) VALUES ('alice-dnf', 'rdl_bob');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO rdl.time_columns VALUES ('results', NULL, 'rdl_bob');
\echo :LAST_ERROR_SQLSTATE
-- ... nor create a task over a table he may not read: permission denied, not "missing".
SELECT rdl_create_task('bob-dnf', 'PREDICT COUNT(results.*, 0, 30, days) > 0 FOR EACH drivers.driver_id');
\echo :LAST_ERROR_SQLSTATE
-- ... nor change the time column of a table he does not own, even one he may read.
RESET ROLE;
GRANT SELECT ON races TO rdl_bob;
SET ROLE rdl_bob;
SELECT rdl_set_time_column('races', NULL);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- Granted the task, bob may use it, with his own table privileges.
SET ROLE rdl_alice;
SELECT rdl_grant_task('alice-dnf', 'rdl_bob');
SELECT grantee, granted_by FROM rdl.task_grants;
RESET ROLE;
SET ROLE rdl_bob;
SELECT name, owner FROM rdl_tasks;
SELECT count(*) AS models_bob_sees FROM rdl.models;
SELECT rdl_predict('alice-dnf', 1, '2010-01-01+00');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO rdl_bob;
SET ROLE rdl_bob;
SELECT rdl_predict('alice-dnf', 1, '2010-01-01+00') BETWEEN 0 AND 1 AS bob_predicts;
SELECT (rdl_evaluate('alice-dnf')->>'examples')::int AS bob_evaluates;
-- Using is not owning.
CALL rdl_train('alice-dnf', '{"max_train": 100, "epochs": 1}');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- A member of the owner role acts as the owner.
SET ROLE rdl_carol;
SELECT rdl_activate('alice-dnf', 1) AS carol_activates;
RESET ROLE;

-- Revoked, bob is out again; granting to PUBLIC lets everyone in.
SET ROLE rdl_alice;
SELECT rdl_revoke_task('alice-dnf', 'rdl_bob') AS revoked, rdl_revoke_task('alice-dnf', 'rdl_bob') AS revoked_twice;
RESET ROLE;
SET ROLE rdl_bob;
SELECT rdl_predict('alice-dnf', 1, '2010-01-01+00');
\echo :LAST_ERROR_SQLSTATE
-- A statement's checked task is the role's own: alice's SECURITY DEFINER function lets
-- bob predict through it, and in the same statement his own call is still refused.
RESET ROLE;
GRANT CREATE ON SCHEMA public TO rdl_alice;
SET ROLE rdl_alice;
CREATE FUNCTION public.alice_predicts(d int) RETURNS float8 SECURITY DEFINER
  SET search_path = pg_catalog, public LANGUAGE sql
  AS $$ SELECT rdl_predict('alice-dnf', d, '2010-01-01+00') $$;
RESET ROLE;
SET ROLE rdl_bob;
SELECT count(*) FILTER (WHERE public.alice_predicts(d) BETWEEN 0 AND 1) AS through_alice
FROM (VALUES (1), (2), (3)) v(d);
SELECT public.alice_predicts(d), rdl_predict('alice-dnf', d, '2010-01-01+00')
FROM (VALUES (1), (2), (3)) v(d);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE rdl_alice;
SELECT rdl_grant_task('alice-dnf', 'public');
SELECT rdl_grant_task('alice-dnf', 'no_such_role');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE rdl_bob;
SELECT rdl_predict('alice-dnf', 1, '2010-01-01+00') BETWEEN 0 AND 1 AS public_predicts;
RESET ROLE;

-- Dropping the task removes its grants, models and runs; the server never restarted.
SET ROLE rdl_alice;
SELECT rdl_drop_task('alice-dnf');
RESET ROLE;
SELECT (SELECT count(*) FROM rdl.task_grants) AS grants, (SELECT count(*) FROM rdl.models) AS models,
       (SELECT count(*) FROM rdl.runs) AS runs;
SELECT pg_postmaster_start_time() = :'started' AS same_server;
DROP OWNED BY rdl_alice, rdl_bob, rdl_carol;
DROP ROLE rdl_alice;
DROP ROLE rdl_bob;
DROP ROLE rdl_carol;
