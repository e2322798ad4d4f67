-- preload
-- Training on the worker's device. By default (rdl.train_on_worker = auto) rdl_train
-- trains in the calling backend unless the worker's device is a GPU; `on` sends the
-- contexts to the worker, which trains on a thread of its own while it keeps serving
-- predictions, relays progress (NOTICEs, rdl.runs rows, cancel) and sends the model back.
-- On this CPU-only machine `on` exercises the same path a GPU would take.
CREATE EXTENSION rdl;
CREATE FUNCTION wait_worker(old int DEFAULT 0) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..300 LOOP
    IF coalesce((rdl_status()->>'worker_pid')::int, old) <> old THEN RETURN true; END IF;
    PERFORM pg_sleep(0.1);
  END LOOP;
  RETURN false;
END $$;
SELECT wait_worker() AS worker_running;
SELECT rdl_create_task('driver-dnf',
  'PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0
   FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01", "eval_windows": 3}') IS NOT NULL AS created;
SHOW rdl.train_on_worker;

-- auto with a CPU worker: trains here.
SET client_min_messages = warning;
CALL rdl_train('driver-dnf', '{"max_train": 200, "epochs": 1, "seed": 1}');
RESET client_min_messages;
SELECT (rdl_status()->>'trainings')::int AS trainings_on_worker;

-- on: trains on the worker.
SET rdl.train_on_worker = on;
SET client_min_messages = warning;
CALL rdl_train('driver-dnf', '{"max_train": 300, "epochs": 2, "seed": 2}');
RESET client_min_messages;
SELECT (s->>'trainings')::int AS trainings_on_worker, (s->>'trainings_running')::int AS running,
       (s->>'errors')::int AS errors
FROM rdl_status() s;
SELECT version, active, config->'train_examples' AS train_examples,
       (metrics->'selection'->>'auroc')::float8 > 0.55 AS learned,
       octet_length(weights) > 100000 AS has_weights
FROM rdl.models ORDER BY version;
-- Progress came back: epochs in the run's history, as for a training in the backend.
SELECT id, status, epoch, jsonb_array_length(history) AS epochs_logged, model_version
FROM rdl_runs ORDER BY id;
-- The worker-trained model predicts the same through the worker and in-process.
SET rdl.use_worker = off;
CREATE TABLE ref AS SELECT entity_id, prediction FROM rdl_predict_batch('driver-dnf',
  ARRAY(SELECT driver_id FROM drivers ORDER BY driver_id LIMIT 40), '2012-01-01+00');
RESET rdl.use_worker;
SELECT count(*) AS rows, bool_and(abs(w.prediction - r.prediction) < 1e-6) AS equal
FROM rdl_predict_batch('driver-dnf', ARRAY(SELECT driver_id FROM drivers ORDER BY driver_id LIMIT 40), '2012-01-01+00') w
JOIN ref r USING (entity_id);

-- Predictions are served while a training runs on the worker; a cancelled training
-- stops there, leaves version 2 active and the worker healthy.
SELECT (rdl_status()->>'worker_pid')::int AS wpid \gset
\! psql -X -q -c "SET rdl.train_on_worker = on" -c "SET client_min_messages = warning" -c "CALL rdl_train('driver-dnf', '{\"max_train\": 2000, \"epochs\": 50, \"patience\": 50}')" > "$RDL_TEST_OUT/worker_train_cancel.out" 2>&1 &
DO $$
BEGIN
  FOR i IN 1..300 LOOP
    EXIT WHEN (rdl_status()->>'trainings_running')::int = 1;
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;
SELECT (rdl_status()->>'trainings_running')::int AS running_now,
       abs(rdl_predict('driver-dnf', 4, '2012-01-01+00') - (SELECT prediction FROM ref WHERE entity_id = '4')) < 1e-6
         AS version_2_served_meanwhile;
-- Cancelled once it trains on the worker (not on a timer: a busy machine may still be
-- gathering after any fixed time).
SELECT count(pg_cancel_backend(pid)) AS cancels_sent FROM pg_stat_activity WHERE query LIKE 'CALL rdl_train%';
DO $$
BEGIN
  FOR i IN 1..600 LOOP
    EXIT WHEN (rdl_status()->>'trainings_running')::int = 0
          AND NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE 'CALL rdl_train%');
    PERFORM pg_sleep(0.1);
  END LOOP;
END $$;
\! cat "$RDL_TEST_OUT/worker_train_cancel.out"
SELECT (s->>'trainings')::int AS trainings_on_worker, (s->>'trainings_running')::int AS running,
       (s->>'worker_pid')::int = :wpid AS same_worker, (s->>'errors')::int AS errors
FROM rdl_status() s;
SELECT version, active FROM rdl.models ORDER BY version;
SELECT id, status FROM rdl_runs ORDER BY id;
SELECT abs(rdl_predict('driver-dnf', 4, '2012-01-01+00') - (SELECT prediction FROM ref WHERE entity_id = '4')) < 1e-6
         AS version_2_served_after;
