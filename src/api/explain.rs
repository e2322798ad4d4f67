//! Why a prediction is what it is: `rdl_explain`, `rdl_predict_detail`, `rdl_importance`
//! (computed by `pipeline::explain`). Explanations run in this backend, not on the
//! background worker: they need the model's gradients and attention for one context at a
//! time, cheap on a CPU and not worth a round trip.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{AnyElement, JsonB};
use rdl_engine::pipeline::{args, explain, in_context, in_context_explain, Needs};
use serde_json::json;

use crate::api::predict::{gather_entity, in_context_at, model_or_context};
use crate::error::raise;
use crate::source::SpiSource;
use crate::tasks::applies;

/// Why the active model predicts what it predicts for one entity as of `as_of` (default:
/// now): the shares of tables, columns and the `top_k` rows of the context in the
/// prediction (attention rollout to the target cell, with the direction each row pushes
/// from gradient × input), and a sentence. `assuming` explains a what-if context. An
/// answer given in context is explained by occlusion (`pipeline::in_context_explain`).
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
    let top_k = args::top_k(top_k).unwrap_or_else(|e| raise(e));
    let assuming = assuming.map(|j| j.0);
    let (spec, m) = model_or_context(task, "rdl_explain", Needs::NotRanking);
    let l = match m {
        Ok(l) => l,
        Err(plan) => {
            return Some(JsonB(in_context_at(task, &spec, &id, as_of, |src, at| {
                in_context_explain::explain(src, task, &spec, &plan, at, assuming.as_ref(), top_k)
            })));
        }
    };
    let one = gather_entity((task, &spec, &l), &id, as_of, assuming.as_ref());
    let mut out =
        explain::explain_one(&l.servable, spec.task_type, &one, top_k).unwrap_or_else(|e| raise(e));
    out["task"] = json!(task);
    Some(JsonB(out))
}

/// The prediction with what is known about it: the calibrated probability (binary), the
/// class probabilities (multiclass) or a split-conformal interval at `coverage`
/// (regression), the model version, its metrics on the selection split and the context's
/// size.
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
    let coverage = args::coverage(coverage).unwrap_or_else(|e| raise(e));
    let assuming = assuming.map(|j| j.0);
    let (spec, m) = model_or_context(task, "rdl_predict_detail", Needs::NotRanking);
    let l = match m {
        Ok(l) => l,
        Err(plan) => {
            return Some(JsonB(in_context_at(task, &spec, &id, as_of, |src, at| {
                in_context::detail(src, task, &spec, &plan, at, assuming.as_ref())
            })));
        }
    };
    let one = gather_entity((task, &spec, &l), &id, as_of, assuming.as_ref());
    let selection = crate::models::selection_metrics(l.servable.id);
    let mut out = explain::detail(&l.servable, spec.task_type, &one, coverage, selection)
        .unwrap_or_else(|e| raise(e));
    out["task"] = json!(task);
    Some(JsonB(out))
}

/// Which data matters to the task: the share of every column (and, summed, of every
/// table) in the active model's predictions, averaged over (at most `max_examples` of) the
/// selection split. Useful to find signal and to spot leakage (a column that should not
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
    let max_examples = args::max_examples(max_examples).unwrap_or_else(|e| raise(e));
    let (spec, l) = crate::models::active(task, |t| {
        applies(t, task, "rdl_importance", Needs::NotRanking)
    });
    let mut src = SpiSource::new(task, &spec);
    let out = explain::importance(&mut src, &l.servable, &spec, max_examples)
        .unwrap_or_else(|e| raise(e));
    TableIterator::new(out)
}
