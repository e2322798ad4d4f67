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

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::base::hash::Fnv;
use crate::base::time::format_timestamp;
use crate::encode::{RawRow, Subgraph, Value};
use crate::ident::{op, qualify_type, quote_ident, quote_literal};
use crate::schema::{SchemaGraph, SemanticType};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerConfig {
    /// Hops from the seed row.
    pub depth: u8,
    /// Children kept per (row, foreign key), newest first.
    pub fanout: u32,
    /// Rows per context, the seed included.
    pub max_rows: usize,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            depth: 2,
            fanout: 12,
            max_rows: 160,
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
fn raw_time(ty: &str) -> Option<OutKind> {
    if ty == "date" {
        Some(OutKind::Date)
    } else if ty.starts_with("timestamp") && ty.ends_with("time zone") {
        Some(OutKind::Timestamp)
    } else {
        None
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueColumn {
    pub name: String,
    pub semantic: SemanticType,
    pub out: OutKind,
    /// The SQL expression that reads it (over the table aliased `t`).
    #[serde(default)]
    pub expr: String,
}

/// What is read of one table. Every statement returns, after `ord`: the row key (text),
/// the row time (µs, NULL for static tables), the structural columns (text) and the value
/// columns — in that order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TablePlan {
    pub table: String,
    /// Columns whose text values identify the row (the primary key; `ctid` when none).
    pub key_columns: Vec<String>,
    pub time_column: Option<String>,
    pub time_type: Option<String>,
    /// Columns needed to follow edges (FK and referenced columns), read as text.
    pub structural: Vec<String>,
    pub values: Vec<ValueColumn>,
    /// `format_type` of every column, for casting request keys.
    pub types: BTreeMap<String, String>,
}

impl TablePlan {
    /// How the statements return the row time: `None` for a static table.
    pub fn time_out(&self) -> Option<OutKind> {
        self.time_column.as_ref()?;
        Some(raw_time(self.time_type.as_deref()?).unwrap_or(OutKind::Micros))
    }
}

/// A foreign key as an edge of the walk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub name: String,
    pub child: String,
    pub child_columns: Vec<String>,
    pub parent: String,
    pub parent_columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub config: SamplerConfig,
    pub tables: BTreeMap<String, TablePlan>,
    pub edges: Vec<Edge>,
}

/// Direction of a step along an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From a child row to the row its foreign key references.
    ToParent,
    /// From a row to the rows whose foreign key references it.
    ToChildren,
}

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

fn value_expr(c: &str, ty: &str, semantic: SemanticType) -> Option<(String, OutKind)> {
    let q = format!("t.{}", quote_ident(c));
    Some(match semantic {
        SemanticType::Numerical => {
            let e = if ty == "interval" || ty.starts_with("time") {
                format!("extract(epoch FROM {q})::pg_catalog.float8")
            } else if ty == "money" {
                format!("{q}::pg_catalog.numeric::pg_catalog.float8")
            } else {
                format!("{q}::pg_catalog.float8")
            };
            (e, OutKind::Float)
        }
        SemanticType::Boolean => (format!("{q}::pg_catalog.bool"), OutKind::Bool),
        SemanticType::Timestamp => match raw_time(ty) {
            Some(k) => (q, k),
            None => (
                format!(
                    "(extract(epoch FROM {q}) {} 1000000)::pg_catalog.int8",
                    op("*")
                ),
                OutKind::Micros,
            ),
        },
        // Long texts are cut: the encoder hashes whole strings anyway.
        SemanticType::Categorical | SemanticType::Text => (
            format!("pg_catalog.left({q}::pg_catalog.text, 200)"),
            OutKind::Text,
        ),
        SemanticType::Key | SemanticType::Unsupported => return None,
    })
}

