//! The SQL API, one file per concept.

mod context;
pub mod model;
mod schema;
pub mod task;
