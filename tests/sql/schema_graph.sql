-- The schema graph rdl reads from the catalog: the F1 database, then every edge case.
CREATE EXTENSION rdl;

-- F1: 9 tables, 13 foreign keys; fact tables timed, drivers/circuits/constructors static.
SELECT jsonb_array_length(g->'tables') AS tables,
       jsonb_array_length(g->'foreign_keys') AS foreign_keys,
       jsonb_array_length(g->'warnings') AS warnings
FROM rdl_schema_graph() g;

SELECT t->>'table' AS "table", t->'primary_key' AS pk, t->>'time_column' AS time_column,
       t->>'time_source' AS source, t->>'kind' AS kind
FROM jsonb_array_elements(rdl_schema_graph()->'tables') t ORDER BY 1;

SELECT f->>'table' AS "table", f->'columns' AS columns, f->>'ref_table' AS ref_table,
       f->'ref_columns' AS ref_columns
FROM jsonb_array_elements(rdl_schema_graph()->'foreign_keys') f ORDER BY 1, 2;

-- Semantic types of one table of each kind.
SELECT t->>'table' AS "table", c->>'name' AS column, c->>'type' AS type, c->>'semantic' AS semantic
FROM jsonb_array_elements(rdl_schema_graph()->'tables') t,
     jsonb_array_elements(t->'columns') c
WHERE t->>'table' IN ('public.drivers', 'public.results')
ORDER BY 1, 2;

-- Edge cases: quoted names, composite keys, self-references, text and uuid keys,
-- a table without a primary key, a partitioned table, a domain, an enum.
CREATE SCHEMA "Shop";
CREATE TYPE "Shop".mood AS ENUM ('happy', 'sad');
CREATE DOMAIN "Shop".money_amount AS numeric CHECK (VALUE >= 0);
CREATE TABLE "Shop"."Customers" ("Customer Id" text PRIMARY KEY, mood "Shop".mood,
                                 vip boolean, born date);
CREATE TABLE "Shop".employees (id uuid PRIMARY KEY, manager_id uuid REFERENCES "Shop".employees,
                               hired_on date, salary "Shop".money_amount);
CREATE TABLE "Shop"."Orders" (order_no int, region text, "Customer Id" text
                              REFERENCES "Shop"."Customers", placed_at timestamptz,
                              PRIMARY KEY (order_no, region));
CREATE TABLE "Shop"."Order Items" (order_no int, region text, line int, qty int,
                                   created_at timestamp, updated_at timestamp,
                                   PRIMARY KEY (order_no, region, line),
                                   FOREIGN KEY (order_no, region) REFERENCES "Shop"."Orders");
CREATE TABLE "Shop".audit_log (happened timestamptz, note text);
CREATE TABLE "Shop".events (id bigint, at timestamptz, kind text, "Customer Id" text
                            REFERENCES "Shop"."Customers",
                            PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE "Shop".events_2024 PARTITION OF "Shop".events
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE "Shop".events_2025 PARTITION OF "Shop".events
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE "Shop".two_dates (id int PRIMARY KEY, shipped date, delivered date);

SELECT t->>'table' AS "table", t->>'kind' AS kind, t->'primary_key' AS pk,
       t->>'time_column' AS time_column
FROM jsonb_array_elements(rdl_schema_graph(ARRAY['Shop'])->'tables') t ORDER BY 1;

SELECT f->>'table' AS "table", f->'columns' AS columns, f->>'ref_table' AS ref_table,
       f->'ref_columns' AS ref_columns
FROM jsonb_array_elements(rdl_schema_graph(ARRAY['Shop'])->'foreign_keys') f ORDER BY 1, 2;

SELECT t->>'table' AS "table", c->>'name' AS column, c->>'type' AS type, c->>'semantic' AS semantic
FROM jsonb_array_elements(rdl_schema_graph(ARRAY['Shop'])->'tables') t,
     jsonb_array_elements(t->'columns') c
WHERE t->>'table' IN ('"Shop"."Customers"', '"Shop".employees')
ORDER BY 1, 2;

SELECT w FROM jsonb_array_elements_text(rdl_schema_graph(ARRAY['Shop'])->'warnings') w ORDER BY 1;

-- Overrides: pick a time column, make a table static, and back.
SELECT rdl_set_time_column('"Shop".two_dates', 'delivered');
SELECT rdl_set_time_column('"Shop"."Order Items"', 'updated_at');
SELECT rdl_set_time_column('races', NULL);
SELECT t->>'table' AS "table", t->>'time_column' AS time_column, t->>'time_source' AS source
FROM jsonb_array_elements(rdl_schema_graph()->'tables') t
WHERE t->>'table' IN ('"Shop".two_dates', '"Shop"."Order Items"', 'public.races') ORDER BY 1;
SELECT rdl_set_time_column('races', 'date');

-- Bad input: clear errors, nothing written.
-- (each error is followed by its SQLSTATE)
SELECT rdl_set_time_column('no_such_table', 'date');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_set_time_column('races', 'no_such_column');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_set_time_column('races', 'name');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS overrides FROM rdl.time_columns;

-- A user who may not read a table does not see it, nor its edges.
SET client_min_messages = warning;
DROP ROLE IF EXISTS rdl_reader;
RESET client_min_messages;
CREATE ROLE rdl_reader;
GRANT USAGE ON SCHEMA "Shop" TO rdl_reader;
GRANT SELECT ON "Shop"."Orders", "Shop".employees TO rdl_reader;
SET ROLE rdl_reader;
SELECT t->>'table' AS "table" FROM jsonb_array_elements(rdl_schema_graph(ARRAY['Shop'])->'tables') t ORDER BY 1;
SELECT jsonb_array_length(rdl_schema_graph(ARRAY['Shop'])->'foreign_keys') AS visible_fks;
SELECT rdl_set_time_column('"Shop"."Customers"', 'born');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
