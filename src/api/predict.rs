//! Predictions from the active model: `rdl_predict`, `rdl_predict_batch`,
//! `rdl_predict_class`, `rdl_predict_proba`, and `rdl_evaluate` on a split.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{AnyArray, AnyElement, JsonB};
use rdl_engine::encode::{EncodedContext, Subgraph};
use rdl_engine::pql::TaskType;
use rdl_engine::whatif;
use serde_json::{json, Map};

use crate::api::context::anchor_of;
use crate::api::examples::{engine_task, gather_all, hidden_column, labeled, seeds_of};
use crate::api::model::{argmax, metrics_json, predict_rows, task_and_model, Loaded};
use crate::api::task::{load_task, Task};
use crate::entity;
use crate::error::RdlError;
use std::rc::Rc;

/// Outputs for seeds (see [`predict_rows`]); `None` where the entity does not exist at its
/// anchor.
pub fn predict_seeds(t: &Task, l: &Loaded, seeds: &[(String, i64)]) -> Vec<Option<Vec<f64>>> {
    let mut out = vec![None; seeds.len()];
    gather_all(&l.plan, t, seeds, |start, ctxs, found| {
        let idx: Vec<usize> = (0..ctxs.len()).filter(|&i| found[i]).collect();
        let enc: Vec<EncodedContext> = idx
            .iter()
            .map(|&i| l.model.encoder.encode(&ctxs[i]))
            .collect();
        // The background worker when one serves this session, else in-process.
        let preds = crate::worker::predict(l, &enc).unwrap_or_else(|| predict_rows(&l.model, &enc));
        for (k, p) in preds.into_iter().enumerate() {
            out[start + idx[k]] = Some(p);
        }
    });
    out
}

/// One entity's context as the active model sees it, with the what-if changes of
/// `assuming` applied; 42704 naming the entity when it does not exist at the anchor.
pub struct One {
    pub task: Rc<Task>,
    pub model: Rc<Loaded>,
    pub key: String,
    pub anchor: i64,
    pub context: Subgraph,
    /// Via which foreign key each row was reached.
    pub via: Vec<Option<String>>,
}

pub fn gather_one(
    task: &str,
    check: impl FnOnce(&Task),
    entity_id: &AnyElement,
    as_of: Option<TimestampWithTimeZone>,
    assuming: Option<&serde_json::Value>,
) -> One {
    let (t, l) = task_and_model(task, check);
    let key = entity::key_text(entity_id, &t.spec.entity.key_type, task);
    let anchor = anchor_of(as_of);
    let hide = hidden_column(&t);
    let mut g = crate::sampler::gather(
        &l.plan,
        &t.spec.entity.table,
        &[(key.clone(), anchor)],
        hide.as_deref(),
    );
    crate::api::examples::check_fits(&[(key.clone(), anchor)], &g.contexts);
    if g.found.first() != Some(&true) {
        RdlError::new(
            "42704",
            format!("entity {key} does not exist in {}", t.spec.entity.table),
        )
        .hint("Check the id, or pass an as_of time at which the entity existed.")
        .raise()
    }
    let mut context = g.contexts.swap_remove(0);
    let mut via = g.via.swap_remove(0);
    if let Some(a) = assuming {
        let changes = whatif::parse(a, &l.plan).unwrap_or_else(|e| whatif_err(e).raise());
        whatif::apply(&mut context, &changes, &l.plan, &t.spec.entity.table)
            .unwrap_or_else(|e| whatif_err(e).raise());
        // Rows added or removed: "via" is only known for the rows the sampler gathered.
        via.resize(context.rows.len(), None);
    }
    One {
        task: t,
        model: l,
        key,
        anchor,
        context,
        via,
    }
}

fn whatif_err(e: whatif::WhatIfError) -> RdlError {
    let r = RdlError::new(e.sqlstate, format!("assuming: {}", e.message));
    match e.hint {
        Some(h) => r.hint(h),
        None => r,
    }
}

