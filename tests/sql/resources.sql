-- Resource limits: rdl.max_memory_mb refuses a training that would not fit (before it
-- gathers, nothing stored), gathers predictions in pieces small enough to fit (the same
-- predictions), refuses one context larger than the whole budget; statement_timeout and
-- cancel stop training, batch prediction and evaluation. No crash, no restart.
CREATE EXTENSION rdl;
SELECT pg_postmaster_start_time() AS started \gset
SELECT rdl_create_task('t',
  'PREDICT COUNT(results.* WHERE results.position <= 3, 0, 30, days) > 0
   FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL AS created;
SHOW rdl.max_memory_mb;

-- Training that would not fit is refused at once, with the figures and what to change.
SET rdl.max_memory_mb = 1;
CALL rdl_train('t', '{"epochs": 1}');
SELECT count(*) AS models FROM rdl.models;
SELECT status, message ~ 'rdl.max_memory_mb' AS says_why FROM rdl_runs ORDER BY id;
-- What the hint says fits, fits.
SET client_min_messages = warning;
CALL rdl_train('t', '{"epochs": 1, "max_train": 20, "max_val": 20, "seed": 1}');
RESET client_min_messages;
SELECT count(*) AS models FROM rdl.models;
RESET rdl.max_memory_mb;
SET client_min_messages = warning;
CALL rdl_train('t', '{"epochs": 1, "max_train": 200, "seed": 1}');
RESET client_min_messages;

-- Predictions under a tight budget: gathered in small pieces, the same numbers.
CREATE TABLE ids AS SELECT driver_id FROM drivers ORDER BY driver_id;
CREATE TABLE ref AS SELECT * FROM rdl_predict_batch('t', ARRAY(SELECT driver_id FROM ids), '2012-01-01+00');
SET rdl.max_memory_mb = 1;
SELECT count(*) AS rows, count(a.prediction) AS predicted,
       bool_and(a.prediction IS NOT DISTINCT FROM r.prediction
                OR abs(a.prediction - r.prediction) < 1e-6) AS same
FROM rdl_predict_batch('t', ARRAY(SELECT driver_id FROM ids), '2012-01-01+00') a
JOIN ref r USING (entity_id);
RESET rdl.max_memory_mb;

-- One context larger than the whole budget: 53200 naming the entity, not a crash. Many
-- rows of long texts make it (the sampler reads 200 characters of a text).
CREATE TABLE driver_notes (note_id int PRIMARY KEY, driver_id int REFERENCES drivers,
                           written_at timestamptz, a text, b text, c text, d text);
INSERT INTO driver_notes
SELECT i, 1, '2011-01-01+00'::timestamptz + i * interval '1 minute', r, r, r, r
FROM generate_series(1, 3000) i, repeat('lap ', 60) r;
INSERT INTO driver_notes VALUES (0, 2, '2011-01-01+00', 'short', 'short', 'short', 'short');
SET client_min_messages = warning;
CALL rdl_train('t', '{"epochs": 1, "max_train": 30, "max_val": 30, "max_rows": 10000, "fanout": 1000, "seed": 1}');
RESET client_min_messages;
SET rdl.max_memory_mb = 1;
SELECT rdl_predict('t', 1, '2012-01-01+00');
SELECT rdl_predict('t', 2, '2012-01-01+00') BETWEEN 0 AND 1 AS small_context_fits;
RESET rdl.max_memory_mb;
SELECT rdl_predict('t', 1, '2012-01-01+00') BETWEEN 0 AND 1 AS predicts_within_budget;
SELECT rdl_activate('t', 2) AS back_to_v2;

-- statement_timeout stops a training (the run says so; version 2 stays active), a batch
-- prediction and an evaluation.
SET statement_timeout = '3s';
SET client_min_messages = warning;
\set VERBOSITY terse
CALL rdl_train('t', '{"epochs": 50, "patience": 50, "max_train": 5000}');
SELECT count(*) FROM rdl_predict_batch('t', ARRAY(SELECT driver_id FROM ids, generate_series(1, 40)), '2012-01-01+00');
SELECT rdl_evaluate('t', 'train');
\set VERBOSITY default
RESET client_min_messages;
RESET statement_timeout;
SELECT version FROM rdl.models WHERE active;
-- The run is stopped, never left 'running' or 'finished': 'cancelled' when the timeout
-- lands in a training step, 'aborted' when it lands elsewhere (gathering, encoding). Which
-- one depends on the machine's speed; train_runs checks each state deterministically.
SELECT status IN ('cancelled', 'aborted') AS run_stopped, finished_at IS NOT NULL OR status = 'aborted' AS closed
  FROM rdl_runs ORDER BY id DESC LIMIT 1;
SELECT pg_postmaster_start_time() = :'started' AS no_restart;
