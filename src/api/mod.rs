//! The SQL API, one file per concept.

mod context;
mod schema;
pub mod task;
