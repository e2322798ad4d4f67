-- rdl's storage. Ordinary roles read what row-level security and column privileges show
-- them but never write it: rdl's functions write it on its owner's behalf, after checking
-- the caller's rights (src/storage.rs). Every name below is schema-qualified, so nothing in
-- the schema this script runs in can stand in for a built-in (CVE-2018-1058).
CREATE SCHEMA IF NOT EXISTS rdl;
GRANT USAGE ON SCHEMA rdl TO PUBLIC;

-- Overrides of automatic time-column detection (set by the table's owner). column_name
-- NULL: the table is static. User configuration: pg_dump keeps it.
CREATE TABLE rdl.time_columns (
    table_oid   pg_catalog.regclass PRIMARY KEY,
    column_name pg_catalog.name,
    set_by      pg_catalog.name NOT NULL,
    set_at      pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now()
);
SELECT pg_catalog.pg_extension_config_dump('rdl.time_columns', '');
GRANT SELECT ON rdl.time_columns TO PUBLIC;

-- Tasks: a compiled predictive query and the anchors of its splits, fixed at creation so
-- that training and evaluation see the same tables. Owned by the role that created it
-- (regrole: dumps and restores by name).
CREATE TABLE rdl.tasks (
    name          pg_catalog.text PRIMARY KEY,
    query         pg_catalog.text NOT NULL,
    options       pg_catalog.jsonb NOT NULL DEFAULT '{}',
    spec          pg_catalog.jsonb NOT NULL,
    data_min      pg_catalog.timestamptz NOT NULL,
    data_max      pg_catalog.timestamptz NOT NULL,
    train_anchors pg_catalog.timestamptz[] NOT NULL,
    val_anchors   pg_catalog.timestamptz[] NOT NULL,
    test_anchors  pg_catalog.timestamptz[] NOT NULL,
    owner         pg_catalog.regrole NOT NULL,
    created_at    pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now()
);
SELECT pg_catalog.pg_extension_config_dump('rdl.tasks', '');
GRANT SELECT ON rdl.tasks TO PUBLIC;

-- Roles a task's owner lets use it (grantee 0, shown as '-': PUBLIC).
CREATE TABLE rdl.task_grants (
    task       pg_catalog.text NOT NULL REFERENCES rdl.tasks (name) ON DELETE CASCADE,
    grantee    pg_catalog.regrole NOT NULL,
    granted_by pg_catalog.regrole NOT NULL,
    granted_at pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (task, grantee)
);
SELECT pg_catalog.pg_extension_config_dump('rdl.task_grants', '');
GRANT SELECT ON rdl.task_grants TO PUBLIC;

-- Model versions. Weights are safetensors bytes; at most one active version per task.
-- Weights and config (which holds statistics of the owner's view of the data) are not
-- readable by ordinary roles: a grantee gets predictions, not the model.
CREATE TABLE rdl.models (
    id            bigserial PRIMARY KEY,
    task          pg_catalog.text NOT NULL REFERENCES rdl.tasks (name) ON DELETE CASCADE,
    version       pg_catalog.int4 NOT NULL,
    created_at    pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),
    config        pg_catalog.jsonb NOT NULL,
    weights       pg_catalog.bytea NOT NULL,
    metrics       pg_catalog.jsonb NOT NULL DEFAULT '{}',
    train_seconds pg_catalog.float8,
    data_snapshot pg_catalog.timestamptz,
    active        pg_catalog.bool NOT NULL DEFAULT false,
    UNIQUE (task, version)
);
CREATE UNIQUE INDEX models_one_active ON rdl.models (task) WHERE active;
SELECT pg_catalog.pg_extension_config_dump('rdl.models', '');
SELECT pg_catalog.pg_extension_config_dump('rdl.models_id_seq', '');
GRANT SELECT (id, task, version, created_at, metrics, train_seconds, data_snapshot, active)
    ON rdl.models TO PUBLIC;

-- Training runs. rdl_train commits this row as it goes (when called outside a transaction
-- block), so another session can follow it; see src/run.rs.
CREATE TABLE rdl.runs (
    id            bigserial PRIMARY KEY,
    task          pg_catalog.text NOT NULL REFERENCES rdl.tasks (name) ON DELETE CASCADE,
    pid           pg_catalog.int4 NOT NULL DEFAULT pg_catalog.pg_backend_pid(),
    started_by    pg_catalog.name NOT NULL,
    started_at    pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    updated_at    pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished_at   pg_catalog.timestamptz,
    status        pg_catalog.text NOT NULL DEFAULT 'running'
                  CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['running', 'finished', 'cancelled', 'failed'])),
    phase         pg_catalog.text NOT NULL DEFAULT 'starting',
    epoch         pg_catalog.int4 NOT NULL DEFAULT 0,
    history       pg_catalog.jsonb NOT NULL DEFAULT '[]',
    options       pg_catalog.jsonb NOT NULL DEFAULT '{}',
    metrics       pg_catalog.jsonb,
    model_version pg_catalog.int4,
    message       pg_catalog.text
);
SELECT pg_catalog.pg_extension_config_dump('rdl.runs', '');
SELECT pg_catalog.pg_extension_config_dump('rdl.runs_id_seq', '');
GRANT SELECT ON rdl.runs TO PUBLIC;

