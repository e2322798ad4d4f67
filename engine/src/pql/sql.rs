//! Label SQL generation. Every identifier goes through [`quote_ident`]; every literal
//! value is a bound `text` parameter (`$2, $3, ...`); only integers from the query's
//! window bounds (formatted from `i64`) and the catalog's own type names
//! (`format_type()`, already quoted) appear in the text. Every function, operator and
//! type is schema-qualified (`pg_catalog.count`, `OPERATOR(pg_catalog.=)`,
//! `::pg_catalog.text`): the statements run as whoever uses the task, and no name of
//! theirs — or of anyone who can write to a schema on their path — may stand in.

use super::ast::{Agg, CmpOp, Literal, Unit};
use super::resolve::collect_aggs;
use super::spec::*;
use crate::ident::{op, qualify_type, quote_ident};
use crate::schema::{SchemaGraph, SemanticType};

/// Where the anchors come from.
#[derive(Clone, Copy)]
pub(crate) enum Anchors {
    /// `$1 timestamptz[]`.
    Array,
    /// `$1 timestamptz`.
    Single,
}

use crate::sampler::is_timestamptz;

/// The anchor shifted by `offset` units, in the type to compare with a column of
/// `col_type`. Arithmetic happens on the UTC wall clock so that no result depends on the
/// session's TimeZone; the column itself is never wrapped, so its index stays usable.
pub(crate) fn anchor_bound(offset: i64, unit: Unit, col_type: &str) -> String {
    let utc = "(a.anchor_time AT TIME ZONE 'UTC')".to_string();
    let shifted = if offset == 0 {
        utc
    } else {
        format!("({utc} {} interval '{offset} {}')", op("+"), unit.name())
    };
    if is_timestamptz(col_type) {
        format!("({shifted} AT TIME ZONE 'UTC')")
    } else {
        // timestamp without time zone: compared as UTC wall clock; date: PostgreSQL's
        // date-vs-timestamp operators (a date is its midnight).
        shifted
    }
}

/// For many anchors, an index into the sorted `anchor_list.arr` (1-based, by binary
/// search: `width_bucket` counts the anchors at or before its operand). An event at `t`
/// is in the windows of the anchors in `[t - end, t - start)`, widened a unit each way
/// (months vary) and the exact window applied after: one scan of the table, index or
/// not, instead of a range join of every anchor with every row. `shift` units are added
/// to `t` on the UTC wall clock (as [`anchor_bound`]); `plus` to the count.
fn candidate_bound(time: &str, col_type: &str, shift: i64, unit: Unit, plus: i64) -> String {
    let wall = if is_timestamptz(col_type) {
        format!("({time} AT TIME ZONE 'UTC')")
    } else if col_type == "date" {
        format!("{time}::pg_catalog.timestamp")
    } else {
        time.to_string()
    };
    let shifted = format!(
        "(({wall} {} interval '{shift} {}') AT TIME ZONE 'UTC')",
        op("+"),
        unit.name()
    );
    let bucket = format!("pg_catalog.width_bucket({shifted}, l.arr)");
    if plus == 0 {
        bucket
    } else {
        format!("{bucket} {} {plus}", op("+"))
    }
}

/// A group of aggregates sharing table, path, window and row filter: one CTE.
struct Source<'a> {
    key: &'a AggregateSpec,
    values: Vec<&'a AggregateSpec>,
}

fn same_source(a: &AggregateSpec, b: &AggregateSpec) -> bool {
    a.table == b.table && a.path == b.path && a.window == b.window && a.row_filter == b.row_filter
}

struct Gen<'a> {
    spec: &'a TaskSpec,
    anchors: Anchors,
    params: Vec<String>,
    sources: Vec<Source<'a>>,
}

impl<'a> Gen<'a> {
    fn param(&mut self, v: &str) -> String {
        self.params.push(v.to_string());
        format!("${}::pg_catalog.text", self.params.len() + 1)
    }

