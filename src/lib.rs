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
mod pgtime;
mod sampler;

::pgrx::pg_module_magic!();

// The extension's own storage. `rdl.time_columns` is user configuration, so pg_dump keeps it.
extension_sql!(
    r#"
CREATE SCHEMA IF NOT EXISTS rdl;
GRANT USAGE ON SCHEMA rdl TO PUBLIC;

-- Overrides of automatic time-column detection. column_name NULL: the table is static.
CREATE TABLE rdl.time_columns (
    table_oid   regclass PRIMARY KEY,
    column_name name,
    set_by      name NOT NULL DEFAULT current_user,
    set_at      timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('rdl.time_columns', '');
GRANT SELECT, INSERT, UPDATE, DELETE ON rdl.time_columns TO PUBLIC;

-- Tasks: a compiled predictive query and the anchors of its splits, fixed at creation so
-- that training and evaluation see the same tables.
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
    created_by    name NOT NULL DEFAULT current_user,
    created_at    timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('rdl.tasks', '');
GRANT SELECT, INSERT, UPDATE, DELETE ON rdl.tasks TO PUBLIC;

CREATE VIEW rdl_tasks AS
SELECT name,
       spec->>'task_type' AS task_type,
       spec->'entity'->>'table' AS entity_table,
       spec->'entity'->>'key_column' AS entity_key,
       query,
       cardinality(train_anchors) AS train_anchors,
       cardinality(val_anchors) AS val_anchors,
       cardinality(test_anchors) AS test_anchors,
       created_by,
       created_at
FROM rdl.tasks;
GRANT SELECT ON rdl_tasks TO PUBLIC;

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
GRANT SELECT, INSERT, UPDATE, DELETE ON rdl.models TO PUBLIC;
GRANT USAGE ON SEQUENCE rdl.models_id_seq TO PUBLIC;
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
