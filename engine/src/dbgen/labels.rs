//! Labels of a compiled task computed in memory, with the meaning rdl's label SQL gives
//! them (`pql` module docs): window `(t+start, t+end]` on the aggregated table's time,
//! rows reach the entity through the spec's foreign-key path, empty COUNT/SUM/EXISTS are
//! 0, a comparison on NULL is 0, NULL labels are left out, a timed entity exists at t when
//! its time <= t. Lets tests, the split CSVs and a later Rust sampler work without
//! PostgreSQL. Supports what the generator's tasks use: every aggregate but FIRST/LAST,
//! row and entity filters of comparisons, `IS NULL` and AND/OR/NOT.

use std::collections::HashMap;

use super::db::{Cell, ColType, Database, Key, Table, SCHEMA};
use crate::base::time::add;
use crate::ident::quote_qualified;
use crate::pql::ast::{Agg, CmpOp, Literal};
use crate::pql::{static_split_of, AggregateSpec, Expr, Target, TaskSpec, TaskType, Value};
use crate::schema::SemanticType;

/// One row of a split, as `rdl_task_table` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelRow {
    pub entity: String,
    pub anchor: i64,
    pub label: Option<f64>,
    /// Class (multiclass) or `{item,item}` (ranking).
    pub label_text: Option<String>,
}

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Null,
    Num(f64),
    Text(String),
    Bool(bool),
    Time(i64),
}

/// Rows of an aggregated table grouped by the entity they reach, newest last.
struct Grouped<'a> {
    spec: &'a AggregateSpec,
    table: &'a Table,
    by_entity: Vec<Vec<(i64, u32)>>,
}

pub struct Evaluator<'a> {
    db: &'a Database,
    spec: &'a TaskSpec,
    entity: &'a Table,
    groups: Vec<Grouped<'a>>,
    /// Entity rows in key order, with their keys as text.
    order: Vec<(usize, String)>,
}

fn find<'a>(db: &'a Database, qualified: &str) -> Result<&'a Table, String> {
    db.tables
        .iter()
        .find(|t| quote_qualified(SCHEMA, &t.name) == qualified)
        .ok_or_else(|| format!("no table {qualified}"))
}

/// Row index by the value of `col` (a key).
fn index(t: &Table, col: &str) -> Result<HashMap<Key, u32>, String> {
    let c = t.col(col).ok_or_else(|| format!("no column {col}"))?;
    Ok(c.data
        .iter()
        .enumerate()
        .filter_map(|(i, x)| x.key().map(|k| (k, i as u32)))
        .collect())
}

