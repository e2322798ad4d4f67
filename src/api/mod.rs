//! The SQL API, one file per concept.

mod schema;
pub mod task;