/// The outputs for one entity (see [`gather_one`]).
fn predict_one(
    task: &str,
    multiclass: bool,
    function: &str,
    entity_id: &AnyElement,
    as_of: Option<TimestampWithTimeZone>,
    assuming: Option<&serde_json::Value>,
) -> (Rc<Loaded>, Vec<f64>) {
    let one = gather_one(
        task,
        |t| require(t, task, multiclass, function),
        entity_id,
        as_of,
        assuming,
    );
    let enc = one.model.model.encoder.encode(&one.context);
    let encs = std::slice::from_ref(&enc);
    // The background worker when one serves this session, else in-process.
    let p = crate::worker::predict(&one.model, encs)
        .unwrap_or_else(|| predict_rows(&one.model.model, encs));
    (one.model, p.into_iter().next().unwrap_or_default())
}

pub fn require(t: &Task, task: &str, multiclass: bool, function: &str) {
    not_ranking(t, task, function);
    let is_multi = t.spec.task_type == TaskType::MulticlassClassification;
    if is_multi != multiclass {
        let hint = if is_multi {
            "The task predicts a class: use rdl_predict_class(task, id) or rdl_predict_proba(task, id)."
        } else {
            "The task predicts a number: use rdl_predict(task, id)."
        };
        RdlError::new(
            "42809",
            format!("{function} does not apply to task \"{task}\""),
        )
        .hint(hint)
        .raise()
    }
}

/// 42809 for a ranking task: its model recommends items, it does not predict a value.
pub fn not_ranking(t: &Task, task: &str, function: &str) {
    if t.spec.task_type == TaskType::Ranking {
        RdlError::new(
            "42809",
            format!("{function} does not apply to task \"{task}\""),
        )
        .hint("The task ranks items: use rdl_recommend(task, id, k) and rdl_evaluate(task).")
        .raise()
    }
}

/// The active model's prediction for one entity as of `as_of` (default: now): the
/// probability of the positive class (binary) or the value (regression).
#[pg_extern]
fn rdl_predict(
    task: Option<&str>,
    entity_id: Option<AnyElement>,
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
    assuming: default!(Option<JsonB>, "NULL"),
) -> Option<f64> {
    let task = crate::error::not_null(task, "task");
    let Some(id) = entity_id else {
        // Still an error for an unknown task or a wrong kind of task.
        require(&load_task(task), task, false, "rdl_predict");
        return None;
    };
    let assuming = assuming.map(|j| j.0);
    Some(predict_one(task, false, "rdl_predict", &id, as_of, assuming.as_ref()).1[0])
}

/// The most likely class of one entity (multiclass tasks).
#[pg_extern]
fn rdl_predict_class(
    task: Option<&str>,
    entity_id: Option<AnyElement>,
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
    assuming: default!(Option<JsonB>, "NULL"),
) -> Option<String> {
    let task = crate::error::not_null(task, "task");
    let Some(id) = entity_id else {
        require(&load_task(task), task, true, "rdl_predict_class");
        return None;
    };
    let assuming = assuming.map(|j| j.0);
    let (l, p) = predict_one(
        task,
        true,
        "rdl_predict_class",
        &id,
        as_of,
        assuming.as_ref(),
    );
    l.classes.get(argmax(&p)).cloned()
}

/// Every class's calibrated probability for one entity (multiclass tasks), as
/// `{"class": probability, ...}`, most likely first.
#[pg_extern]
fn rdl_predict_proba(
    task: Option<&str>,
    entity_id: Option<AnyElement>,
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
    assuming: default!(Option<JsonB>, "NULL"),
) -> Option<JsonB> {
    let task = crate::error::not_null(task, "task");
    let Some(id) = entity_id else {
        require(&load_task(task), task, true, "rdl_predict_proba");
        return None;
    };
    let assuming = assuming.map(|j| j.0);
    let (l, p) = predict_one(
        task,
        true,
        "rdl_predict_proba",
        &id,
        as_of,
        assuming.as_ref(),
    );
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let mut m = Map::new();
    for i in order {
        if let Some(c) = l.classes.get(i) {
            m.insert(c.clone(), json!(p[i]));
        }
    }
    Some(JsonB(serde_json::Value::Object(m)))
}

