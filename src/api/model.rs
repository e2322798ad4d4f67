//! Model versions: what is stored with the weights, the per-backend cache of loaded models,
//! metrics, and `rdl_activate`. Models are rows of `rdl.models` (weights as safetensors
//! `bytea`); at most one version per task is active.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::prelude::*;
use pgrx::JsonB;
use rdl_engine::encode::{EncodedContext, Encoder};
use rdl_engine::metrics;
use rdl_engine::sampler::{Plan, SamplerConfig};
use rdl_engine::train::{self, TrainError, TrainedModel};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::task::{load_task_to_modify, task_state, Access, Task, TaskState};
use crate::api::train::TrainOptions;
use crate::catalog;
use crate::error::{spi, RdlError};
use crate::sql::{execute, query_one, query_two};

/// What is stored in `rdl.models.config` besides the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredConfig {
    pub sampler: SamplerConfig,
    /// Every table the model was trained to read: a caller who may not read one of them
    /// gets 42501 rather than a silently poorer prediction.
    #[serde(default)]
    pub tables: Vec<String>,
    pub options: TrainOptions,
    pub train_examples: usize,
    pub val_examples: usize,
    /// A multiclass model's classes, in the order of its outputs.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Their frequencies among the training examples (the baseline a model must beat).
    #[serde(default)]
    pub class_prior: Vec<f64>,
    /// A ranking model's item table and candidate statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranking: Option<crate::api::recommend::RankingInfo>,
}

pub fn train_err(e: TrainError) -> RdlError {
    match e {
        TrainError::Cancelled => RdlError::new("57014", "training was cancelled"),
        TrainError::NoTrainingData => RdlError::new("55000", "the training split is empty")
            .hint("Check the task's anchors and filters with rdl_task_table(name, 'train')."),
        TrainError::BadLabel(s) => {
            RdlError::new("22023", format!("cannot train on these labels: {s}"))
        }
        other => RdlError::new("XX000", format!("rdl model error: {other}")),
    }
}

/// The model's calibrated outputs per context: one value, or one probability per class.
/// In pieces, so that cancel and statement_timeout are heard between them.
pub fn predict_rows(model: &TrainedModel, ctxs: &[EncodedContext]) -> Vec<Vec<f64>> {
    let n = model.task.n_out().max(1);
    let mut out = Vec::with_capacity(ctxs.len());
    for piece in ctxs.chunks(256) {
        pgrx::check_for_interrupts!();
        let p = model
            .predict(piece)
            .unwrap_or_else(|e| train_err(e).raise());
        out.extend(
            p.chunks(n)
                .map(|c| c.iter().map(|&v| v as f64).collect::<Vec<_>>()),
        );
    }
    out
}

/// Metrics of `model` on labelled encoded contexts (`n_rows` examples were asked for).
pub fn score(
    kind: train::Task,
    model: &TrainedModel,
    ctxs: &[EncodedContext],
    n_rows: usize,
    classes: &[String],
    prior: &[f64],
) -> serde_json::Value {
    let preds = predict_rows(model, ctxs);
    let ys: Vec<f64> = ctxs.iter().filter_map(|c| c.label.map(f64::from)).collect();
    metrics_json(kind, &preds, &ys, n_rows, classes, prior)
}

