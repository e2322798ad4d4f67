//! `CALL rdl_train(task, options)`: the recipe of the task's kind (`pipeline::tabular` or
//! `pipeline::ranking`) over the caller's data, its progress in `rdl.runs`, and the model
//! stored as the task's new active version. On error or cancel the previously active model
//! stays active (see `run.rs` for what is committed while training runs).

use std::time::Instant;

use pgrx::prelude::*;
use pgrx::JsonB;
use rdl_engine::pipeline::options::TrainOptions;
use rdl_engine::pipeline::tabular::TrainJob;
use rdl_engine::pipeline::{ranking, tabular};
use rdl_engine::pql::TaskType;

use crate::catalog;
use crate::error::raise;
use crate::run::{self, Run};
use crate::source::SpiSource;

/// Trains a new model version of `task`. See the module comment.
#[pg_extern(
    sql = "CREATE PROCEDURE rdl_train(task text, options jsonb DEFAULT '{}') LANGUAGE c AS 'MODULE_PATHNAME', 'rdl_train_wrapper';"
)]
fn rdl_train(task: Option<&str>, options: Option<JsonB>, fcinfo: pg_sys::FunctionCallInfo) {
    let task = crate::error::not_null(task, "task");
    let t0 = Instant::now();
    crate::guc::apply();
    let spec = crate::tasks::load_to_modify(task);
    let opts = TrainOptions::from_json(options.map(|j| j.0)).unwrap_or_else(|e| raise(e));
    catalog::check_linked_readable(&spec.entity.table, opts.depth, task);
    if let Ok((item_table, _, _)) = ranking::target_of(&spec) {
        catalog::check_linked_readable(&item_table, opts.depth, task);
    }
    // One training per task at a time (a second one errors, or waits inside a transaction
    // block); progress is committed as it goes when the call allows it.
    let run = Run::start(
        task,
        serde_json::to_value(&opts).unwrap_or_default(),
        run::call_is_nonatomic(fcinfo),
    );
    run.progress("labels", 0, None);
    let graph = catalog::read_graph(None);
    let job = TrainJob {
        task,
        spec: &spec,
        graph: &graph,
        opts,
        started: t0,
    };
    let mut src = SpiSource::new(task, &spec).with_run(&run);
    let trained = match spec.task_type {
        TaskType::Ranking => ranking::train(&mut src, &job),
        _ => tabular::train(&mut src, &crate::worker::Worker, &job),
    }
    .unwrap_or_else(|e| {
        // A cancel is recorded as such where it was heard (between steps).
        if e.sqlstate == "57014" {
            raise(e)
        }
        run.fail(e.into())
    });
    crate::models::store(
        task,
        &trained.stored,
        trained.weights,
        trained.metrics,
        &run,
        t0,
    );
}
