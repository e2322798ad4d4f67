//! What-if questions: hypothetical changes to a gathered context, applied before it is
//! encoded. Nothing is written anywhere; the model simply sees a different context.
//!
//! `assuming` is a JSON object whose entries are, in any combination:
//!
//! - `"table.column": value` — that column in every row of the table in the context
//!   (`{"drivers.nationality": "German"}`);
//! - `"table": {"key": k, "column": value, ...}` (or an array of such objects) — the
//!   columns of one row, found by its primary key (`{"results": {"key": 123, "grid": 1}}`);
//! - `"add": {"table": [{"column": value, ...}, ...]}` — hypothetical rows linked to the
//!   entity (the table must reference it, or be referenced by it, through a foreign key),
//!   dated at the anchor; columns not given are NULL;
//! - `"remove": {"table": [k, ...]}` — rows taken out of the context by primary key.
//!
//! Values follow the column's semantic type: numbers for numerical columns, strings for
//! categorical and text ones, booleans, ISO timestamps for times, `null` for NULL. Keys are
//! structure, not values, and cannot be set. A time after the anchor is refused, as the
//! sampler would never show such a row.

use serde_json::{Map, Value as Json};

use crate::base::time::parse_timestamp;
use crate::encode::{RawRow, Subgraph, Value};
use crate::sampler::{count_column, Plan, TablePlan};
use crate::schema::SemanticType;

/// One change, resolved against the plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    SetColumn {
        table: String,
        column: String,
        value: Value,
    },
    SetRow {
        table: String,
        key: String,
        values: Vec<(String, Value)>,
    },
    Add {
        table: String,
        values: Vec<(String, Value)>,
    },
    Remove {
        table: String,
        key: String,
    },
}

/// A what-if error with its SQLSTATE.
#[derive(Debug, Clone, PartialEq)]
pub struct WhatIfError {
    pub sqlstate: &'static str,
    pub message: String,
    pub hint: Option<String>,
}

fn err(sqlstate: &'static str, message: impl Into<String>) -> WhatIfError {
    WhatIfError {
        sqlstate,
        message: message.into(),
        hint: None,
    }
}

impl WhatIfError {
    fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }
}

/// The table of the plan named `name`: qualified exactly (`public.drivers`), or by its
/// unqualified name when that is unique.
fn resolve_table<'p>(plan: &'p Plan, name: &str) -> Result<&'p TablePlan, WhatIfError> {
    if let Some(t) = plan.tables.get(name) {
        return Ok(t);
    }
    let unquoted = |s: &str| s.trim_matches('"').to_string();
    let matches: Vec<&TablePlan> = plan
        .tables
        .values()
        .filter(|t| {
            let last = t.table.rsplit('.').next().unwrap_or(&t.table);
            unquoted(last) == unquoted(name)
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(
            err("42P01", format!("table {name} is not read by this model")).hint(
                "Name a table of the model's context, e.g. the entity table or one linked to it.",
            ),
        ),
        _ => Err(err("42P09", format!("table name {name} is ambiguous"))
            .hint("Qualify it with its schema.")),
    }
}

fn value_of(tp: &TablePlan, column: &str, v: &Json) -> Result<Value, WhatIfError> {
    let Some(c) = tp.values.iter().find(|c| c.name == column) else {
        let is_key =
            tp.key_columns.iter().any(|k| k == column) || tp.structural.iter().any(|k| k == column);
        return Err(if is_key {
            err(
                "22023",
                format!(
                    "column {column} of {} is a key: keys are structure, not values",
                    tp.table
                ),
            )
            .hint("Change a value column, or add or remove rows instead.")
        } else {
            err(
                "42703",
                format!("column {column} of {} is not seen by the model", tp.table),
            )
        });
    };
    let bad = |what: &str| {
        err(
            "22023",
            format!("column {}.{column} is {what}: got {v}", tp.table),
        )
    };
    Ok(match (c.semantic, v) {
        (_, Json::Null) => Value::Null,
        (SemanticType::Numerical, Json::Number(n)) => {
            Value::Num(n.as_f64().ok_or_else(|| bad("numerical"))?)
        }
        (SemanticType::Numerical, _) => return Err(bad("numerical: expected a number")),
        (SemanticType::Boolean, Json::Bool(b)) => Value::Bool(*b),
        (SemanticType::Boolean, _) => return Err(bad("boolean: expected true or false")),
        (SemanticType::Timestamp, Json::String(s)) => {
            Value::Time(parse_timestamp(s).ok_or_else(|| bad("a timestamp: expected ISO 8601"))?)
        }
        (SemanticType::Timestamp, _) => return Err(bad("a timestamp: expected a string")),
        (SemanticType::Categorical | SemanticType::Text, Json::String(s)) => Value::Text(s.clone()),
        (SemanticType::Categorical | SemanticType::Text, Json::Number(n)) => {
            Value::Text(n.to_string())
        }
        (SemanticType::Categorical | SemanticType::Text, Json::Bool(b)) => {
            Value::Text(b.to_string())
        }
        _ => return Err(bad("not a kind of value that can be set")),
    })
}