/// Held-out metrics: binary (AUROC, AP, accuracy, F1, log-loss, ECE), regression (MAE,
/// RMSE, R²) or multiclass (accuracy, macro F1, log-loss, top-3 accuracy, next to the
/// same figures for always predicting the training prior), with the number of examples.
pub fn metrics_json(
    kind: train::Task,
    preds: &[Vec<f64>],
    ys: &[f64],
    n_rows: usize,
    classes: &[String],
    prior: &[f64],
) -> serde_json::Value {
    let base = json!({
        "examples": ys.len(),
        "examples_without_context": n_rows.saturating_sub(ys.len()),
    });
    let mut m = match kind {
        train::Task::Binary => {
            let p: Vec<f64> = preds.iter().map(|r| r[0]).collect();
            let labels: Vec<bool> = ys.iter().map(|&y| y > 0.5).collect();
            let hard: Vec<bool> = p.iter().map(|&p| p >= 0.5).collect();
            json!({
                "positive_rate": ys.iter().sum::<f64>() / ys.len().max(1) as f64,
                "auroc": metrics::auroc(&p, &labels),
                "average_precision": metrics::average_precision(&p, &labels),
                "accuracy": metrics::accuracy(&hard, &labels),
                "f1": metrics::f1(&hard, &labels),
                "log_loss": metrics::log_loss(&p, &labels),
                "ece": metrics::ece10(&p, &labels),
            })
        }
        train::Task::Regression => {
            let p: Vec<f64> = preds.iter().map(|r| r[0]).collect();
            json!({
                "mae": metrics::mae(&p, ys),
                "rmse": metrics::rmse(&p, ys),
                "r2": metrics::r2(&p, ys),
            })
        }
        train::Task::Multiclass { classes: n } => {
            let truth: Vec<usize> = ys.iter().map(|&y| y as usize).collect();
            let hard: Vec<usize> = preds.iter().map(|r| argmax(r)).collect();
            let top3 = |r: &[f64], y: usize| r.iter().filter(|&&q| q > r[y]).count() < 3;
            let share = |hits: usize| hits as f64 / truth.len().max(1) as f64;
            let model_top3 = (0..truth.len())
                .filter(|&i| top3(&preds[i], truth[i]))
                .count();
            let mut m = json!({
                "classes": n,
                "accuracy": metrics::accuracy(&hard, &truth),
                "macro_f1": metrics::macro_f1(&hard, &truth, n),
                "top3_accuracy": share(model_top3),
                "log_loss": metrics::log_loss_multiclass(preds, &truth),
            });
            if prior.len() == n {
                let priors = vec![prior.to_vec(); truth.len()];
                let majority = argmax(prior);
                m["baseline"] = json!({
                    "majority_class": classes.get(majority),
                    "accuracy": share(truth.iter().filter(|&&y| y == majority).count()),
                    "top3_accuracy": share(truth.iter().filter(|&&y| top3(prior, y)).count()),
                    "log_loss": metrics::log_loss_multiclass(&priors, &truth),
                });
            }
            m
        }
    };
    if let (Some(m), Some(b)) = (m.as_object_mut(), base.as_object()) {
        for (k, v) in b {
            m.insert(k.clone(), v.clone());
        }
    }
    m
}

