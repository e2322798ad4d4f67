-- Recommendations: ranking tasks (LIST_DISTINCT ... RANK TOP k), rdl_recommend, rdl_evaluate
-- with its two baselines, and time-correctness: an item first seen after the anchor is never
-- recommended. A small synthetic shop (examples/shop) is loaded next to F1.
CREATE EXTENSION rdl;
\set customers 300
\set products 100
\set seed 1
\set ECHO none
\ir ../../examples/shop/load.sql
\set ECHO all
\set ON_ERROR_STOP 0
RESET client_min_messages;
RESET max_parallel_workers_per_gather;
SELECT (SELECT count(*) FROM customers) AS customers, (SELECT count(*) FROM products) AS products,
       (SELECT count(*) BETWEEN 5000 AND 20000 FROM orders) AS orders_in_range;
-- A customer there from the start, and the first 40 customers who existed by 2024-03-01.
SELECT min(customer_id) AS cust FROM customers WHERE created_at = '2023-01-01' \gset
CREATE VIEW early AS
SELECT customer_id FROM customers WHERE created_at <= '2024-03-01' ORDER BY customer_id LIMIT 40 OFFSET 0;

-- F1: which team a driver drives for next season.
SELECT rdl_create_task('f1-team', 'PREDICT LIST_DISTINCT(results.constructor_id, 0, 365, days) RANK TOP 3 FOR EACH drivers.driver_id',
       '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}')->>'task_type' AS task_type;
SELECT count(*) AS test_examples, bool_and(label_text ~ '^\{[0-9,]+\}$') AS labels_are_id_sets
FROM rdl_task_table('f1-team', 'test');
-- Not trained yet: 55000.
SELECT * FROM rdl_recommend('f1-team', 1);
\echo :LAST_ERROR_SQLSTATE

-- The shop: what a customer buys in the next 30 days.
SELECT rdl_create_task('next', 'PREDICT LIST_DISTINCT(orders.product_id, 0, 30, days) RANK TOP 10 FOR EACH customers.customer_id',
       '{"val_cutoff": "2024-07-03", "test_cutoff": "2024-10-01", "eval_windows": 3}')->'anchors'->'test'->>'count' AS test_anchors;
SET client_min_messages = warning;
CALL rdl_train('next', '{"max_train": 400, "epochs": 1, "seed": 1}');
RESET client_min_messages;
SELECT status, phase, model_version FROM rdl_runs WHERE task = 'next';
SELECT version, active, config->'ranking'->>'item_table' AS item_table, (config->'ranking'->>'k')::int AS k,
       (metrics->'selection'->>'map_at_k')::float8 > 0.05 AS selection_map_above_0_05,
       (metrics->'selection'->>'candidate_recall')::float8 BETWEEN 0.5 AND 1 AS candidate_recall_0_5_to_1
FROM rdl.models WHERE task = 'next';

-- Top 5 for a customer: ranks 1..5, scores not increasing, existing products.
SELECT count(*) AS rows, array_agg(rank ORDER BY rank) AS ranks,
       bool_and(score IS NOT NULL) AS scored,
       bool_and(item_id::int IN (SELECT product_id FROM products)) AS are_products
FROM rdl_recommend('next', :cust, 5, '2024-10-01');
SELECT bool_and(s1 >= s2) AS scores_descend
FROM (SELECT score AS s1, lead(score) OVER (ORDER BY rank) AS s2
      FROM rdl_recommend('next', :cust, 10, '2024-10-01')) x WHERE s2 IS NOT NULL;
-- Same call, same answer (cached item index and embeddings change nothing).
SELECT (SELECT array_agg(item_id ORDER BY rank) FROM rdl_recommend('next', :cust, 10, '2024-10-01'))
     = (SELECT array_agg(item_id ORDER BY rank) FROM rdl_recommend('next', :cust, 10, '2024-10-01 13:00')) AS same_day_same_items;

-- Every recommended item was bought by someone and on sale at the item-side time (the
-- anchor's day); with exclude_owned none is one the customer already bought.
SELECT bool_and(EXISTS (SELECT 1 FROM orders o WHERE o.product_id = r.item_id::int AND o.ordered_at <= '2024-03-01'))
         AS seen_before_anchor,
       bool_and((SELECT created_at FROM products p WHERE p.product_id = r.item_id::int) <= '2024-03-01') AS on_sale
FROM early c CROSS JOIN LATERAL rdl_recommend('next', c.customer_id, 20, '2024-03-01') r;
SELECT bool_and(NOT EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.customer_id AND o.product_id = r.item_id::int
                                                   AND o.ordered_at <= '2024-10-01')) AS none_owned,
       count(*) > 0 AS some_rows
FROM early c CROSS JOIN LATERAL rdl_recommend('next', c.customer_id, 10, '2024-10-01', exclude_owned => true) r;

