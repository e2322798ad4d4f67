//! Predictions from the active model: `rdl_predict`, `rdl_predict_class`,
//! `rdl_predict_proba`, `rdl_predict_batch`, and `rdl_evaluate` on a split.

use std::rc::Rc;

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{AnyArray, AnyElement, JsonB};
use rdl_engine::pipeline::one::{gather_one, One};
use rdl_engine::pipeline::report::argmax;
use rdl_engine::pipeline::{recommend, tabular, Split};
use rdl_engine::pql::{TaskSpec, TaskType};
use serde_json::{json, Map};

use crate::api::context::anchor_of;
use crate::entity;
use crate::error::{raise, RdlError};
use crate::models::{self, Loaded};
use crate::source::SpiSource;
use crate::worker::Worker;

/// One entity's context as the active model sees it (what-if changes of `assuming`
/// applied), with the task and the model; 42704 naming the entity when it does not exist
/// at the anchor.
pub fn gather_entity(
    task: &str,
    check: impl FnOnce(&TaskSpec),
    entity_id: &AnyElement,
    as_of: Option<TimestampWithTimeZone>,
    assuming: Option<&serde_json::Value>,
) -> (Rc<TaskSpec>, Rc<Loaded>, One) {
    let (spec, l) = models::active(task, check);
    let key = entity::key_text(entity_id, &spec.entity.key_type, task);
    let hide = tabular::hidden(&spec);
    let mut src = SpiSource::new(task, &spec);
    let one = gather_one(
        &mut src,
        &l.servable.plan,
        &spec.entity.table,
        (&key, anchor_of(as_of)),
        hide.as_ref(),
        assuming,
    )
    .unwrap_or_else(|e| raise(e));
    (spec, l, one)
}

/// The calibrated outputs for one entity.
fn predict_one(
    task: &str,
    multiclass: bool,
    function: &str,
    entity_id: &AnyElement,
    as_of: Option<TimestampWithTimeZone>,
    assuming: Option<&serde_json::Value>,
) -> (Rc<Loaded>, Vec<f64>) {
    let check = |t: &TaskSpec| require(t, task, multiclass, function);
    let (spec, l, one) = gather_entity(task, check, entity_id, as_of, assuming);
    let enc = l.servable.encoder().encode(&one.context);
    let mut src = SpiSource::new(task, &spec);
    let p = tabular::score(&mut src, &Worker, &l.servable, std::slice::from_ref(&enc))
        .unwrap_or_else(|e| raise(e));
    (l, p.into_iter().next().unwrap_or_default())
}

pub fn require(t: &TaskSpec, task: &str, multiclass: bool, function: &str) {
    not_ranking(t, task, function);
    let is_multi = t.task_type == TaskType::MulticlassClassification;
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
pub fn not_ranking(t: &TaskSpec, task: &str, function: &str) {
    if t.task_type == TaskType::Ranking {
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
        require(&crate::tasks::load(task), task, false, "rdl_predict");
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
        require(&crate::tasks::load(task), task, true, "rdl_predict_class");
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
    l.servable.stored.classes.get(argmax(&p)).cloned()
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
        require(&crate::tasks::load(task), task, true, "rdl_predict_proba");
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
        if let Some(c) = l.servable.stored.classes.get(i) {
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
    let (spec, l) = models::active(task, |t| not_ranking(t, task, "rdl_predict_batch"));
    // A NULL array holds no ids: no rows (the task is still checked).
    let Some(entity_ids) = entity_ids else {
        return TableIterator::new(Vec::new());
    };
    let keys = entity::keys_text(&entity_ids, &spec.entity.key_type, task);
    let anchor = anchor_of(as_of);
    let seeds: Vec<(String, i64)> = keys.iter().map(|k| (k.clone(), anchor)).collect();
    let mut src = SpiSource::new(task, &spec);
    let preds = tabular::predict_seeds(&mut src, &Worker, &l.servable, &spec, &seeds)
        .unwrap_or_else(|e| raise(e));
    let multiclass = spec.task_type == TaskType::MulticlassClassification;
    let classes = &l.servable.stored.classes;
    let rows: Vec<_> = keys
        .into_iter()
        .zip(preds)
        .map(|(k, p)| match p {
            None => (k, None, None),
            Some(p) if multiclass => {
                let i = argmax(&p);
                (k, Some(p[i]), classes.get(i).cloned())
            }
            Some(p) => (k, Some(p[0]), None),
        })
        .collect();
    TableIterator::new(rows)
}

/// Metrics of the active model on a split of the task (default: test).
#[pg_extern]
fn rdl_evaluate(task: &str, split: default!(&str, "'test'")) -> JsonB {
    let (spec, l) = models::active(task, |_| {});
    let split: Split = split.parse().unwrap_or_else(|e| raise(e));
    let mut src = SpiSource::new(task, &spec);
    let mut m = if spec.task_type == TaskType::Ranking {
        let mut index = |src: &mut dyn rdl_engine::pipeline::Source, ti: i64| {
            Ok(crate::api::recommend::index_for(src, &l, ti))
        };
        recommend::evaluate(&mut src, &l.servable, &spec, split, &mut index)
    } else {
        tabular::evaluate(&mut src, &Worker, &l.servable, &spec, split)
    }
    .unwrap_or_else(|e| raise(e));
    if let Some(o) = m.as_object_mut() {
        o.insert("task".into(), task.into());
    }
    JsonB(m)
}
