//! The SQL API: thin faces over the engine's recipes (`rdl_engine::pipeline`) and the
//! extension's storage, one file per concept. Each checks its arguments, raises errors
//! with their SQLSTATE, and shapes what SQL returns.

pub mod context;
mod explain;
mod model;
pub mod predict;
pub mod recommend;
mod schema;
mod task;
mod train;