impl Plan {
    pub fn new(graph: &SchemaGraph, config: SamplerConfig) -> Plan {
        let mut tables = BTreeMap::new();
        for t in &graph.tables {
            let mut structural: Vec<String> = Vec::new();
            let mut add = |c: &String| {
                if !structural.contains(c) {
                    structural.push(c.clone());
                }
            };
            for fk in &graph.foreign_keys {
                if fk.table == t.table {
                    fk.columns.iter().for_each(&mut add);
                }
                if fk.ref_table == t.table {
                    fk.ref_columns.iter().for_each(&mut add);
                }
            }
            let time_type = t
                .time_column
                .as_ref()
                .and_then(|c| t.column(c))
                .map(|c| c.pg_type.clone());
            let values = t
                .columns
                .iter()
                .filter_map(|c| {
                    value_expr(&c.name, &c.pg_type, c.semantic).map(|(expr, out)| ValueColumn {
                        name: c.name.clone(),
                        semantic: c.semantic,
                        out,
                        expr,
                    })
                })
                .collect();
            tables.insert(
                t.table.clone(),
                TablePlan {
                    table: t.table.clone(),
                    key_columns: t.primary_key.clone(),
                    time_column: t.time_column.clone(),
                    time_type,
                    structural,
                    values,
                    types: t
                        .columns
                        .iter()
                        .map(|c| (c.name.clone(), c.pg_type.clone()))
                        .collect(),
                },
            );
        }
        let edges = graph
            .foreign_keys
            .iter()
            .filter(|fk| tables.contains_key(&fk.table) && tables.contains_key(&fk.ref_table))
            .map(|fk| Edge {
                name: fk.name.clone(),
                child: fk.table.clone(),
                child_columns: fk.columns.clone(),
                parent: fk.ref_table.clone(),
                parent_columns: fk.ref_columns.clone(),
            })
            .collect();
        Plan {
            config,
            tables,
            edges,
        }
    }

    /// The columns a statement over `table` returns after `ord`.
    fn select_list(&self, tp: &TablePlan) -> String {
        let key = if tp.key_columns.is_empty() {
            "t.ctid::pg_catalog.text".to_string()
        } else if tp.key_columns.len() == 1 {
            format!("t.{}::pg_catalog.text", quote_ident(&tp.key_columns[0]))
        } else {
            let cols: Vec<String> = tp
                .key_columns
                .iter()
                .map(|c| format!("t.{}", quote_ident(c)))
                .collect();
            format!("ROW({})::pg_catalog.text", cols.join(", "))
        };
        let time = match (&tp.time_column, tp.time_out()) {
            (Some(c), Some(OutKind::Micros)) => format!(
                "(extract(epoch FROM t.{}) {} 1000000)::pg_catalog.int8",
                quote_ident(c),
                op("*")
            ),
            (Some(c), Some(_)) => format!("t.{}", quote_ident(c)),
            _ => "NULL::pg_catalog.int8".to_string(),
        };
        let mut parts = vec![format!("{key} AS rdl_key"), format!("{time} AS rdl_time")];
        for (i, c) in tp.structural.iter().enumerate() {
            parts.push(format!("t.{}::pg_catalog.text AS rdl_s{i}", quote_ident(c)));
        }
        for (i, v) in tp.values.iter().enumerate() {
            parts.push(format!("{} AS rdl_v{i}", v.expr));
        }
        parts.join(", ")
    }

    /// Rows of `table` whose `columns` equal the request keys: `$1 int4[]` request ids,
    /// `$2 timestamptz[]` anchors, `$3..` one `text[]` per column. With `newest` set,
    /// keeps the newest `fanout` per request (children); timed rows only up to the anchor.
    fn lookup_sql(&self, table: &str, columns: &[String], newest: bool) -> String {
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
        let order = if newest {
            let mut keys = Vec::new();
            if let Some(c) = &tp.time_column {
                keys.push(format!("t.{} DESC", quote_ident(c)));
            }
            for k in &tp.key_columns {
                keys.push(format!("t.{} DESC", quote_ident(k)));
            }
            let by = if keys.is_empty() {
                String::new()
            } else {
                format!(" ORDER BY {}", keys.join(", "))
            };
            format!("{by} LIMIT {}", self.config.fanout)
        } else {
            String::new()
        };
        format!(
            "SELECT u.ord, s.* FROM ROWS FROM ({}) AS u({}) CROSS JOIN LATERAL (SELECT {} FROM {} AS t WHERE {}{}) AS s",
            unnest.join(", "),
            names.join(", "),
            self.select_list(tp),
            table,
            conds.join(" AND "),
            order
        )
    }

