//! rdl: relational deep learning inside PostgreSQL.
//!
//! This crate is the thin PostgreSQL side: it reads the catalog and the data through SPI (as
//! the calling user) and exposes the SQL API. Everything that can run without PostgreSQL
//! lives in the `rdl-engine` crate.

use pgrx::prelude::*;

mod api;
mod catalog;
mod error;



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
