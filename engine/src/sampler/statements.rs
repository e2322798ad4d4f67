//! The statements of a walk: seed and step lookups (one per hop, edge and direction for
//! the whole batch), their parameters, and the same statements with parameters inlined.

use super::plan::{output_names, Direction, Edge, Plan, TablePlan};
use super::{is_timestamptz, COUNT_CAP};
use crate::base::time::format_timestamp;
use crate::ident::{op, qualify_type, quote_ident, quote_literal};

fn time_cmp(col: &str, ty: &str) -> String {
    if is_timestamptz(ty) {
        format!("t.{} {} u.anchor", quote_ident(col), op("<="))
    } else {
        format!(
            "t.{} {} (u.anchor AT TIME ZONE 'UTC')",
            quote_ident(col),
            op("<=")
        )
    }
}

impl Plan {
    /// Rows of `table` whose `columns` equal the request keys: `$1 int4[]` request ids,
    /// `$2 timestamptz[]` anchors, `$3..` one `text[]` per column. With `newest` set,
    /// keeps the newest `fanout` per request (children); timed rows only up to the anchor.
    ///
    /// `indexed` chooses the form. With an index on the key, `LATERAL ... LIMIT` reads per
    /// request only the rows it keeps. Without one, that form scans the whole table once
    /// per request (PostgreSQL never indexes a foreign key's columns by itself); the
    /// set-based form joins all requests to the table in one scan (a hash join) and keeps
    /// the newest `fanout` per request with `row_number()`: the same rows, whatever the
    /// indexes and whether or not the table has planner statistics yet.
    ///
    /// With `count` set, every row also returns `rdl_n`: how many rows match its request
    /// (up to [`COUNT_CAP`]); a request matching none returns no row, so counts 0.
    fn lookup_sql(
        &self,
        table: &str,
        columns: &[String],
        newest: bool,
        indexed: bool,
        count: bool,
    ) -> String {
        let tp = &self.tables[table];
        // ROWS FROM (one unnest per array): the multi-array `unnest(a, b)` is grammar
        // that only works unqualified.
        let mut unnest = vec![
            format!("pg_catalog.unnest($1::{})", PARAM_TYPES[0]),
            format!("pg_catalog.unnest($2::{})", PARAM_TYPES[1]),
        ];
        let mut names = vec!["ord".to_string(), "anchor".to_string()];
        let mut conds = Vec::new();
        for (i, c) in columns.iter().enumerate() {
            unnest.push(format!("pg_catalog.unnest(${}::{})", i + 3, PARAM_TYPES[2]));
            names.push(format!("k{i}"));
            let ty = tp.types.get(c).map(String::as_str).unwrap_or("text");
            conds.push(format!(
                "t.{} {} u.k{i}::{}",
                quote_ident(c),
                op("="),
                qualify_type(ty)
            ));
        }
        if let (Some(c), Some(ty)) = (&tp.time_column, &tp.time_type) {
            conds.push(time_cmp(c, ty));
        }
        let requests = format!(
            "ROWS FROM ({}) AS u({})",
            unnest.join(", "),
            names.join(", ")
        );
        let order = newest_first(tp);
        // Ordered as the indexed form returns them: which rows a context keeps under
        // max_rows must not depend on the plan.
        let conds = conds.join(" AND ");
        if newest && !indexed {
            let mut outer = output_names(tp);
            let mut inner = String::new();
            if count {
                outer.push("rdl_n".into());
                inner = format!(
                    ", LEAST(pg_catalog.count(*) OVER (PARTITION BY u.ord), {COUNT_CAP}) AS rdl_n"
                );
            }
            return format!(
                "SELECT w.ord, {} FROM (SELECT u.ord, {}, pg_catalog.row_number() OVER (PARTITION BY u.ord{order}) AS rdl_rank{inner} FROM {requests} JOIN {} AS t ON {conds}) AS w WHERE w.rdl_rank {} {} ORDER BY w.ord, w.rdl_rank",
                outer.iter().map(|n| format!("w.{n}")).collect::<Vec<_>>().join(", "),
                self.select_list(tp),
                table,
                op("<="),
                self.config.fanout
            );
        }
        let order = match newest {
            true => format!("{order} LIMIT {}", self.config.fanout),
            false => String::new(),
        };
        let rows = format!(
            "CROSS JOIN LATERAL (SELECT {} FROM {} AS t WHERE {conds}{order}) AS s",
            self.select_list(tp),
            table,
        );
        if count {
            // The count per request first (an index scan that stops at the cap), then the
            // rows; OFFSET 0 keeps the two lateral subqueries apart.
            return format!(
                "SELECT u.ord, s.*, u.rdl_n FROM (SELECT u.*, n.rdl_n FROM {requests} CROSS JOIN LATERAL (SELECT pg_catalog.count(*) AS rdl_n FROM (SELECT FROM {table} AS t WHERE {conds} LIMIT {COUNT_CAP}) AS c) AS n OFFSET 0) AS u {rows}"
            );
        }
        format!("SELECT u.ord, s.* FROM {requests} {rows}")
    }

