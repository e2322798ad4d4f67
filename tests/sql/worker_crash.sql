-- preload
-- SIGKILL of the background worker. PostgreSQL treats any child killed by a signal as a
-- crash: the postmaster terminates every backend (each gets "terminating connection
-- because of crash of another server process" and its connection closes — a backend
-- waiting on the worker gets exactly that, it does not hang), reinitialises shared memory
-- and starts a fresh worker. Reconnected sessions predict again; the new worker is sent
-- the model on first use.
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
SET client_min_messages = warning;
CALL rdl_train('driver-dnf', '{"max_train": 200, "epochs": 1, "seed": 1}');
RESET client_min_messages;
SET rdl.use_worker = off;
CREATE TABLE ref AS SELECT rdl_predict('driver-dnf', 4, '2012-01-01+00') AS p;
RESET rdl.use_worker;
SELECT (rdl_status()->>'requests_served')::int AS s0 \gset
SELECT abs(rdl_predict('driver-dnf', 4, '2012-01-01+00') - (SELECT p FROM ref)) < 1e-6 AS through_worker,
       (rdl_status()->>'requests_served')::int - :s0 AS requests;

-- Another session waits on the worker (held 5 s) when the worker is killed.
SELECT rdl_status()->>'worker_pid' AS wpid \gset
\setenv WPID :wpid
\! (start=$(date +%s); psql -X -At -c "SET rdl.debug_worker_delay = 5000" -c "SELECT rdl_predict('driver-dnf', 1, '2012-01-01+00')" > "$RDL_TEST_OUT/worker_crash_waiting.out" 2>&1; echo "psql exit $? after $(( $(date +%s) - start ))s" > "$RDL_TEST_OUT/worker_crash_exit.out") & sleep 1.5; kill -KILL "$WPID"; wait
\! grep -q 'terminating connection because of crash of another server process' "$RDL_TEST_OUT/worker_crash_waiting.out" && echo "waiting session: terminated with the crash error"
\! grep -Eq 'psql exit 2 after [0-4]s' "$RDL_TEST_OUT/worker_crash_exit.out" && echo "waiting session: ended before the worker's hold would have (no hang)"
-- This session's backend was terminated too: wait for recovery, reconnect.
\! for i in $(seq 1 150); do psql -X -Atc 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
\connect
SELECT wait_worker(:wpid) AS new_worker;
SELECT (s->>'worker_starts')::int AS worker_starts, jsonb_array_length(s->'cached_models') AS cached,
       (s->>'requests_served')::int AS served
FROM rdl_status() s;
SELECT abs(rdl_predict('driver-dnf', 4, '2012-01-01+00') - (SELECT p FROM ref)) < 1e-6 AS equal_after_crash;
SELECT (s->>'requests_served')::int AS served, (s->>'models_loaded')::int AS loads,
       jsonb_array_length(s->'cached_models') AS cached
FROM rdl_status() s;
