//! rdl: relational deep learning inside PostgreSQL.
//!
//! This crate is the thin PostgreSQL side: it reads the catalog and the data through SPI (as
//! the calling user) and exposes the SQL API. Everything that can run without PostgreSQL
//! lives in the `rdl-engine` crate.

use pgrx::prelude::*;

mod api;
mod catalog;
mod entity;
mod error;
mod guc;
mod pgtime;
mod plans;
mod run;
mod sampler;
mod storage;
mod worker;

::pgrx::pg_module_magic!();

/// Runs when the library is loaded (in each backend, or in the postmaster with
/// `shared_preload_libraries`): defines settings and, when preloaded, registers the
/// background worker and its shared memory. No threads, no devices here — they would not
/// survive the postmaster's fork.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::init();
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        worker::register();
    }
}

// The extension's own storage. `rdl.time_columns` is user configuration, so pg_dump keeps it.
extension_sql!(
    r#"
-- rdl's storage. Ordinary roles read it (row-level security shows each role the tasks it
-- may use) but never write it: rdl's functions write it on its owner's behalf, after
-- checking the caller's rights (src/storage.rs).
CREATE SCHEMA IF NOT EXISTS rdl;
GRANT USAGE ON SCHEMA rdl TO PUBLIC;

-- Overrides of automatic time-column detection (set by the table's owner). column_name
-- NULL: the table is static. User configuration: pg_dump keeps it.
CREATE TABLE rdl.time_columns (
    table_oid   regclass PRIMARY KEY,
    column_name name,
    set_by      name NOT NULL,
    set_at      timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('rdl.time_columns', '');
GRANT SELECT ON rdl.time_columns TO PUBLIC;

-- Tasks: a compiled predictive query and the anchors of its splits, fixed at creation so
-- that training and evaluation see the same tables. Owned by the role that created it
-- (regrole: dumps and restores by name).
CREATE TABLE rdl.tasks (
    name          text PRIMARY KEY,
    query         text NOT NULL,
    options       jsonb NOT NULL DEFAULT '{}',
    spec          jsonb NOT NULL,
    data_min      timestamptz NOT NULL,
    data_max      timestamptz NOT NULL,
    train_anchors timestamptz[] NOT NULL,
    val_anchors   timestamptz[] NOT NULL,
    test_anchors  timestamptz[] NOT NULL,
    owner         regrole NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('rdl.tasks', '');
GRANT SELECT ON rdl.tasks TO PUBLIC;

-- Roles a task's owner lets use it (grantee 0, shown as '-': PUBLIC).
CREATE TABLE rdl.task_grants (
    task       text NOT NULL REFERENCES rdl.tasks (name) ON DELETE CASCADE,
    grantee    regrole NOT NULL,
    granted_by regrole NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task, grantee)
);
SELECT pg_catalog.pg_extension_config_dump('rdl.task_grants', '');
GRANT SELECT ON rdl.task_grants TO PUBLIC;

-- Model versions. Weights are safetensors bytes; at most one active version per task.
CREATE TABLE rdl.models (
    id            bigserial PRIMARY KEY,
    task          text NOT NULL REFERENCES rdl.tasks (name) ON DELETE CASCADE,
    version       int NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    config        jsonb NOT NULL,
    weights       bytea NOT NULL,
    metrics       jsonb NOT NULL DEFAULT '{}',
    train_seconds float8,
    data_snapshot timestamptz,
    active        bool NOT NULL DEFAULT false,
    UNIQUE (task, version)
);
CREATE UNIQUE INDEX models_one_active ON rdl.models (task) WHERE active;
SELECT pg_catalog.pg_extension_config_dump('rdl.models', '');
SELECT pg_catalog.pg_extension_config_dump('rdl.models_id_seq', '');
GRANT SELECT ON rdl.models TO PUBLIC;

-- Training runs. rdl_train commits this row as it goes (when called outside a transaction
-- block), so another session can follow it; see src/run.rs.
CREATE TABLE rdl.runs (
    id            bigserial PRIMARY KEY,
    task          text NOT NULL REFERENCES rdl.tasks (name) ON DELETE CASCADE,
    pid           int NOT NULL DEFAULT pg_backend_pid(),
    started_by    name NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at   timestamptz,
    status        text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'finished', 'cancelled', 'failed')),
    phase         text NOT NULL DEFAULT 'starting',
    epoch         int NOT NULL DEFAULT 0,
    history       jsonb NOT NULL DEFAULT '[]',
    options       jsonb NOT NULL DEFAULT '{}',
    metrics       jsonb,
    model_version int,
    message       text
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
    OR EXISTS (SELECT 1 FROM rdl.task_grants g WHERE g.task = tasks.name));
ALTER TABLE rdl.task_grants ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON rdl.task_grants FOR SELECT USING (
    grantee = 0 OR pg_catalog.pg_has_role(grantee, 'MEMBER')
    OR pg_catalog.pg_has_role(granted_by, 'MEMBER'));
ALTER TABLE rdl.models ENABLE ROW LEVEL SECURITY;
CREATE POLICY usable ON rdl.models FOR SELECT USING (
    EXISTS (SELECT 1 FROM rdl.tasks t WHERE t.name = models.task));
ALTER TABLE rdl.runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY usable ON rdl.runs FOR SELECT USING (
    EXISTS (SELECT 1 FROM rdl.tasks t WHERE t.name = runs.task));

CREATE VIEW rdl_tasks WITH (security_invoker = true) AS
SELECT name,
       spec->>'task_type' AS task_type,
       spec->'entity'->>'table' AS entity_table,
       spec->'entity'->>'key_column' AS entity_key,
       query,
       cardinality(train_anchors) AS train_anchors,
       cardinality(val_anchors) AS val_anchors,
       cardinality(test_anchors) AS test_anchors,
       owner,
       created_at
FROM rdl.tasks;
GRANT SELECT ON rdl_tasks TO PUBLIC;

-- A run still marked running whose backend no longer holds its lock ended without
-- finishing (an error, a cancel outside a training step, or a lost backend): 'aborted'.
CREATE VIEW rdl_runs WITH (security_invoker = true) AS
SELECT r.id, r.task, r.pid, r.started_by,
       CASE WHEN r.status = 'running' AND NOT EXISTS (
                SELECT 1 FROM pg_catalog.pg_locks l
                WHERE l.locktype = 'advisory' AND l.granted AND l.pid = r.pid
                  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
                  AND l.classid = 1919183872 AND l.objid = r.id::int8::oid AND l.objsubid = 2)
            THEN 'aborted' ELSE r.status END AS status,
       r.phase, r.epoch,
       (r.history -> -1) AS last_epoch,
       r.history, r.started_at, r.updated_at, r.finished_at,
       coalesce(r.finished_at, clock_timestamp()) - r.started_at AS elapsed,
       r.model_version, r.metrics, r.options, r.message
FROM rdl.runs r;
GRANT SELECT ON rdl_runs TO PUBLIC;
"#,
    name = "bootstrap",
    bootstrap
);

#[cfg(any(test, feature = "pg_test"))]
mod tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