    fn register(&mut self, a: &'a AggregateSpec) {
        if let Some(s) = self.sources.iter_mut().find(|s| same_source(s.key, a)) {
            if !s
                .values
                .iter()
                .any(|v| v.agg == a.agg && v.column == a.column)
            {
                s.values.push(a);
            }
        } else {
            self.sources.push(Source {
                key: a,
                values: vec![a],
            });
        }
    }

    /// `sN.vM`, the raw aggregate value (NULL when the entity had no row in the window).
    fn agg_ref(&self, a: &AggregateSpec) -> String {
        for (i, s) in self.sources.iter().enumerate() {
            if same_source(s.key, a) {
                for (j, v) in s.values.iter().enumerate() {
                    if v.agg == a.agg && v.column == a.column {
                        return format!("s{i}.v{j}");
                    }
                }
            }
        }
        unreachable!("aggregate registered before use")
    }

    /// The aggregate's value with empty windows made 0 where that is its meaning.
    fn agg_value(&self, a: &AggregateSpec) -> String {
        let r = self.agg_ref(a);
        if a.agg.zero_when_empty() {
            format!("COALESCE({r}, 0)")
        } else {
            r
        }
    }

    /// A literal as SQL; `cast_to` is the type it is compared with.
    fn literal(&mut self, l: &Literal, cast_to: Option<&str>) -> String {
        match l {
            Literal::Null => "NULL".into(),
            Literal::Boolean(true) => "TRUE".into(),
            Literal::Boolean(false) => "FALSE".into(),
            Literal::Number(n) => format!("CAST({} AS pg_catalog.numeric)", self.param(n)),
            Literal::String(s) => {
                let p = self.param(s);
                match cast_to {
                    Some(t) => format!("CAST({p} AS {})", qualify_type(t)),
                    None => p,
                }
            }
        }
    }

    fn value_type(v: &Value) -> Option<String> {
        match v {
            Value::Column(c) => Some(c.pg_type.clone()),
            Value::Aggregate(a) => match a.agg {
                Agg::Min | Agg::Max | Agg::First | Agg::Last => {
                    a.column.as_ref().map(|c| c.pg_type.clone())
                }
                _ => Some("numeric".into()),
            },
            Value::Literal(_) => None,
        }
    }

    fn value(&mut self, v: &Value, alias: &str, other: Option<&Value>) -> String {
        match v {
            Value::Column(c) => format!("{alias}.{}", quote_ident(&c.column)),
            Value::Literal(l) => {
                let t = other.and_then(Self::value_type);
                self.literal(l, t.as_deref())
            }
            Value::Aggregate(a) => self.agg_value(a),
        }
    }

    /// A condition; `alias` is the table its bare columns belong to. `positive` is false
    /// under an odd number of NOTs: only in positive position may a comparison that is
    /// false for an empty window use the bare (NULL-able) aggregate, which lets
    /// PostgreSQL turn the LEFT JOIN into an inner join.
    fn expr(&mut self, e: &Expr, alias: &str, positive: bool) -> String {
        match e {
            Expr::And(a, b) => format!(
                "({} AND {})",
                self.expr(a, alias, positive),
                self.expr(b, alias, positive)
            ),
            Expr::Or(a, b) => format!(
                "({} OR {})",
                self.expr(a, alias, positive),
                self.expr(b, alias, positive)
            ),
            Expr::Not(a) => format!("(NOT {})", self.expr(a, alias, !positive)),
            Expr::Compare { op, left, right } => {
                if positive {
                    if let Some(s) = self.strict_compare(*op, left, right) {
                        return s;
                    }
                }
                let l = self.value(left, alias, Some(right));
                let r = self.value(right, alias, Some(left));
                format!("({l} {} {r})", crate::ident::op(op.sql()))
            }
            Expr::IsNull { value, negated } => {
                let v = self.value(value, alias, None);
                format!("({v} IS {}NULL)", if *negated { "NOT " } else { "" })
            }
            Expr::Truth(v) => match v {
                Value::Aggregate(a) if a.agg == Agg::Exists => {
                    if positive {
                        format!("({} {} 0)", self.agg_ref(a), op(">"))
                    } else {
                        format!("({} {} 0)", self.agg_value(a), op(">"))
                    }
                }
                other => {
                    let s = self.value(other, alias, None);
                    format!("({s})")
                }
            },
        }
    }