    /// Seed rows: the entity table's rows by primary key (one `text[]` per key column).
    pub fn seed_sql(&self, table: &str) -> String {
        let cols = self.tables[table].key_columns.clone();
        self.lookup_sql(table, &cols, false)
    }

    pub fn step_sql(&self, edge: &Edge, dir: Direction) -> String {
        match dir {
            Direction::ToParent => self.lookup_sql(&edge.parent, &edge.parent_columns, false),
            Direction::ToChildren => self.lookup_sql(&edge.child, &edge.child_columns, true),
        }
    }
}

/// Types of a statement's parameters: request ids, anchors, then one array per key column.
pub const PARAM_TYPES: [&str; 3] = [
    "pg_catalog.int4[]",
    "pg_catalog.timestamptz[]",
    "pg_catalog.text[]",
];

/// A row as returned by a statement, decoded by the extension.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedRow {
    pub ord: usize,
    pub key: String,
    pub time: Option<i64>,
    pub structural: Vec<Option<String>>,
    pub values: Vec<Value>,
}

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

type FnvBuild = BuildHasherDefault<Fnv>;

/// A table's number in the plan, its shared name and its value columns' shared names.
type TableNames = (u32, Arc<str>, Vec<Arc<str>>);

/// Builds the subgraphs of a batch from the rows the statements return.
pub struct Assembler<'p> {
    plan: &'p Plan,
    pub contexts: Vec<Subgraph>,
    /// Via which edge each row came (`None` for the seed).
    pub via: Vec<Vec<Option<String>>>,
    structural: Vec<Vec<Vec<Option<String>>>>,
    /// Per context: (table number, row key) → row index.
    visited: Vec<HashMap<(u32, String), usize, FnvBuild>>,
    /// Per table of the plan: its number, shared name and value-column names.
    names: HashMap<String, TableNames>,
    frontier: Vec<(usize, usize)>,
    hop: u8,
    /// Rows dropped because they were newer than the anchor. The SQL already excludes
    /// them; a non-zero count would be a bug, so it is checked in tests.
    pub dropped_future: usize,
}

impl<'p> Assembler<'p> {
    pub fn new(plan: &'p Plan, anchors: &[i64]) -> Self {
        let n = anchors.len();
        Assembler {
            plan,
            contexts: anchors
                .iter()
                .map(|&a| Subgraph {
                    anchor: a,
                    rows: Vec::new(),
                    seed: 0,
                })
                .collect(),
            via: vec![Vec::new(); n],
            structural: vec![Vec::new(); n],
            visited: vec![HashMap::default(); n],
            names: plan
                .tables
                .iter()
                .enumerate()
                .map(|(i, (name, tp))| {
                    let cols = tp
                        .values
                        .iter()
                        .map(|v| Arc::from(v.name.as_str()))
                        .collect();
                    (name.clone(), (i as u32, Arc::from(name.as_str()), cols))
                })
                .collect(),
            frontier: Vec::new(),
            hop: 0,
            dropped_future: 0,
        }
    }

    /// Seed requests: the entity keys (composite keys as one text per column).
    pub fn seed_requests(&self, keys: &[Vec<String>]) -> Vec<Request> {
        keys.iter()
            .enumerate()
            .map(|(i, k)| Request {
                ctx: i,
                rows: vec![0],
                anchor: self.contexts[i].anchor,
                keys: k.clone(),
            })
            .collect()
    }

