-- Multiclass: a static categorical target (a driver's nationality, hidden from the model)
-- predicted from the driver's relational context. Static targets split by entity, not
-- by time: every driver is in exactly one split, all anchored at the latest data.
CREATE EXTENSION rdl;
SELECT rdl_create_task('nationality', 'PREDICT drivers.nationality FOR EACH drivers.driver_id')->>'task_type' AS task_type;

SELECT split, count(*) AS examples, count(DISTINCT entity_id) = count(*) AS one_row_per_driver,
       count(DISTINCT anchor_time) AS anchors
FROM (SELECT 'train' AS split, * FROM rdl_task_table('nationality', 'train')
      UNION ALL SELECT 'val', * FROM rdl_task_table('nationality', 'val')
      UNION ALL SELECT 'test', * FROM rdl_task_table('nationality', 'test')) s
GROUP BY split ORDER BY split;
-- No driver is in two splits, and every driver is in one.
SELECT count(*) AS drivers, count(DISTINCT entity_id) AS distinct_drivers
FROM (SELECT entity_id FROM rdl_task_table('nationality', 'train')
      UNION ALL SELECT entity_id FROM rdl_task_table('nationality', 'val')
      UNION ALL SELECT entity_id FROM rdl_task_table('nationality', 'test')) s;
-- The label equals the column.
SELECT bool_and(label_text = d.nationality) AS labels_are_the_column
FROM rdl_task_table('nationality', 'test') t JOIN drivers d ON d.driver_id = t.entity_id::int;

-- The target column never reaches the model: it is not in the seed row's context.
SELECT (rdl_context('nationality', 1)->'rows'->0->'values') ? 'nationality' AS target_visible,
       (rdl_context('nationality', 1)->'rows'->0->'values') ? 'surname' AS other_columns_visible;

SET client_min_messages = warning;
CALL rdl_train('nationality', '{"epochs": 4, "seed": 1}');
RESET client_min_messages;
SELECT config->'classes'->>0 AS most_frequent_class, jsonb_array_length(config->'classes') AS classes,
       round((SELECT sum(x::float8) FROM jsonb_array_elements_text(config->'class_prior') x)::numeric, 6) AS prior_sums_to
FROM rdl.models WHERE task = 'nationality';

-- Held-out: better than always answering with the training prior.
SELECT (e->>'examples')::int AS examples,
       (e->>'log_loss')::float8 < (e->'baseline'->>'log_loss')::float8 AS beats_prior_log_loss,
       (e->>'top3_accuracy')::float8 >= (e->'baseline'->>'top3_accuracy')::float8 AS top3_at_least_prior,
       e->'baseline'->>'majority_class' AS majority_class
FROM rdl_evaluate('nationality', 'test') e;

-- A target planted to be unpredictable (a class drawn from a hash of the key), trained with
-- depth 4 and fan-out 3, deep enough to reach other drivers through their races (drivers -> results ->
-- races -> results -> drivers): the target is hidden on every driver's row of every
-- context (other drivers' targets are other examples' labels, test examples' among them),
-- and rdl_context shows what the trained model reads. A model that read its own label
-- would score near 1; held out, it cannot beat the majority class by much.
ALTER TABLE drivers ADD COLUMN lucky text;
UPDATE drivers SET lucky = (ARRAY['a', 'b', 'c'])[1 + abs(hashtext(driver_id::text || 'lucky')) % 3];
SELECT rdl_create_task('lucky', 'PREDICT drivers.lucky FOR EACH drivers.driver_id')->>'task_type' AS task_type;
SET client_min_messages = warning;
CALL rdl_train('lucky', '{"epochs": 4, "seed": 1, "depth": 4, "fanout": 3}');
RESET client_min_messages;
SELECT max((r->>'hop')::int) AS deepest_hop,
       count(*) FILTER (WHERE r->>'table' = 'public.drivers' AND (r->>'hop')::int > 0) > 50 AS other_drivers_reached,
       bool_or(r->'values' ? 'lucky') AS target_visible_anywhere,
       bool_and(r->'values' ? 'surname') FILTER (WHERE r->>'table' = 'public.drivers') AS surname_visible_everywhere
FROM (SELECT driver_id FROM drivers ORDER BY driver_id LIMIT 20) d,
     jsonb_array_elements(rdl_context('lucky', d.driver_id)->'rows') r;
SELECT (e->>'examples')::int > 50 AS enough_examples,
       (e->>'accuracy')::float8 < (e->'baseline'->>'accuracy')::float8 + 0.15 AS no_better_than_chance,
       (e->>'accuracy')::float8 < 0.6 AS far_from_reading_its_label
FROM rdl_evaluate('lucky', 'test') e;

-- Predictions: a class, and a distribution over the classes that sums to 1 and ranks the
-- predicted class first.
SELECT rdl_predict_class('nationality', 1) IN (SELECT nationality FROM drivers) AS is_a_class;
SELECT count(*) AS classes, round(sum(value::float8)::numeric, 4) AS total,
       (array_agg(key ORDER BY value::float8 DESC))[1] = rdl_predict_class('nationality', 1) AS first_is_the_class
FROM jsonb_each_text(rdl_predict_proba('nationality', 1));
SELECT count(*) AS rows, count(class) AS with_class,
       bool_and(CASE WHEN class IS NULL THEN entity_id = '424242'
                     ELSE class = rdl_predict_class('nationality', entity_id::int) END) AS batch_agrees
FROM rdl_predict_batch('nationality', ARRAY[1, 2, 3, 424242]);
SELECT rdl_predict_class('nationality', NULL::int) IS NULL AS null_gives_null;

-- Using the wrong function for the kind of task is a clear error.
SELECT rdl_predict('nationality', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_create_task('dnf', 'PREDICT COUNT(results.*, 0, 30, days) > 0 FOR EACH drivers.driver_id') IS NOT NULL AS created;
SELECT rdl_predict_class('dnf', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_predict_proba('nationality', 424242, '2010-01-01');
\echo :LAST_ERROR_SQLSTATE