pub fn argmax(r: &[f64]) -> usize {
    r.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

/// A loaded model, kept per backend and reloaded when the active version changes.
pub struct Loaded {
    pub id: i64,
    /// The model row's version (see `TaskState::active_tag`).
    pub tag: Option<String>,
    /// The columns of its tables when it was loaded (see `TaskState::columns_tag`).
    pub columns_tag: Option<String>,
    pub version: i32,
    pub tables: Vec<String>,
    pub classes: Vec<String>,
    pub class_prior: Vec<f64>,
    pub model: TrainedModel,
    pub plan: Plan,
}

thread_local! {
    /// By (role, task): what a model holds does not depend on the role, but the plan it
    /// reads with was built from that role's view of the catalog, and a cache never serves
    /// one role what was built for another.
    static CACHE: RefCell<HashMap<(pg_sys::Oid, String), Rc<Loaded>>> = RefCell::new(HashMap::new());
}

/// The task and its active model, from the per-backend caches while they are current:
/// one statement per call in the steady state.
/// `check` runs on the task first (e.g. that it is the right kind for the function).
pub fn task_and_model(task: &str, check: impl FnOnce(&Task)) -> (Rc<Task>, Rc<Loaded>) {
    crate::guc::apply();
    let key = (crate::storage::caller(), task.to_string());
    let cached = CACHE.with(|c| c.borrow().get(&key).cloned());
    let tables = cached
        .as_ref()
        .map(|l| l.tables.clone())
        .unwrap_or_default();
    let st = task_state(task, &tables, Access::Use);
    check(&st.task);
    let id = active_id(task, &st);
    if let Some(l) = cached {
        if is_current(&st, l.id, &l.tag, &l.columns_tag) {
            // The role may have changed since the model was cached: checked on every call.
            deny(task, st.denied_table);
            return (st.task, l);
        }
    }
    (st.task, load_model(task, id, st.active_tag.clone()))
}

/// The task's active model id; 55000 with a hint to train when it has none.
pub fn active_id(task: &str, st: &TaskState) -> i64 {
    st.active_model.unwrap_or_else(|| {
        RdlError::new("55000", format!("task \"{task}\" has no trained model"))
            .hint(format!(
                "Train one with CALL rdl_train('{}');",
                task.replace('\'', "''")
            ))
            .raise()
    })
}

/// Whether a model cached as `(id, tag, columns_tag)` is still the active one, read over
/// the same columns.
pub fn is_current(
    st: &TaskState,
    id: i64,
    tag: &Option<String>,
    columns_tag: &Option<String>,
) -> bool {
    st.active_model == Some(id) && *tag == st.active_tag && *columns_tag == st.columns_tag
}

/// A model row read for use: the model decoded, config, version, the plan restricted to
/// the tables it was trained on, and the column fingerprint of those tables (see
/// `TaskState::columns_tag`). 42501 when the caller may not read one of them; 42703 or
/// 42804 when a column the model reads is gone or changed kind.
pub struct StoredModel<M> {
    pub model: M,
    pub stored: StoredConfig,
    pub version: i32,
    pub plan: Plan,
    pub columns_tag: Option<String>,
}

pub fn read_stored<M>(
    task: &str,
    id: i64,
    decode: impl FnOnce(&[u8]) -> Result<M, TrainError>,
    encoder: impl FnOnce(&M) -> &Encoder,
) -> StoredModel<M> {
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
                spi(r.get::<Vec<u8>>(1)),
                spi(r.get::<JsonB>(2)),
                spi(r.get::<i32>(3)),
            ))
        })
    });
    let Some((bytes, cfg, version)) = row else {
        RdlError::new("42704", format!("task \"{task}\" does not exist"))
            .detail("It was dropped while this call ran.")
            .hint("Create it again with rdl_create_task, or retry.")
            .raise()
    };
    let cfg = cfg.map(|j| j.0).unwrap_or(serde_json::Value::Null);
    let stored: StoredConfig = serde_json::from_value(cfg).unwrap_or_else(|e| {
        RdlError::new(
            "XX000",
            format!("model {id} of task \"{task}\" has an unreadable config: {e}"),
        )
        .hint(format!(
            "Retrain: CALL rdl_train('{}');",
            task.replace('\'', "''")
        ))
        .raise()
    });
    let sc = stored.sampler;
    if !(1..=6).contains(&sc.depth)
        || !(1..=1000).contains(&sc.fanout)
        || !(1..=10_000).contains(&sc.max_rows)
    {
        RdlError::new(
            "XX000",
            format!("model {id} of task \"{task}\" has an out-of-range sampler configuration"),
        )
        .hint(format!(
            "Retrain: CALL rdl_train('{}');",
            task.replace('\'', "''")
        ))
        .raise()
    }
    check_readable(task, &stored.tables);
    let mut plan = Plan::new(&catalog::read_graph(None), stored.sampler);
    // Read what the model was trained on, nothing more (a table added since is unknown to it).
    if !stored.tables.is_empty() {
        plan.tables.retain(|t, _| stored.tables.contains(t));
        plan.edges
            .retain(|e| plan.tables.contains_key(&e.child) && plan.tables.contains_key(&e.parent));
    }
    let columns_tag = crate::storage::as_owner(|| {
        query_two::<bool, String>(
            crate::api::task::COLUMNS_TAG_SQL,
            &[task.into(), stored.tables.clone().into()],
        )
        .1
    });
    let model = decode(&bytes.unwrap_or_default()).unwrap_or_else(|e| train_err(e).raise());
    check_columns(task, encoder(&model), &plan);
    StoredModel {
        model,
        stored,
        version: version.unwrap_or(0),
        plan,
        columns_tag,
    }
}

