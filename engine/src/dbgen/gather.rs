//! Contexts of a generated database gathered in memory: the sampler's own walk
//! ([`crate::sampler::walk`]) with each statement answered the way PostgreSQL answers it —
//! rows matched on the key columns' text, timed rows only up to the anchor, the newest
//! `fanout` children first (time, then primary key, descending), a child count capped at
//! [`COUNT_CAP`]. Pretraining and engine tests build contexts with it, without a server.

use std::collections::HashMap;

use super::db::{Cell, Column, Database, Table};
use crate::encode::Value;
use crate::ident::quote_qualified;
use crate::sampler::{
    walk, Direction, FetchedRow, OutKind, Plan, Request, Step, TablePlan, Walked, COUNT_CAP,
};

/// Text values are cut to this many characters, as the statements cut them.
const TEXT_CHARS: usize = 200;

/// Rows of one table grouped by the text of some of its columns, each group in the
/// statements' order (newest first).
type Lookup = HashMap<Vec<String>, Vec<u32>>;

/// Answers the sampler's statements over one generated database (the one it was made
/// for: it keeps lookups built from its rows between calls).
#[derive(Default)]
pub struct MemorySampler {
    lookups: HashMap<(String, Vec<String>), Lookup>,
}

impl MemorySampler {
    pub fn new() -> MemorySampler {
        MemorySampler::default()
    }

    /// The contexts of `seeds` (entity key as text, anchor µs) of `entity_table`.
    pub fn gather(
        &mut self,
        db: &Database,
        plan: &Plan,
        entity_table: &str,
        seeds: &[(String, i64)],
    ) -> Walked {
        let tables: HashMap<String, &Table> = db
            .tables
            .iter()
            .map(|t| (quote_qualified(super::SCHEMA, &t.name), t))
            .collect();
        let res: Result<Walked, std::convert::Infallible> =
            walk(plan, entity_table, seeds, |step, reqs| {
                let (cols, limit, counts) = match step {
                    Step::Seeds(t) => (&plan.tables[t].key_columns, None, false),
                    Step::Hop(edge, Direction::ToParent, _) => (&edge.parent_columns, None, false),
                    Step::Hop(edge, Direction::ToChildren, hop) => (
                        &edge.child_columns,
                        Some(plan.config.fanout as usize),
                        plan.counts_at(Direction::ToChildren, hop),
                    ),
                };
                let table = step.table();
                Ok(match (tables.get(table), plan.tables.get(table)) {
                    (Some(&t), Some(tp)) => self.fetch(db, t, tp, cols, reqs, limit, counts),
                    _ => Vec::new(),
                })
            });
        match res {
            Ok(w) => w,
            Err(e) => match e {},
        }
    }

    /// One statement: for each request, the rows of `t` whose `cols` equal its keys and
    /// whose time is at or before its anchor, newest first, at most `limit` of them.
    #[allow(clippy::too_many_arguments)]
    fn fetch(
        &mut self,
        db: &Database,
        t: &Table,
        tp: &TablePlan,
        cols: &[String],
        reqs: &[Request],
        limit: Option<usize>,
        counts: bool,
    ) -> Vec<FetchedRow> {
        let time = time_column(t, tp);
        let lookup = self
            .lookups
            .entry((tp.table.clone(), cols.to_vec()))
            .or_insert_with(|| build_lookup(db, t, tp, cols));
        let mut out = Vec::new();
        for (ord, r) in reqs.iter().enumerate() {
            let Some(rows) = lookup.get(&r.keys) else {
                continue;
            };
            let visible: Vec<u32> = match time {
                Some(c) => rows
                    .iter()
                    .copied()
                    .filter(|&i| c.data[i as usize].as_time().is_some_and(|x| x <= r.anchor))
                    .collect(),
                None => rows.clone(),
            };
            let n = (visible.len() as i64).min(COUNT_CAP);
            for &i in visible.iter().take(limit.unwrap_or(usize::MAX)) {
                let mut row = read_row(db, t, tp, i as usize, ord);
                row.children = counts.then_some(n);
                out.push(row);
            }
        }
        out
    }
}

