//! Sampler planning: which SQL gathers a time-consistent context subgraph, and how the
//! rows it returns are assembled. The extension executes the statements through SPI (as
//! the calling user) and feeds the rows back to [`Assembler`].
//!
//! For a batch of seeds (entity key, anchor) the walk goes hop by hop. From every row of
//! the frontier it follows each foreign key both ways: to the **parent** the row
//! references, and to the **children** that reference the row — the newest `fanout` of
//! them with `time <= anchor`. Rows of timed tables are visible only when their time is
//! at or before the anchor; static tables are always visible. A row enters a context once
//! (cycles and self-references terminate), and a context holds at most `max_rows` rows.
//!
//! Each (hop, edge, direction) is **one statement for the whole batch**:
//! ```sql
//! SELECT u.ord, s.* FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int4[]),
//!                                  pg_catalog.unnest($2::pg_catalog.timestamptz[]), ...) u(ord, anchor, k1 ...)
//! CROSS JOIN LATERAL (SELECT <row> FROM <table> t
//!                     WHERE t.fk OPERATOR(pg_catalog.=) u.k1::<type> AND t.time OPERATOR(pg_catalog.<=) <anchor>
//!                     ORDER BY t.time DESC LIMIT <fanout>) s
//! ```
//! Every function, operator and type is schema-qualified: the statements run as the
//! calling user, and nothing on their search path may stand in for a built-in.
//! `LATERAL ... LIMIT` rather than a window function over all children: with an index on
//! `(fk, time)` each request reads only the rows it keeps, where `row_number()` would read
//! every child of every parent before discarding most of them.
//!
//! Time comparison: a `timestamptz` column is compared with the anchor directly; a
//! `timestamp` or `date` column is read as UTC (`col <= anchor AT TIME ZONE 'UTC'`), the
//! same convention as the label SQL, so nothing depends on the session's TimeZone.

mod assemble;
mod copy;
mod plan;
mod statements;
mod walk;

pub use assemble::{Assembler, FetchedRow};
pub use copy::{copyable, Copies, TableCopy, Use, COPY_BYTES_PER_S, LOOKUPS_BEFORE_COPY};
pub use plan::{Direction, Edge, Plan, TablePlan, ValueColumn};
pub use statements::{inline_statement, Request, PARAM_TYPES};
pub use walk::{walk, Step, Walked};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerConfig {
    /// Hops from the seed row.
    pub depth: u8,
    /// Children kept per (row, foreign key), newest first.
    pub fanout: u32,
    /// Rows per context, the seed included.
    pub max_rows: usize,
    /// Whether the seed row also carries, per foreign key referencing it, how many rows
    /// reference it up to the anchor (`fanout` shows only the newest few of them).
    #[serde(default)]
    pub counts: bool,
}

/// Children counted per (seed, foreign key) at most: an index scan stops there.
pub const COUNT_CAP: i64 = 10_000;

/// The name of the count cell of `edge` (see [`SamplerConfig::counts`]).
pub fn count_column(edge: &Edge) -> String {
    format!("{COUNT_PREFIX}{} via {})", edge.child, edge.name)
}

/// How every count cell's name starts: no column of a table is read under such a name.
pub const COUNT_PREFIX: &str = "ln(1 + rows of ";

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            depth: 2,
            fanout: 12,
            max_rows: 160,
            counts: false,
        }
    }
}

/// How a selected expression comes back from SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutKind {
    Text,
    Float,
    /// `int8` µs since the Unix epoch (a timestamp-like type we do not read raw, e.g. a
    /// domain).
    Micros,
    Bool,
    /// The column's own `timestamptz` or `timestamp` datum (µs since 2000-01-01; a
    /// `timestamp` is read as UTC): exact, and no numeric arithmetic per row.
    Timestamp,
    /// The column's own `date` datum (days since 2000-01-01).
    Date,
}

/// Whether a `format_type` name is `timestamptz`, with or without a precision.
pub fn is_timestamptz(pg_type: &str) -> bool {
    pg_type.starts_with("timestamp")
        && pg_type.ends_with("with time zone")
        && !pg_type.contains("without")
}

/// The raw read of a date/time column of type `ty`, when it is one of the built-in types.
pub(crate) fn raw_time(ty: &str) -> Option<OutKind> {
    if ty == "date" {
        Some(OutKind::Date)
    } else if ty.starts_with("timestamp") && ty.ends_with("time zone") {
        Some(OutKind::Timestamp)
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
