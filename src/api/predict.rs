//! Predictions from the active model: `rdl_predict`, `rdl_predict_class`,
//! `rdl_predict_proba`, `rdl_predict_batch`, and `rdl_evaluate` on a split.

use std::rc::Rc;

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{AnyArray, AnyElement, JsonB};
use rdl_engine::pipeline::one::{gather_one, One};
use rdl_engine::pipeline::report::{argmax, batch_rows, class_probabilities};
use rdl_engine::pipeline::{in_context, recommend, tabular, Needs, Source, Split};
use rdl_engine::pql::{TaskSpec, TaskType};
use rdl_engine::sampler::Plan;

use crate::api::context::{self, anchor_of};
use crate::entity;
use crate::error::raise;
use crate::models::{self, Loaded};
use crate::source::SpiSource;
use crate::tasks::applies;
use crate::worker::Worker;

/// The task with its active model or, when `rdl.in_context` is on and it has none, the
/// sampler plan to answer it in context with (DESIGN §6b).
pub fn model_or_context(
    task: &str,
    function: &str,
    needs: Needs,
) -> (Rc<TaskSpec>, Result<Rc<Loaded>, Plan>) {
    let check = |t: &TaskSpec| applies(t, task, function, needs);
    if let Some(a) = crate::adhoc::get(task) {
        check(&a.spec);
        return (a.spec.clone(), Err(context::default_plan(task, &a.spec)));
    }
    if !crate::guc::IN_CONTEXT.get() {
        let (spec, l) = models::active(task, check);
        return (spec, Ok(l));
    }
    match models::active_or_none(task, check) {
        (spec, Some(l)) => (spec, Ok(l)),
        (spec, None) => (spec.clone(), Err(context::default_plan(task, &spec))),
    }
}

/// `f` with the caller's source and the (entity key, anchor) asked: an answer given in
/// context, where [`model_or_context`] says so.
pub fn in_context_at<T>(
    task: &str,
    spec: &TaskSpec,
    id: &AnyElement,
    as_of: Option<TimestampWithTimeZone>,
    f: impl FnOnce(&mut dyn Source, (&str, i64)) -> rdl_engine::pipeline::Result<T>,
) -> T {
    let key = entity::key_text(id, &spec.entity.key_type, task);
    let mut src = SpiSource::new(task, spec);
    f(&mut src, (&key, anchor_of(as_of))).unwrap_or_else(|e| raise(e))
}

/// One entity's context as the model `l` sees it (what-if changes of `assuming` applied);
/// 42704 naming the entity when it does not exist at the anchor.
pub fn gather_entity(
    (task, spec, l): (&str, &TaskSpec, &Loaded),
    entity_id: &AnyElement,
    as_of: Option<TimestampWithTimeZone>,
    assuming: Option<&serde_json::Value>,
) -> One {
    let key = entity::key_text(entity_id, &spec.entity.key_type, task);
    let (hide, mut src) = (tabular::hidden(spec), SpiSource::new(task, spec));
    let (plan, at) = (&l.servable.plan, (key.as_str(), anchor_of(as_of)));
    let one = gather_one(
        &mut src,
        plan,
        &spec.entity.table,
        at,
        hide.as_ref(),
        assuming,
    );
    one.unwrap_or_else(|e| raise(e))
}

/// The calibrated outputs for one entity, with the model's classes; `None` for a NULL id
/// (the task still checked). Answered in context where [`model_or_context`] says so.
fn predict_one(
    task: Option<&str>,
    multiclass: bool,
    function: &str,
    entity_id: Option<AnyElement>,
    as_of: Option<TimestampWithTimeZone>,
    assuming: Option<JsonB>,
) -> Option<(Vec<String>, Vec<f64>)> {
    let task = crate::error::not_null(task, "task");
    let needs = [Needs::Value, Needs::Class][multiclass as usize];
    let Some(id) = entity_id else {
        applies(&crate::tasks::load(task), task, function, needs);
        return None;
    };
    let (spec, m) = model_or_context(task, function, needs);
    let assuming = assuming.map(|j| j.0);
    let l = match m {
        Ok(l) => l,
        Err(plan) => {
            let a = in_context_at(task, &spec, &id, as_of, |src, at| {
                in_context::predict(src, task, &spec, &plan, at, assuming.as_ref())
            });
            return Some((Vec::new(), vec![a.value]));
        }
    };
    let one = gather_entity((task, &spec, &l), &id, as_of, assuming.as_ref());
    let enc = l.servable.encoder().encode(&one.context);
    let mut src = SpiSource::new(task, &spec);
    let p = tabular::score(&mut src, &Worker, &l.servable, std::slice::from_ref(&enc))
        .unwrap_or_else(|e| raise(e));
    let classes = l.servable.stored.classes.clone();
    Some((classes, p.into_iter().next().unwrap_or_default()))
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
    let (classes, p) = predict_one(task, true, f, entity_id, as_of, assuming)?;
    classes.get(argmax(&p)).cloned()
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
    let (classes, p) = predict_one(task, true, f, entity_id, as_of, assuming)?;
    Some(JsonB(class_probabilities(&classes, &p)))
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
    let (spec, m) = model_or_context(task, "rdl_predict_batch", Needs::NotRanking);
    // A NULL array holds no ids: no rows (the task is still checked).
    let Some(entity_ids) = entity_ids else {
        return TableIterator::new(Vec::new());
    };
    let keys = entity::keys_text(&entity_ids, &spec.entity.key_type, task);
    let anchor = anchor_of(as_of);
    let seeds: Vec<(String, i64)> = keys.iter().map(|k| (k.clone(), anchor)).collect();
    let mut src = SpiSource::new(task, &spec);
    let preds = match &m {
        Ok(l) => tabular::predict_seeds(&mut src, &Worker, &l.servable, &spec, &seeds),
        Err(plan) => in_context::predict_batch(&mut src, task, &spec, plan, &keys, anchor)
            .map(|v| v.into_iter().map(|p| p.map(|p| vec![p])).collect()),
    }
    .unwrap_or_else(|e| raise(e));
    let classes = m.map(|l| l.servable.stored.classes.clone());
    let multiclass = spec.task_type == TaskType::MulticlassClassification;
    let classes = classes.unwrap_or_default();
    TableIterator::new(batch_rows(multiclass, keys, preds, &classes))
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
