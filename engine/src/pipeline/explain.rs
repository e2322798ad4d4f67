//! Why a prediction is what it is: contributions of tables, columns and rows (attention
//! rollout to the target cell, with the direction each row pushes from gradient × input),
//! a sentence a person can read, the prediction with its calibration or interval, and
//! which data matters to a task overall.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use super::error::{Error, Result};
use super::gather::gather_all;
use super::labels::{examples, seeds};
use super::one::One;
use super::report::argmax;
use super::servable::Servable;
use super::show;
use super::source::{Source, Split};
use super::tabular::hidden;
use crate::base::time::format_timestamp;
use crate::encode::{Subgraph, Value as Cell};
use crate::pql::{TaskSpec, TaskType};
use crate::train::explain::Explanation;
use crate::train::TrainedModel;

fn tabular(s: &Servable) -> Result<&TrainedModel> {
    s.tabular()
        .ok_or_else(|| Error::new("42809", "a ranking model explains no single value"))
}

/// Shares of one explanation, aggregated per context row and per column.
pub(super) struct Shares {
    /// Per subgraph row: (share, a signed amount: positive when the row raises the
    /// prediction; here the gradient × input sum).
    pub rows: Vec<(f64, f64)>,
    /// Per `table.column`: share.
    pub columns: BTreeMap<String, f64>,
    /// Per (row, value index): share.
    pub cells: HashMap<(usize, usize), f64>,
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

fn short(table: &str) -> &str {
    table.strip_prefix("public.").unwrap_or(table)
}

fn plain(v: &Cell) -> String {
    match v {
        Cell::Null => "NULL".into(),
        Cell::Num(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", *x as i64),
        Cell::Num(x) => format!("{x:.3}"),
        Cell::Bool(b) => b.to_string(),
        Cell::Text(s) => s.clone(),
        Cell::Time(t) => format_timestamp(*t)[..10].to_string(),
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

fn prediction_json(kind: TaskType, classes: &[String], p: &[f64]) -> Value {
    match kind {
        TaskType::MulticlassClassification => {
            let i = argmax(p);
            json!({"class": classes.get(i), "probability": p[i]})
        }
        _ => json!(p[0]),
    }
}

/// The explanation of one gathered (and possibly what-if) context.
pub fn explain_one(sv: &Servable, kind: TaskType, one: &One, top_k: usize) -> Result<Value> {
    let model = tabular(sv)?;
    let e = model.explain(&one.context)?;
    let s = shares(&one.context, &e);
    let p: Vec<f64> = e.prediction.iter().map(|&v| v as f64).collect();
    let rollout_rows: Vec<f64> = s.rows.iter().map(|r| r.0).collect();
    let grad_rows: Vec<f64> = s.rows.iter().map(|r| r.1.abs()).collect();
    let mut out = described(kind, &sv.stored.classes, &p, one, &s, top_k);
    out["model_version"] = json!(sv.version);
    out["method"] = json!("attention rollout to the target cell; agreement = Spearman correlation of row shares with |gradient x input|");
    out["agreement"] = json!(spearman(&rollout_rows, &grad_rows));
    Ok(out)
}

/// An explanation from its shares: the prediction, the shares of tables, of the 10
/// strongest columns and of the `top_k` strongest rows (each raising or lowering the
/// prediction as the sign of its second share says), and a sentence.
pub(super) fn described(
    kind: TaskType,
    classes: &[String],
    p: &[f64],
    one: &One,
    s: &Shares,
    top_k: usize,
) -> Value {
    let sg = &one.context;
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
            let mut o = show::row(&sg.rows[r], one.via.get(r).cloned().flatten().as_deref());
            o.insert("share".into(), json!(s.rows[r].0));
            o.insert("effect".into(), json!(effect(r)));
            Value::Object(o)
        })
        .collect();

    // The sentence: the prediction, the tables that carry it, and the strongest rows with
    // the values of their strongest cells.
    let mut sentence = format!("{}.", prediction_phrase(kind, classes, p));
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
    json!({
        "entity": one.key,
        "as_of": format_timestamp(one.anchor),
        "prediction": prediction_json(kind, classes, p),
        "context_rows": sg.rows.len(),
        "by_table": tables.iter().map(|(t, p)| json!({"table": t, "share": p})).collect::<Vec<_>>(),
        "by_column": columns.iter().take(10).map(|(c, p)| json!({"column": c, "share": p})).collect::<Vec<_>>(),
        "top_rows": top_rows,
        "sentence": sentence,
    })
}

/// The prediction with what is known about it: the calibrated probability (binary), the
/// class probabilities (multiclass) or a split-conformal interval at `coverage`
/// (regression), the model version and the context's size. `selection` holds the metrics
/// the caller stored for the model (measured on the split early stopping used).
pub fn detail(
    s: &Servable,
    kind: TaskType,
    one: &One,
    coverage: f64,
    selection: Value,
) -> Result<Value> {
    let model = tabular(s)?;
    let enc = model.encoder.encode(&one.context);
    let p: Vec<f64> = model
        .predict(std::slice::from_ref(&enc))?
        .into_iter()
        .map(f64::from)
        .collect();
    let mut out = json!({
        "entity": one.key,
        "as_of": format_timestamp(one.anchor),
        "task_type": kind,
        "prediction": prediction_json(kind, &s.stored.classes, &p),
        "model_version": s.version,
        "selection": selection,
        "selection_note": "measured on the split used for early stopping and calibration: optimistic; rdl_evaluate(task, 'test') is a held-out estimate",
        "context": {"rows": one.context.rows.len(), "tokens": enc.n_tokens()},
    });
    match kind {
        TaskType::BinaryClassification => {
            out["probability"] = json!(p[0]);
            out["calibration"] = json!("temperature scaling on the selection split");
        }
        TaskType::MulticlassClassification => {
            let mut m = Map::new();
            let mut order: Vec<usize> = (0..p.len()).collect();
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
            for i in order.into_iter().take(10) {
                if let Some(c) = s.stored.classes.get(i) {
                    m.insert(c.clone(), json!(p[i]));
                }
            }
            out["probabilities"] = Value::Object(m);
        }
        _ => {
            if let Some(q) = model.calibration.quantile(coverage) {
                out["interval"] = json!({"coverage": coverage, "low": p[0] - q, "high": p[0] + q,
                    "method": "split conformal on the selection split's absolute residuals"});
            }
        }
    }
    Ok(out)
}

/// Which data matters to the task: the share of every column in the model's predictions,
/// averaged over (at most `max_examples` of) the selection split; `(table, column, share)`,
/// largest first.
pub fn importance(
    src: &mut dyn Source,
    s: &Servable,
    spec: &TaskSpec,
    max_examples: usize,
) -> Result<Vec<(String, String, f64)>> {
    let model = tabular(s)?;
    let multiclass = spec.task_type == TaskType::MulticlassClassification;
    let classes = &s.stored.classes;
    let (mut rows, _) = examples(
        src.labels(Split::Val)?,
        multiclass.then_some(classes.as_slice()),
    );
    rows.truncate(max_examples);
    let mut total: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut n = 0usize;
    let hide = hidden(spec);
    gather_all(
        src,
        &s.plan,
        &spec.entity.table,
        &seeds(&rows),
        hide.as_ref(),
        &mut |src, _, g| {
            for (sg, f) in g.contexts.iter().zip(g.found) {
                if !f {
                    continue;
                }
                src.report(super::source::Event::Poll)?;
                let e = model.explain(sg)?;
                for (name, share) in shares(sg, &e).columns {
                    let (tbl, col) = split_column(&name, sg);
                    *total.entry((tbl, col)).or_insert(0.0) += share;
                }
                n += 1;
            }
            Ok(())
        },
    )?;
    let mut out: Vec<(String, String, f64)> = total
        .into_iter()
        .map(|((t, c), s)| (t, c, s / n.max(1) as f64))
        .collect();
    out.sort_by(|a, b| b.2.total_cmp(&a.2));
    Ok(out)
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
