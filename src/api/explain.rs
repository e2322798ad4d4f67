//! Why a prediction is what it is: `rdl_explain` (contributions of tables, columns and
//! rows, and a sentence), `rdl_predict_detail` (calibrated probability or conformal
//! interval, model version and metrics), and `rdl_importance` (which data matters to a
//! task overall, over its validation split).

use std::collections::{BTreeMap, HashMap};

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{AnyElement, JsonB};
use rdl_engine::base::time::format_timestamp;
use rdl_engine::encode::{Subgraph, Value};
use rdl_engine::pql::TaskType;
use rdl_engine::train::explain::Explanation;
use serde_json::{json, Map};

use crate::api::examples::{gather_all, labeled, seeds_of};
use crate::api::model::{argmax, predict_rows, task_and_model, train_err, Loaded};
use crate::api::predict::{gather_one, not_ranking, One};
use crate::error::RdlError;
use crate::sql::query_one;

/// Shares of one explanation, aggregated per context row and per column.
struct Shares {
    /// Per subgraph row: (rollout share, gradient × input sum).
    rows: Vec<(f64, f64)>,
    /// Per `table.column`: rollout share.
    columns: BTreeMap<String, f64>,
    /// Per (row, value index): rollout share.
    cells: HashMap<(usize, usize), f64>,
}

/// Rollout mass of the data tokens (the target token's own share left out), renormalised.
fn shares(sg: &Subgraph, e: &Explanation) -> Shares {
    let total: f64 = e
        .tokens
        .iter()
        .filter(|t| t.source.is_some())
        .map(|t| t.rollout as f64)
        .sum::<f64>()
        .max(1e-12);
    let mut rows = vec![(0.0, 0.0); sg.rows.len()];
    let mut columns = BTreeMap::new();
    let mut cells = HashMap::new();
    for t in &e.tokens {
        let Some((r, v)) = t.source else { continue };
        let share = t.rollout as f64 / total;
        rows[r].0 += share;
        rows[r].1 += t.gradient as f64;
        let name = format!("{}.{}", sg.rows[r].table, sg.rows[r].values[v].0);
        *columns.entry(name).or_insert(0.0) += share;
        cells.insert((r, v), share);
    }
    Shares {
        rows,
        columns,
        cells,
    }
}

/// Spearman rank correlation of two equally long lists.
fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len();
    if n < 3 {
        return None;
    }
    let ranks = |x: &[f64]| {
        let mut idx: Vec<usize> = (0..n).collect();
        idx.sort_by(|&i, &j| x[i].total_cmp(&x[j]));
        let mut r = vec![0.0; n];
        for (rank, &i) in idx.iter().enumerate() {
            r[i] = rank as f64;
        }
        r
    };
    let (ra, rb) = (ranks(a), ranks(b));
    let mean = (n as f64 - 1.0) / 2.0;
    let cov: f64 = ra
        .iter()
        .zip(&rb)
        .map(|(x, y)| (x - mean) * (y - mean))
        .sum();
    let var: f64 = ra.iter().map(|x| (x - mean).powi(2)).sum();
    (var > 0.0).then(|| cov / var)
}

fn show(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Num(x) => json!(x),
        Value::Bool(b) => json!(b),
        Value::Text(s) => json!(s),
        Value::Time(t) => json!(format_timestamp(*t)),
    }
}

fn short(table: &str) -> &str {
    table.strip_prefix("public.").unwrap_or(table)
}

fn plain(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Num(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", *x as i64),
        Value::Num(x) => format!("{x:.3}"),
        Value::Bool(b) => b.to_string(),
        Value::Text(s) => s.clone(),
        Value::Time(t) => format_timestamp(*t)[..10].to_string(),
    }
}

fn prediction_phrase(kind: TaskType, classes: &[String], p: &[f64]) -> String {
    match kind {
        TaskType::BinaryClassification => format!("Probability {:.2}", p[0]),
        TaskType::MulticlassClassification => {
            let i = argmax(p);
            format!(
                "Predicted {} (probability {:.2})",
                classes.get(i).map_or("?", String::as_str),
                p[i]
            )
        }
        _ => format!("Predicted {:.2}", p[0]),
    }
}

fn prediction_json(kind: TaskType, classes: &[String], p: &[f64]) -> serde_json::Value {
    match kind {
        TaskType::MulticlassClassification => {
            let i = argmax(p);
            json!({"class": classes.get(i), "probability": p[i]})
        }
        _ => json!(p[0]),
    }
}

