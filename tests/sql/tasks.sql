-- Tasks: PQL compiled against the catalog, anchors placed RelBench's way, labels computed
-- set-based as the calling user — and checked row by row against hand-written SQL.
CREATE EXTENSION rdl;
\set opts '{"val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"}'

SELECT s->>'task_type' AS task_type, s->'entity'->>'table' AS entity, s->'anchors' AS anchors
FROM rdl_create_task('driver-dnf',
  'PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0
   FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0', :'opts') s;
SELECT s->>'task_type' AS task_type, s->'anchors'->'test' AS test_anchors
FROM rdl_create_task('driver-top3',
  'PREDICT MIN(qualifying.position, 0, 30, days) <= 3
   FOR EACH drivers.driver_id ASSUMING COUNT(qualifying.*, 0, 30, days) > 0', :'opts') s;
SELECT s->>'task_type' AS task_type, s->'anchors'->'val' AS val_anchors
FROM rdl_create_task('driver-position',
  'predict avg(RESULTS.position_order, 0, 60, days)
   for each drivers.driver_id assuming count(results.*, 0, 60, days) > 0', :'opts') s;

SELECT name, task_type, entity_table, entity_key, train_anchors, val_anchors, test_anchors
FROM rdl_tasks ORDER BY name;

-- RelBench's split sizes: 11411/566/702, 1353/588/726, 7453/499/760.
SELECT t.name,
       (SELECT count(*) FROM rdl_task_table(t.name, 'train')) AS train,
       (SELECT count(*) FROM rdl_task_table(t.name, 'val')) AS val,
       (SELECT count(*) FROM rdl_task_table(t.name, 'test')) AS test
FROM rdl_tasks t ORDER BY t.name;

-- Every label equals the hand-written reference (tests/sql/_pql_reference.sql).
\o /dev/null
\ir _pql_reference.sql
\o
CREATE TEMP TABLE ours AS
SELECT t.name AS task, s.split, r.entity_id, r.anchor_time, r.label
FROM rdl_tasks t, unnest(ARRAY['train', 'val', 'test']) s(split),
     LATERAL rdl_task_table(t.name, s.split) r;
SELECT coalesce(o.task, p.task) AS task,
       count(*) AS rows,
       count(*) FILTER (WHERE o.task IS NULL) AS missing,
       count(*) FILTER (WHERE p.task IS NULL) AS extra,
       count(*) FILTER (WHERE abs(o.label - p.label) > 1e-9) AS different,
       round(avg(o.label)::numeric, 4) AS mean_label
FROM ours o
FULL JOIN pql_reference p USING (task, split, entity_id, anchor_time)
GROUP BY 1 ORDER BY 1;
-- The anchors themselves, too (including anchors where no driver raced).
CREATE TEMP TABLE our_anchors AS
SELECT name AS task, 'train' AS split, unnest(train_anchors) AS anchor_time FROM rdl.tasks
UNION ALL SELECT name, 'val', unnest(val_anchors) FROM rdl.tasks
UNION ALL SELECT name, 'test', unnest(test_anchors) FROM rdl.tasks;
SELECT count(*) AS anchor_mismatches FROM (
  (SELECT task, split, anchor_time FROM pql_reference_anchors
   EXCEPT SELECT task, split, anchor_time FROM our_anchors)
  UNION ALL
  (SELECT task, split, anchor_time FROM our_anchors WHERE task LIKE 'driver-%'
   EXCEPT SELECT task, split, anchor_time FROM pql_reference_anchors)) d;

-- rdl_labels at one anchor is the task table's slice at that anchor.
SELECT count(*) AS rows, sum(label) AS positives
FROM rdl_labels('driver-dnf', '2010-03-02 00:00:00+00');
SELECT count(*) AS rows, sum(label) AS positives
FROM rdl_task_table('driver-dnf', 'test') WHERE anchor_time = '2010-03-02 00:00:00+00';

-- The session TimeZone changes nothing.
SET TimeZone = 'Asia/Kolkata';
SELECT count(*) AS rows, sum(label) AS positives, min(anchor_time AT TIME ZONE 'UTC') AS first_anchor_utc
FROM rdl_task_table('driver-dnf', 'test');
SET TimeZone = 'America/Los_Angeles';
SELECT count(*) AS rows, sum(label) AS positives, min(anchor_time AT TIME ZONE 'UTC') AS first_anchor_utc
FROM rdl_task_table('driver-dnf', 'test');
RESET TimeZone;

-- Other task types.
SELECT s->>'task_type' AS task_type
FROM rdl_create_task('nationality', 'PREDICT drivers.nationality FOR EACH drivers.driver_id') s;
SELECT s->>'task_type' AS task_type
FROM rdl_create_task('points', 'PREDICT SUM(results.points, 0, 365, days) FOR EACH drivers.driver_id
  WHERE COUNT(results.*, -365, 0, days) > 0', :'opts') s;
SELECT count(*) > 0 AS has_rows, bool_and(label >= 0) AS non_negative
FROM rdl_task_table('points', 'val');

-- More shapes, each compiled and run by PostgreSQL: windows in months, weeks and hours,
-- LAST and FIRST (with a text comparison), COUNT_DISTINCT under a compound WHERE, SUM with
-- a text filter and an entity filter, LIST_DISTINCT ranking, a static target under a
-- NOT ... OR filter.
CREATE TEMP TABLE shapes (name text, q text);
INSERT INTO shapes VALUES
  ('shape-list', 'PREDICT LIST_DISTINCT(results.constructor_id, 0, 1, months) RANK TOP 5 FOR EACH drivers.driver_id'),
  ('shape-static', 'PREDICT drivers.nationality FOR EACH drivers.driver_id WHERE NOT COUNT(results.*, -1, 0, months) > 0 OR drivers.code IS NULL'),
  ('shape-last', 'PREDICT LAST(results.points, 0, 2, weeks) FOR EACH drivers.driver_id WHERE EXISTS(qualifying.*, -336, 0, hours)'),
  ('shape-first', 'PREDICT FIRST(results.grid, 0, 30, days) = ''1'' FOR EACH drivers.driver_id'),
  ('shape-distinct', 'PREDICT COUNT_DISTINCT(results.race_id WHERE (results.position IS NOT NULL AND results.points >= 1.5) OR NOT results.grid < 3, 0, 90, days) FOR EACH drivers.driver_id'),
  ('shape-sum', 'PREDICT SUM(constructor_results.points WHERE constructor_results.status = ''D'', 0, 1, months) FOR EACH constructors.constructor_id WHERE constructors.nationality != ''British''');
SELECT name, rdl_create_task(name, q, :'opts')->>'task_type' AS task_type FROM shapes ORDER BY name;
SELECT name, (SELECT count(*) FROM rdl_task_table(name, 'val')) > 0 AS has_val_rows,
       (SELECT count(*) FROM rdl_labels(name, '2008-06-01+00')) > 0 AS has_labels_at_an_anchor
FROM shapes ORDER BY name;
-- COUNT_DISTINCT under the compound WHERE equals hand-written SQL (three-valued logic: a
-- NULL grid satisfies neither grid < 3 nor its negation), both ways.
CREATE TEMP TABLE shape_ref AS
SELECT driver_id::text AS entity_id, count(DISTINCT race_id)::float8 AS label
FROM results
WHERE date > '2008-03-01' AND date <= timestamp '2008-03-01' + interval '90 days'
  AND ((position IS NOT NULL AND points >= 1.5) OR NOT grid < 3)
GROUP BY driver_id;
SELECT (SELECT count(*) FROM shape_ref) AS reference_rows,
       (SELECT count(*) FROM (SELECT entity_id, label FROM rdl_labels('shape-distinct', '2008-03-01+00') WHERE label > 0
                              EXCEPT SELECT * FROM shape_ref) x) AS rdl_not_in_reference,
       (SELECT count(*) FROM (SELECT * FROM shape_ref
                              EXCEPT SELECT entity_id, label FROM rdl_labels('shape-distinct', '2008-03-01+00')) x) AS reference_not_in_rdl;
SELECT count(*) FILTER (WHERE rdl_drop_task(name)) AS shapes_dropped FROM shapes;

-- Bad input: clear errors with SQLSTATE, nothing left behind.
SELECT rdl_create_task('bad', 'PREDICT COUNT(results.* 0, 30, days) FOR EACH drivers.driver_id');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_create_task('bad', 'PREDICT COUNT(orders.*, 0, 30, days) FOR EACH drivers.driver_id');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_create_task('bad', 'PREDICT SUM(results.nope, 0, 30, days) FOR EACH drivers.driver_id');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_create_task('bad', 'PREDICT COUNT(results.*, 30, 0, days) FOR EACH drivers.driver_id');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_create_task('bad', 'PREDICT COUNT(drivers.*, 0, 30, days) FOR EACH circuits.circuit_id');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_create_task('bad', 'PREDICT SUM(qualifying.q1, 0, 30, days) FOR EACH drivers.driver_id');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_create_task('bad', 'PREDICT COUNT(results.*, 0, 30, days) FOR EACH drivers.driver_id', '{"cutoff": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT rdl_create_task('driver-dnf', 'PREDICT COUNT(results.*, 0, 30, days) FOR EACH drivers.driver_id');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM rdl_task_table('no-such-task');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM rdl_task_table('driver-dnf', 'holdout');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS tasks FROM rdl.tasks;

-- Labels are read as the calling user: no SELECT on results, no labels.
SET client_min_messages = warning;
DROP ROLE IF EXISTS rdl_analyst;
RESET client_min_messages;
CREATE ROLE rdl_analyst;
GRANT SELECT ON drivers TO rdl_analyst;
SELECT rdl_grant_task('driver-dnf', 'rdl_analyst');
SET ROLE rdl_analyst;
SELECT count(*) FROM rdl_task_table('driver-dnf', 'test');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

SELECT rdl_drop_task('points');
SELECT rdl_drop_task('points');
\echo :LAST_ERROR_SQLSTATE
SELECT name FROM rdl_tasks ORDER BY name;
