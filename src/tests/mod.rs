//! pgrx tests: each file holds a `#[pg_schema] mod tests` (pgrx runs them from schema `tests`).

mod schema_graph;