/// The explanation of one gathered (and possibly what-if) context.
fn explain_one(one: &One, top_k: usize) -> serde_json::Value {
    let l = &one.model;
    let sg = &one.context;
    let e = l.model.explain(sg).unwrap_or_else(|e| train_err(e).raise());
    let s = shares(sg, &e);
    let kind = one.task.spec.task_type;
    let p: Vec<f64> = e.prediction.iter().map(|&v| v as f64).collect();

    let mut by_table: BTreeMap<&str, f64> = BTreeMap::new();
    for (r, row) in sg.rows.iter().enumerate() {
        *by_table.entry(&row.table).or_insert(0.0) += s.rows[r].0;
    }
    let mut tables: Vec<(&str, f64)> = by_table.into_iter().filter(|t| t.1 > 0.0).collect();
    tables.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut columns: Vec<(&String, &f64)> = s.columns.iter().collect();
    columns.sort_by(|a, b| b.1.total_cmp(a.1));

    let mut order: Vec<usize> = (0..sg.rows.len()).filter(|&r| s.rows[r].0 > 0.0).collect();
    order.sort_by(|&a, &b| s.rows[b].0.total_cmp(&s.rows[a].0));
    let top: Vec<usize> = order.iter().copied().take(top_k).collect();
    let effect = |r: usize| {
        if s.rows[r].1 >= 0.0 {
            "raises"
        } else {
            "lowers"
        }
    };
    let top_rows: Vec<serde_json::Value> = top
        .iter()
        .map(|&r| {
            let row = &sg.rows[r];
            let mut values = Map::new();
            for (name, _, v) in &row.values {
                values.insert(name.to_string(), show(v));
            }
            json!({
                "table": row.table,
                "key": row.key,
                "time": row.time.map(format_timestamp),
                "hop": row.hop,
                "via": one.via.get(r).cloned().flatten(),
                "share": s.rows[r].0,
                "effect": effect(r),
                "values": values,
            })
        })
        .collect();

    // The sentence: the prediction, the tables that carry it, and the strongest rows with
    // the values of their most attended cells.
    let mut sentence = format!("{}.", prediction_phrase(kind, &l.classes, &p));
    if let Some((t0, p0)) = tables.first() {
        sentence += &format!(" Mostly driven by {} ({:.0}%)", short(t0), p0 * 100.0);
        let rest: Vec<String> = tables
            .iter()
            .skip(1)
            .take(2)
            .filter(|t| t.1 >= 0.05)
            .map(|(t, p)| format!("{} ({:.0}%)", short(t), p * 100.0))
            .collect();
        if !rest.is_empty() {
            sentence += &format!(", then {}", rest.join(" and "));
        }
        sentence += ".";
    }
    let evidence: Vec<String> = top
        .iter()
        .take(3)
        .map(|&r| {
            let row = &sg.rows[r];
            let mut cells: Vec<(usize, f64)> = (0..row.values.len())
                .filter_map(|v| s.cells.get(&(r, v)).map(|&sh| (v, sh)))
                .collect();
            cells.sort_by(|a, b| b.1.total_cmp(&a.1));
            let shown: Vec<String> = cells
                .iter()
                .take(3)
                .map(|&(v, _)| format!("{} {}", row.values[v].0, plain(&row.values[v].2)))
                .collect();
            let when = row
                .time
                .map(|t| format!(" on {}", &format_timestamp(t)[..10]))
                .unwrap_or_default();
            let what = if r == sg.seed {
                "the entity itself".to_string()
            } else {
                format!("{} {}{when}", short(&row.table), row.key)
            };
            format!("{what} ({}) {} it", shown.join(", "), effect(r))
        })
        .collect();
    if !evidence.is_empty() {
        sentence += &format!(" Strongest evidence: {}.", evidence.join("; "));
    }

    let rollout_rows: Vec<f64> = s.rows.iter().map(|r| r.0).collect();
    let grad_rows: Vec<f64> = s.rows.iter().map(|r| r.1.abs()).collect();
    json!({
        "task": one.task.spec.entity.table,
        "entity": one.key,
        "as_of": format_timestamp(one.anchor),
        "model_version": l.version,
        "prediction": prediction_json(kind, &l.classes, &p),
        "method": "attention rollout to the target cell; agreement = Spearman correlation of row shares with |gradient x input|",
        "agreement": spearman(&rollout_rows, &grad_rows),
        "context_rows": sg.rows.len(),
        "by_table": tables.iter().map(|(t, p)| json!({"table": t, "share": p})).collect::<Vec<_>>(),
        "by_column": columns.iter().take(10).map(|(c, p)| json!({"column": c, "share": p})).collect::<Vec<_>>(),
        "top_rows": top_rows,
        "sentence": sentence,
    })
}

/// Why the active model predicts what it predicts for one entity as of `as_of` (default:
/// now): the shares of tables, columns and the `top_k` rows of the context in the
/// prediction (attention rollout to the target cell, with the direction each row pushes
/// from gradient × input), and a sentence. `assuming` explains a what-if context.
#[pg_extern]
fn rdl_explain(
    task: Option<&str>,
    entity_id: Option<AnyElement>,
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
    top_k: default!(i32, 5),
    assuming: default!(Option<JsonB>, "NULL"),
) -> Option<JsonB> {
    let task = crate::error::not_null(task, "task");
    let id = entity_id?;
    if !(1..=1000).contains(&top_k) {
        RdlError::new(
            "22023",
            format!("top_k must be between 1 and 1000, got {top_k}"),
        )
        .raise()
    }
    let assuming = assuming.map(|j| j.0);
    let one = gather_one(
        task,
        |t| not_ranking(t, task, "rdl_explain"),
        &id,
        as_of,
        assuming.as_ref(),
    );
    let mut out = explain_one(&one, top_k as usize);
    out["task"] = json!(task);
    Some(JsonB(out))
}