fn col<'t>(t: &'t Table, name: &str) -> &'t Column {
    t.col(name)
        .unwrap_or_else(|| panic!("the plan names {name}, which {} lacks", t.name))
}

fn time_column<'t>(t: &'t Table, tp: &TablePlan) -> Option<&'t Column> {
    tp.time_column.as_deref().map(|c| col(t, c))
}

/// The key text of `row` (a composite key as PostgreSQL prints a row: `(a,b)`).
fn key_text(db: &Database, t: &Table, tp: &TablePlan, row: usize) -> String {
    let parts: Vec<String> = tp
        .key_columns
        .iter()
        .map(|c| {
            let c = col(t, c);
            db.text(c.ty, &c.data[row]).unwrap_or_default()
        })
        .collect();
    match parts.len() {
        0 => format!("(0,{})", row + 1),
        1 => parts.into_iter().next().unwrap_or_default(),
        _ => format!("({})", parts.join(",")),
    }
}

/// Groups the rows of `t` by the text of `cols` (rows with a NULL among them match
/// nothing), newest first, then by primary key descending — the statements' ORDER BY.
fn build_lookup(db: &Database, t: &Table, tp: &TablePlan, cols: &[String]) -> Lookup {
    let cs: Vec<&Column> = cols.iter().map(|c| col(t, c)).collect();
    let mut out: Lookup = HashMap::new();
    for i in newest_first(db, t, tp) {
        let key: Option<Vec<String>> = cs
            .iter()
            .map(|c| db.text(c.ty, &c.data[i as usize]))
            .collect();
        if let Some(k) = key {
            out.entry(k).or_default().push(i);
        }
    }
    out
}

/// The rows of `t` in the statements' order: newest first, then by primary key descending.
fn newest_first(db: &Database, t: &Table, tp: &TablePlan) -> Vec<u32> {
    let time = time_column(t, tp);
    let keys: Vec<&Column> = tp.key_columns.iter().map(|c| col(t, c)).collect();
    let mut order: Vec<u32> = (0..t.rows() as u32).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (a as usize, b as usize);
        let by_time = time.map_or(std::cmp::Ordering::Equal, |c| {
            c.data[b].as_time().cmp(&c.data[a].as_time())
        });
        by_time.then_with(|| {
            keys.iter()
                .map(|k| cmp_cells(db, &k.data[b], &k.data[a]))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    });
    order
}

/// Cells of one key column in SQL order (NULL last, as `DESC` puts it first: only ever
/// compared among keys, which are never NULL).
fn cmp_cells(db: &Database, a: &Cell, b: &Cell) -> std::cmp::Ordering {
    match (a, b) {
        (Cell::Int(x), Cell::Int(y)) => x.cmp(y),
        (Cell::Str(x), Cell::Str(y)) => db.strings.get(*x).cmp(db.strings.get(*y)),
        (Cell::Time(x), Cell::Time(y)) => x.cmp(y),
        (Cell::Float(x), Cell::Float(y)) => x.total_cmp(y),
        _ => std::cmp::Ordering::Equal,
    }
}

