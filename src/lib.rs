//! rdl: relational deep learning inside PostgreSQL.
//!
//! This crate is the thin PostgreSQL side: it reads the catalog and the data through SPI (as
//! the calling user) and exposes the SQL API. Everything that can run without PostgreSQL
//! lives in the `rdl-engine` crate.

use pgrx::prelude::*;

mod adhoc;
mod api;
mod catalog;
mod entity;
mod error;
mod gather;
mod guc;
mod models;
mod pgtime;
mod plans;
mod run;
mod source;
mod sql;
mod statement;
mod storage;
mod tasks;
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
// The extension's own storage: tables, row-level security, views (sql/bootstrap.sql).
extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);

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