fn load_model(task: &str, id: i64, tag: Option<String>) -> Rc<Loaded> {
    let StoredModel {
        model,
        stored,
        version,
        plan,
        columns_tag,
    } = read_stored(task, id, TrainedModel::from_bytes, |m| &m.encoder);
    let loaded = Rc::new(Loaded {
        id,
        tag,
        columns_tag,
        version,
        tables: stored.tables,
        classes: stored.classes,
        class_prior: stored.class_prior,
        model,
        plan,
    });
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= 256 {
            c.clear(); // bounded: models are large
        }
        c.insert((crate::storage::caller(), task.to_string()), loaded.clone())
    });
    loaded
}

/// Errors when a column the model was trained on is gone or no longer of the kind it was
/// (42703 / 42804, HINT retrain) instead of reading something else silently.
pub fn check_columns(task: &str, encoder: &Encoder, plan: &Plan) {
    let retrain = || format!("Retrain: CALL rdl_train('{}');", task.replace('\'', "''"));
    for name in encoder.columns.keys() {
        let Some((tp, col)) = plan.tables.iter().find_map(|(t, tp)| {
            let c = name.strip_prefix(t.as_str())?.strip_prefix('.')?;
            Some((tp, c))
        }) else {
            continue;
        };
        let Some(v) = tp.values.iter().find(|v| v.name == col) else {
            RdlError::new(
                "42703",
                format!("column {col} of {} no longer exists", tp.table),
            )
            .detail(format!(
                "The model of task \"{task}\" was trained reading it."
            ))
            .hint(retrain())
            .raise()
        };
        let now_numeric = v.semantic == rdl_engine::schema::SemanticType::Numerical;
        let was_numeric = encoder.read_as_numeric(name);
        // Older stored models record no semantics: a column all NULL in training
        // looks non-numeric there, so only numeric → non-numeric is certain.
        let changed = if encoder.semantics.is_empty() {
            was_numeric && !now_numeric
        } else {
            was_numeric != now_numeric
        };
        if changed {
            RdlError::new(
                "42804",
                format!("column {col} of {} changed type", tp.table),
            )
            .detail(format!(
                "The model of task \"{task}\" was trained reading it as {}; it is {:?} now.",
                if was_numeric {
                    "a number"
                } else {
                    "a category, text or time"
                },
                v.semantic
            ))
            .hint(retrain())
            .raise()
        }
    }
}

/// Errors with 42501 when the caller may not read a table the model reads.
fn check_readable(task: &str, tables: &[String]) {
    if !tables.is_empty() {
        deny(task, task_state(task, tables, Access::Use).denied_table);
    }
}

/// Raises the error for a table a model reads that the caller cannot read: 42P01 when it
/// is gone (`missing:` prefix), 42501 otherwise.
pub(crate) fn deny(task: &str, denied: Option<String>) {
    if let Some(t) = denied.as_deref().and_then(|d| d.strip_prefix("missing:")) {
        RdlError::new("42P01", format!("table {t} no longer exists"))
            .detail(format!(
                "The model of task \"{task}\" was trained reading {t}."
            ))
            .hint(format!(
                "Retrain: CALL rdl_train('{}');",
                task.replace('\'', "''")
            ))
            .raise()
    }
    if let Some(t) = denied {
        RdlError::new("42501", format!("permission denied for table {t}"))
            .detail(format!(
                "The model of task \"{task}\" reads {t}; rdl reads data as the calling user."
            ))
            .hint("Ask the owner to GRANT SELECT on it, or retrain the task without it.")
            .raise()
    }
}

/// Makes `version` the active model of `task` (roll back to an earlier one). Owner only.
#[pg_extern]
fn rdl_activate(task: &str, version: i32) -> bool {
    load_task_to_modify(task);
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
    true
}