-- Each role sees the tasks it may use (owned by a role it is a member of, or granted to
-- it or to PUBLIC), and their grants, models and runs. rdl's own statements run as the
-- tables' owner, which row-level security does not restrict.
ALTER TABLE rdl.tasks ENABLE ROW LEVEL SECURITY;
CREATE POLICY usable ON rdl.tasks FOR SELECT USING (
    pg_catalog.pg_has_role(owner, 'MEMBER')
    OR EXISTS (SELECT 1 FROM rdl.task_grants g WHERE g.task OPERATOR(pg_catalog.=) tasks.name));
ALTER TABLE rdl.task_grants ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON rdl.task_grants FOR SELECT USING (
    grantee::pg_catalog.oid OPERATOR(pg_catalog.=) 0::pg_catalog.oid
    OR pg_catalog.pg_has_role(grantee, 'MEMBER')
    OR pg_catalog.pg_has_role(granted_by, 'MEMBER'));
ALTER TABLE rdl.models ENABLE ROW LEVEL SECURITY;
CREATE POLICY usable ON rdl.models FOR SELECT USING (
    EXISTS (SELECT 1 FROM rdl.tasks t WHERE t.name OPERATOR(pg_catalog.=) models.task));
ALTER TABLE rdl.runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY usable ON rdl.runs FOR SELECT USING (
    EXISTS (SELECT 1 FROM rdl.tasks t WHERE t.name OPERATOR(pg_catalog.=) runs.task));

CREATE VIEW rdl_tasks WITH (security_invoker = true) AS
SELECT name,
       spec OPERATOR(pg_catalog.->>) 'task_type' AS task_type,
       (spec OPERATOR(pg_catalog.->) 'entity') OPERATOR(pg_catalog.->>) 'table' AS entity_table,
       (spec OPERATOR(pg_catalog.->) 'entity') OPERATOR(pg_catalog.->>) 'key_column' AS entity_key,
       query,
       pg_catalog.cardinality(train_anchors) AS train_anchors,
       pg_catalog.cardinality(val_anchors) AS val_anchors,
       pg_catalog.cardinality(test_anchors) AS test_anchors,
       owner,
       created_at
FROM rdl.tasks;
GRANT SELECT ON rdl_tasks TO PUBLIC;

-- A run still marked running whose backend no longer holds its lock ended without
-- finishing (an error, a cancel outside a training step, or a lost backend): 'aborted'.
-- The lock is a session advisory lock keyed by the run id, held by the run's own pid: a
-- lock another backend takes on the same key does not make a dead run look alive.
CREATE VIEW rdl_runs WITH (security_invoker = true) AS
SELECT r.id, r.task, r.pid, r.started_by,
       CASE WHEN r.status OPERATOR(pg_catalog.=) 'running' AND NOT EXISTS (
                SELECT 1 FROM pg_catalog.pg_locks l
                WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory' AND l.granted
                  AND l.pid OPERATOR(pg_catalog.=) r.pid
                  AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d
                                     WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
                  AND l.classid OPERATOR(pg_catalog.=) 1919183872::pg_catalog.oid
                  AND l.objid OPERATOR(pg_catalog.=) r.id::pg_catalog.oid
                  AND l.objsubid OPERATOR(pg_catalog.=) 2)
            THEN 'aborted' ELSE r.status END AS status,
       r.phase, r.epoch,
       (r.history OPERATOR(pg_catalog.->) -1) AS last_epoch,
       r.history, r.started_at, r.updated_at, r.finished_at,
       COALESCE(r.finished_at, pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.-) r.started_at AS elapsed,
       r.model_version, r.metrics, r.options, r.message
FROM rdl.runs r;
GRANT SELECT ON rdl_runs TO PUBLIC;
