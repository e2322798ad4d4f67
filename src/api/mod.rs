//! The SQL API, one file per concept.

mod context;
mod model;
mod schema;
pub mod task;
