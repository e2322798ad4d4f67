//! Model rows (`rdl.models`): the active version of a task, loaded into a
//! [`Servable`] and kept in one per-backend cache; storing a new version; activating an
//! older one. Rows are read and written as rdl's owner (`storage.rs`), after the caller's
//! rights are checked.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use pgrx::prelude::*;
use pgrx::JsonB;
use rdl_engine::base::capped::Capped;
use rdl_engine::pipeline::access;
use rdl_engine::pipeline::stored::StoredConfig;
use rdl_engine::pipeline::Servable;
use rdl_engine::pql::TaskSpec;
use serde_json::json;

use crate::error::{raise, spi, RdlError};
use crate::run::Run;
use crate::sql::{execute, query_one, query_two};
use crate::tasks::{task_state, Access, TaskState};

/// A model as this backend holds it.
pub struct Loaded {
    pub servable: Servable,
    /// The model row's version (see `TaskState::active_tag`).
    pub tag: Option<String>,
    /// The columns of its tables when it was loaded (see `TaskState::columns_tag`).
    pub columns_tag: Option<String>,
}

/// A statement's key, the task's name, its spec and its model.
type Checked = (Vec<i64>, String, Rc<TaskSpec>, Rc<Loaded>);

thread_local! {
    /// By (role, task): what a model holds does not depend on the role, but the plan it
    /// reads with was built from that role's view of the catalog, and a cache never
    /// serves one role what was built for another. Bounded: models are large.
    static CACHE: RefCell<Capped<(pg_sys::Oid, String), Rc<Loaded>>> = RefCell::new(Capped::new(256));
    /// The last task checked and loaded, with the statement it was checked in
    /// ([`crate::statement::key`]): the design card's `SELECT rdl_predict(...) FROM t` checks
    /// the task, its grants and its tables once, not once a row.
    static CHECKED: RefCell<Option<Checked>> = const { RefCell::new(None) };
}

/// The task and its active model, from the per-backend caches while they are current:
/// one statement per call in the steady state. `check` runs on the task first (e.g. that
/// it is the right kind for the function). 55000 when the task has no trained model.
pub fn active(task: &str, check: impl FnOnce(&TaskSpec)) -> (Rc<TaskSpec>, Rc<Loaded>) {
    match active_or_none(task, check) {
        (spec, Some(l)) => (spec, l),
        (_, None) => raise(rdl_engine::pipeline::Error::no_model(task)),
    }
}

/// [`active`], or the task alone when it has no trained model.
pub fn active_or_none(
    task: &str,
    check: impl FnOnce(&TaskSpec),
) -> (Rc<TaskSpec>, Option<Rc<Loaded>>) {
    crate::guc::apply();
    let statement = crate::statement::key();
    let memo = CHECKED.with(|c| match &*c.borrow() {
        Some((s, t, spec, l)) if *s == statement && t == task => Some((spec.clone(), l.clone())),
        _ => None,
    });
    if let Some((spec, l)) = memo {
        check(&spec);
        return (spec, Some(l));
    }
    let (spec, loaded) = checked(task, check);
    if let Some(l) = &loaded {
        let memo = (statement, task.to_string(), spec.clone(), l.clone());
        CHECKED.with(|c| *c.borrow_mut() = Some(memo));
    }
    (spec, loaded)
}

/// [`active_or_none`] checked against the catalog: the task's state read, and its model
/// from the cache while it is current.
fn checked(task: &str, check: impl FnOnce(&TaskSpec)) -> (Rc<TaskSpec>, Option<Rc<Loaded>>) {
    let key = (crate::storage::caller(), task.to_string());
    let cached = CACHE.with(|c| c.borrow().get(&key).cloned());
    let tables = cached
        .as_ref()
        .map(|l| l.servable.stored.tables.clone())
        .unwrap_or_default();
    let st = task_state(task, &tables, Access::Use);
    check(&st.spec);
    let Some(id) = st.active_model else {
        return (st.spec, None);
    };
    if let Some(l) = cached {
        if st.active_model == Some(l.servable.id)
            && l.tag == st.active_tag
            && l.columns_tag == st.columns_tag
        {
            // The role may have changed since the model was cached: checked on every call.
            deny(task, st.denied_table);
            return (st.spec, Some(l));
        }
    }
    let loaded = Rc::new(load(task, &st, id));
    CACHE.with(|c| c.borrow_mut().insert(key, loaded.clone()));
    (st.spec, Some(loaded))
}

