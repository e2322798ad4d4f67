-- rdl_context on awkward schemas: quoted names, text and uuid keys, composite foreign
-- keys, self-references (cycles terminate), partitioned tables, timestamptz and date
-- time columns.
CREATE EXTENSION rdl;
CREATE SCHEMA "Shop";
CREATE TABLE "Shop"."Customers" ("Customer Id" text PRIMARY KEY, vip boolean, born date);
CREATE TABLE "Shop"."Orders" (order_no int, region text, "Customer Id" text
                              REFERENCES "Shop"."Customers", placed_at timestamptz,
                              PRIMARY KEY (order_no, region));
CREATE TABLE "Shop"."Order Items" (order_no int, region text, line int, qty int,
                                   created_at date,
                                   PRIMARY KEY (order_no, region, line),
                                   FOREIGN KEY (order_no, region) REFERENCES "Shop"."Orders");
CREATE TABLE "Shop".events (id bigint, at timestamptz, kind text, "Customer Id" text
                            REFERENCES "Shop"."Customers",
                            PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE "Shop".events_2024 PARTITION OF "Shop".events
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE "Shop".employees (id uuid PRIMARY KEY, manager_id uuid REFERENCES "Shop".employees,
                               name text, salary numeric);
INSERT INTO "Shop"."Customers" VALUES ('Ada L.', true, '1815-12-10'), ('Bob', false, NULL);
INSERT INTO "Shop"."Orders" VALUES (1, 'eu', 'Ada L.', '2024-03-01 10:00+00'),
                                   (2, 'eu', 'Ada L.', '2024-06-01 10:00+00'),
                                   (1, 'us', 'Bob',    '2024-03-05 10:00+00');
INSERT INTO "Shop"."Order Items" VALUES (1, 'eu', 1, 3, '2024-03-01'), (1, 'eu', 2, 1, '2024-03-01'),
                                        (2, 'eu', 1, 5, '2024-06-01'), (1, 'us', 1, 2, '2024-03-05');
INSERT INTO "Shop".events VALUES (1, '2024-02-01+00', 'visit', 'Ada L.'), (2, '2024-05-01+00', 'visit', 'Ada L.');
INSERT INTO "Shop".employees VALUES
  ('00000000-0000-0000-0000-000000000001', NULL, 'Boss', 100),
  ('00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', 'Mid', 50),
  ('00000000-0000-0000-0000-000000000003', '00000000-0000-0000-0000-000000000002', 'Low', 10);
-- A cycle: the boss reports to the lowest employee.
UPDATE "Shop".employees SET manager_id = '00000000-0000-0000-0000-000000000003'
WHERE id = '00000000-0000-0000-0000-000000000001';

SELECT rdl_create_task('visits',
  'PREDICT COUNT("Shop".events.*, 0, 30, days) > 0 FOR EACH "Shop"."Customers"."Customer Id"',
  '{"val_cutoff": "2024-04-01", "test_cutoff": "2024-05-01", "eval_windows": 1, "anchor_step": "7 days"}')->>'task_type' AS task_type;

-- As of April: Ada's March order with both its items (composite FK, hop 2), her February
-- visit; not the June order or its item, not the May visit.
SELECT r->>'table' AS "table", r->>'key' AS key, r->'hop' AS hop, r->>'time' AS time, r->'values' AS values
FROM jsonb_array_elements(rdl_context('visits', 'Ada L.'::text, '2024-04-01 00:00:00+00')->'rows') r
ORDER BY (r->>'hop')::int, 1, 2;

-- Self-reference with a cycle: every employee once, the walk ends. The salary (the
-- target) is hidden on every employee's row: the seed's and its neighbours' (their
-- salaries are other examples' labels).
SELECT rdl_create_task('salary', 'PREDICT "Shop".employees.salary FOR EACH "Shop".employees.id')->>'task_type' AS task_type;
SELECT r->>'key' AS key, r->'hop' AS hop, r->>'via' AS via, r->'parents' AS parents, r->'values' AS values
FROM jsonb_array_elements(rdl_context('salary', '00000000-0000-0000-0000-000000000002'::uuid)->'rows') r
ORDER BY (r->>'hop')::int, 1;
