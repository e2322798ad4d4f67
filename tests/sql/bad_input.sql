-- The bad-input matrix: every public function called with NULLs, empty strings, wrong
-- types, unknown names and ids, malformed queries and options, oversized arguments and
-- hostile identifiers. Each call must end in success or an ERROR with a documented
-- SQLSTATE — never an internal error (XX000), never a crash (the server's start time is
-- unchanged at the end).
CREATE EXTENSION rdl;
SELECT pg_postmaster_start_time() AS started \gset
SELECT rdl_create_task('t',
  'PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0
   FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') IS NOT NULL AS created;
SET client_min_messages = warning;
CALL rdl_train('t', '{"max_train": 100, "epochs": 1}');
RESET client_min_messages;
CREATE TABLE "x""; DROP TABLE results; --" (id int PRIMARY KEY, "säule ☃" text, at timestamptz);
INSERT INTO "x""; DROP TABLE results; --" VALUES (1, 'a', '2000-01-01');

CREATE TEMP TABLE cases (id serial, fn text, sql text);
INSERT INTO cases (fn, sql) VALUES
-- rdl_create_task
('rdl_create_task', $$SELECT rdl_create_task(NULL, 'PREDICT drivers.nationality FOR EACH drivers.driver_id')$$),
('rdl_create_task', $$SELECT rdl_create_task('n', NULL)$$),
('rdl_create_task', $$SELECT rdl_create_task('', 'PREDICT drivers.nationality FOR EACH drivers.driver_id')$$),
('rdl_create_task', $$SELECT rdl_create_task('   ', 'PREDICT drivers.nationality FOR EACH drivers.driver_id')$$),
('rdl_create_task', $$SELECT rdl_create_task('n', '')$$),
('rdl_create_task', $$SELECT rdl_create_task('n', 'PREDICT')$$),
('rdl_create_task', $$SELECT rdl_create_task('n', 'SELECT 1; DROP TABLE results')$$),
('rdl_create_task', $$SELECT rdl_create_task('t', 'PREDICT drivers.nationality FOR EACH drivers.driver_id')$$),
('rdl_create_task', $$SELECT rdl_create_task('n', 'PREDICT COUNT(nope.*, 0, 30, days) > 0 FOR EACH drivers.driver_id')$$),
('rdl_create_task', $$SELECT rdl_create_task('n', 'PREDICT COUNT(results.*, 0, 30, days) > 0 FOR EACH drivers.nope')$$),
('rdl_create_task', $$SELECT rdl_create_task('n', 'PREDICT COUNT(results.*, 30, 0, days) > 0 FOR EACH drivers.driver_id')$$),
('rdl_create_task', $$SELECT rdl_create_task('n', 'PREDICT COUNT(results.*, 0, 99999999999999999999, days) > 0 FOR EACH drivers.driver_id')$$),
('rdl_create_task', $$SELECT rdl_create_task('n', 'PREDICT COUNT(results.*, 0, 30, fortnights) > 0 FOR EACH drivers.driver_id')$$),
('rdl_create_task', $$SELECT rdl_create_task('n', 'PREDICT SUM(results.status_id, 0, 30, days) > ''x'' FOR EACH drivers.driver_id')$$),
('rdl_create_task', $$SELECT rdl_create_task('n', 'PREDICT COUNT(results.*, 0, 30, days) > 0 FOR EACH "x""; DROP TABLE results; --".id')$$),
('rdl_create_task', $$SELECT rdl_create_task('n', 'PREDICT "x""; DROP TABLE results; --"."säule ☃" FOR EACH "x""; DROP TABLE results; --".id')$$),
('rdl_create_task', $$SELECT rdl_create_task('x"; DROP TABLE results; --', 'PREDICT drivers.nationality FOR EACH drivers.driver_id')$$),
('rdl_create_task', $$SELECT rdl_create_task('☃ é 日本', 'PREDICT drivers.nationality FOR EACH drivers.driver_id')$$),
('rdl_create_task', $$SELECT rdl_create_task(repeat('n', 100000), 'PREDICT drivers.nationality FOR EACH drivers.driver_id')$$),
('rdl_create_task', $$SELECT rdl_create_task('n', 'PREDICT ' || repeat('(', 100000))$$),
('rdl_create_task', $$SELECT rdl_create_task('n', repeat('PREDICT drivers.nationality ', 50000))$$),
('rdl_create_task', $$SELECT rdl_create_task('n', 'PREDICT drivers.nationality FOR EACH drivers.driver_id', '[1, 2]')$$),
('rdl_create_task', $$SELECT rdl_create_task('n', 'PREDICT drivers.nationality FOR EACH drivers.driver_id', '{"val_cutoff": "yesterday-ish"}')$$),
('rdl_create_task', $$SELECT rdl_create_task('n', 'PREDICT drivers.nationality FOR EACH drivers.driver_id', '{"eval_windows": -3}')$$),
('rdl_create_task', $$SELECT rdl_create_task('n', 'PREDICT drivers.nationality FOR EACH drivers.driver_id', '{"no_such_option": 1}')$$),
('rdl_create_task', $$SELECT rdl_create_task('n', 'PREDICT COUNT(results.*, 0, 30, days) > 0 FOR EACH drivers.driver_id', '{"val_cutoff": "2010-01-01", "test_cutoff": "2005-01-01"}')$$),
-- rdl_drop_task / grants
('rdl_drop_task', $$SELECT rdl_drop_task(NULL)$$),
('rdl_drop_task', $$SELECT rdl_drop_task('')$$),
('rdl_drop_task', $$SELECT rdl_drop_task('no such task')$$),
('rdl_grant_task', $$SELECT rdl_grant_task('t', NULL)$$),
('rdl_grant_task', $$SELECT rdl_grant_task('t', '')$$),
('rdl_grant_task', $$SELECT rdl_grant_task('t', 'x"; DROP ROLE postgres; --')$$),
('rdl_revoke_task', $$SELECT rdl_revoke_task('no such task', 'public')$$),
-- rdl_set_time_column / rdl_schema_graph
('rdl_set_time_column', $$SELECT rdl_set_time_column(NULL, 'date')$$),
('rdl_set_time_column', $$SELECT rdl_set_time_column('', 'date')$$),
('rdl_set_time_column', $$SELECT rdl_set_time_column('no_such_table', 'date')$$),
('rdl_set_time_column', $$SELECT rdl_set_time_column('results; DROP TABLE results', 'date')$$),
('rdl_set_time_column', $$SELECT rdl_set_time_column('"x""; DROP TABLE results; --"', 'säule ☃')$$),
('rdl_set_time_column', $$SELECT rdl_set_time_column('results', 'no_such_column')$$),
('rdl_set_time_column', $$SELECT rdl_set_time_column('results', 'points')$$),
('rdl_set_time_column', $$SELECT rdl_set_time_column('pg_class', 'relname')$$),
('rdl_set_time_column', $$SELECT rdl_set_time_column('rdl_tasks', 'created_at')$$),
('rdl_schema_graph', $$SELECT rdl_schema_graph(ARRAY['no_such_schema'])$$),
('rdl_schema_graph', $$SELECT rdl_schema_graph(ARRAY[NULL, '', 'x"; --'])$$),
-- rdl_task_table / rdl_labels
('rdl_task_table', $$SELECT count(*) FROM rdl_task_table(NULL)$$),
('rdl_task_table', $$SELECT count(*) FROM rdl_task_table('t', NULL)$$),
('rdl_task_table', $$SELECT count(*) FROM rdl_task_table('t', '')$$),
('rdl_task_table', $$SELECT count(*) FROM rdl_task_table('t', 'TRAIN')$$),
('rdl_task_table', $$SELECT count(*) FROM rdl_task_table('nope', 'train')$$),
('rdl_labels', $$SELECT count(*) FROM rdl_labels('t', NULL)$$),
('rdl_labels', $$SELECT count(*) FROM rdl_labels('t', 'infinity')$$),
('rdl_labels', $$SELECT count(*) FROM rdl_labels('t', '-infinity')$$),
('rdl_labels', $$SELECT count(*) FROM rdl_labels('t', '1800-01-01')$$),
-- rdl_context
('rdl_context', $$SELECT rdl_context('t', NULL::int)$$),
('rdl_context', $$SELECT rdl_context('t', 424242)$$),
('rdl_context', $$SELECT rdl_context('t', -1)$$),
('rdl_context', $$SELECT rdl_context('t', 9223372036854775807)$$),
('rdl_context', $$SELECT rdl_context('t', 'x'::text)$$),
('rdl_context', $$SELECT rdl_context('t', ''::text)$$),
('rdl_context', $$SELECT rdl_context('t', 1.5)$$),
('rdl_context', $$SELECT rdl_context('t', true)$$),
('rdl_context', $$SELECT rdl_context('t', ARRAY[1])$$),
('rdl_context', $$SELECT rdl_context('t', ROW(1, 2))$$),
('rdl_context', $$SELECT rdl_context('t', '\x00'::bytea)$$),
('rdl_context', $$SELECT rdl_context('t', 1, 'infinity')$$),
('rdl_context', $$SELECT rdl_context('t', 1, '-infinity')$$),
('rdl_context', $$SELECT rdl_context('t', 1, '1800-01-01')$$),
('rdl_context', $$SELECT rdl_context(NULL, 1)$$),
-- rdl_train
('rdl_train', $$CALL rdl_train(NULL)$$),
('rdl_train', $$CALL rdl_train('nope')$$),
('rdl_train', $$CALL rdl_train('t', '{"max_train": 50, "time_budget_s": 5, "epochs": 1}')$$),
('rdl_train', $$CALL rdl_train('t', '[]')$$),
('rdl_train', $$CALL rdl_train('t', '"small"')$$),
('rdl_train', $$CALL rdl_train('t', '{"max_train": 50, "time_budget_s": 5, "epochs": -1}')$$),
('rdl_train', $$CALL rdl_train('t', '{"max_train": 50, "time_budget_s": 5, "epochs": 0}')$$),
('rdl_train', $$CALL rdl_train('t', '{"max_train": 50, "time_budget_s": 5, "epochs": 1e30}')$$),
('rdl_train', $$CALL rdl_train('t', '{"max_train": 50, "time_budget_s": 5, "lr": "fast"}')$$),
('rdl_train', $$CALL rdl_train('t', '{"max_train": 50, "time_budget_s": 5, "lr": 0}')$$),
('rdl_train', $$CALL rdl_train('t', '{"max_train": 50, "time_budget_s": 5, "batch_size": 0}')$$),
('rdl_train', $$CALL rdl_train('t', '{"max_train": 50, "time_budget_s": 5, "depth": 200}')$$),
('rdl_train', $$CALL rdl_train('t', '{"max_train": 50, "time_budget_s": 5, "fanout": 100000000}')$$),
('rdl_train', $$CALL rdl_train('t', '{"max_train": 50, "time_budget_s": 5, "max_rows": 0}')$$),
('rdl_train', $$CALL rdl_train('t', '{"max_train": 50, "time_budget_s": 5, "time_budget_s": -5}')$$),
('rdl_train', $$CALL rdl_train('t', '{"max_train": 50, "time_budget_s": 5, "size": "x\"; --"}')$$),
('rdl_train', $$CALL rdl_train('t', '{"max_train": 50, "time_budget_s": 5, "unknown": true}')$$),
-- predictions
('rdl_predict', $$SELECT rdl_predict(NULL, 1)$$),
('rdl_predict', $$SELECT rdl_predict('nope', 1)$$),
('rdl_predict', $$SELECT rdl_predict('', 1)$$),
('rdl_predict', $$SELECT rdl_predict('t', NULL::int)$$),
('rdl_predict', $$SELECT rdl_predict('t', 424242)$$),
('rdl_predict', $$SELECT rdl_predict('t', 'x'::text)$$),
('rdl_predict', $$SELECT rdl_predict('t', 1.5::float8)$$),
('rdl_predict', $$SELECT rdl_predict('t', '2010-01-01'::date)$$),
('rdl_predict', $$SELECT rdl_predict('t', ARRAY[1, 2])$$),
('rdl_predict', $$SELECT rdl_predict('t', 1, 'infinity')$$),
('rdl_predict', $$SELECT rdl_predict('t', 1, '-infinity')$$),
('rdl_predict', $$SELECT rdl_predict('t', 1, '0001-01-01 BC')$$),
('rdl_predict', $$SELECT rdl_predict('t', 1, '294276-01-01')$$),
('rdl_predict_class', $$SELECT rdl_predict_class('t', 1)$$),
('rdl_predict_proba', $$SELECT rdl_predict_proba('t', 1)$$),
('rdl_predict_batch', $$SELECT count(*) FROM rdl_predict_batch('t', NULL::int[])$$),
('rdl_predict_batch', $$SELECT count(*) FROM rdl_predict_batch('t', ARRAY[]::int[])$$),
('rdl_predict_batch', $$SELECT count(*) FROM rdl_predict_batch('t', ARRAY[NULL, 1, NULL]::int[])$$),
('rdl_predict_batch', $$SELECT count(*) FROM rdl_predict_batch('t', ARRAY[[1, 2], [3, 4]])$$),
('rdl_predict_batch', $$SELECT count(*) FROM rdl_predict_batch('t', ARRAY['a', 'b'])$$),
('rdl_predict_batch', $$SELECT count(*) FROM rdl_predict_batch('t', ARRAY[1.5, 2.5])$$),
('rdl_predict_batch', $$SELECT count(*) FROM rdl_predict_batch('t', ARRAY(SELECT g FROM generate_series(1, 20000) g))$$),
('rdl_predict_batch', $$SELECT count(*) FROM rdl_predict_batch('nope', ARRAY[1])$$),
('rdl_recommend', $$SELECT count(*) FROM rdl_recommend(NULL, 1)$$),
('rdl_recommend', $$SELECT count(*) FROM rdl_recommend('nope', 1)$$),
('rdl_recommend', $$SELECT count(*) FROM rdl_recommend('t', 1)$$),
('rdl_recommend', $$SELECT count(*) FROM rdl_recommend('t', 1, -3)$$),
('rdl_recommend', $$SELECT count(*) FROM rdl_recommend('t', 'x"; --')$$),
('rdl_recommend_prepare', $$SELECT rdl_recommend_prepare('t')$$),
('rdl_recommend_prepare', $$SELECT rdl_recommend_prepare('nope')$$),
('rdl_explain', $$SELECT rdl_explain(NULL, 1)$$),
('rdl_explain', $$SELECT rdl_explain('nope', 1)$$),
('rdl_explain', $$SELECT rdl_explain('t', 1, top_k => -1)$$),
('rdl_explain', $$SELECT rdl_explain('t', 'x')$$),
('rdl_explain', $$SELECT rdl_explain('t', 999999)$$),
('rdl_explain', $$SELECT rdl_explain('t', 1, assuming => '{"x\"; --.a": 1}')$$),
('rdl_explain', $$SELECT rdl_explain('t', 1, assuming => '{"add": {"results": "no"}}')$$),
('rdl_predict_detail', $$SELECT rdl_predict_detail('t', 1, coverage => 2)$$),
('rdl_predict_detail', $$SELECT rdl_predict_detail('nope', 1)$$),
('rdl_predict_detail', $$SELECT rdl_predict_detail('t', NULL::int)$$),
('rdl_importance', $$SELECT count(*) FROM rdl_importance('t', 0)$$),
('rdl_importance', $$SELECT count(*) FROM rdl_importance('nope')$$),
-- evaluate / activate / sampler
('rdl_evaluate', $$SELECT rdl_evaluate(NULL)$$),
('rdl_evaluate', $$SELECT rdl_evaluate('t', NULL)$$),
('rdl_evaluate', $$SELECT rdl_evaluate('t', 'holdout')$$),
('rdl_evaluate', $$SELECT rdl_evaluate('nope')$$),
('rdl_activate', $$SELECT rdl_activate('t', NULL)$$),
('rdl_activate', $$SELECT rdl_activate('t', -1)$$),
('rdl_activate', $$SELECT rdl_activate('t', 2147483647)$$),
('rdl_activate', $$SELECT rdl_activate('nope', 1)$$),
('rdl_sampler_stats', $$SELECT rdl_sampler_stats('t', 'train', -5)$$),
('rdl_sampler_stats', $$SELECT rdl_sampler_stats('t', 'nope')$$),
('rdl_sampler_statements', $$SELECT count(*) FROM rdl_sampler_statements('t', 'val', 0)$$),
('rdl_sampler_stats', $$SELECT rdl_sampler_stats('t', NULL)$$),
('rdl_predict_batch', $$SELECT count(*) FROM rdl_predict_batch(NULL, ARRAY[1])$$),
('rdl_schema_graph', $$SELECT rdl_schema_graph(ARRAY['public', NULL])$$);

CREATE TEMP TABLE outcomes (id int, fn text, sqlstate text, message text);
-- The cases that train print timings as NOTICEs: only errors are compared.
SET client_min_messages = warning;
DO $$
DECLARE c record;
BEGIN
  FOR c IN SELECT * FROM cases ORDER BY id LOOP
    BEGIN
      EXECUTE c.sql;
      INSERT INTO outcomes VALUES (c.id, c.fn, '00000', NULL);
    EXCEPTION WHEN OTHERS THEN
      INSERT INTO outcomes VALUES (c.id, c.fn, SQLSTATE, SQLERRM);
    END;
  END LOOP;
END $$;
RESET client_min_messages;
-- "as of now()" shows the transaction's time: replaced so that runs compare equal.
SELECT o.id, o.fn, o.sqlstate,
       left(regexp_replace(regexp_replace(coalesce(o.message, ''), '\s+', ' ', 'g'),
                           'as of \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?\+00$', 'as of <now>'), 90) AS message
FROM outcomes o ORDER BY o.id;

-- Random and mutated queries through rdl_create_task, seeded: never an internal error.
SELECT setseed(0.42);
DO $$
DECLARE q text; base text[] := ARRAY[
  'PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0 FOR EACH drivers.driver_id',
  'PREDICT AVG(results.position_order, 0, 60, days) FOR EACH drivers.driver_id WHERE COUNT(results.*, -365, 0, days) > 0',
  'PREDICT drivers.nationality FOR EACH drivers.driver_id'];
  toks text[] := ARRAY['(', ')', ',', '.', '*', '''', '"', '--', ';', 'NOT', 'AND', 'WHERE', 'VIA', '-1',
                       '1e400', '☃', E'\t', 'DROP TABLE results', '$1', 'NULL', 'days', 'results'];
  i int; pos int; b text;
BEGIN
  FOR i IN 1..300 LOOP
    b := base[1 + floor(random() * 3)::int];
    pos := 1 + floor(random() * length(b))::int;
    IF random() < 0.5 THEN
      q := left(b, pos) || toks[1 + floor(random() * array_length(toks, 1))::int] || substr(b, pos + 1);
    ELSE
      q := left(b, pos - 1) || substr(b, pos + 1 + floor(random() * 5)::int);
    END IF;
    BEGIN
      PERFORM rdl_create_task('fuzz', q);
      PERFORM rdl_drop_task('fuzz');
      INSERT INTO outcomes VALUES (1000 + i, 'fuzz', '00000', q);
    EXCEPTION WHEN OTHERS THEN
      INSERT INTO outcomes VALUES (1000 + i, 'fuzz', SQLSTATE, SQLERRM);
    END;
  END LOOP;
END $$;
SELECT sqlstate, count(*) FROM outcomes WHERE fn = 'fuzz' GROUP BY sqlstate ORDER BY sqlstate;

-- The verdict: no internal errors, the data untouched, the server never restarted.
SELECT count(*) AS calls, count(*) FILTER (WHERE sqlstate LIKE 'XX%') AS internal_errors,
       count(DISTINCT sqlstate) AS distinct_sqlstates FROM outcomes;
SELECT count(*) AS results_rows FROM results;
SELECT pg_postmaster_start_time() = :'started' AS same_server;
