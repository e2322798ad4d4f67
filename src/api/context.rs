//! `rdl_context`: the rows the model sees for one entity at one time.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{AnyElement, JsonB};
use rdl_engine::pipeline::gather::{self, gather_all};
use rdl_engine::pipeline::one::gather_one;
use rdl_engine::pipeline::{show, tabular, Split};
use rdl_engine::pql::TaskSpec;
use rdl_engine::sampler::{Plan, SamplerConfig};
use serde_json::json;

use crate::catalog;
use crate::entity;
use crate::error::{raise, RdlError};
use crate::source::SpiSource;
use crate::tasks::{task_state, Access};

/// The anchor for a prediction: `as_of`, or the current time.
pub fn anchor_of(as_of: Option<TimestampWithTimeZone>) -> i64 {
    match as_of {
        Some(ts) => {
            // ±infinity and far-future times would overflow the time arithmetic
            // (windows, relative times); no data is stamped after the year 9999.
            const Y10000: i64 = 252_455_616_000_000_000; // 10000-01-01 in µs since 2000-01-01
            let raw = ts.into_inner();
            if raw >= Y10000 || raw == i64::MIN {
                RdlError::new("22008", format!("as_of {ts} is out of range"))
                    .hint("Pass a finite time before the year 10000, or NULL for now.")
                    .raise()
            }
            crate::pgtime::from_pg(ts)
        }
        // now() is the transaction's start time: read it directly, not through SPI, since
        // every rdl_predict call lands here.
        None => {
            crate::pgtime::from_pg_raw(unsafe { pg_sys::GetCurrentTransactionStartTimestamp() })
        }
    }
}

/// The context subgraph gathered for `entity_id` as of `as_of` (default: now): every row
/// with its table, key, time, hop, the foreign key it was reached through, its parents in
/// the context and its values. A row newer than `as_of` is never among them.
#[pg_extern]
fn rdl_context(
    task: Option<&str>,
    entity_id: Option<AnyElement>,
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> Option<JsonB> {
    let task = crate::error::not_null(task, "task");
    let st = task_state(task, &[], Access::Use);
    let t = st.spec.clone();
    let id = entity_id?;
    let key = entity::key_text(&id, &t.entity.key_type, task);
    let anchor = anchor_of(as_of);
    // What the active model reads (its depth, fan-out, tables); the defaults before training.
    let plan = match st.active_model {
        Some(_) => crate::models::active(task, |_| {}).1.servable.plan.clone(),
        None => default_plan(task, &t),
    };
    // A static target stays hidden, exactly as in training.
    let (mut src, hidden) = (SpiSource::new(task, &t), tabular::hidden(&t));
    let at = (key.as_str(), anchor);
    let one = gather_one(&mut src, &plan, &t.entity.table, at, hidden.as_ref(), None)
        .unwrap_or_else(|e| raise(e));
    Some(JsonB(show::context(
        task,
        &key,
        anchor,
        &one.context,
        &one.via,
    )))
}

/// The task, the default sampler plan and the first `max_seeds` seeds of a split.
fn split_gather_plan(
    task: &str,
    split: &str,
    max_seeds: Option<i32>,
) -> (std::rc::Rc<TaskSpec>, Plan, Vec<(String, i64)>) {
    let t = crate::tasks::load(task);
    let split: Split = split.parse().unwrap_or_else(|e| raise(e));
    let plan = default_plan(task, &t);
    let mut seeds: Vec<(String, i64)> = crate::tasks::split_rows(task, &t, split)
        .into_iter()
        .map(|r| (r.entity, r.anchor))
        .collect();
    if let Some(m) = max_seeds {
        seeds.truncate(m.max(0) as usize);
    }
    (t, plan, seeds)
}

/// The default sampler plan, once the caller may read every table it links.
pub(crate) fn default_plan(task: &str, t: &TaskSpec) -> Plan {
    let cfg = SamplerConfig::default();
    catalog::check_linked_readable(&t.entity.table, cfg.depth, task);
    Plan::new(&catalog::read_graph(None), cfg)
}

/// Gathers the contexts of a split of the task (at most `max_seeds`, default all) and
/// reports the sampler's size and speed: contexts, rows and cells gathered, seconds, and
/// rates. For capacity planning and `bench/sampler.sh`; reads as the calling user.
#[pg_extern]
fn rdl_sampler_stats(
    task: Option<&str>,
    split: default!(Option<&str>, "'train'"),
    max_seeds: default!(Option<i32>, "NULL"),
) -> JsonB {
    let task = crate::error::not_null(task, "task");
    let split = crate::error::not_null(split, "split");
    let (t, plan, seeds) = split_gather_plan(task, split, max_seeds);
    let mut src = SpiSource::new(task, &t);
    let hidden = tabular::hidden(&t);
    let table = &t.entity.table;
    let mut stats = crate::gather::take_stats;
    let mut out = gather::measure(&mut src, &plan, table, &seeds, hidden.as_ref(), &mut stats)
        .unwrap_or_else(|e| raise(e));
    out["task"] = json!(task);
    out["split"] = json!(split);
    JsonB(out)
}

/// The statements the sampler executes to gather the contexts of a split (at most
/// `max_seeds`), each with its parameters written in as literals: run them with
/// `COPY (...) TO` to compare PostgreSQL's own rate for the same rows (`bench/sampler.sh`).
#[pg_extern]
fn rdl_sampler_statements(
    task: Option<&str>,
    split: default!(Option<&str>, "'train'"),
    max_seeds: default!(Option<i32>, "NULL"),
) -> SetOfIterator<'static, String> {
    let task = crate::error::not_null(task, "task");
    let split = crate::error::not_null(split, "split");
    let (t, plan, seeds) = split_gather_plan(task, split, max_seeds);
    let mut src = SpiSource::new(task, &t);
    let (r, stmts) = crate::gather::traced(|| {
        gather_all(
            &mut src,
            &plan,
            &t.entity.table,
            &seeds,
            None,
            &mut |_, _, _| Ok(()),
        )
    });
    r.unwrap_or_else(|e| raise(e));
    SetOfIterator::new(stmts)
}
