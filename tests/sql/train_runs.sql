-- Training runs seen from another session: progress committed as training goes, a second
-- training of the same task refused while one runs, cancel marks the run cancelled within
-- 2 seconds and leaves the previous model active. A second connection (dblink) trains
-- while this session watches.
CREATE EXTENSION rdl;
CREATE EXTENSION dblink;
SELECT rdl_create_task('driver-dnf',
  'PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0
   FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL AS created;

-- A first, finished run: version 1.
SET client_min_messages = warning;
CALL rdl_train('driver-dnf', '{"max_train": 300, "epochs": 2, "seed": 3}');
RESET client_min_messages;
SELECT id, task, status, phase, epoch, jsonb_array_length(history) AS epochs_logged,
       last_epoch ? 'selection_auroc' AS logs_selection_auroc, model_version,
       finished_at IS NOT NULL AS has_finished_at
FROM rdl_runs;

-- A long training in another session.
SELECT dblink_connect('trainer', format('dbname=%s port=%s host=%s user=postgres',
       current_database(), current_setting('port'),
       split_part(current_setting('unix_socket_directories'), ',', 1))) AS connected;
SELECT dblink_exec('trainer', 'SET client_min_messages = warning');
SELECT dblink_send_query('trainer',
  $$CALL rdl_train('driver-dnf', '{"max_train": 600, "epochs": 200, "patience": 200, "batch_size": 32, "seed": 4}')$$) AS sent;

-- Its progress is visible here while it runs: wait for a committed epoch (up to 10
-- minutes: the machine may be busy).
DO $$
BEGIN
  FOR i IN 1..6000 LOOP
    EXIT WHEN EXISTS (SELECT 1 FROM rdl_runs WHERE id = 2 AND epoch >= 1);
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;
SELECT id, status, phase, epoch >= 1 AS has_epochs, last_epoch ? 'loss' AS logs_loss,
       pid <> pg_backend_pid() AS other_backend
FROM rdl_runs WHERE id = 2;

-- A second training of the same task is refused while the first runs (the message names
-- the other backend's pid, which changes from run to run: only the SQLSTATE is shown).
\set VERBOSITY sqlstate
CALL rdl_train('driver-dnf', '{"max_train": 300, "epochs": 1}');
\set VERBOSITY default
SELECT :'LAST_ERROR_MESSAGE' ~ '^task "driver-dnf" is being trained by another session \(pid \d+\)$' AS names_the_session;

-- Cancel it: the run is marked cancelled within 2 seconds.
CREATE TEMP TABLE cancel_at AS SELECT clock_timestamp() AS t;
SELECT pg_cancel_backend(pid) AS cancelled FROM rdl_runs WHERE id = 2;
DO $$
BEGIN
  FOR i IN 1..100 LOOP
    EXIT WHEN (SELECT status FROM rdl_runs WHERE id = 2) <> 'running';
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SELECT status, message, finished_at - (SELECT t FROM cancel_at) < interval '2 seconds' AS within_2s
FROM rdl_runs WHERE id = 2;
SET client_min_messages = warning;
SELECT count(*) AS result_rows FROM dblink_get_result('trainer', false) AS r(x text);
RESET client_min_messages;
SELECT dblink_error_message('trainer') ~ 'cancel' AS trainer_saw_cancel;
SELECT count(*) AS drained FROM dblink_get_result('trainer', false) AS r(x text);

-- The previous model is untouched and still serves predictions.
SELECT version, active FROM rdl.models ORDER BY version;
SELECT rdl_predict('driver-dnf', 1, '2010-01-01+00') BETWEEN 0 AND 1 AS predicts;

-- The trainer's session is healthy and can train again; the new version becomes active.
SELECT dblink_exec('trainer', $$CALL rdl_train('driver-dnf', '{"max_train": 300, "epochs": 1, "seed": 5}')$$);
SELECT id, status, model_version FROM rdl_runs ORDER BY id;
SELECT version, active FROM rdl.models ORDER BY version;
SELECT dblink_disconnect('trainer');

-- Inside a transaction block nothing is committed early: a rolled-back training leaves
-- neither a model nor a run.
BEGIN;
SET LOCAL client_min_messages = warning;
CALL rdl_train('driver-dnf', '{"max_train": 200, "epochs": 1}');
SELECT count(*) AS runs_inside FROM rdl.runs;
ROLLBACK;
SELECT count(*) AS runs, count(*) FILTER (WHERE status = 'finished') AS finished FROM rdl_runs;

-- A failure after the run started is recorded with its message.
SELECT rdl_create_task('never',
  'PREDICT COUNT(results.*, 0, 30, days) > 1000 FOR EACH drivers.driver_id',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL AS created;
CALL rdl_train('never');
\echo :LAST_ERROR_SQLSTATE
SELECT task, status, message FROM rdl_runs WHERE task = 'never';

-- Dropping a task drops its runs.
SELECT rdl_drop_task('never');
SELECT count(*) AS runs_of_never FROM rdl.runs WHERE task = 'never';

-- A run still marked running by a backend that no longer holds its lock (it was cancelled
-- outside a training step, errored past rdl's handler, or died) reads 'aborted'. Here the
-- row is written by hand, so the state does not depend on when an interrupt lands.
INSERT INTO rdl.runs (task, started_by) VALUES ('driver-dnf', current_user) RETURNING id AS stale_run \gset
SELECT status, finished_at IS NULL AS unfinished FROM rdl_runs WHERE id = :stale_run;
DELETE FROM rdl.runs WHERE id = :stale_run;
