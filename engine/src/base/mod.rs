//! Small, dependency-free foundations the other modules share: time, hashing, and the
//! bounded map of the per-backend caches.

pub mod capped;
pub mod hash;
pub mod time;