    /// Whether context `i` found its seed row.
    pub fn has_seed(&self, i: usize) -> bool {
        !self.contexts[i].rows.is_empty()
    }

    /// Adds a fetched row to context `ctx` (linked to `link`'s row) and returns its index,
    /// or the index of the same row reached earlier; `None` when it is dropped (newer than
    /// the anchor, or the context is full).
    fn add_row(
        &mut self,
        table: &str,
        r: FetchedRow,
        ctx: usize,
        via: Option<&str>,
        link: Option<(usize, bool)>,
    ) -> Option<usize> {
        let anchor = self.contexts[ctx].anchor;
        if matches!(r.time, Some(t) if t > anchor) {
            self.dropped_future += 1;
            return None;
        }
        let (tno, tname, cols) = &self.names[table];
        let id = (*tno, r.key);
        if let Some(&existing) = self.visited[ctx].get(&id) {
            if let Some((other, other_is_parent)) = link {
                self.link(ctx, existing, other, other_is_parent);
            }
            return Some(existing);
        }
        if self.contexts[ctx].rows.len() >= self.plan.config.max_rows {
            return None;
        }
        let tp = &self.plan.tables[table];
        let values = tp
            .values
            .iter()
            .zip(cols)
            .zip(r.values)
            .map(|((c, name), v)| (name.clone(), c.semantic, v))
            .collect();
        let idx = self.contexts[ctx].rows.len();
        self.contexts[ctx].rows.push(RawRow {
            table: tname.clone(),
            key: id.1.clone(),
            time: r.time,
            hop: self.hop,
            parents: Vec::new(),
            values,
        });
        self.via[ctx].push(via.map(str::to_string));
        self.structural[ctx].push(r.structural);
        self.visited[ctx].insert(id, idx);
        if let Some((other, other_is_parent)) = link {
            self.link(ctx, idx, other, other_is_parent);
        }
        self.frontier.push((ctx, idx));
        Some(idx)
    }

    /// Records that `row` references `other` (when `other_is_parent`) or the reverse.
    fn link(&mut self, ctx: usize, row: usize, other: usize, other_is_parent: bool) {
        let (child, parent) = if other_is_parent {
            (row, other)
        } else {
            (other, row)
        };
        let p = &mut self.contexts[ctx].rows[child].parents;
        if child != parent && !p.contains(&parent) {
            p.push(parent);
        }
    }

    pub fn accept_seeds(&mut self, table: &str, rows: Vec<FetchedRow>) {
        for r in rows {
            let ctx = r.ord;
            if self.has_seed(ctx) {
                continue;
            }
            self.add_row(table, r, ctx, None, None);
        }
    }

    /// Starts the next hop: returns false when the walk is over.
    pub fn next_hop(&mut self) -> bool {
        self.hop += 1;
        self.hop <= self.plan.config.depth && !self.frontier.is_empty()
    }

    /// Takes the current frontier (rows added by the previous hop).
    pub fn take_frontier(&mut self) -> Vec<(usize, usize)> {
        std::mem::take(&mut self.frontier)
    }

