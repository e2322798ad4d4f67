//! Predictive query language (placeholder, see below).
pub mod ast;
pub mod error;
pub mod lexer;
pub mod parser;

pub use error::PqlError;
