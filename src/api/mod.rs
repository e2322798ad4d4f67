//! The SQL API, one file per concept.

mod context;
pub mod examples;
mod explain;
pub mod model;
pub mod predict;
pub mod recommend;
mod schema;
pub mod task;
pub mod train;
