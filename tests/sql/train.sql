-- Train → predict → evaluate on a small slice of driver-dnf, plus the failure paths:
-- predicting untrained, cancelling, rolling back, bad options. Figures are checked as
-- ranges (training on 2 cores is not bit-for-bit reproducible across thread counts).
CREATE EXTENSION rdl;
SELECT rdl_create_task('driver-dnf',
  'PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0
   FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL AS created;

-- Not trained yet.
SELECT rdl_predict('driver-dnf', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_evaluate('driver-dnf');
\echo :LAST_ERROR_SQLSTATE
CALL rdl_train('driver-dnf', '{"epochs": "many"}');
\echo :LAST_ERROR_SQLSTATE
CALL rdl_train('driver-dnf', '{"size": "huge"}');
\echo :LAST_ERROR_SQLSTATE

SET client_min_messages = warning;  -- per-epoch NOTICEs carry timings
CALL rdl_train('driver-dnf', '{"max_train": 800, "epochs": 2, "seed": 7}');
RESET client_min_messages;
SELECT task, version, active, config->'train_examples' AS train_examples,
       (metrics->'selection'->>'auroc')::float8 > 0.6 AS selection_auroc_above_0_6,
       octet_length(weights) > 10000 AS has_weights
FROM rdl.models;

-- Predictions: probabilities, for int, bigint and text ids; NULL id gives NULL.
SELECT p >= 0 AND p <= 1 AS is_probability
FROM rdl_predict('driver-dnf', 1, '2010-01-01+00') p;
SELECT rdl_predict('driver-dnf', 1::bigint, '2010-01-01+00') = rdl_predict('driver-dnf', '1'::text, '2010-01-01+00') AS same_for_key_types;
SELECT rdl_predict('driver-dnf', NULL::int) IS NULL AS null_gives_null;
SELECT rdl_predict('driver-dnf', 424242, '2010-01-01+00');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_predict('driver-dnf', 'x'::bytea);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS drivers, count(DISTINCT round(p::numeric, 6)) > 5 AS varied
FROM (SELECT rdl_predict('driver-dnf', driver_id, '2012-01-01+00') p FROM drivers
      WHERE driver_id IN (SELECT driver_id FROM results WHERE date > '2011-01-01' AND date < '2012-01-01')) s;

-- Batch prediction agrees with one-by-one prediction; unknown ids get NULL.
SELECT count(*) AS rows, count(prediction) AS predicted,
       bool_and(prediction IS NULL OR abs(prediction - rdl_predict('driver-dnf', entity_id::int, '2012-01-01+00')) < 1e-5) AS agrees
FROM rdl_predict_batch('driver-dnf', ARRAY[1, 4, 20, 30, 424242], '2012-01-01+00');
SELECT count(*) AS rows FROM rdl_predict_batch('driver-dnf', ARRAY['x']::bytea[]);
\echo :LAST_ERROR_SQLSTATE

-- Held-out metrics: the model learned something real.
SELECT e->>'split' AS split, (e->>'examples')::int AS examples,
       (e->>'auroc')::float8 > 0.6 AS auroc_above_0_6,
       (e->>'ece')::float8 < 0.2 AS calibrated,
       round((e->>'positive_rate')::numeric, 4) AS positive_rate
FROM rdl_evaluate('driver-dnf', 'test') e;

-- A caller who may not read a table the model reads gets an error, not a poorer answer.
SET client_min_messages = warning;
DROP ROLE IF EXISTS rdl_predictor;
RESET client_min_messages;
CREATE ROLE rdl_predictor;
GRANT SELECT ON drivers, races, circuits, constructors, driver_standings, qualifying,
                constructor_results, constructor_standings TO rdl_predictor;
SELECT rdl_grant_task('driver-dnf', 'rdl_predictor');
SET ROLE rdl_predictor;
SELECT rdl_predict('driver-dnf', 1, '2010-01-01+00');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT SELECT ON results TO rdl_predictor;
SET ROLE rdl_predictor;
SELECT rdl_predict('driver-dnf', 1, '2010-01-01+00') BETWEEN 0 AND 1 AS allowed_now;
RESET ROLE;

-- A cancelled training leaves the active model untouched.
SET statement_timeout = '4s';
SET client_min_messages = warning;
CALL rdl_train('driver-dnf', '{"max_train": 800, "epochs": 50}');
\echo :LAST_ERROR_SQLSTATE
RESET client_min_messages;
RESET statement_timeout;
-- So does one rolled back with its transaction.
BEGIN;
SET LOCAL client_min_messages = warning;
CALL rdl_train('driver-dnf', '{"max_train": 200, "epochs": 1}');
SELECT count(*) AS versions_inside FROM rdl.models;
ROLLBACK;
SELECT version, active FROM rdl.models ORDER BY version;

-- Roll back to a version; unknown versions are an error.
SELECT rdl_activate('driver-dnf', 1);
SELECT rdl_activate('driver-dnf', 9);
\echo :LAST_ERROR_SQLSTATE

-- A table dropped after training: a clear error naming it, not a crash.
DROP TABLE constructor_results;
SELECT rdl_predict('driver-dnf', 1, '2010-01-01+00');
\echo :LAST_ERROR_SQLSTATE

-- Dropping the task drops its models.
SELECT rdl_drop_task('driver-dnf');
SELECT count(*) AS models_left FROM rdl.models;

-- Fine-tuned from the pretrained weights: bad inits are errors; a fine-tuned model
-- learns the task and records how it started.
SELECT rdl_create_task('dnf-pretrained',
  'PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0
   FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL AS created;
CALL rdl_train('dnf-pretrained', '{"init": "warm"}');
\echo :LAST_ERROR_SQLSTATE
CALL rdl_train('dnf-pretrained', '{"init": "pretrained", "size": "large"}');
\echo :LAST_ERROR_SQLSTATE
SET client_min_messages = warning;
CALL rdl_train('dnf-pretrained', '{"init": "pretrained", "max_train": 800, "epochs": 2, "seed": 7}');
RESET client_min_messages;
SELECT config->'options'->>'init' AS init, version FROM rdl.models WHERE task = 'dnf-pretrained';
SELECT (e->>'auroc')::float8 > 0.6 AS auroc_above_0_6
FROM rdl_evaluate('dnf-pretrained', 'test') e;
SELECT rdl_predict('dnf-pretrained', 1, '2009-01-01+00') BETWEEN 0 AND 1 AS is_probability;
SELECT rdl_drop_task('dnf-pretrained');
