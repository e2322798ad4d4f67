-- Loads the Ergast Formula 1 CSVs into the shape of RelBench's rel-f1:
-- snake_case columns, primary and foreign keys, URLs and free-text ids dropped,
-- races.date = date + time, and every fact table stamped with its race's date
-- (qualifying: the day before). drivers, circuits and constructors are static.
-- Run through load.sh (it sets the working directory for \copy). Idempotent.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
BEGIN;
DROP TABLE IF EXISTS qualifying, constructor_standings, constructor_results,
  driver_standings, results, races, constructors, drivers, circuits CASCADE;

CREATE TEMP TABLE s_circuits (circuit_id int, circuit_ref text, name text, location text,
  country text, lat float8, lng float8, alt text, url text) ON COMMIT DROP;
CREATE TEMP TABLE s_drivers (driver_id int, driver_ref text, number text, code text,
  forename text, surname text, dob date, nationality text, url text) ON COMMIT DROP;
CREATE TEMP TABLE s_constructors (constructor_id int, constructor_ref text, name text,
  nationality text, url text) ON COMMIT DROP;
CREATE TEMP TABLE s_races (race_id int, year int, round int, circuit_id int, name text,
  date date, time time, url text, fp1_date text, fp1_time text, fp2_date text,
  fp2_time text, fp3_date text, fp3_time text, quali_date text, quali_time text,
  sprint_date text, sprint_time text) ON COMMIT DROP;
CREATE TEMP TABLE s_results (result_id int, race_id int, driver_id int, constructor_id int,
  number text, grid int, position int, position_text text, position_order int, points float8,
  laps int, time text, milliseconds bigint, fastest_lap int, rank int,
  fastest_lap_time text, fastest_lap_speed float8, status_id int) ON COMMIT DROP;
CREATE TEMP TABLE s_driver_standings (driver_standings_id int, race_id int, driver_id int,
  points float8, position int, position_text text, wins int) ON COMMIT DROP;
CREATE TEMP TABLE s_constructor_results (constructor_results_id int, race_id int,
  constructor_id int, points float8, status text) ON COMMIT DROP;
CREATE TEMP TABLE s_constructor_standings (constructor_standings_id int, race_id int,
  constructor_id int, points float8, position int, position_text text, wins int) ON COMMIT DROP;
CREATE TEMP TABLE s_qualifying (qualify_id int, race_id int, driver_id int,
  constructor_id int, number int, position int, q1 text, q2 text, q3 text) ON COMMIT DROP;

\copy s_circuits FROM 'circuits.csv' WITH (FORMAT csv, HEADER true, NULL '\N')
\copy s_drivers FROM 'drivers.csv' WITH (FORMAT csv, HEADER true, NULL '\N')
\copy s_constructors FROM 'constructors.csv' WITH (FORMAT csv, HEADER true, NULL '\N')
\copy s_races FROM 'races.csv' WITH (FORMAT csv, HEADER true, NULL '\N')
\copy s_results FROM 'results.csv' WITH (FORMAT csv, HEADER true, NULL '\N')
\copy s_driver_standings FROM 'driver_standings.csv' WITH (FORMAT csv, HEADER true, NULL '\N')
\copy s_constructor_results FROM 'constructor_results.csv' WITH (FORMAT csv, HEADER true, NULL '\N')
\copy s_constructor_standings FROM 'constructor_standings.csv' WITH (FORMAT csv, HEADER true, NULL '\N')
\copy s_qualifying FROM 'qualifying.csv' WITH (FORMAT csv, HEADER true, NULL '\N')

CREATE TABLE circuits (
  circuit_id int PRIMARY KEY,
  name text, location text, country text,
  lat float8, lng float8, alt float8
);
INSERT INTO circuits
SELECT circuit_id, name, location, country, lat, lng,
       CASE WHEN alt ~ '^-?[0-9.]+$' THEN alt::float8 END
FROM s_circuits;

CREATE TABLE drivers (
  driver_id int PRIMARY KEY,
  code text, forename text, surname text, dob date, nationality text
);
INSERT INTO drivers SELECT driver_id, code, forename, surname, dob, nationality FROM s_drivers;

CREATE TABLE constructors (
  constructor_id int PRIMARY KEY,
  name text, nationality text
);
INSERT INTO constructors SELECT constructor_id, name, nationality FROM s_constructors;