    fn strict_compare(&mut self, op: CmpOp, left: &Value, right: &Value) -> Option<String> {
        let (a, lit, flipped) = match (left, right) {
            (Value::Aggregate(a), Value::Literal(l)) => (a, l, false),
            (Value::Literal(l), Value::Aggregate(a)) => (a, l, true),
            _ => return None,
        };
        if !a.agg.zero_when_empty() {
            return None;
        }
        let x = lit.as_f64()?;
        let holds_for_zero = if flipped {
            op.eval(x, 0.0)
        } else {
            op.eval(0.0, x)
        };
        if holds_for_zero {
            return None;
        }
        let r = self.agg_ref(a);
        let l = self.literal(lit, None);
        let o = crate::ident::op(op.sql());
        Some(if flipped {
            format!("({l} {o} {r})")
        } else {
            format!("({r} {o} {l})")
        })
    }

    fn agg_expr(a: &AggregateSpec) -> String {
        let col = a
            .column
            .as_ref()
            .map(|c| format!("t0.{}", quote_ident(&c.column)));
        let time = format!("t0.{}", quote_ident(&a.time_column));
        let order = |dir: &str| {
            let mut o = format!("{time} {dir}");
            if let Some(pk) = &a.primary_key {
                o.push_str(&format!(", t0.{} {dir}", quote_ident(pk)));
            }
            o
        };
        match (a.agg, col) {
            (Agg::Count | Agg::Exists, None) => "pg_catalog.count(*)".into(),
            (Agg::Count | Agg::Exists, Some(c)) => format!("pg_catalog.count({c})"),
            (Agg::CountDistinct, Some(c)) => format!("pg_catalog.count(DISTINCT {c})"),
            (Agg::Sum, Some(c)) => format!("pg_catalog.sum({c})"),
            (Agg::Avg, Some(c)) => format!("pg_catalog.avg({c})"),
            (Agg::Min, Some(c)) => format!("pg_catalog.min({c})"),
            (Agg::Max, Some(c)) => format!("pg_catalog.max({c})"),
            (Agg::First, Some(c)) => {
                format!("(pg_catalog.array_agg({c} ORDER BY {}))[1]", order("ASC"))
            }
            (Agg::Last, Some(c)) => {
                format!("(pg_catalog.array_agg({c} ORDER BY {}))[1]", order("DESC"))
            }
            (Agg::ListDistinct, Some(c)) => format!(
                "pg_catalog.array_agg(DISTINCT ({c})::pg_catalog.text ORDER BY ({c})::pg_catalog.text)"
            ),
            (agg, None) => unreachable!("{agg:?} without a column is rejected by the compiler"),
        }
    }

