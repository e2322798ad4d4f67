//! rdl-engine: everything in rdl that can run without PostgreSQL.
//!
//! The extension crate reads the catalog and executes SQL; this crate decides what to read
//! and what it means: the schema graph's semantics, the predictive query language, anchors,
//! encoding, the model, training and metrics. Its tests need no database.

pub mod anchors;
pub mod base;
pub mod dbgen;
pub mod device;
pub mod encode;
pub mod icl;
pub mod ident;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod pql;
pub mod rank;
pub mod sampler;
pub mod schema;
pub mod serve;
pub mod threads;
pub mod train;
pub mod whatif;

#[cfg(test)]
mod testutil;
