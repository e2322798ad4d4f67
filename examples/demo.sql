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