impl<'a> Evaluator<'a> {
    pub fn new(db: &'a Database, spec: &'a TaskSpec) -> Result<Evaluator<'a>, String> {
        let entity = find(db, &spec.entity.table)?;
        let mut aggs: Vec<&AggregateSpec> = Vec::new();
        if let Target::Aggregate(a) | Target::ListDistinct { aggregate: a, .. } = &spec.target {
            aggs.push(a);
        }
        for e in [&spec.entity_filter, &spec.assuming].into_iter().flatten() {
            crate::pql::collect_aggs(e, &mut aggs);
        }
        let mut groups = Vec::new();
        for a in aggs {
            if matches!(a.agg, Agg::First | Agg::Last) {
                return Err("FIRST/LAST are not evaluated in memory".into());
            }
            groups.push(group(db, entity, a)?);
        }
        let key = entity.col(&spec.entity.key_column).ok_or("no key column")?;
        let mut order: Vec<(usize, String)> = (0..entity.rows())
            .map(|i| (i, db.text(key.ty, &key.data[i]).unwrap_or_default()))
            .collect();
        order.sort_by(|a, b| match (key.data[a.0], key.data[b.0]) {
            (Cell::Int(x), Cell::Int(y)) => x.cmp(&y),
            _ => a.1.cmp(&b.1),
        });
        Ok(Evaluator {
            db,
            spec,
            entity,
            groups,
            order,
        })
    }

    /// The rows of `split` (`train`, `val`, `test`), ordered as rdl orders them.
    pub fn split(&self, split: &str) -> Result<Vec<LabelRow>, String> {
        let (lo, hi) = self.db.time_range();
        let s = self.spec.splits(lo, hi).map_err(|e| e.message.clone())?;
        let anchors = match split {
            "train" => s.train,
            "val" => s.val,
            "test" => s.test,
            _ => return Err(format!("unknown split {split}")),
        };
        let mut rows = Vec::new();
        for a in anchors {
            rows.extend(self.at(a)?);
        }
        if self.spec.splits_by_entity() {
            rows.retain(|r| static_split_of(&r.entity) == split);
        }
        Ok(rows)
    }

    /// Labels of every entity at anchor `t`, in key order.
    pub fn at(&self, t: i64) -> Result<Vec<LabelRow>, String> {
        let times = self.entity.times();
        let mut out = Vec::new();
        for (i, key) in &self.order {
            let i = *i;
            if times.as_ref().is_some_and(|ts| ts[i] > t) {
                continue;
            }
            let ok = |e: &Option<Expr>| -> Result<bool, String> {
                Ok(match e {
                    Some(e) => self.cond(e, i, t)? == Some(true),
                    None => true,
                })
            };
            if !ok(&self.spec.entity_filter)? || !ok(&self.spec.assuming)? {
                continue;
            }
            let (label, label_text) = match self.label(i, t)? {
                Some(x) => x,
                None => continue,
            };
            out.push(LabelRow {
                entity: key.clone(),
                anchor: t,
                label,
                label_text,
            });
        }
        Ok(out)
    }

    /// `(label, label_text)`, `None` when the row is left out (NULL label).
    #[allow(clippy::type_complexity)]
    fn label(&self, i: usize, t: i64) -> Result<Option<(Option<f64>, Option<String>)>, String> {
        let spec = self.spec;
        Ok(match &spec.target {
            Target::Aggregate(a) => {
                let v = self.agg(a, i, t)?;
                match (&spec.comparison, spec.task_type) {
                    (Some(c), _) => {
                        let holds = compare(c.op, &v, &lit(&c.value)) == Some(true);
                        Some((Some(holds as u8 as f64), None))
                    }
                    (None, TaskType::BinaryClassification) => match v {
                        V::Null => None,
                        V::Num(x) => Some((Some((x > 0.0) as u8 as f64), None)),
                        V::Bool(b) => Some((Some(b as u8 as f64), None)),
                        _ => return Err("unexpected binary value".into()),
                    },
                    _ => match v {
                        V::Null => None,
                        V::Num(x) => Some((Some(x), None)),
                        V::Text(s) => Some((None, Some(s))),
                        other => return Err(format!("unexpected label {other:?}")),
                    },
                }
            }
            Target::ListDistinct { aggregate, .. } => match self.agg(aggregate, i, t)? {
                V::Text(s) => Some((None, Some(s))),
                _ => None,
            },
            Target::Static(c) => {
                let col = self.entity.col(&c.column).ok_or("no static column")?;
                match (cell_value(self.db, col.ty, &col.data[i]), c.semantic) {
                    (V::Null, _) => None,
                    (V::Num(x), SemanticType::Numerical) => Some((Some(x), None)),
                    (V::Bool(b), _) => Some((Some(b as u8 as f64), None)),
                    (v, _) => Some((None, Some(text_of(&v)))),
                }
            }
        })
    }

    /// An aggregate's value for entity row `i` at anchor `t` (0 for empty COUNT/SUM/EXISTS).
    fn agg(&self, a: &AggregateSpec, i: usize, t: i64) -> Result<V, String> {
        let g = self
            .groups
            .iter()
            .find(|g| std::ptr::eq(g.spec, a) || g.spec == a)
            .ok_or("aggregate not prepared")?;
        let w = a.window;
        let (from, to) = (add(t, w.start, w.unit), add(t, w.end, w.unit));
        let rows = &g.by_entity[i];
        let lo = rows.partition_point(|r| r.0 <= from);
        let hi = rows.partition_point(|r| r.0 <= to);
        let mut vals: Vec<V> = Vec::new();
        let col = a.column.as_ref().and_then(|c| g.table.col(&c.column));
        for &(_, r) in &rows[lo..hi] {
            if let Some(f) = &a.row_filter {
                if row_cond(self.db, g.table, f, r as usize)? != Some(true) {
                    continue;
                }
            }
            vals.push(match col {
                Some(c) => cell_value(self.db, c.ty, &c.data[r as usize]),
                None => V::Bool(true),
            });
        }
        let present: Vec<&V> = vals.iter().filter(|v| **v != V::Null).collect();
        let nums = || present.iter().filter_map(|v| num(v));
        Ok(match a.agg {
            Agg::Count | Agg::Exists => V::Num(present.len() as f64),
            Agg::Sum => V::Num(nums().sum()),
            Agg::Avg if present.is_empty() => V::Null,
            Agg::Avg => V::Num(nums().sum::<f64>() / present.len() as f64),
            Agg::Min => nums().reduce(f64::min).map_or(V::Null, V::Num),
            Agg::Max => nums().reduce(f64::max).map_or(V::Null, V::Num),
            Agg::CountDistinct | Agg::ListDistinct => {
                let mut s: Vec<String> = present.iter().map(|v| text_of(v)).collect();
                s.sort();
                s.dedup();
                if a.agg == Agg::CountDistinct {
                    V::Num(s.len() as f64)
                } else if s.is_empty() {
                    V::Null
                } else {
                    V::Text(format!("{{{}}}", s.join(",")))
                }
            }
            Agg::First | Agg::Last => return Err("FIRST/LAST unsupported".into()),
        })
    }

    /// A condition on entity row `i` at `t`; `None` is SQL's unknown.
    fn cond(&self, e: &Expr, i: usize, t: i64) -> Result<Option<bool>, String> {
        let val = |v: &Value| -> Result<V, String> {
            Ok(match v {
                Value::Literal(l) => lit(l),
                Value::Aggregate(a) => self.agg(a, i, t)?,
                Value::Column(c) => {
                    let col = self.entity.col(&c.column).ok_or("no column")?;
                    cell_value(self.db, col.ty, &col.data[i])
                }
            })
        };
        eval(e, &val)
    }
}

