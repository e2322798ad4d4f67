-- rdl demo on the Formula 1 database. Run by scripts/demo.sh.
\set ON_ERROR_STOP 1
\pset footer off
DROP EXTENSION IF EXISTS rdl CASCADE;
CREATE EXTENSION rdl;

\echo
\echo '== What rdl sees: tables, keys and time columns, read from the catalog'
SELECT t->>'table' AS "table",
       t->'primary_key' AS primary_key,
       coalesce(t->>'time_column', '(static)') AS time_column,
       jsonb_array_length(t->'columns') AS columns
FROM jsonb_array_elements(rdl_schema_graph()->'tables') t
ORDER BY 1;

\echo '== Foreign keys: the edges the model will follow'
SELECT f->>'table' || '(' || (f->>'columns') || ')' AS "from",
       f->>'ref_table' || '(' || (f->>'ref_columns') || ')' AS "to"
FROM jsonb_array_elements(rdl_schema_graph()->'foreign_keys') f
ORDER BY 1;

\echo '== Semantic types the model will read (results)'
SELECT c->>'name' AS column, c->>'type' AS type, c->>'semantic' AS semantic
FROM jsonb_array_elements(rdl_schema_graph()->'tables') t,
     jsonb_array_elements(t->'columns') c
WHERE t->>'table' = 'public.results';

\echo
\echo '== A predictive question in one string: will a driver fail to finish a race in the next 30 days?'
SELECT rdl_drop_task(name) FROM rdl_tasks WHERE name = 'driver-dnf';
SELECT jsonb_pretty(jsonb_build_object(
         'task_type', s->'task_type', 'entity', s->'entity'->'table',
         'anchors', s->'anchors'))
FROM rdl_create_task('driver-dnf',
  'PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0
   FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0',
  '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}') s;

\echo '== Training rows: labels built at every anchor, time-correct (first 5 of the test split)'
SELECT * FROM rdl_task_table('driver-dnf', 'test') LIMIT 5;

\echo '== What the model sees for Lewis Hamilton on 2010-01-01 (rows by table, nothing later)'
SELECT c->'row_count' AS rows, c->'rows_by_table' AS by_table
FROM rdl_context('driver-dnf', 1, '2010-01-01 00:00:00+00') c;

\echo '== Training a small model (a 3,000-example sample, 3 epochs: a few minutes on 2 cores)'
CALL rdl_train('driver-dnf', '{"max_train": 3000, "epochs": 3}');

\echo '== Predictions for the drivers of the 2012 season, as of 2012-01-01'
SELECT d.driver_id, d.forename || ' ' || d.surname AS driver,
       round(rdl_predict('driver-dnf', d.driver_id, '2012-01-01 00:00:00+00')::numeric, 3)
         AS p_dnf
FROM drivers d
WHERE d.driver_id IN (SELECT driver_id FROM results WHERE date >= '2012-01-01' AND date < '2013-01-01')
ORDER BY 3 DESC LIMIT 10;

\echo '== Test metrics (RelBench split; the published RDL GNN baseline is AUROC 0.726)'
SELECT jsonb_pretty(rdl_evaluate('driver-dnf', 'test'));
