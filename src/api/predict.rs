//! Predictions from the active model: `rdl_predict`, `rdl_predict_batch`,
//! `rdl_predict_class`, `rdl_predict_proba`, and `rdl_evaluate` on a split.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{AnyArray, AnyElement, JsonB};
use rdl_engine::encode::EncodedContext;
use rdl_engine::pql::TaskType;
use serde_json::{json, Map};

use crate::api::context::anchor_of;
use crate::api::examples::{engine_task, gather_all, labeled, seeds_of};
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

/// The outputs for one entity, or 42704 naming it when it does not exist at the anchor.
fn predict_one(
    task: &str,
    multiclass: bool,
    function: &str,
    entity_id: &AnyElement,
    as_of: Option<TimestampWithTimeZone>,
) -> (Rc<Loaded>, Vec<f64>) {
    let (t, l) = task_and_model(task, |t| require(t, task, multiclass, function));
    let key = entity::key_text(entity_id, &t.spec.entity.key_type, task);
    let p = predict_seeds(&t, &l, &[(key.clone(), anchor_of(as_of))]);
    match p.into_iter().next().flatten() {
        Some(v) => (l, v),
        None => RdlError::new(
            "42704",
            format!("entity {key} does not exist in {}", t.spec.entity.table),
        )
        .hint("Check the id, or pass an as_of time at which the entity existed.")
        .raise(),
    }
}

fn require(t: &Task, task: &str, multiclass: bool, function: &str) {
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

/// The active model's prediction for one entity as of `as_of` (default: now): the
/// probability of the positive class (binary) or the value (regression).
#[pg_extern]
fn rdl_predict(
    task: &str,
    entity_id: Option<AnyElement>,
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> Option<f64> {
    let Some(id) = entity_id else {
        // Still an error for an unknown task or a wrong kind of task.
        require(&load_task(task), task, false, "rdl_predict");
        return None;
    };
    Some(predict_one(task, false, "rdl_predict", &id, as_of).1[0])
}

/// The most likely class of one entity (multiclass tasks).
#[pg_extern]
fn rdl_predict_class(
    task: &str,
    entity_id: Option<AnyElement>,
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> Option<String> {
    let Some(id) = entity_id else {
        require(&load_task(task), task, true, "rdl_predict_class");
        return None;
    };
    let (l, p) = predict_one(task, true, "rdl_predict_class", &id, as_of);
    l.classes.get(argmax(&p)).cloned()
}

/// Every class's calibrated probability for one entity (multiclass tasks), as
/// `{"class": probability, ...}`, most likely first.
#[pg_extern]
fn rdl_predict_proba(
    task: &str,
    entity_id: Option<AnyElement>,
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> Option<JsonB> {
    let Some(id) = entity_id else {
        require(&load_task(task), task, true, "rdl_predict_proba");
        return None;
    };
    let (l, p) = predict_one(task, true, "rdl_predict_proba", &id, as_of);
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
    task: &str,
    entity_ids: AnyArray,
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(entity_id, String),
        name!(prediction, Option<f64>),
        name!(class, Option<String>),
    ),
> {
    let (t, l) = task_and_model(task, |_| {});
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
    }
    JsonB(m)
}