CREATE TABLE races (
  race_id int PRIMARY KEY,
  year int, round int,
  circuit_id int REFERENCES circuits,
  name text,
  date timestamp NOT NULL
);
INSERT INTO races
SELECT race_id, year, round, circuit_id, name, date + coalesce(time, '00:00:00'::time)
FROM s_races;

CREATE TABLE results (
  result_id int PRIMARY KEY,
  race_id int REFERENCES races,
  driver_id int REFERENCES drivers,
  constructor_id int REFERENCES constructors,
  number int, grid int, position int, position_order int, points float8, laps int,
  milliseconds bigint, fastest_lap int, rank int, fastest_lap_speed float8,
  status_id int,
  date timestamp NOT NULL
);
INSERT INTO results
SELECT s.result_id, s.race_id, s.driver_id, s.constructor_id,
       CASE WHEN s.number ~ '^[0-9]+$' THEN s.number::int END,
       s.grid, s.position, s.position_order, s.points, s.laps, s.milliseconds,
       s.fastest_lap, s.rank, s.fastest_lap_speed, s.status_id, r.date
FROM s_results s JOIN races r USING (race_id);

CREATE TABLE driver_standings (
  driver_standings_id int PRIMARY KEY,
  race_id int REFERENCES races,
  driver_id int REFERENCES drivers,
  points float8, position int, wins int,
  date timestamp NOT NULL
);
INSERT INTO driver_standings
SELECT s.driver_standings_id, s.race_id, s.driver_id, s.points, s.position, s.wins, r.date
FROM s_driver_standings s JOIN races r USING (race_id);

CREATE TABLE constructor_results (
  constructor_results_id int PRIMARY KEY,
  race_id int REFERENCES races,
  constructor_id int REFERENCES constructors,
  points float8, status text,
  date timestamp NOT NULL
);
INSERT INTO constructor_results
SELECT s.constructor_results_id, s.race_id, s.constructor_id, s.points, s.status, r.date
FROM s_constructor_results s JOIN races r USING (race_id);

CREATE TABLE constructor_standings (
  constructor_standings_id int PRIMARY KEY,
  race_id int REFERENCES races,
  constructor_id int REFERENCES constructors,
  points float8, position int, wins int,
  date timestamp NOT NULL
);
INSERT INTO constructor_standings
SELECT s.constructor_standings_id, s.race_id, s.constructor_id, s.points, s.position, s.wins,
       r.date
FROM s_constructor_standings s JOIN races r USING (race_id);

CREATE TABLE qualifying (
  qualify_id int PRIMARY KEY,
  race_id int REFERENCES races,
  driver_id int REFERENCES drivers,
  constructor_id int REFERENCES constructors,
  number int, position int, q1 text, q2 text, q3 text,
  date timestamp NOT NULL
);
INSERT INTO qualifying
SELECT s.qualify_id, s.race_id, s.driver_id, s.constructor_id, s.number, s.position,
       s.q1, s.q2, s.q3, r.date - interval '1 day'
FROM s_qualifying s JOIN races r USING (race_id);

-- The sampler follows these edges both ways; index the child side and the time columns.
-- `load.sh` with RDL_F1_FK_INDEXES=0 loads the database as RelBench ships it instead (no
-- index on a foreign key, no planner statistics): rdl must cope with that too.
\if :fk_indexes
CREATE INDEX ON races (circuit_id);
CREATE INDEX ON results (driver_id, date);
CREATE INDEX ON results (race_id);
CREATE INDEX ON results (constructor_id, date);
CREATE INDEX ON driver_standings (driver_id, date);
CREATE INDEX ON driver_standings (race_id);
CREATE INDEX ON constructor_results (constructor_id, date);
CREATE INDEX ON constructor_results (race_id);
CREATE INDEX ON constructor_standings (constructor_id, date);
CREATE INDEX ON constructor_standings (race_id);
CREATE INDEX ON qualifying (driver_id, date);
CREATE INDEX ON qualifying (race_id);
CREATE INDEX ON qualifying (constructor_id, date);
\endif
COMMIT;
\if :fk_indexes
ANALYZE circuits, drivers, constructors, races, results, driver_standings,
  constructor_results, constructor_standings, qualifying;
\endif