    /// Every row of `table` that a lookup could return (timed rows with a time, none at
    /// +infinity), in the lookups' order: what [`super::TableCopy`] holds. Its `ord` is 0.
    pub fn copy_sql(&self, table: &str) -> String {
        let tp = &self.tables[table];
        let visible = match &tp.time_column {
            Some(c) => format!(" WHERE t.{} {} 'infinity'", quote_ident(c), op("<")),
            None => String::new(),
        };
        format!(
            "SELECT 0::pg_catalog.int4 AS ord, {} FROM {table} AS t{visible}{}",
            self.select_list(tp),
            newest_first(tp)
        )
    }

    /// Seed rows: the entity table's rows by primary key (one `text[]` per key column).
    pub fn seed_sql(&self, table: &str) -> String {
        let cols = self.tables[table].key_columns.clone();
        self.lookup_sql(table, &cols, false, true, false)
    }

    /// The statement of the step along `edge` in `dir` at `hop` (which decides whether it
    /// counts children too: [`Plan::counts_at`]).
    pub fn step_sql(&self, edge: &Edge, dir: Direction, hop: u8) -> String {
        match dir {
            // A foreign key references a unique (so indexed) key.
            Direction::ToParent => {
                self.lookup_sql(&edge.parent, &edge.parent_columns, false, true, false)
            }
            Direction::ToChildren => self.lookup_sql(
                &edge.child,
                &edge.child_columns,
                true,
                edge.child_indexed,
                self.counts_at(dir, hop),
            ),
        }
    }

    /// One `CREATE INDEX` statement per foreign key whose child columns no index leads
    /// with: the index that lets each lookup read only the rows it keeps (key, then time,
    /// the order the sampler reads children in). Advice for the user; rdl never creates
    /// an index itself.
    pub fn index_advice(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for e in self.edges.iter().filter(|e| !e.child_indexed) {
            let mut cols: Vec<String> = e.child_columns.iter().map(|c| quote_ident(c)).collect();
            if let Some(t) = self
                .tables
                .get(&e.child)
                .and_then(|t| t.time_column.as_ref())
            {
                cols.push(quote_ident(t));
            }
            let sql = format!("CREATE INDEX ON {} ({});", e.child, cols.join(", "));
            if !out.contains(&sql) {
                out.push(sql);
            }
        }
        out
    }
}

/// ` ORDER BY` newest first, then by key descending (empty when neither exists).
fn newest_first(tp: &TablePlan) -> String {
    let mut keys = Vec::new();
    if let Some(c) = &tp.time_column {
        keys.push(format!("t.{} DESC", quote_ident(c)));
    }
    for k in &tp.key_columns {
        keys.push(format!("t.{} DESC", quote_ident(k)));
    }
    match keys.is_empty() {
        true => String::new(),
        false => format!(" ORDER BY {}", keys.join(", ")),
    }
}

/// Types of a statement's parameters: request ids, anchors, then one array per key column.
pub const PARAM_TYPES: [&str; 3] = [
    "pg_catalog.int4[]",
    "pg_catalog.timestamptz[]",
    "pg_catalog.text[]",
];

/// A request of one step: from `rows` of context `ctx` (every row of the context that asks
/// for the same keys along the same edge: one lookup serves them all), keys to look up.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub ctx: usize,
    pub rows: Vec<usize>,
    pub anchor: i64,
    pub keys: Vec<String>,
}

/// A text array literal (`{"a","b"}`) of `items`.
fn array_literal<S: AsRef<str>>(items: impl Iterator<Item = S>) -> String {
    let quoted: Vec<String> = items
        .map(|s| {
            format!(
                "\"{}\"",
                s.as_ref().replace('\\', "\\\\").replace('"', "\\\"")
            )
        })
        .collect();
    format!("{{{}}}", quoted.join(","))
}

/// A step's statement with its parameters written in as literals: standalone SQL that
/// returns exactly the rows the sampler's execution returns (for `COPY (...) TO` baselines).
pub fn inline_statement(sql: &str, reqs: &[Request]) -> String {
    let n_keys = reqs.first().map_or(0, |r| r.keys.len());
    let mut params = vec![
        (
            PARAM_TYPES[0],
            array_literal((0..reqs.len()).map(|i| i.to_string())),
        ),
        (
            PARAM_TYPES[1],
            array_literal(reqs.iter().map(|r| format_timestamp(r.anchor))),
        ),
    ];
    for c in 0..n_keys {
        params.push((
            PARAM_TYPES[2],
            array_literal(reqs.iter().map(|r| r.keys[c].as_str())),
        ));
    }
    let mut out = sql.to_string();
    // Highest first, so that `$1` never matches the start of `$12`.
    for (i, (ty, lit)) in params.iter().enumerate().rev() {
        out = out.replace(
            &format!("${}::{ty}", i + 1),
            &format!("{}::{ty}", quote_literal(lit)),
        );
    }
    out
}