    /// The requests of one step from the given frontier rows. Rows of one context asking
    /// for the same keys share a request; a parent already in the context (looked up by its
    /// primary key) is linked at once instead of fetched again.
    pub fn requests(
        &mut self,
        frontier: &[(usize, usize)],
        edge: &Edge,
        dir: Direction,
    ) -> Vec<Request> {
        let (from_table, from_cols) = match dir {
            Direction::ToParent => (&edge.child, &edge.child_columns),
            Direction::ToChildren => (&edge.parent, &edge.parent_columns),
        };
        let tp = &self.plan.tables[from_table];
        let pos: Vec<usize> = from_cols
            .iter()
            .filter_map(|c| tp.structural.iter().position(|s| s == c))
            .collect();
        if pos.len() != from_cols.len() {
            return Vec::new();
        }
        // A single-column FK onto the parent's primary key, of the same type: the FK's text
        // is the parent row's key, so a visited parent can be recognised without a lookup.
        let parent = &self.plan.tables[&edge.parent];
        let by_pk = dir == Direction::ToParent
            && edge.parent_columns.len() == 1
            && parent.key_columns == edge.parent_columns
            && tp.types.get(&edge.child_columns[0]) == parent.types.get(&edge.parent_columns[0]);
        let parent_no = self.names[&edge.parent].0;
        let mut out: Vec<Request> = Vec::new();
        let mut index: HashMap<(usize, Vec<String>), usize, FnvBuild> = HashMap::default();
        let mut links = Vec::new();
        for &(ctx, row) in frontier {
            if *self.contexts[ctx].rows[row].table != **from_table {
                continue;
            }
            let s = &self.structural[ctx][row];
            let Some(keys) = pos
                .iter()
                .map(|&p| s[p].clone())
                .collect::<Option<Vec<String>>>()
            else {
                continue;
            };
            if by_pk {
                let id = (parent_no, keys[0].clone());
                if let Some(&existing) = self.visited[ctx].get(&id) {
                    links.push((ctx, existing, row));
                    continue;
                }
            }
            match index.entry((ctx, keys)) {
                std::collections::hash_map::Entry::Occupied(e) => out[*e.get()].rows.push(row),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let keys = e.key().1.clone();
                    e.insert(out.len());
                    out.push(Request {
                        ctx,
                        rows: vec![row],
                        anchor: self.contexts[ctx].anchor,
                        keys,
                    });
                }
            }
        }
        for (ctx, parent_row, child_row) in links {
            self.link(ctx, parent_row, child_row, false);
        }
        out
    }

    /// Adds the rows a step returned (`ord` indexes `requests`).
    pub fn accept_step(
        &mut self,
        edge: &Edge,
        dir: Direction,
        requests: &[Request],
        rows: Vec<FetchedRow>,
    ) {
        let table = match dir {
            Direction::ToParent => edge.parent.clone(),
            Direction::ToChildren => edge.child.clone(),
        };
        for r in rows {
            let Some(req) = requests.get(r.ord) else {
                continue;
            };
            let ctx = req.ctx;
            // The fetched row is the parent of each requesting row (ToParent) or its child
            // (ToChildren).
            let is_parent = dir == Direction::ToChildren;
            let Some(idx) = self.add_row(
                &table,
                r,
                ctx,
                Some(&edge.name),
                Some((req.rows[0], is_parent)),
            ) else {
                continue;
            };
            for &from in &req.rows[1..] {
                self.link(ctx, idx, from, is_parent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inlined_statements_have_no_parameters_left() {
        let reqs: Vec<Request> = (0..12)
            .map(|i| Request {
                ctx: i,
                rows: vec![0],
                anchor: 1_104_537_600_000_000, // 2005-01-01
                keys: vec![format!("k\"{i}'"), i.to_string()],
            })
            .collect();
        let sql = "SELECT * FROM unnest($1::pg_catalog.int4[], $2::pg_catalog.timestamptz[], $3::pg_catalog.text[], $4::pg_catalog.text[])";
        let s = inline_statement(sql, &reqs);
        assert!(!s.contains('$'), "{s}");
        assert!(s.starts_with("SELECT * FROM unnest('{\"0\",\"1\","), "{s}");
        assert!(s.contains("\"2005-01-01 00:00:00+00\""), "{s}");
        // a double quote is escaped for the array, a single quote doubled for the literal
        assert!(s.contains(r#""k\"11''""#), "{s}");
    }
    fn graph() -> SchemaGraph {
        crate::testutil::drivers_results(
            ("points", "double precision"),
            "timestamp without time zone",
        )
    }

    #[test]
    fn child_sql_is_one_lateral_statement_with_time_bound_and_fanout() {
        let plan = Plan::new(&graph(), SamplerConfig::default());
        let sql = plan.step_sql(&plan.edges[0], Direction::ToChildren);
        assert!(sql.contains("FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int4[]), pg_catalog.unnest($2::pg_catalog.timestamptz[]), pg_catalog.unnest($3::pg_catalog.text[]))"));
        assert!(sql.contains("t.driver_id OPERATOR(pg_catalog.=) u.k0::integer"));
        assert!(sql.contains("t.date OPERATOR(pg_catalog.<=) (u.anchor AT TIME ZONE 'UTC')"));
        assert!(sql.contains("ORDER BY t.date DESC, t.result_id DESC LIMIT 12"));
        // Keys are structure, not values.
        assert!(!sql.contains("rdl_v0") || sql.contains("t.points::pg_catalog.float8 AS rdl_v0"));
        let parent = plan.step_sql(&plan.edges[0], Direction::ToParent);
        assert!(parent.contains(
            "FROM public.drivers AS t WHERE t.driver_id OPERATOR(pg_catalog.=) u.k0::integer) AS s"
        ));
        assert!(!parent.contains("LIMIT"));
    }

    fn fetched(
        ord: usize,
        key: &str,
        time: Option<i64>,
        s: Vec<&str>,
        values: Vec<Value>,
    ) -> FetchedRow {
        FetchedRow {
            ord,
            key: key.into(),
            time,
            structural: s.into_iter().map(|x| Some(x.to_string())).collect(),
            values,
        }
    }

    #[test]
    fn assembly_links_rows_visits_once_and_drops_future_rows() {
        let plan = Plan::new(&graph(), SamplerConfig::default());
        let mut a = Assembler::new(&plan, &[100, 100]);
        let seeds = a.seed_requests(&[vec!["1".into()], vec!["2".into()]]);
        assert_eq!(seeds.len(), 2);
        a.accept_seeds(
            "public.drivers",
            vec![
                fetched(0, "1", None, vec!["1"], vec![Value::Text("GB".into())]),
                fetched(1, "2", None, vec!["2"], vec![Value::Text("DE".into())]),
            ],
        );
        assert!(a.next_hop());
        let frontier = a.take_frontier();
        let edge = plan.edges[0].clone();
        let reqs = a.requests(&frontier, &edge, Direction::ToChildren);
        assert_eq!(reqs.len(), 2);
        a.accept_step(
            &edge,
            Direction::ToChildren,
            &reqs,
            vec![
                fetched(
                    0,
                    "10",
                    Some(90),
                    vec!["1"],
                    vec![Value::Num(3.0), Value::Time(90)],
                ),
                fetched(
                    0,
                    "11",
                    Some(101),
                    vec!["1"],
                    vec![Value::Num(9.0), Value::Time(101)],
                ),
                fetched(
                    1,
                    "12",
                    Some(50),
                    vec!["2"],
                    vec![Value::Num(1.0), Value::Time(50)],
                ),
            ],
        );
        assert_eq!(a.dropped_future, 1, "a row after the anchor never enters");
        assert_eq!(a.contexts[0].rows.len(), 2);
        assert_eq!(a.contexts[0].rows[1].parents, vec![0]);
        assert_eq!(a.contexts[0].rows[1].hop, 1);
        assert_eq!(a.via[0][1].as_deref(), Some("results_driver_id_fkey"));
        // Hop 2 goes back to the parent: already visited, so only a link, no new row.
        assert!(a.next_hop());
        let frontier = a.take_frontier();
        let reqs = a.requests(&frontier, &edge, Direction::ToParent);
        a.accept_step(
            &edge,
            Direction::ToParent,
            &reqs,
            reqs.iter()
                .enumerate()
                .map(|(i, r)| fetched(i, &r.keys[0], None, vec![&r.keys[0]], vec![Value::Null]))
                .collect(),
        );
        assert_eq!(a.contexts[0].rows.len(), 2);
        assert_eq!(a.contexts[1].rows.len(), 2);
        assert!(!a.next_hop());
    }
}