/// Groups the rows of `a`'s table by the entity row they reach through its path.
fn group<'a>(
    db: &'a Database,
    entity: &Table,
    a: &'a AggregateSpec,
) -> Result<Grouped<'a>, String> {
    let table = find(db, &a.table)?;
    let times = table.times().ok_or("aggregated table has no time column")?;
    // For each hop, the parent's row by key; the last parent is the entity table.
    let mut cur: Vec<Option<u32>> = (0..table.rows() as u32).map(Some).collect();
    let mut at: &Table = table;
    for hop in &a.path {
        let parent = find(db, &hop.ref_table)?;
        let idx = index(parent, &hop.ref_columns[0])?;
        let fk = at.col(&hop.columns[0]).ok_or("no FK column")?;
        for r in cur.iter_mut() {
            *r = r
                .and_then(|k| fk.data[k as usize].key())
                .and_then(|k| idx.get(&k).copied());
        }
        at = parent;
    }
    debug_assert_eq!(at.name, entity.name);
    let mut by_entity = vec![Vec::new(); entity.rows()];
    for (r, e) in cur.iter().enumerate() {
        if let Some(e) = e {
            by_entity[*e as usize].push((times[r], r as u32));
        }
    }
    for v in &mut by_entity {
        v.sort_unstable();
    }
    Ok(Grouped {
        spec: a,
        table,
        by_entity,
    })
}

/// A row filter on row `r` of `t`.
fn row_cond(db: &Database, t: &Table, e: &Expr, r: usize) -> Result<Option<bool>, String> {
    let val = |v: &Value| -> Result<V, String> {
        Ok(match v {
            Value::Literal(l) => lit(l),
            Value::Column(c) => {
                let col = t.col(&c.column).ok_or("no column")?;
                cell_value(db, col.ty, &col.data[r])
            }
            Value::Aggregate(_) => return Err("aggregate in a row filter".into()),
        })
    };
    eval(e, &val)
}

fn eval(e: &Expr, val: &dyn Fn(&Value) -> Result<V, String>) -> Result<Option<bool>, String> {
    Ok(match e {
        Expr::And(a, b) => match (eval(a, val)?, eval(b, val)?) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Expr::Or(a, b) => match (eval(a, val)?, eval(b, val)?) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Expr::Not(a) => eval(a, val)?.map(|b| !b),
        Expr::Compare { op, left, right } => compare(*op, &val(left)?, &val(right)?),
        Expr::IsNull { value, negated } => Some((val(value)? == V::Null) != *negated),
        Expr::Truth(v) => match val(v)? {
            V::Null => None,
            V::Bool(b) => Some(b),
            V::Num(x) => Some(x > 0.0),
            _ => return Err("not a truth value".into()),
        },
    })
}

fn num(v: &V) -> Option<f64> {
    match v {
        V::Num(x) => Some(*x),
        _ => None,
    }
}

fn text_of(v: &V) -> String {
    match v {
        V::Text(s) => s.clone(),
        V::Num(x) => super::db::format_float(*x),
        V::Bool(b) => if *b { "true" } else { "false" }.into(),
        V::Time(t) => t.to_string(),
        V::Null => String::new(),
    }
}

fn lit(l: &Literal) -> V {
    match l {
        Literal::Null => V::Null,
        Literal::Boolean(b) => V::Bool(*b),
        Literal::Number(_) => l.as_f64().map_or(V::Null, V::Num),
        Literal::String(s) => V::Text(s.clone()),
    }
}

fn cell_value(db: &Database, ty: ColType, c: &Cell) -> V {
    match *c {
        Cell::Null => V::Null,
        Cell::Int(i) if ty == ColType::Text => V::Text(i.to_string()),
        Cell::Int(i) => V::Num(i as f64),
        Cell::Float(f) => V::Num(f),
        Cell::Bool(b) => V::Bool(b),
        Cell::Str(s) => V::Text(db.strings.get(s).to_string()),
        Cell::Time(t) => V::Time(t),
    }
}

/// SQL comparison: unknown when either side is NULL.
fn compare(op: CmpOp, a: &V, b: &V) -> Option<bool> {
    use std::cmp::Ordering;
    let ord: Ordering = match (a, b) {
        (V::Null, _) | (_, V::Null) => return None,
        (V::Num(x), V::Num(y)) => x.partial_cmp(y)?,
        (V::Text(x), V::Text(y)) => x.cmp(y),
        (V::Bool(x), V::Bool(y)) => x.cmp(y),
        (V::Time(x), V::Time(y)) => x.cmp(y),
        (V::Num(x), V::Text(y)) => x.partial_cmp(&y.parse::<f64>().ok()?)?,
        (V::Text(x), V::Num(y)) => x.parse::<f64>().ok()?.partial_cmp(y)?,
        _ => return None,
    };
    Some(match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    })
}
