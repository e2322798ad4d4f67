-- Hand-written reference labels for RelBench's three rel-f1 node tasks, to compare with
-- what the PQL compiler generates (rdl-engine, engine/src/pql). Written independently of
-- the compiler, after relbench/tasks/f1.py and relbench/base/task_base.py.
--
-- Needs the F1 database loaded by examples/f1/load.sh. Creates two temp tables:
--   pql_reference_anchors(task, split, anchor_time timestamptz)
--   pql_reference(task, split, entity_id text, anchor_time timestamptz, label float8)
-- Expected sizes (RelBench): driver-dnf 11411/566/702, driver-top3 1353/588/726,
-- driver-position 7453/499/760 (train/val/test); the last query prints them.
--
-- The PQL queries these correspond to (options {"val_cutoff":"2005-01-01",
-- "test_cutoff":"2010-01-01"}):
--   driver-dnf:      PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0
--                    FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0
--   driver-top3:     PREDICT MIN(qualifying.position, 0, 30, days) <= 3
--                    FOR EACH drivers.driver_id ASSUMING COUNT(qualifying.*, 0, 30, days) > 0
--   driver-position: PREDICT AVG(results.position_order, 0, 60, days)
--                    FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 60, days) > 0
--
-- Time: all F1 time columns are `timestamp without time zone`, read as UTC; anchors are
-- midnight UTC. Everything below computes on `timestamp` values and converts with
-- AT TIME ZONE 'UTC' only at the end, so the session TimeZone does not matter.
-- RelBench's extra filter "driver has a row with date > t - 1 year" is implied by having
-- a row in (t, t + window], so it is left out.

DROP TABLE IF EXISTS pql_reference_anchors, pql_reference;

-- Anchors. db min/max time: over every timed table (races, results, driver_standings,
-- constructor_results, constructor_standings, qualifying).
CREATE TEMP TABLE pql_reference_anchors AS
WITH bounds AS (
  SELECT min(lo) AS min_time, max(hi) AS max_time FROM (
    SELECT min(date) AS lo, max(date) AS hi FROM races
    UNION ALL SELECT min(date), max(date) FROM results
    UNION ALL SELECT min(date), max(date) FROM driver_standings
    UNION ALL SELECT min(date), max(date) FROM constructor_results
    UNION ALL SELECT min(date), max(date) FROM constructor_standings
    UNION ALL SELECT min(date), max(date) FROM qualifying
  ) b
),
tasks(task, w) AS (
  VALUES ('driver-dnf', interval '30 days'),
         ('driver-top3', interval '30 days'),
         ('driver-position', interval '60 days')
),
cut AS (
  SELECT timestamp '2005-01-01' AS val, timestamp '2010-01-01' AS test, 40 AS n
)
-- train: from val - w stepping back by w while >= min time
SELECT t.task, 'train'::text AS split, g AT TIME ZONE 'UTC' AS anchor_time
FROM tasks t, cut c, bounds b,
     generate_series(c.val - t.w, b.min_time, -t.w) AS g
UNION ALL
-- val: from val, every w, up to min(val + (n-1) w, test - w)
SELECT t.task, 'val', g AT TIME ZONE 'UTC'
FROM tasks t, cut c,
     generate_series(c.val, LEAST(c.val + (c.n - 1) * t.w, c.test - t.w), t.w) AS g
UNION ALL
-- test: from test, every w, up to min(test + (n-1) w, max time - w)
SELECT t.task, 'test', g AT TIME ZONE 'UTC'
FROM tasks t, cut c, bounds b,
     generate_series(c.test, LEAST(c.test + (c.n - 1) * t.w, b.max_time - t.w), t.w) AS g;

CREATE TEMP TABLE pql_reference AS
-- driver-dnf: 1 when the driver failed to finish (status_id <> 1) a race in the window,
-- among drivers with a result in the window.
SELECT a.task, a.split, r.driver_id::text AS entity_id, a.anchor_time,
       CASE WHEN max(CASE WHEN r.status_id <> 1 THEN 1 ELSE 0 END) = 1 THEN 1 ELSE 0 END::float8
         AS label
FROM pql_reference_anchors a
JOIN results r
  ON r.date > (a.anchor_time AT TIME ZONE 'UTC')
 AND r.date <= (a.anchor_time AT TIME ZONE 'UTC') + interval '30 days'
WHERE a.task = 'driver-dnf'
GROUP BY a.task, a.split, a.anchor_time, r.driver_id
UNION ALL
-- driver-top3: 1 when the driver's best qualifying position in the window is <= 3,
-- among drivers with a qualifying row in the window.
SELECT a.task, a.split, q.driver_id::text, a.anchor_time,
       CASE WHEN min(q.position) <= 3 THEN 1 ELSE 0 END::float8
FROM pql_reference_anchors a
JOIN qualifying q
  ON q.date > (a.anchor_time AT TIME ZONE 'UTC')
 AND q.date <= (a.anchor_time AT TIME ZONE 'UTC') + interval '30 days'
WHERE a.task = 'driver-top3'
GROUP BY a.task, a.split, a.anchor_time, q.driver_id
UNION ALL
-- driver-position: mean finishing position (position_order) over the next 60 days,
-- among drivers with a result in the window.
SELECT a.task, a.split, r.driver_id::text, a.anchor_time,
       avg(r.position_order)::float8
FROM pql_reference_anchors a
JOIN results r
  ON r.date > (a.anchor_time AT TIME ZONE 'UTC')
 AND r.date <= (a.anchor_time AT TIME ZONE 'UTC') + interval '60 days'
WHERE a.task = 'driver-position'
GROUP BY a.task, a.split, a.anchor_time, r.driver_id;

SELECT task,
       count(*) FILTER (WHERE split = 'train') AS train,
       count(*) FILTER (WHERE split = 'val') AS val,
       count(*) FILTER (WHERE split = 'test') AS test
FROM pql_reference
GROUP BY task
ORDER BY task;
