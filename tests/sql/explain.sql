-- Explanations, confidence and what-if on F1 driver-top3 (will the driver qualify in the
-- top 3 in the next 30 days?) and driver-position (average finishing position, 60 days).
CREATE EXTENSION rdl;
SELECT rdl_create_task('top3',
  'PREDICT MIN(qualifying.position, 0, 30, days) <= 3 FOR EACH drivers.driver_id
   ASSUMING COUNT(qualifying.*, 0, 30, days) > 0',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL AS created;
SET client_min_messages = warning;
CALL rdl_train('top3', '{"max_train": 1000, "epochs": 4, "seed": 2}');
RESET client_min_messages;

-- An explanation: shares that sum to 1, rows of the context, and a sentence.
CREATE TEMP TABLE e AS SELECT rdl_explain('top3', 1, '2010-06-01+00', 5) AS j;
SELECT jsonb_typeof(j->'prediction') AS prediction_type,
       round((SELECT sum((x->>'share')::float8) FROM jsonb_array_elements(j->'by_table') x)::numeric, 4) AS table_shares_sum,
       jsonb_array_length(j->'top_rows') AS top_rows,
       (SELECT bool_and(x->>'effect' IN ('raises', 'lowers')) FROM jsonb_array_elements(j->'top_rows') x) AS effects,
       (SELECT bool_and((x->>'time') IS NULL OR (x->>'time')::timestamptz <= '2010-06-01+00') FROM jsonb_array_elements(j->'top_rows') x) AS no_row_after_as_of,
       j->>'sentence' ~ '^Probability 0\.\d\d\. Mostly driven by ' AS sentence_starts_well,
       abs((j->>'prediction')::float8 - rdl_predict('top3', 1, '2010-06-01+00')) < 1e-6 AS same_as_rdl_predict
FROM e;
-- Every top row is a row of the context rdl_context shows.
SELECT bool_and(EXISTS (SELECT 1 FROM jsonb_array_elements(rdl_context('top3', 1, '2010-06-01+00')->'rows') c
                        WHERE c->>'table' = x->>'table' AND c->>'key' = x->>'key')) AS top_rows_in_context
FROM e, jsonb_array_elements(j->'top_rows') x;

-- Faithfulness: taking the top-ranked rows out of the context moves the prediction more
-- than taking out as many random rows, on average over test examples; and the two
-- attributions (attention rollout, gradient x input) rank rows alike (agreement, a
-- Spearman correlation: near 0 if either were noise).
CREATE TEMP TABLE faith (entity text, top_change float8, random_change float8, agreement float8);
DO $$
DECLARE r record; e jsonb; p float8; rm_top jsonb; rm_rand jsonb; n int;
BEGIN
  FOR r IN SELECT entity_id, anchor_time FROM rdl_task_table('top3', 'test')
           ORDER BY md5(entity_id || anchor_time::text) LIMIT 60 LOOP
    e := rdl_explain('top3', r.entity_id::int, r.anchor_time, 3);
    p := (e->>'prediction')::float8;
    SELECT count(*), jsonb_build_object('remove', jsonb_object_agg(tbl, keys))
      INTO n, rm_top
      FROM (SELECT x->>'table' AS tbl, jsonb_agg(x->'key') AS keys, count(*) AS k
              FROM jsonb_array_elements(e->'top_rows') x
             WHERE (x->>'hop')::int > 0 GROUP BY 1) s;
    CONTINUE WHEN rm_top IS NULL OR rm_top->'remove' = 'null';
    SELECT jsonb_build_object('remove', jsonb_object_agg(tbl, keys)) INTO rm_rand
      FROM (SELECT c->>'table' AS tbl, jsonb_agg(c->'key') AS keys
              FROM (SELECT c FROM jsonb_array_elements(rdl_context('top3', r.entity_id::int, r.anchor_time)->'rows') c
                     WHERE (c->>'hop')::int > 0
                     ORDER BY md5(c->>'key' || r.entity_id) LIMIT (SELECT sum(jsonb_array_length(v)) FROM jsonb_each(rm_top->'remove') t(k, v))) s
             GROUP BY 1) t;
    INSERT INTO faith VALUES (r.entity_id,
      abs(p - rdl_predict('top3', r.entity_id::int, r.anchor_time, assuming => rm_top)),
      abs(p - rdl_predict('top3', r.entity_id::int, r.anchor_time, assuming => rm_rand)),
      (e->>'agreement')::float8);
  END LOOP;
END $$;
SELECT count(*) >= 40 AS enough_examples,
       avg(top_change) > avg(random_change) AS top_rows_matter_more,
       avg(top_change) > 1.5 * avg(random_change) AS by_a_clear_margin,
       avg(agreement) > 0.3 AS attributions_agree, avg((agreement > 0)::int) > 0.8 AS agree_on_most
FROM faith;

-- What-if: better recent qualifying positions raise the top-3 probability, on average;
-- nothing is written.
CREATE TEMP TABLE whatif AS
SELECT entity_id, anchor_time,
       rdl_predict('top3', entity_id::int, anchor_time) AS p,
       rdl_predict('top3', entity_id::int, anchor_time, assuming => '{"qualifying.position": 1}') AS p_pole,
       rdl_predict('top3', entity_id::int, anchor_time, assuming => '{"qualifying.position": 20}') AS p_back
FROM (SELECT * FROM rdl_task_table('top3', 'test') ORDER BY md5(entity_id || anchor_time::text) LIMIT 60) s;
SELECT avg(p_pole) > avg(p) AS pole_raises, avg(p_back) < avg(p) AS back_of_grid_lowers,
       avg((p_pole > p_back)::int) > 0.6 AS mostly_monotone
FROM whatif;
SELECT count(*) AS qualifying_rows_with_position_1 FROM qualifying WHERE position = 1 AND driver_id = 1;
-- A hypothetical row and a change to one row by key each reach the model (the prediction
-- moves); nothing is written.
SELECT abs(rdl_predict('top3', 1, '2010-06-01+00', assuming => '{"add": {"qualifying": [{"position": 1}]}}')
           - rdl_predict('top3', 1, '2010-06-01+00')) > 1e-4 AS added_row_moves_it,
       abs(rdl_predict('top3', 1, '2010-06-01+00',
             assuming => jsonb_build_object('qualifying', jsonb_build_object('key',
               (SELECT max(qualify_id) FROM qualifying WHERE driver_id = 1 AND date <= '2010-06-01'), 'position', 20)))
           - rdl_predict('top3', 1, '2010-06-01+00')) > 1e-4 AS changed_row_moves_it;
SELECT count(*) AS qualifying_rows_with_position_1 FROM qualifying WHERE position = 1 AND driver_id = 1;
-- What-if errors name what is wrong.
SELECT rdl_predict('top3', 1, '2010-06-01+00', assuming => '{"qualifying.nope": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_predict('top3', 1, '2010-06-01+00', assuming => '{"nope.position": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_predict('top3', 1, '2010-06-01+00', assuming => '{"qualifying.position": "pole"}');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_predict('top3', 1, '2010-06-01+00', assuming => '{"qualifying": {"key": -1, "position": 1}}');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_predict('top3', 1, '2010-06-01+00', assuming => '{"drivers.driver_id": 2}');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_predict('top3', 1, '2010-06-01+00', assuming => '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_explain('top3', 1, top_k => 0);
\echo :LAST_ERROR_SQLSTATE

-- Global importance over the selection split: shares that sum to 1, far from uniform (the
-- top column holds over twice the share every column would hold if none mattered more).
SELECT round(sum(importance)::numeric, 4) AS total, count(*) > 5 AS columns,
       max(importance) > 2.0 / count(*) AS top_column_stands_out
FROM rdl_importance('top3', 100);

-- Confidence: the calibrated probability rdl_predict gives, with the active model's metrics
-- on the selection (early-stopping) split, as stored with it.
SELECT d->>'task_type' AS task_type,
       abs((d->>'probability')::float8 - rdl_predict('top3', 1, '2010-06-01+00')) < 1e-9 AS probability_is_rdl_predict,
       d->'selection' = (SELECT metrics->'selection' FROM rdl.models WHERE task = 'top3' AND active) AS selection_is_the_models,
       (d->'selection'->>'auroc')::float8 > 0.7 AS selection_auroc_above_0_7, (d->>'model_version')::int AS version
FROM rdl_predict_detail('top3', 1, '2010-06-01+00') d;
SELECT (rdl_evaluate('top3')->>'ece')::float8 < 0.2 AS test_ece_below_0_2;

-- Regression: the 90% conformal interval covers 85–95% of the test split.
SELECT rdl_create_task('position',
  'PREDICT AVG(results.position_order, 0, 60, days) FOR EACH drivers.driver_id
   ASSUMING COUNT(results.*, 0, 60, days) > 0',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL AS created;
SET client_min_messages = warning;
CALL rdl_train('position', '{"max_train": 1500, "epochs": 3, "seed": 2}');
RESET client_min_messages;
SELECT (d->'interval'->>'low')::float8 < (d->>'prediction')::float8
       AND (d->>'prediction')::float8 < (d->'interval'->>'high')::float8 AS interval_around_prediction,
       (d->'interval'->>'coverage')::float8 AS coverage
FROM rdl_predict_detail('position', 1, '2010-06-01+00') d;
SELECT (e->'interval_coverage'->>'0.9')::float8 BETWEEN 0.85 AND 0.95 AS coverage_90_within_85_95
FROM rdl_evaluate('position') e;
SELECT rdl_predict_detail('position', 1, coverage => 0.999);
\echo :LAST_ERROR_SQLSTATE
