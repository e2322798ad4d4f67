//! The predictive query language (PQL): parser, compiler to a [`TaskSpec`], label SQL.
//!
//! ```text
//! PREDICT <target> FOR EACH <table>.<pk> [WHERE <entity filter>] [ASSUMING <condition>]
//! <target> := <agg>(<table>.<column>|<table>.* [VIA <fk path>] [WHERE <row filter>],
//!                   <start>, <end>, <unit>) [<op> <literal>]
//!           | <table>.<column>                 -- a column of the entity table (static)
//!           | LIST_DISTINCT(<table>.<fk column>, <start>, <end>, <unit>) RANK TOP <k>
//! <agg>    := COUNT | SUM | AVG | MIN | MAX | COUNT_DISTINCT | FIRST | LAST | EXISTS
//! <op>     := = | != | <> | < | <= | > | >=
//! <unit>   := hours | days | weeks | months   (singular accepted)
//! <fk path> := <table>.<fk column> [-> <table>.<fk column> ...]
//! ```
//! Conditions combine comparisons, `IS [NOT] NULL` and boolean operands with AND/OR/NOT
//! and parentheses; literals are numbers, 'strings', TRUE, FALSE, NULL. Key words are
//! case-insensitive; identifiers follow PostgreSQL (unquoted folded to lower case,
//! "Quoted" kept, optional schema: `sales."Order Items".amount`). `--` starts a comment.
//!
//! # Meaning
//! - Window `(start, end]` relative to the anchor t: rows with `t+start < time <= t+end`,
//!   `time` the aggregated table's time column. `months` are calendar months.
//! - Task type: aggregate + comparison → binary classification; bare EXISTS → binary;
//!   bare numeric aggregate → regression; bare FIRST/LAST of a boolean → binary, of a
//!   category/text → multiclass; static column of the entity table → regression
//!   (numeric), binary (boolean), multiclass (categorical, text, non-PK key);
//!   LIST_DISTINCT → ranking.
//! - Empty windows: COUNT, COUNT_DISTINCT, EXISTS and SUM are 0. A binary label is 1 when
//!   the comparison holds and 0 otherwise (also when the aggregate is NULL: MIN of no
//!   rows ≤ 3 is 0, as RelBench's `CASE WHEN`). Rows whose label is NULL (AVG/MIN/MAX/
//!   FIRST/LAST over an empty window, a NULL static column, an empty LIST_DISTINCT) are
//!   left out.
//! - Entities at anchor t: every row of the entity table (if the entity table is timed,
//!   only those with time <= t), kept when the WHERE filter and the ASSUMING condition
//!   hold. WHERE may use entity columns and aggregates over the past only (end <= 0, so
//!   only rows with time <= t); ASSUMING may look at the future window and restricts the
//!   training/evaluation entities (RelBench's "drivers that raced in the window"); it
//!   cannot be evaluated at prediction time.
//! - Row filters (WHERE inside an aggregate) use columns of the aggregated table.
//! - **FK path**: the aggregated table must reach the entity table by following foreign
//!   keys child → parent (`results.driver_id → drivers`, `order_items → orders →
//!   customers`). The shortest path is taken; several distinct shortest paths are an error
//!   (42702) that lists the candidates; the user then names the FK column(s) with `VIA`:
//!   `COUNT(flights.* VIA flights.origin_id, 0, 7, days)`, or a chain
//!   `VIA order_items.order_id -> orders.buyer_id`. The chosen path is the shortest one
//!   containing the named foreign keys in order. Paths have at most 6 hops.
//!
//! # Time
//! Anchors are `timestamptz`. A `timestamp without time zone` or `date` time column is
//! read as UTC: the generated SQL compares `col > (anchor AT TIME ZONE 'UTC') + interval
//! 'n unit'` (a `date` compares as its midnight through PostgreSQL's date/timestamp
//! operators); a `timestamptz` column is compared with `((anchor AT TIME ZONE 'UTC') +
//! interval) AT TIME ZONE 'UTC'`, so interval arithmetic is done on the UTC clock. No
//! result depends on the session's `TimeZone`, and the column is never wrapped in an
//! expression, so an index on it can serve the range. Anchors and splits: see
//! [`crate::anchors`].
//!
//! # Label SQL
//! [`TaskSpec::label_sql`]: one set-based statement for all anchors of a split (`$1
//! timestamptz[]`), returning `(entity_id text, anchor_time timestamptz, label float8)` —
//! `label text` for multiclass, `labels text[]` (distinct item keys as text, sorted) for
//! ranking — ordered by anchor_time then the entity key (in its own type's order). The
//! query's literal values are bound parameters `$2, $3, ...` of type `text`
//! ([`TaskSpec::params`]), cast in SQL to numeric or to the compared column's type.
//! Aggregates sharing table, window, path and row filter are computed in one CTE
//! (`anchors ⋈ fact rows in window`, grouped by anchor and entity key), then LEFT JOINed
//! to `anchors × entity table`. [`TaskSpec::labels_at_sql`] is the same for one anchor
//! (`$1 timestamptz`). [`time_range_sql`] computes the data's time range.
//!
//! # Errors (SQLSTATE)
//! | SQLSTATE | when |
//! |---|---|
//! | 42601 syntax_error | syntax, with position and what was expected; `SUM(t.*)` |
//! | 42883 undefined_function | unknown aggregate name |
//! | 42P01 undefined_table | unknown table (or a name in several schemas, none on the search path) |
//! | 42703 undefined_column | unknown column |
//! | 42P10 invalid_column_reference | FOR EACH column not the PK; entity table without PK; LIST_DISTINCT on a non-FK column; predicting the key |
//! | 42830 invalid_foreign_key | no FK path to the entity table; VIA column not a foreign key |
//! | 42702 ambiguous_column | several shortest FK paths (candidates in DETAIL, VIA in HINT) |
//! | 42804 datatype_mismatch | SUM/AVG/MIN/MAX on a non-numeric column; comparing incompatible kinds; non-boolean condition; static target of an unusable type |
//! | 55000 object_not_in_prerequisite_state | aggregated table has no time column |
//! | 22023 invalid_parameter_value | window end <= start; target window end <= 0; WHERE aggregate looking at the future; bad or unknown options; splits impossible |
//! | 0A000 feature_not_supported | composite FK on the path; composite PK entity; aggregates in row filters; columns of other tables in filters; aggregate over the entity table itself; LIST_DISTINCT outside the target |