-- Time-correctness: a product launched later, bought by everyone after the anchor, is never
-- recommended at the anchor — however many items are asked for — and nothing recommended
-- at the anchor changes; once its purchases are in the past it can be recommended.
-- (Custom plans for the exact comparison: the sampler's kept statements may switch to a
-- generic plan after five executions, which can return rows in another order, and when a
-- context overflows its caps the kept rows then differ — a sampler matter, not a leak.)
SET plan_cache_mode = force_custom_plan;
CREATE TABLE before_future AS
SELECT c.customer_id, r.* FROM early c CROSS JOIN LATERAL rdl_recommend('next', c.customer_id, 10, '2024-05-31') r;
INSERT INTO products VALUES (100001, 'Future hit', 'toys', 'toys brand 1', 9.99, '2024-06-01');
INSERT INTO orders SELECT 1000000 + c, c, 100001, 1, 9.99, '2024-06-02'::timestamp + c * interval '1 minute'
FROM generate_series(1, 300) c WHERE c IN (SELECT customer_id FROM customers);
-- A new session: no cached model, item index or embedding survives.
\c
SET plan_cache_mode = force_custom_plan;
SELECT count(*) FILTER (WHERE r.item_id = '100001') AS future_item_at_anchor
FROM early c CROSS JOIN LATERAL rdl_recommend('next', c.customer_id, 1000, '2024-05-31') r;
SELECT count(*) AS rows,
       count(*) FILTER (WHERE b.item_id IS NOT DISTINCT FROM a.item_id AND abs(b.score - a.score) < 1e-4) AS identical
FROM before_future b
FULL JOIN (SELECT c.customer_id, r.* FROM early c CROSS JOIN LATERAL rdl_recommend('next', c.customer_id, 10, '2024-05-31') r) a
  USING (customer_id, rank);
SELECT count(*) FILTER (WHERE r.item_id = '100001') > 0 AS recommended_once_in_the_past
FROM early c CROSS JOIN LATERAL rdl_recommend('next', c.customer_id, 1000, '2024-07-01') r;

-- Held-out: MAP@k, recall@k, NDCG@k of the model next to the two baselines, same k, same
-- examples; the model beats both on MAP@k by more than 10%.
SELECT (e->>'k')::int AS k, (e->>'examples')::int > 0 AS has_examples,
       (SELECT bool_and(v::float8 BETWEEN 0 AND 1) FROM jsonb_each_text(e - 'task' - 'split' - 'k' - 'examples'
            - 'examples_without_context' - 'baselines' - 'model_id' - 'model_version' - 'reference_own_most_recent') x(k, v)) AS metrics_in_range,
       ARRAY(SELECT jsonb_object_keys(e->'baselines') ORDER BY 1) AS baselines,
       ARRAY(SELECT jsonb_object_keys(e->'baselines'->'popularity') ORDER BY 1) AS baseline_metrics,
       (e->>'map_at_k')::float8 > 1.1 * (e->'baselines'->'popularity'->>'map_at_k')::float8 AS beats_popularity,
       (e->>'map_at_k')::float8 > 1.1 * (e->'baselines'->'own_history'->>'map_at_k')::float8 AS beats_own_history
FROM rdl_evaluate('next', 'test') e;

-- The item index can be built ahead: every item of the pool embedded.
SELECT (p->>'pool_items')::int > 0 AS has_pool, (p->>'embedded_items')::int = (p->>'pool_items')::int AS all_embedded
FROM rdl_recommend_prepare('next', '2024-10-01') p;

-- Bad input.
SELECT count(*) AS null_id_rows FROM rdl_recommend('next', NULL::int);
SELECT * FROM rdl_recommend('nope', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM rdl_recommend('next', 1, 0);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM rdl_recommend('next', 'x'::text);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM rdl_recommend('next', 999999, 3, '2024-10-01');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_create_task('dnf', 'PREDICT COUNT(results.*, 0, 30, days) > 0 FOR EACH drivers.driver_id') IS NOT NULL AS created;
SELECT * FROM rdl_recommend('dnf', 1);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM rdl_recommend('dnf', NULL::int);
\echo :LAST_ERROR_SQLSTATE
-- A ranking task has no single-value prediction.
SELECT rdl_predict('next', :cust);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM rdl_predict_batch('next', ARRAY[:cust]);
\echo :LAST_ERROR_SQLSTATE
-- DDL after training: a column the ranking model reads, changed or dropped, is a clear
-- error with a hint to retrain, as for the other models.
ALTER TABLE products ALTER COLUMN price TYPE text;
SELECT * FROM rdl_recommend('next', :cust, 3, '2024-10-01');
ALTER TABLE products DROP COLUMN price;
SELECT * FROM rdl_recommend('next', :cust, 3, '2024-10-01');

-- The pretrained weights serve tabular tasks: a ranking task refuses them.
SELECT rdl_create_task('next-pretrained', 'PREDICT LIST_DISTINCT(orders.product_id, 0, 30, days) RANK TOP 10 FOR EACH customers.customer_id',
       '{"val_cutoff": "2024-07-03", "test_cutoff": "2024-10-01"}') IS NOT NULL AS created;
CALL rdl_train('next-pretrained', '{"init": "pretrained"}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS models FROM rdl.models WHERE task = 'next-pretrained';
