//! The SQL API, one file per concept.

mod context;
pub mod examples;
pub mod model;
mod predict;
pub mod recommend;
mod schema;
pub mod task;
pub mod train;