/// Reads model row `id` and loads it: 42501 when the caller may not read a table it reads,
/// 42703 / 42804 when a column it reads is gone or changed kind.
fn load(task: &str, st: &TaskState, id: i64) -> Loaded {
    // Its id was just read, but each statement has its own snapshot (READ COMMITTED): a
    // concurrent rdl_drop_task may have removed the row since.
    let row = crate::storage::as_owner(|| {
        crate::sql::connect(|client| {
            let t = spi(client.select(
                "SELECT m.weights, m.config, m.version FROM rdl.models m
                 WHERE m.id OPERATOR(pg_catalog.=) $1",
                Some(1),
                &[id.into()],
            ));
            if t.is_empty() {
                return None;
            }
            let r = t.first();
            Some((
                spi(r.get::<Vec<u8>>(1)).unwrap_or_default(),
                spi(r.get::<JsonB>(2)).map_or(serde_json::Value::Null, |j| j.0),
                spi(r.get::<i32>(3)).unwrap_or(0),
            ))
        })
    });
    let Some((weights, config, version)) = row else {
        RdlError::new("42704", format!("task \"{task}\" does not exist"))
            .detail("It was dropped while this call ran.")
            .hint("Create it again with rdl_create_task, or retry.")
            .raise()
    };
    let tables: Vec<String> = config
        .get("tables")
        .and_then(|t| serde_json::from_value(t.clone()).ok())
        .unwrap_or_default();
    if !tables.is_empty() {
        deny(task, task_state(task, &tables, Access::Use).denied_table);
    }
    let columns_tag = crate::storage::as_owner(|| {
        query_two::<bool, String>(
            crate::tasks::COLUMNS_TAG_SQL,
            &[task.into(), tables.clone().into()],
        )
        .1
    });
    let graph = crate::catalog::read_graph(None);
    let servable = Servable::load(task, &st.spec, (id, version), &weights, config, &graph)
        .unwrap_or_else(|e| raise(e));
    Loaded {
        servable,
        tag: st.active_tag.clone(),
        columns_tag,
    }
}

/// Raises the error for a table a model reads that the caller cannot read
/// ([`rdl_engine::pipeline::access::denied_table`]).
fn deny(task: &str, denied: Option<String>) {
    access::denied_table(task, denied.as_deref()).unwrap_or_else(|e| raise(e))
}

/// The metrics stored with model `id` on its selection split (the split early stopping
/// and calibration used). Models stored before 0.3.0 keep them under `val`.
pub fn selection_metrics(id: i64) -> serde_json::Value {
    crate::storage::as_owner(|| {
        query_one::<JsonB>(
            "SELECT COALESCE(m.metrics OPERATOR(pg_catalog.->) 'selection',
                             m.metrics OPERATOR(pg_catalog.->) 'val')
             FROM rdl.models m WHERE m.id OPERATOR(pg_catalog.=) $1",
            &[id.into()],
        )
    })
    .map(|j| j.0)
    .unwrap_or(serde_json::Value::Null)
}

/// Stores a finished model as the task's new active version (the previous one inactive),
/// as rdl's owner, and closes the run.
pub fn store(
    task: &str,
    stored: &StoredConfig,
    weights: Vec<u8>,
    metrics: serde_json::Value,
    run: &Run,
    t0: Instant,
) {
    run.lock_for_finish();
    let version = crate::storage::as_owner(|| {
        // Two statements: a data-modifying CTE would not let the INSERT see the UPDATE, and
        // the one-active-version index would reject the new row.
        execute(
            "UPDATE rdl.models SET active = false WHERE task OPERATOR(pg_catalog.=) $1 AND active",
            &[task.into()],
        );
        crate::sql::write_one::<i32>(
            "INSERT INTO rdl.models (task, version, config, weights, metrics, train_seconds, data_snapshot, active)
             SELECT $1, COALESCE((SELECT pg_catalog.max(m.version) FROM rdl.models m
                                  WHERE m.task OPERATOR(pg_catalog.=) $1), 0) OPERATOR(pg_catalog.+) 1,
                    $2, $3, $4, $5, pg_catalog.now(), true
             RETURNING version",
            &[
                task.into(),
                JsonB(serde_json::to_value(stored).unwrap_or_default()).into(),
                weights.into(),
                JsonB(json!({ "selection": metrics })).into(),
                t0.elapsed().as_secs_f64().into(),
            ],
        )
        .unwrap_or(0)
    });
    run.finish(version, json!({ "selection": metrics }));
    pgrx::notice!(
        "rdl_train {task}: version {version} active, selection split {metrics}, {:.0}s in all",
        t0.elapsed().as_secs_f64()
    );
}

/// Makes `version` the active model of `task`; 42704 when there is no such version.
pub fn activate(task: &str, version: i32) {
    let found = crate::storage::as_owner(|| {
        query_one::<i64>(
            "SELECT m.id FROM rdl.models m
             WHERE m.task OPERATOR(pg_catalog.=) $1 AND m.version OPERATOR(pg_catalog.=) $2",
            &[task.into(), version.into()],
        )
    });
    if found.is_none() {
        RdlError::new(
            "42704",
            format!("task \"{task}\" has no model version {version}"),
        )
        .hint("List versions with SELECT task, version, metrics FROM rdl.models.")
        .raise()
    }
    crate::storage::as_owner(|| {
        // Two statements: the one-active-version index is checked row by row.
        execute(
            "UPDATE rdl.models SET active = false
             WHERE task OPERATOR(pg_catalog.=) $1 AND active AND version OPERATOR(pg_catalog.<>) $2",
            &[task.into(), version.into()],
        );
        execute(
            "UPDATE rdl.models SET active = true
             WHERE task OPERATOR(pg_catalog.=) $1 AND version OPERATOR(pg_catalog.=) $2",
            &[task.into(), version.into()],
        )
    });
}
