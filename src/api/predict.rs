//! Predictions from the active model: `rdl_predict`, `rdl_predict_class`,
//! `rdl_predict_proba`, `rdl_predict_batch`, and `rdl_evaluate` on a split.

use std::rc::Rc;

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{AnyArray, AnyElement, JsonB};
use rdl_engine::pipeline::one::{gather_one, One};
use rdl_engine::pipeline::report::argmax;
use rdl_engine::pipeline::{in_context, recommend, tabular, Needs, Split};
use rdl_engine::pql::{TaskSpec, TaskType};
use serde_json::{json, Map};

use crate::api::context::{self, anchor_of};
use crate::entity;
use crate::error::raise;
use crate::models::{self, Loaded};
use crate::source::SpiSource;
use crate::tasks::applies;
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

/// The calibrated outputs for one entity; `None` for a NULL id (the task still checked).
fn predict_one(
    task: Option<&str>,
    multiclass: bool,
    function: &str,
    entity_id: Option<AnyElement>,
    as_of: Option<TimestampWithTimeZone>,
    assuming: Option<JsonB>,
) -> Option<(Rc<Loaded>, Vec<f64>)> {
    let task = crate::error::not_null(task, "task");
    let needs = if multiclass {
        Needs::Class
    } else {
        Needs::Value
    };
    let check = |t: &TaskSpec| applies(t, task, function, needs);
    let Some(id) = entity_id else {
        check(&crate::tasks::load(task));
        return None;
    };
    let assuming = assuming.map(|j| j.0);
    let (spec, l, one) = gather_entity(task, check, &id, as_of, assuming.as_ref());
    let enc = l.servable.encoder().encode(&one.context);
    let mut src = SpiSource::new(task, &spec);
    let p = tabular::score(&mut src, &Worker, &l.servable, std::slice::from_ref(&enc))
        .unwrap_or_else(|e| raise(e));
    Some((l, p.into_iter().next().unwrap_or_default()))
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
    if let (Some(name), Some(id), true) = (task, &entity_id, crate::guc::IN_CONTEXT.get()) {
        let check = |t: &TaskSpec| applies(t, name, "rdl_predict", Needs::Value);
        if let (spec, None) = models::active_or_none(name, check) {
            let key = entity::key_text(id, &spec.entity.key_type, name);
            let (plan, at) = (context::default_plan(name, &spec), anchor_of(as_of));
            let (mut src, w) = (SpiSource::new(name, &spec), assuming.as_ref().map(|j| &j.0));
            let a = in_context::predict(&mut src, name, &spec, &plan, (&key, at), w);
            return Some(a.unwrap_or_else(|e| raise(e)).value);
        }
    }
    let (_, p) = predict_one(task, false, "rdl_predict", entity_id, as_of, assuming)?;
    Some(p[0])
}

/// The most likely class of one entity (multiclass tasks).
#[pg_extern]
fn rdl_predict_class(
    task: Option<&str>,
    entity_id: Option<AnyElement>,
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
    assuming: default!(Option<JsonB>, "NULL"),
) -> Option<String> {
    let f = "rdl_predict_class";
    let (l, p) = predict_one(task, true, f, entity_id, as_of, assuming)?;
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
    let f = "rdl_predict_proba";
    let (l, p) = predict_one(task, true, f, entity_id, as_of, assuming)?;
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let classes = &l.servable.stored.classes;
    let m: Map<_, _> = (order.into_iter())
        .filter_map(|i| Some((classes.get(i)?.clone(), json!(p[i]))))
        .collect();
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
    let (spec, l) = models::active(task, |t| {
        applies(t, task, "rdl_predict_batch", Needs::NotRanking)
    });
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
