//! Small, dependency-free foundations the other modules share: time and hashing.

pub mod hash;
pub mod time;