/// The prediction with what is known about it: the calibrated probability (binary), the
/// class probabilities (multiclass) or a split-conformal interval at `coverage`
/// (regression), the model version, its validation metrics and the context's size.
#[pg_extern]
fn rdl_predict_detail(
    task: Option<&str>,
    entity_id: Option<AnyElement>,
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
    coverage: default!(f64, 0.9),
    assuming: default!(Option<JsonB>, "NULL"),
) -> Option<JsonB> {
    let task = crate::error::not_null(task, "task");
    let id = entity_id?;
    if !(0.5..=0.99).contains(&coverage) {
        RdlError::new(
            "22023",
            format!("coverage must be between 0.5 and 0.99, got {coverage}"),
        )
        .raise()
    }
    let assuming = assuming.map(|j| j.0);
    let one = gather_one(
        task,
        |t| not_ranking(t, task, "rdl_predict_detail"),
        &id,
        as_of,
        assuming.as_ref(),
    );
    let l = &one.model;
    let enc = l.model.encoder.encode(&one.context);
    let p = predict_rows(&l.model, std::slice::from_ref(&enc))
        .into_iter()
        .next()
        .unwrap_or_default();
    let kind = one.task.spec.task_type;
    let mut out = json!({
        "task": task,
        "entity": one.key,
        "as_of": format_timestamp(one.anchor),
        "task_type": kind,
        "prediction": prediction_json(kind, &l.classes, &p),
        "model_version": l.version,
        "validation": validation_metrics(l),
        "context": {"rows": one.context.rows.len(), "tokens": enc.n_tokens()},
    });
    match kind {
        TaskType::BinaryClassification => {
            out["probability"] = json!(p[0]);
            out["calibration"] = json!("temperature scaling on the validation split");
        }
        TaskType::MulticlassClassification => {
            let mut m = Map::new();
            let mut order: Vec<usize> = (0..p.len()).collect();
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
            for i in order.into_iter().take(10) {
                if let Some(c) = l.classes.get(i) {
                    m.insert(c.clone(), json!(p[i]));
                }
            }
            out["probabilities"] = serde_json::Value::Object(m);
        }
        _ => {
            if let Some(q) = l.model.calibration.quantile(coverage) {
                out["interval"] = json!({"coverage": coverage, "low": p[0] - q, "high": p[0] + q,
                    "method": "split conformal on the validation split's absolute residuals"});
            }
        }
    }
    Some(JsonB(out))
}

fn validation_metrics(l: &Loaded) -> serde_json::Value {
    crate::storage::as_owner(|| {
        query_one::<JsonB>(
            "SELECT m.metrics OPERATOR(pg_catalog.->) 'val' FROM rdl.models m
             WHERE m.id OPERATOR(pg_catalog.=) $1",
            &[l.id.into()],
        )
    })
    .map(|j| j.0)
    .unwrap_or(serde_json::Value::Null)
}

/// Which data matters to the task: the share of every column (and, summed, of every
/// table) in the active model's predictions, averaged over (at most `max_examples` of) the
/// validation split. Useful to find signal and to spot leakage (a column that should not
/// know the answer but carries most of it).
#[pg_extern]
fn rdl_importance(
    task: &str,
    max_examples: default!(i32, 300),
) -> TableIterator<
    'static,
    (
        name!(table_name, String),
        name!(column_name, String),
        name!(importance, f64),
    ),
> {
    if max_examples < 1 {
        RdlError::new("22023", "max_examples must be at least 1").raise()
    }
    let (t, l) = task_and_model(task, |t| not_ranking(t, task, "rdl_importance"));
    let (mut rows, _) = labeled(task, &t, "val", &l.classes);
    rows.truncate(max_examples as usize);
    let mut total: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut n = 0usize;
    gather_all(&l.plan, &t, &seeds_of(&rows), |_, ctxs, found| {
        for (sg, f) in ctxs.iter().zip(found) {
            if !f {
                continue;
            }
            pgrx::check_for_interrupts!();
            let e = l.model.explain(sg).unwrap_or_else(|e| train_err(e).raise());
            for (name, share) in shares(sg, &e).columns {
                let (tbl, col) = split_column(&name, sg);
                *total.entry((tbl, col)).or_insert(0.0) += share;
            }
            n += 1;
        }
    });
    let mut out: Vec<(String, String, f64)> = total
        .into_iter()
        .map(|((t, c), s)| (t, c, s / n.max(1) as f64))
        .collect();
    out.sort_by(|a, b| b.2.total_cmp(&a.2));
    TableIterator::new(out)
}

/// `table.column` back into its parts, using the context's table names (a quoted table
/// name may itself contain dots).
fn split_column(name: &str, sg: &Subgraph) -> (String, String) {
    for r in &sg.rows {
        if let Some(col) = name
            .strip_prefix(&*r.table)
            .and_then(|rest| rest.strip_prefix('.'))
        {
            return (r.table.to_string(), col.to_string());
        }
    }
    let (t, c) = name.rsplit_once('.').unwrap_or(("", name));
    (t.to_string(), c.to_string())
}