pub mod ast;
mod compile;
pub mod error;
mod kinds;
pub mod lexer;
mod names;
pub mod parser;
mod paths;
mod resolve;
pub mod spec;
mod sql;

pub use crate::anchors::{splits, AnchorOptions, Splits};
pub use error::PqlError;
pub(crate) use resolve::collect_aggs;
pub use spec::*;
pub use sql::{interactions_sql, time_range_sql};

use crate::schema::SchemaGraph;

/// Parses and compiles a predictive query against the schema graph.
pub fn compile(
    query: &str,
    graph: &SchemaGraph,
    options: &AnchorOptions,
) -> Result<TaskSpec, PqlError> {
    options.validate()?;
    let ast = parser::parse(query)?;
    let mut spec = resolve::resolve(query, &ast, graph, options)?;
    generate_sql(&mut spec);
    Ok(spec)
}

/// Fills in the spec's label statements and their parameters from its structure.
fn generate_sql(spec: &mut TaskSpec) {
    let (sql, params) = sql::generate(spec, sql::Anchors::Array);
    let (sql_at, params_at) = sql::generate(spec, sql::Anchors::Single);
    debug_assert_eq!(params, params_at);
    spec.sql = sql;
    spec.sql_at = sql_at;
    spec.params = params;
}

/// A spec as stored with a task.
pub enum Stored {
    /// Written by this version: ready, its statements generated again.
    Current(Box<TaskSpec>),
    /// Written by an older version (whose rows an upgrade may carry from a time when any
    /// role could write them): only its query and options are kept, to be compiled again.
    Outdated {
        query: String,
        options: AnchorOptions,
    },
}

/// Reads a stored spec. Nothing stored is run as SQL: the statements are generated anew.
pub fn load_stored(v: serde_json::Value) -> Result<Stored, String> {
    let version = v.get("version").and_then(|x| x.as_u64()).unwrap_or(0);
    if version == SPEC_VERSION as u64 {
        let mut spec: TaskSpec = serde_json::from_value(v).map_err(|e| e.to_string())?;
        generate_sql(&mut spec);
        return Ok(Stored::Current(Box::new(spec)));
    }
    let query = v
        .get("query")
        .and_then(|q| q.as_str())
        .ok_or("no query")?
        .to_string();
    let options = match v.get("options") {
        Some(o) => serde_json::from_value(o.clone()).map_err(|e| e.to_string())?,
        None => AnchorOptions::default(),
    };
    Ok(Stored::Outdated { query, options })
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

/// Whether a function's task argument is a predictive query written in place of a task
/// name: it starts with `PREDICT` and a space and names its entity with `FOR EACH`.
pub fn is_query(text: &str) -> bool {
    let t = text.trim_start();
    t.get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("predict "))
        && t.to_ascii_uppercase().contains("FOR EACH")
}
