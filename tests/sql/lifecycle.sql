-- Lifecycle of the data around a model: models are data (pg_dump/restore keeps them
-- working), DROP EXTENSION and CREATE EXTENSION again starts clean (no stale model served
-- from a backend's cache, though model ids start again at 1), and DDL on a table a model
-- reads after training gives a clear error with a hint to retrain, never a crash. The first
-- model averages two networks (option members): both are stored, dumped and restored.
CREATE EXTENSION rdl;
SELECT current_database() AS db \gset
SELECT rdl_create_task('t',
  'PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0
   FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL AS created;
SET client_min_messages = warning;
CALL rdl_train('t', '{"max_train": 150, "epochs": 1, "seed": 1, "members": 2}');
RESET client_min_messages;
SELECT metrics->'selection'->>'networks' AS networks FROM rdl.models WHERE task = 't';
CREATE TABLE p0 AS
SELECT driver_id, rdl_predict('t', driver_id, '2010-06-01+00') AS p FROM drivers WHERE driver_id <= 20;
SELECT count(*) AS predictions, bool_and(p BETWEEN 0 AND 1) AS probabilities FROM p0;

-- pg_dump and pg_restore into another database: the task and its model come along and
-- predict exactly as before.
\! "$RDL_PG_BIN/pg_dump" -Fc -f "$RDL_TEST_OUT/lifecycle.dump" "$PGDATABASE"
DROP DATABASE IF EXISTS rdl_lifecycle_restored;
CREATE DATABASE rdl_lifecycle_restored;
\! "$RDL_PG_BIN/pg_restore" --exit-on-error -d rdl_lifecycle_restored "$RDL_TEST_OUT/lifecycle.dump"
\c rdl_lifecycle_restored
SELECT name, owner FROM rdl_tasks;
SELECT task, version, active FROM rdl.models;
-- The same rows are read; their order in a context follows the restored tables' physical
-- order, so float32 sums may differ in the last bits.
SELECT bool_and(abs(p - rdl_predict('t', driver_id, '2010-06-01+00')) < 1e-6) AS same_predictions_after_restore
FROM p0;
-- The restored database trains on: the sequences came along too.
SET client_min_messages = warning;
CALL rdl_train('t', '{"max_train": 150, "epochs": 1, "seed": 2}');
RESET client_min_messages;
SELECT version, active FROM rdl.models ORDER BY version;
\c :db
DROP DATABASE rdl_lifecycle_restored;

-- DROP EXTENSION takes tasks and models with it; a new CREATE EXTENSION starts empty. A
-- new task of the same name gets a model with the same id as the old one: this backend
-- must not answer from the old model it still holds.
SELECT rdl_predict('t', 1, '2010-06-01+00') = (SELECT p FROM p0 WHERE driver_id = 1) AS cached_old_model;
DROP EXTENSION rdl;
SELECT to_regnamespace('rdl') IS NULL AS schema_gone;
CREATE EXTENSION rdl;
SELECT count(*) AS tasks FROM rdl_tasks;
SELECT rdl_create_task('t',
  'PREDICT COUNT(results.*, 0, 30, days) > 0 FOR EACH drivers.driver_id',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL AS created;
SET client_min_messages = warning;
CALL rdl_train('t', '{"max_train": 150, "epochs": 1, "seed": 3}');
RESET client_min_messages;
SELECT id AS new_model_id FROM rdl.models WHERE task = 't';
CREATE TABLE p1 AS SELECT rdl_predict('t', 1, '2010-06-01+00') AS p;
\c :db
SELECT abs(p - rdl_predict('t', 1, '2010-06-01+00')) < 1e-9 AS same_as_a_fresh_session FROM p1;

-- DDL after training. A column the model reads, dropped: an error naming it, with a hint.
ALTER TABLE qualifying DROP COLUMN q3;
SELECT rdl_predict('t', 1, '2010-06-01+00');
\echo :LAST_ERROR_SQLSTATE
-- A column's type changed so that its values mean something else to the model.
ALTER TABLE qualifying ALTER COLUMN q2 TYPE int USING NULL;
SELECT rdl_predict('t', 1, '2010-06-01+00');
\echo :LAST_ERROR_SQLSTATE
-- A table the model reads, dropped.
DROP TABLE qualifying CASCADE;
SELECT rdl_predict('t', 1, '2010-06-01+00');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_explain('t', 1, '2010-06-01+00');
\echo :LAST_ERROR_SQLSTATE