    fn source_cte(&mut self, i: usize) -> String {
        let key = self.sources[i].key;
        let values: Vec<String> = self.sources[i]
            .values
            .iter()
            .enumerate()
            .map(|(j, a)| format!("{} AS v{j}", Self::agg_expr(a)))
            .collect();
        let w = key.window;
        let time = format!("t0.{}", quote_ident(&key.time_column));
        let mut sql = String::new();
        let n = key.path.len();
        let entity_key = format!("t{}.{}", n - 1, quote_ident(&key.path[n - 1].columns[0]));
        let window = format!(
            "{time} {} {} AND {time} {} {}",
            op(">"),
            anchor_bound(w.start, w.unit, &key.time_type),
            op("<="),
            anchor_bound(w.end, w.unit, &key.time_type),
        );
        match self.anchors {
            Anchors::Single => sql.push_str(&format!(
                "  SELECT a.anchor_time, {entity_key} AS entity_key, {}\n  FROM anchors a\n  JOIN {} t0 ON {window}\n",
                values.join(", "),
                key.table,
            )),
            Anchors::Array => sql.push_str(&format!(
                "  SELECT a.anchor_time, {entity_key} AS entity_key, {}\n  FROM {} t0\n  CROSS JOIN anchor_list l\n  CROSS JOIN LATERAL pg_catalog.generate_series({}, {}) AS g(i)\n  CROSS JOIN LATERAL (SELECT l.arr[g.i] AS anchor_time) a\n",
                values.join(", "),
                key.table,
                candidate_bound(&time, &key.time_type, -w.end - 1, w.unit, 1),
                candidate_bound(&time, &key.time_type, -w.start + 1, w.unit, 0),
            )),
        }
        for h in 1..n {
            let prev = &key.path[h - 1];
            sql.push_str(&format!(
                "  JOIN {} t{h} ON t{h}.{} {} t{}.{}\n",
                key.path[h].table,
                quote_ident(&prev.ref_columns[0]),
                op("="),
                h - 1,
                quote_ident(&prev.columns[0]),
            ));
        }
        sql.push_str(&format!("  WHERE {entity_key} IS NOT NULL"));
        if let Anchors::Array = self.anchors {
            sql.push_str(&format!(" AND {window}"));
        }
        if let Some(f) = &key.row_filter {
            let cond = self.expr(f, "t0", false);
            sql.push_str(&format!(" AND {cond}"));
        }
        sql.push_str(&format!("\n  GROUP BY a.anchor_time, {entity_key}"));
        format!("s{i} AS (\n{sql}\n)")
    }
}

impl<'a> Gen<'a> {
    /// The label expression, the label column's name, and what must be non-NULL for a row
    /// to count. Literals become parameters here, before the filters' (their numbering
    /// follows the order of the calls).
    fn label(&mut self) -> (String, &'static str, Option<String>) {
        let spec = self.spec;
        let g = self;
        match &spec.target {
            Target::Aggregate(a) => {
                let raw = g.agg_ref(a);
                let v = g.agg_value(a);
                match (&spec.comparison, spec.task_type) {
                    (Some(c), _) => {
                        let t = Gen::value_type(&Value::Aggregate(Box::new(a.clone())));
                        let lit = g.literal(&c.value, t.as_deref());
                        (
                            format!(
                                "CASE WHEN {v} {} {lit} THEN 1 ELSE 0 END::pg_catalog.float8",
                                op(c.op.sql())
                            ),
                            "label",
                            None,
                        )
                    }
                    (None, TaskType::BinaryClassification) if a.agg == Agg::Exists => (
                        format!(
                            "CASE WHEN {v} {} 0 THEN 1 ELSE 0 END::pg_catalog.float8",
                            op(">")
                        ),
                        "label",
                        None,
                    ),
                    (None, TaskType::BinaryClassification) => (
                        format!("CASE WHEN {raw} THEN 1 ELSE 0 END::pg_catalog.float8"),
                        "label",
                        Some(raw.clone()),
                    ),
                    (None, TaskType::MulticlassClassification) => (
                        format!("({raw})::pg_catalog.text"),
                        "label",
                        Some(raw.clone()),
                    ),
                    _ => {
                        let t = if matches!(a.agg, Agg::Min | Agg::Max | Agg::First | Agg::Last) {
                            a.column
                                .as_ref()
                                .map(|c| c.pg_type.clone())
                                .unwrap_or_default()
                        } else {
                            "numeric".to_string()
                        };
                        let nn = if a.agg.zero_when_empty() {
                            None
                        } else {
                            Some(raw.clone())
                        };
                        (to_float8(&v, &t), "label", nn)
                    }
                }
            }
            Target::ListDistinct { aggregate, .. } => {
                let raw = g.agg_ref(aggregate);
                (raw.clone(), "labels", Some(raw))
            }
            Target::Static(c) => {
                let col = format!("e.{}", quote_ident(&c.column));
                let l = match c.semantic {
                    SemanticType::Numerical => to_float8(&col, &c.pg_type),
                    SemanticType::Boolean => {
                        format!("CASE WHEN {col} THEN 1 ELSE 0 END::pg_catalog.float8")
                    }
                    _ => format!("({col})::pg_catalog.text"),
                };
                (l, "label", Some(col))
            }
        }
    }
}