/// One row as a statement returns it: key, time, structural columns as text, values as
/// their [`OutKind`] reads them.
fn read_row(db: &Database, t: &Table, tp: &TablePlan, row: usize, ord: usize) -> FetchedRow {
    let structural = tp
        .structural
        .iter()
        .map(|c| {
            let c = col(t, c);
            db.text(c.ty, &c.data[row])
        })
        .collect();
    let values = tp
        .values
        .iter()
        .map(|v| {
            let c = col(t, &v.name);
            let cell = &c.data[row];
            match (v.out, cell) {
                (_, Cell::Null) => Value::Null,
                (OutKind::Text, _) => match db.text(c.ty, cell) {
                    Some(s) => Value::Text(s.chars().take(TEXT_CHARS).collect()),
                    None => Value::Null,
                },
                (OutKind::Float, _) => cell.as_f64().map_or(Value::Null, Value::Num),
                (OutKind::Bool, Cell::Bool(b)) => Value::Bool(*b),
                (OutKind::Timestamp | OutKind::Date | OutKind::Micros, Cell::Time(x)) => {
                    Value::Time(*x)
                }
                _ => db.value(cell),
            }
        })
        .collect();
    FetchedRow {
        ord,
        key: key_text(db, t, tp, row),
        time: time_column(t, tp).and_then(|c| c.data[row].as_time()),
        structural,
        values,
        children: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dbgen::{generate, labels::Evaluator, DbConfig, Scale};
    use crate::pql::{compile, TaskType};
    use crate::sampler::SamplerConfig;

    /// The contexts of a generated task's first training anchors follow the sampler's
    /// rules: the seed first, nothing after the anchor, the newest `fanout` children.
    #[test]
    fn contexts_follow_the_sampler_rules() {
        let cfg = DbConfig {
            scale: Scale::Tiny,
            complexity: Some(0.6),
            ..DbConfig::default()
        };
        let db = generate(7, &cfg);
        let graph = db.schema_graph();
        let sc = SamplerConfig {
            fanout: 4,
            max_rows: 10_000,
            counts: true,
            ..SamplerConfig::default()
        };
        let plan = Plan::new(&graph, sc);
        let task = db
            .tasks
            .iter()
            .find(|t| t.task_type == TaskType::BinaryClassification)
            .unwrap();
        let spec = compile(&task.query, &graph, &task.options).unwrap();
        let rows = Evaluator::new(&db, &spec).unwrap().split("train").unwrap();
        let seeds: Vec<(String, i64)> = rows
            .iter()
            .step_by(rows.len() / 40 + 1)
            .map(|r| (r.entity.clone(), r.anchor))
            .collect();
        let mut s = MemorySampler::new();
        let w = s.gather(&db, &plan, &spec.entity.table, &seeds);
        assert!(w.found.iter().all(|&f| f));
        assert_eq!(w.dropped_future, 0);
        let mut checked = 0;
        for (ci, ((key, anchor), sg)) in seeds.iter().zip(&w.contexts).enumerate() {
            assert_eq!(sg.rows[sg.seed].key, *key);
            assert!(sg.rows.iter().all(|r| r.time.is_none_or(|t| t <= *anchor)));
            // Children of the seed along each edge into the entity table: the newest
            // visible ones, as many as fanout allows, and their count on the seed row.
            let edges = plan.edges.iter().filter(|e| e.parent == spec.entity.table);
            for e in edges.filter(|e| e.child != e.parent && e.child_columns.len() == 1) {
                let child = db
                    .tables
                    .iter()
                    .find(|t| quote_qualified(crate::dbgen::SCHEMA, &t.name) == e.child)
                    .unwrap();
                let fk = child.col(&e.child_columns[0]).unwrap();
                let tc = time_column(child, &plan.tables[&e.child]);
                let mut visible: Vec<Option<i64>> = (0..child.rows())
                    .filter(|&i| db.text(fk.ty, &fk.data[i]).as_deref() == Some(key.as_str()))
                    .map(|i| tc.map(|c| c.data[i].as_time().unwrap_or(i64::MAX)))
                    .filter(|t| t.is_none_or(|t| t <= *anchor))
                    .collect();
                visible.sort_unstable_by(|a, b| b.cmp(a));
                let mut kept: Vec<Option<i64>> = (0..sg.rows.len())
                    .filter(|&i| {
                        sg.rows[i].hop == 1 && w.via[ci][i].as_deref() == Some(e.name.as_str())
                    })
                    .map(|i| sg.rows[i].time)
                    .collect();
                kept.sort_unstable_by(|a, b| b.cmp(a));
                let n = visible.len();
                visible.truncate(4);
                assert_eq!(kept, visible, "{} via {}", key, e.name);
                let count = crate::sampler::count_column(e);
                let cell = sg.rows[sg.seed].values.iter().find(|v| *v.0 == *count);
                assert_eq!(
                    cell.map(|c| &c.2),
                    Some(&Value::Num((n as f64).ln_1p())),
                    "{count}"
                );
                checked += 1;
            }
        }
        assert!(checked > 0);
        // Deterministic.
        let again = MemorySampler::new().gather(&db, &plan, &spec.entity.table, &seeds);
        assert_eq!(again.contexts, w.contexts);
    }

    /// Children and parents answered from in-memory copies of their tables (rows in the
    /// copy statement's order: timed rows with a time, newest first) build the very
    /// contexts the statements build, at every anchor, with counts.
    #[test]
    fn copies_answer_children_as_the_statements_do() {
        let cfg = DbConfig {
            scale: Scale::Tiny,
            complexity: Some(0.8),
            ..DbConfig::default()
        };
        let db = generate(11, &cfg);
        let graph = db.schema_graph();
        let sc = SamplerConfig {
            fanout: 3,
            counts: true,
            ..SamplerConfig::default()
        };
        let plan = Plan::new(&graph, sc);
        let task = &db.tasks[0];
        let spec = compile(&task.query, &graph, &task.options).unwrap();
        let rows = Evaluator::new(&db, &spec).unwrap().split("train").unwrap();
        let seeds: Vec<(String, i64)> = rows
            .iter()
            .step_by(rows.len() / 60 + 1)
            .map(|r| (r.entity.clone(), r.anchor))
            .collect();
        let want = MemorySampler::new().gather(&db, &plan, &spec.entity.table, &seeds);
        let mut copies: HashMap<String, crate::sampler::TableCopy> = HashMap::new();
        for t in &db.tables {
            let name = quote_qualified(crate::dbgen::SCHEMA, &t.name);
            let Some(tp) = plan.tables.get(&name) else {
                continue;
            };
            let time = time_column(t, tp);
            let rows = newest_first(&db, t, tp)
                .into_iter()
                .filter(|&i| time.is_none_or(|c| c.data[i as usize].as_time().is_some()))
                .map(|i| read_row(&db, t, tp, i as usize, 0))
                .collect();
            copies.insert(name, crate::sampler::TableCopy::new(tp, rows));
        }
        let mut s = MemorySampler::new();
        let mut answered = 0;
        let got: Result<Walked, std::convert::Infallible> =
            walk(&plan, &spec.entity.table, &seeds, |step, reqs| {
                Ok(match step {
                    Step::Hop(e, dir, hop) => {
                        answered += reqs.len();
                        let counts = plan.counts_at(dir, hop);
                        let (cols, limit) = match dir {
                            Direction::ToChildren => (&e.child_columns, 3),
                            Direction::ToParent => (&e.parent_columns, usize::MAX),
                        };
                        let tp = &plan.tables[step.table()];
                        let c = copies.get_mut(step.table()).unwrap();
                        c.rows(tp, cols, reqs, limit, counts)
                    }
                    Step::Seeds(t) => {
                        let tp = &plan.tables[t];
                        let table = db
                            .tables
                            .iter()
                            .find(|x| quote_qualified(crate::dbgen::SCHEMA, &x.name) == t)
                            .unwrap();
                        s.fetch(&db, table, tp, &tp.key_columns, reqs, None, false)
                    }
                })
            });
        let got = got.unwrap();
        assert!(answered > 100, "{answered} children requests");
        assert_eq!(got.found, want.found);
        assert_eq!(got.via, want.via);
        assert_eq!(got.contexts, want.contexts);
    }
}