fn key_text(v: &Json) -> Result<String, WhatIfError> {
    match v {
        Json::String(s) => Ok(s.clone()),
        Json::Number(n) => Ok(n.to_string()),
        other => Err(err(
            "22023",
            format!("a row key must be a string or a number, got {other}"),
        )),
    }
}

fn columns(
    tp: &TablePlan,
    obj: &Map<String, Json>,
    skip_key: bool,
) -> Result<Vec<(String, Value)>, WhatIfError> {
    obj.iter()
        .filter(|(k, _)| !(skip_key && k.as_str() == "key"))
        .map(|(k, v)| Ok((k.clone(), value_of(tp, k, v)?)))
        .collect()
}

fn objects(v: &Json, what: &str) -> Result<Vec<Map<String, Json>>, WhatIfError> {
    let one = |x: &Json| match x {
        Json::Object(o) => Ok(o.clone()),
        other => Err(err(
            "22023",
            format!("{what}: expected an object, got {other}"),
        )),
    };
    match v {
        Json::Array(a) => a.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

/// Parses `assuming` against the tables the model reads.
pub fn parse(assuming: &Json, plan: &Plan) -> Result<Vec<Change>, WhatIfError> {
    let Json::Object(top) = assuming else {
        return Err(err("22023", "assuming must be a JSON object").hint(
            r#"E.g. {"drivers.nationality": "German"} or {"results": {"key": 123, "grid": 1}}."#,
        ));
    };
    let mut out = Vec::new();
    for (k, v) in top {
        match k.as_str() {
            "add" => {
                let Json::Object(tables) = v else {
                    return Err(err("22023", r#""add" must map tables to lists of rows"#));
                };
                for (t, rows) in tables {
                    let tp = resolve_table(plan, t)?;
                    for row in objects(rows, "a row to add")? {
                        out.push(Change::Add {
                            table: tp.table.clone(),
                            values: columns(tp, &row, false)?,
                        });
                    }
                }
            }
            "remove" => {
                let Json::Object(tables) = v else {
                    return Err(err("22023", r#""remove" must map tables to lists of keys"#));
                };
                for (t, keys) in tables {
                    let tp = resolve_table(plan, t)?;
                    let keys = match keys {
                        Json::Array(a) => a.clone(),
                        other => vec![other.clone()],
                    };
                    for key in keys {
                        out.push(Change::Remove {
                            table: tp.table.clone(),
                            key: key_text(&key)?,
                        });
                    }
                }
            }
            name => {
                if let Ok(tp) = resolve_table(plan, name) {
                    for row in objects(v, "a row change")? {
                        let key = row.get("key").ok_or_else(|| {
                            err(
                                "22023",
                                format!("a change to a row of {} needs its \"key\"", tp.table),
                            )
                        })?;
                        out.push(Change::SetRow {
                            table: tp.table.clone(),
                            key: key_text(key)?,
                            values: columns(tp, &row, true)?,
                        });
                    }
                    continue;
                }
                let Some((t, c)) = name.rsplit_once('.') else {
                    return Err(resolve_table(plan, name)
                        .err()
                        .unwrap_or_else(|| err("42P01", name)));
                };
                let tp = resolve_table(plan, t)?;
                out.push(Change::SetColumn {
                    table: tp.table.clone(),
                    column: c.trim_matches('"').to_string(),
                    value: value_of(tp, c.trim_matches('"'), v)?,
                });
            }
        }
    }
    Ok(out)
}

/// Applies `changes` to a context of `entity_table`. Returns the number of rows touched.
pub fn apply(
    sg: &mut Subgraph,
    changes: &[Change],
    plan: &Plan,
    entity_table: &str,
) -> Result<usize, WhatIfError> {
    let anchor = sg.anchor;
    let check_time = |v: &Value| match v {
        Value::Time(t) if *t > anchor => Err(err(
            "22023",
            "a value dated after the prediction's time cannot be assumed",
        )
        .hint("Use a time at or before as_of.")),
        _ => Ok(()),
    };
    let set = |row: &mut RawRow, column: &str, value: &Value| {
        for (name, _, v) in row.values.iter_mut() {
            if &**name == column {
                *v = value.clone();
            }
        }
    };
    let mut touched = 0;
    for ch in changes {
        match ch {
            Change::SetColumn {
                table,
                column,
                value,
            } => {
                check_time(value)?;
                for row in sg.rows.iter_mut().filter(|r| &*r.table == table.as_str()) {
                    set(row, column, value);
                    touched += 1;
                }
            }
            Change::SetRow { table, key, values } => {
                let row = sg
                    .rows
                    .iter_mut()
                    .find(|r| &*r.table == table.as_str() && r.key == *key)
                    .ok_or_else(|| {
                        err(
                            "42704",
                            format!("row {key} of {table} is not in the context"),
                        )
                        .hint("See the rows the model reads with rdl_context(task, id, as_of).")
                    })?;
                for (c, v) in values {
                    check_time(v)?;
                    set(row, c, v);
                }
                touched += 1;
            }
            Change::Remove { table, key } => {
                let idx = sg
                    .rows
                    .iter()
                    .position(|r| &*r.table == table.as_str() && r.key == *key)
                    .ok_or_else(|| {
                        err(
                            "42704",
                            format!("row {key} of {table} is not in the context"),
                        )
                    })?;
                if idx == sg.seed {
                    return Err(err("22023", "the entity's own row cannot be removed"));
                }
                if sg.rows[idx].parents.contains(&sg.seed) {
                    recount(sg, plan, table, entity_table, -1.0);
                }
                remove_row(sg, idx);
                touched += 1;
            }
            Change::Add { table, values } => {
                for (_, v) in values {
                    check_time(v)?;
                }
                add_row(sg, table, values, plan, entity_table)?;
                touched += 1;
            }
        }
    }
    Ok(touched)
}

fn remove_row(sg: &mut Subgraph, idx: usize) {
    sg.rows.remove(idx);
    if sg.seed > idx {
        sg.seed -= 1;
    }
    for r in sg.rows.iter_mut() {
        r.parents.retain(|&p| p != idx);
        for p in r.parents.iter_mut() {
            if *p > idx {
                *p -= 1;
            }
        }
    }
}

fn add_row(
    sg: &mut Subgraph,
    table: &str,
    given: &[(String, Value)],
    plan: &Plan,
    entity_table: &str,
) -> Result<(), WhatIfError> {
    let tp = &plan.tables[table];
    let child_of_entity = plan
        .edges
        .iter()
        .any(|e| e.child == table && e.parent == entity_table);
    let parent_of_entity = plan
        .edges
        .iter()
        .any(|e| e.parent == table && e.child == entity_table);
    if !child_of_entity && !parent_of_entity {
        return Err(err(
            "42830",
            format!("rows of {table} cannot be added: no foreign key links it to {entity_table}"),
        )
        .hint("Add rows of a table that references the entity, or that it references."));
    }
    let mut values: Vec<_> = tp
        .values
        .iter()
        .map(|c| {
            (
                std::sync::Arc::<str>::from(c.name.as_str()),
                c.semantic,
                Value::Null,
            )
        })
        .collect();
    for (c, v) in given {
        if let Some(slot) = values.iter_mut().find(|(n, _, _)| &**n == c.as_str()) {
            slot.2 = v.clone();
        }
    }
    // A timed row happens at the anchor unless its time column was given.
    let time = tp.time_column.as_ref().map(|tc| {
        match values.iter_mut().find(|(n, _, _)| &**n == tc.as_str()) {
            Some((_, _, Value::Time(t))) => *t,
            Some((_, _, v)) => {
                *v = Value::Time(sg.anchor);
                sg.anchor
            }
            None => sg.anchor,
        }
    });
    let n_added = sg
        .rows
        .iter()
        .filter(|r| r.key.starts_with("(assumed"))
        .count();
    let idx = sg.rows.len();
    let seed = sg.seed;
    sg.rows.push(RawRow {
        table: table.into(),
        key: format!("(assumed {})", n_added + 1),
        time,
        hop: 1,
        parents: if child_of_entity {
            vec![seed]
        } else {
            Vec::new()
        },
        values,
    });
    if !child_of_entity {
        sg.rows[seed].parents.push(idx);
    } else {
        recount(sg, plan, table, entity_table, 1.0);
    }
    Ok(())
}

/// Adds `delta` to the entity's counts of rows of `table` (the cells a plan with
/// `counts` puts on the seed row; none otherwise).
fn recount(sg: &mut Subgraph, plan: &Plan, table: &str, entity_table: &str, delta: f64) {
    let seed = sg.seed;
    for e in plan
        .edges
        .iter()
        .filter(|e| e.child == table && e.parent == entity_table)
    {
        let name = count_column(e);
        for (n, _, v) in sg.rows[seed].values.iter_mut() {
            if **n == *name {
                if let Value::Num(x) = v {
                    *x = (x.exp_m1() + delta).max(0.0).ln_1p();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::SamplerConfig;

    fn plan() -> Plan {
        let g = crate::testutil::drivers_results(("grid", "integer"), "date");
        Plan::new(&g, SamplerConfig::default())
    }

    fn ctx() -> Subgraph {
        let row =
            |table: &str, key: &str, hop, parents, values: Vec<(&str, SemanticType, Value)>| {
                RawRow::new(table, key, None, hop, parents, values)
            };
        use SemanticType::*;
        Subgraph {
            anchor: 1_000_000_000_000_000,
            seed: 0,
            rows: vec![
                row(
                    "public.drivers",
                    "1",
                    0,
                    vec![],
                    vec![("nationality", Categorical, Value::Text("British".into()))],
                ),
                row(
                    "public.results",
                    "10",
                    1,
                    vec![0],
                    vec![
                        ("grid", Numerical, Value::Num(5.0)),
                        ("date", Timestamp, Value::Time(0)),
                    ],
                ),
                row(
                    "public.results",
                    "11",
                    1,
                    vec![0],
                    vec![
                        ("grid", Numerical, Value::Num(7.0)),
                        ("date", Timestamp, Value::Time(0)),
                    ],
                ),
            ],
        }
    }

    #[test]
    fn adding_or_removing_a_child_moves_the_entitys_count() {
        let p = plan();
        let mut sg = ctx();
        let name = count_column(&p.edges[0]);
        sg.rows[0].values.push((
            name.as_str().into(),
            SemanticType::Numerical,
            Value::Num(2f64.ln_1p()),
        ));
        let count = |sg: &Subgraph| match sg.rows[0].values.last().unwrap().2 {
            Value::Num(x) => x.exp_m1().round() as i64,
            _ => unreachable!(),
        };
        let add = serde_json::json!({"add": {"results": [{"grid": 2}, {"grid": 3}]}});
        apply(&mut sg, &parse(&add, &p).unwrap(), &p, "public.drivers").unwrap();
        assert_eq!(count(&sg), 4);
        let remove = serde_json::json!({"remove": {"results": [10, 11]}});
        apply(&mut sg, &parse(&remove, &p).unwrap(), &p, "public.drivers").unwrap();
        assert_eq!(count(&sg), 2);
    }

    #[test]
    fn every_kind_of_change_applies() {
        let p = plan();
        let mut sg = ctx();
        let a = serde_json::json!({
            "drivers.nationality": "German",
            "results": {"key": 11, "grid": 1},
            "add": {"results": [{"grid": 2}]},
            "remove": {"results": [10]},
        });
        let changes = parse(&a, &p).unwrap();
        assert_eq!(changes.len(), 4);
        assert_eq!(apply(&mut sg, &changes, &p, "public.drivers").unwrap(), 4);
        assert_eq!(sg.rows.len(), 3);
        assert_eq!(sg.rows[0].values[0].2, Value::Text("German".into()));
        let r11 = sg.rows.iter().find(|r| r.key == "11").unwrap();
        assert_eq!(r11.values[0].2, Value::Num(1.0));
        let added = sg
            .rows
            .iter()
            .find(|r| r.key.starts_with("(assumed"))
            .unwrap();
        assert_eq!(added.parents, vec![0]);
        assert_eq!(added.time, Some(sg.anchor));
        assert_eq!(added.values[0].2, Value::Num(2.0));
        // the removed row is gone and indices stayed consistent
        assert!(sg.rows.iter().all(|r| r.key != "10"));
        assert!(sg
            .rows
            .iter()
            .all(|r| r.parents.iter().all(|&p| p < sg.rows.len())));
    }

    #[test]
    fn bad_changes_are_clear_errors() {
        let p = plan();
        let code = |a: serde_json::Value| {
            let mut sg = ctx();
            match parse(&a, &p) {
                Err(e) => e.sqlstate,
                Ok(c) => apply(&mut sg, &c, &p, "public.drivers")
                    .err()
                    .map_or("00000", |e| e.sqlstate),
            }
        };
        assert_eq!(code(serde_json::json!([1])), "22023");
        assert_eq!(code(serde_json::json!({"nope.x": 1})), "42P01");
        assert_eq!(code(serde_json::json!({"drivers.height": 1})), "42703");
        assert_eq!(code(serde_json::json!({"drivers.driver_id": 2})), "22023");
        assert_eq!(
            code(serde_json::json!({"results": {"key": 10, "grid": "first"}})),
            "22023"
        );
        assert_eq!(code(serde_json::json!({"results": {"grid": 1}})), "22023");
        assert_eq!(
            code(serde_json::json!({"results": {"key": 99, "grid": 1}})),
            "42704"
        );
        assert_eq!(
            code(serde_json::json!({"remove": {"drivers": [1]}})),
            "22023"
        );
        assert_eq!(
            code(serde_json::json!({"results": {"key": 10, "date": "2100-01-01"}})),
            "22023"
        );
        assert_eq!(
            code(serde_json::json!({"add": {"results": [{"grid": 3}]}})),
            "00000"
        );
    }
}