/// Converts a value expression to the label's SQL type.
fn to_float8(expr: &str, pg_type: &str) -> String {
    let t = pg_type.to_ascii_lowercase();
    if t == "interval" || t.starts_with("time ") || t == "time" {
        format!("extract(epoch FROM {expr})::pg_catalog.float8")
    } else {
        format!("({expr})::pg_catalog.float8")
    }
}

pub(crate) fn generate(spec: &TaskSpec, anchors: Anchors) -> (String, Vec<String>) {
    let mut g = Gen {
        spec,
        anchors,
        params: Vec::new(),
        sources: Vec::new(),
    };
    let mut aggs: Vec<&AggregateSpec> = Vec::new();
    match &spec.target {
        Target::Aggregate(a) | Target::ListDistinct { aggregate: a, .. } => aggs.push(a),
        Target::Static(_) => {}
    }
    for e in [&spec.entity_filter, &spec.assuming].into_iter().flatten() {
        collect_aggs(e, &mut aggs);
    }
    for a in aggs {
        g.register(a);
    }
    let ent = &g.spec.entity;
    let key = format!("e.{}", quote_ident(&ent.key_column));

    let (label, label_name, not_null) = g.label();

    let mut where_: Vec<String> = Vec::new();
    if let (Some(tc), Some(tt)) = (&ent.time_column, &ent.time_type) {
        where_.push(format!(
            "e.{} {} {}",
            quote_ident(tc),
            op("<="),
            anchor_bound(0, Unit::Days, tt)
        ));
    }
    if let Some(f) = &spec.entity_filter {
        where_.push(g.expr(f, "e", true));
    }
    if let Some(f) = &spec.assuming {
        where_.push(g.expr(f, "e", true));
    }
    if let Some(nn) = not_null {
        where_.push(format!("{nn} IS NOT NULL"));
    }

    let anchors_cte = match anchors {
        Anchors::Array => "anchors AS (\n  SELECT DISTINCT u.anchor_time\n  FROM pg_catalog.unnest($1::pg_catalog.timestamptz[]) AS u(anchor_time)\n  WHERE u.anchor_time IS NOT NULL\n),\nanchor_list AS (\n  SELECT pg_catalog.array_agg(a.anchor_time ORDER BY a.anchor_time) AS arr FROM anchors a\n)".to_string(),
        Anchors::Single => "anchors AS (\n  SELECT $1::pg_catalog.timestamptz AS anchor_time\n)".to_string(),
    };
    let mut ctes = vec![anchors_cte];
    for i in 0..g.sources.len() {
        ctes.push(g.source_cte(i));
    }
    let mut sql = format!(
        "WITH {}\nSELECT ({key})::pg_catalog.text AS entity_id, a.anchor_time, {label} AS {label_name}\nFROM anchors a\nCROSS JOIN {} e\n",
        ctes.join(",\n"),
        ent.table
    );
    for (i, s) in g.sources.iter().enumerate() {
        let last = s.key.path.last().expect("non-empty path");
        sql.push_str(&format!(
            "LEFT JOIN s{i} ON s{i}.anchor_time {eq} a.anchor_time AND s{i}.entity_key {eq} e.{}\n",
            quote_ident(&last.ref_columns[0]),
            eq = op("="),
        ));
    }
    if !where_.is_empty() {
        sql.push_str(&format!("WHERE {}\n", where_.join("\n  AND ")));
    }
    sql.push_str(&format!("ORDER BY a.anchor_time, {key}"));
    (sql, g.params)
}