/// Predictions for many entities at once: contexts are gathered and scored in batches, so
/// this is far faster than one `rdl_predict` per row. An id that does not exist at
/// `as_of` gets a NULL prediction. Multiclass tasks return the most likely class's
/// probability in `prediction` and the class in `class`.
#[pg_extern]
fn rdl_predict_batch(
    task: Option<&str>,
    entity_ids: Option<AnyArray>,
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(entity_id, String),
        name!(prediction, Option<f64>),
        name!(class, Option<String>),
    ),
> {
    let task = crate::error::not_null(task, "task");
    let (t, l) = task_and_model(task, |t| not_ranking(t, task, "rdl_predict_batch"));
    // A NULL array holds no ids: no rows (the task is still checked).
    let Some(entity_ids) = entity_ids else {
        return TableIterator::new(Vec::new());
    };
    let keys = entity::keys_text(&entity_ids, &t.spec.entity.key_type, task);
    let anchor = anchor_of(as_of);
    let seeds: Vec<(String, i64)> = keys.iter().map(|k| (k.clone(), anchor)).collect();
    let preds = predict_seeds(&t, &l, &seeds);
    let multiclass = t.spec.task_type == TaskType::MulticlassClassification;
    let rows: Vec<_> = keys
        .into_iter()
        .zip(preds)
        .map(|(k, p)| match p {
            None => (k, None, None),
            Some(p) if multiclass => {
                let i = argmax(&p);
                (k, Some(p[i]), l.classes.get(i).cloned())
            }
            Some(p) => (k, Some(p[0]), None),
        })
        .collect();
    TableIterator::new(rows)
}

/// Metrics of the active model on a split of the task (default: test).
#[pg_extern]
fn rdl_evaluate(task: &str, split: default!(&str, "'test'")) -> JsonB {
    if load_task(task).spec.task_type == TaskType::Ranking {
        return crate::api::recommend::evaluate(task, split);
    }
    let (t, l) = task_and_model(task, |_| {});
    let kind = engine_task(&t, task, &l.classes);
    let (rows, unknown) = labeled(task, &t, split, &l.classes);
    let preds = predict_seeds(&t, &l, &seeds_of(&rows));
    let (p, y): (Vec<Vec<f64>>, Vec<f64>) = preds
        .into_iter()
        .zip(&rows)
        .filter_map(|(p, r)| p.map(|p| (p, r.2 as f64)))
        .unzip();
    let mut m = metrics_json(kind, &p, &y, rows.len(), &l.classes, &l.class_prior);
    if let Some(o) = m.as_object_mut() {
        o.insert("task".into(), task.into());
        o.insert("split".into(), split.into());
        o.insert("model_id".into(), l.id.into());
        o.insert("model_version".into(), l.version.into());
        if unknown > 0 {
            // Labels of a class the model never saw cannot be scored.
            o.insert("examples_of_unseen_classes".into(), unknown.into());
        }
        if kind == rdl_engine::train::Task::Regression {
            // How often the split-conformal intervals of rdl_predict_detail hold the truth.
            let mut cov = Map::new();
            for level in [0.8, 0.9, 0.95] {
                if let Some(q) = l.model.calibration.quantile(level) {
                    let hit = p
                        .iter()
                        .zip(&y)
                        .filter(|(p, y)| (p[0] - **y).abs() <= q)
                        .count();
                    cov.insert(
                        format!("{level}"),
                        json!(hit as f64 / y.len().max(1) as f64),
                    );
                }
            }
            o.insert("interval_coverage".into(), serde_json::Value::Object(cov));
        }
    }
    JsonB(m)
}