/// One statement returning `(min_time timestamptz, max_time timestamptz)` over every
/// timed table of the graph (`timestamp` and `date` columns read as UTC); NULLs when no
/// table is timed. Uses `min()`/`max()` on the bare columns (index-friendly).
pub fn time_range_sql(graph: &SchemaGraph) -> String {
    let mut parts = Vec::new();
    for t in &graph.tables {
        let Some(tc) = &t.time_column else { continue };
        let Some(col) = t.column(tc) else { continue };
        let c = quote_ident(tc);
        let conv = |f: &str| {
            if is_timestamptz(&col.pg_type) {
                format!("pg_catalog.{f}({c})")
            } else if col.pg_type == "date" {
                format!("pg_catalog.{f}({c})::timestamp AT TIME ZONE 'UTC'")
            } else {
                format!("pg_catalog.{f}({c}) AT TIME ZONE 'UTC'")
            }
        };
        parts.push(format!(
            "SELECT {} AS lo, {} AS hi FROM {}",
            conv("min"),
            conv("max"),
            t.table
        ));
    }
    if parts.is_empty() {
        return "SELECT NULL::pg_catalog.timestamptz AS min_time, NULL::pg_catalog.timestamptz AS max_time".into();
    }
    format!(
        "SELECT pg_catalog.min(r.lo) AS min_time, pg_catalog.max(r.hi) AS max_time FROM (\n  {}\n) r",
        parts.join("\n  UNION ALL ")
    )
}

/// The interaction log behind a ranking task's labels: one statement returning
/// `(entity_id text, item_id text, at int8)` for every row of the LIST_DISTINCT's table
/// (joined along its foreign-key path, its row filter applied) with a non-NULL item and
/// entity and a time `<= $1 timestamptz`; `at` is the row time in µs since the epoch (a
/// `timestamp`/`date` read as UTC, as everywhere). The query's literals are `$2, $3, ...`
/// as in the label SQL (the returned params). With `one_entity`, only the rows of the
/// entity whose key is the last parameter (`text`, cast to the key's type). `None` for a
/// task that is not a ranking task.
pub fn interactions_sql(spec: &TaskSpec, one_entity: bool) -> Option<(String, Vec<String>)> {
    let Target::ListDistinct { aggregate: a, .. } = &spec.target else {
        return None;
    };
    let item = a.column.as_ref()?;
    let mut g = Gen {
        spec,
        anchors: Anchors::Single,
        params: Vec::new(),
        sources: Vec::new(),
    };
    let n = a.path.len();
    let entity_key = format!("t{}.{}", n - 1, quote_ident(&a.path[n - 1].columns[0]));
    let time = format!("t0.{}", quote_ident(&a.time_column));
    let mut sql = format!(
        "WITH a AS (SELECT $1::pg_catalog.timestamptz AS anchor_time)\nSELECT ({entity_key})::pg_catalog.text AS entity_id, (t0.{})::pg_catalog.text AS item_id, (extract(epoch FROM {time}) {} 1000000)::pg_catalog.int8 AS at\nFROM a\nJOIN {} t0 ON {time} {} {}\n",
        quote_ident(&item.column),
        op("*"),
        a.table,
        op("<="),
        anchor_bound(0, Unit::Days, &a.time_type),
    );
    for h in 1..n {
        let prev = &a.path[h - 1];
        sql.push_str(&format!(
            "JOIN {} t{h} ON t{h}.{} {} t{}.{}\n",
            a.path[h].table,
            quote_ident(&prev.ref_columns[0]),
            op("="),
            h - 1,
            quote_ident(&prev.columns[0]),
        ));
    }
    sql.push_str(&format!(
        "WHERE t0.{} IS NOT NULL AND {entity_key} IS NOT NULL",
        quote_ident(&item.column)
    ));
    if let Some(f) = &a.row_filter {
        let cond = g.expr(f, "t0", false);
        sql.push_str(&format!(" AND {cond}"));
    }
    if one_entity {
        let p = g.params.len() + 2;
        sql.push_str(&format!(
            " AND {entity_key} {} CAST(${p}::pg_catalog.text AS {})",
            op("="),
            qualify_type(&spec.entity.key_type)
        ));
    }
    Some((sql, g.params))
}
