//! Training, prediction and evaluation: `rdl_train`, `rdl_predict`, `rdl_evaluate`,
//! `rdl_activate`. Models are rows of `rdl.models` (weights as safetensors `bytea`); a new
//! version becomes active only when training finished, in the same transaction.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{AnyArray, AnyElement, JsonB};
use rdl_engine::encode::{EncodedContext, Encoder, Subgraph};
use rdl_engine::metrics;
use rdl_engine::model::ModelConfig;
use rdl_engine::pql::{Target, TaskType};
use rdl_engine::sampler::{Plan, SamplerConfig};
use rdl_engine::train::{self, Progress, TrainConfig, TrainError, TrainedModel};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::context::anchor_of;
use crate::api::task::{load_task, run_labels, split_anchors, Task};
use crate::catalog;
use crate::entity;
use crate::error::{query_one, spi, RdlError};
use crate::pgtime;
use crate::run::{self, Run};

/// Seeds gathered per batch of SPI statements: bounds memory and statement size.
const GATHER_BATCH: usize = 256;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainOptions {
    /// `small` (CPU default) or `large` (GPU).
    pub size: String,
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub patience: usize,
    pub seed: u64,
    /// Wall-clock budget of the whole call (gathering included), seconds.
    pub time_budget_s: f64,
    /// Training examples used at most (a seeded sample of the train split).
    pub max_train: usize,
    pub depth: u8,
    pub fanout: u32,
    pub max_rows: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        let s = SamplerConfig::default();
        TrainOptions {
            size: "small".into(),
            epochs: 20,
            lr: 3e-3,
            batch_size: 64,
            patience: 4,
            seed: 0,
            time_budget_s: 600.0,
            max_train: 20_000,
            depth: s.depth,
            fanout: s.fanout,
            max_rows: s.max_rows,
        }
    }
}

/// What is stored in `rdl.models.config` besides the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredConfig {
    sampler: SamplerConfig,
    /// Every table the model was trained to read: a caller who may not read one of them
    /// gets 42501 rather than a silently poorer prediction.
    #[serde(default)]
    tables: Vec<String>,
    options: TrainOptions,
    train_examples: usize,
    val_examples: usize,
}

fn train_err(e: TrainError) -> RdlError {
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

fn engine_task(t: &Task, name: &str) -> train::Task {
    match t.spec.task_type {
        TaskType::BinaryClassification => train::Task::Binary,
        TaskType::Regression => train::Task::Regression,
        other => RdlError::new(
            "0A000",
            format!("training {other:?} tasks is not built yet (task \"{name}\")"),
        )
        .hint("Binary classification and regression tasks can be trained today.")
        .raise(),
    }
}

/// The column of the seed row that must stay hidden from the model (a static target).
pub fn hidden_column(t: &Task) -> Option<String> {
    match &t.spec.target {
        Target::Static(c) => Some(c.column.clone()),
        _ => None,
    }
}

/// `(entity key, anchor µs, label)` of a split.
fn labeled_seeds(name: &str, t: &Task, split: &str) -> Vec<(String, i64, f32)> {
    let anchors = split_anchors(name, split);
    run_labels(t, t.spec.label_sql(), anchors.into())
        .into_iter()
        .filter_map(|(e, a, l, _)| l.map(|l| (e, pgtime::from_pg(a), l as f32)))
        .collect()
}

/// `(entity key, anchor µs)` of every example of a split, labelled or not.
pub fn split_seeds(name: &str, t: &Task, split: &str) -> Vec<(String, i64)> {
    let anchors = split_anchors(name, split);
    run_labels(t, t.spec.label_sql(), anchors.into())
        .into_iter()
        .map(|(e, a, _, _)| (e, pgtime::from_pg(a)))
        .collect()
}

/// Gathers contexts batch by batch and hands each batch's subgraphs to `each`.
pub fn gather_all(
    plan: &Plan,
    t: &Task,
    seeds: &[(String, i64)],
    mut each: impl FnMut(usize, Vec<Subgraph>, Vec<bool>),
) {
    let hide = hidden_column(t);
    for (b, chunk) in seeds.chunks(GATHER_BATCH).enumerate() {
        pgrx::check_for_interrupts!();
        let g = crate::sampler::gather(plan, &t.spec.entity.table, chunk, hide.as_deref());
        each(b * GATHER_BATCH, g.contexts, g.found);
    }
}

fn sample(mut v: Vec<(String, i64, f32)>, max: usize, seed: u64) -> Vec<(String, i64, f32)> {
    if v.len() <= max {
        return v;
    }
    // Seeded Fisher-Yates (splitmix64), so a run is repeatable.
    let mut s = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..v.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v.truncate(max);
    v
}

/// Trains a new model version of `task`: builds the train and validation tables, gathers
/// and encodes their contexts, trains with early stopping on validation, calibrates, and
/// stores the model as the task's active version. On error or cancel the transaction
/// rolls back and the previously active model stays active.
#[pg_extern(
    sql = "CREATE PROCEDURE rdl_train(task text, options jsonb DEFAULT '{}') LANGUAGE c AS 'MODULE_PATHNAME', 'rdl_train_wrapper';"
)]
fn rdl_train(task: &str, options: Option<JsonB>, fcinfo: pg_sys::FunctionCallInfo) {
    let t0 = Instant::now();
    let t = load_task(task);
    let kind = engine_task(&t, task);
    let opts: TrainOptions = match options.map(|j| j.0) {
        None | Some(serde_json::Value::Null) => TrainOptions::default(),
        Some(v) => serde_json::from_value(v).unwrap_or_else(|e| {
            RdlError::new("22023", "invalid training options")
                .detail(e.to_string())
                .hint("Options: size, epochs, lr, batch_size, patience, seed, time_budget_s, max_train, depth, fanout, max_rows.")
                .raise()
        }),
    };
    let model_cfg = match opts.size.as_str() {
        "small" => ModelConfig::small(),
        "large" => ModelConfig::large(),
        other => RdlError::new("22023", format!("unknown model size \"{other}\""))
            .hint("Use \"small\" or \"large\".")
            .raise(),
    };
    catalog::check_linked_readable(&t.spec.entity.table, opts.depth, task);
    // One training per task at a time (a second one errors, or waits inside a transaction
    // block); progress is committed as it goes when the call allows it.
    let run = Run::start(
        task,
        serde_json::to_value(&opts).unwrap_or_default(),
        run::call_is_nonatomic(fcinfo),
    );
    run.progress("labels", 0, None);
    let train_rows = sample(labeled_seeds(task, &t, "train"), opts.max_train, opts.seed);
    let val_rows = labeled_seeds(task, &t, "val");
    if train_rows.is_empty() {
        run.fail(
            RdlError::new("55000", format!("task \"{task}\" has no training examples"))
                .hint("Check the task's anchors and filters with rdl_task_table(name, 'train')."),
        )
    }
    if kind == train::Task::Binary {
        let pos = train_rows.iter().filter(|r| r.2 > 0.5).count();
        if pos == 0 || pos == train_rows.len() {
            run.fail(
                RdlError::new(
                    "55000",
                    format!("the training labels of task \"{task}\" have a single class"),
                )
                .detail(format!("{} examples, {pos} positive", train_rows.len()))
                .hint("A classifier needs both classes: widen the window or change the condition."),
            )
        }
    }
    run.progress("gathering", 0, None);
    notice(format!(
        "rdl_train {task}: {} training and {} validation examples",
        train_rows.len(),
        val_rows.len()
    ));

    let sampler = SamplerConfig {
        depth: opts.depth,
        fanout: opts.fanout,
        max_rows: opts.max_rows,
    };
    let graph = catalog::read_graph(None);
    let plan = Plan::new(&graph, sampler);
    let seeds = |rows: &[(String, i64, f32)]| -> Vec<(String, i64)> {
        rows.iter().map(|r| (r.0.clone(), r.1)).collect()
    };

    // Fit the encoder (vocabulary, numeric statistics) on training contexts only.
    let fit_n = train_rows.len().min(2000);
    let mut fit_sub = Vec::with_capacity(fit_n);
    gather_all(&plan, &t, &seeds(&train_rows[..fit_n]), |_, ctxs, _| {
        fit_sub.extend(ctxs)
    });
    let encoder = Encoder::fit(model_cfg.encoder_config(4096), &fit_sub);
    drop(fit_sub);

    let encode = |rows: &[(String, i64, f32)]| -> Vec<EncodedContext> {
        let mut out = Vec::with_capacity(rows.len());
        gather_all(&plan, &t, &seeds(rows), |start, ctxs, found| {
            run.poll();
            for (i, (c, f)) in ctxs.iter().zip(found).enumerate() {
                if f {
                    out.push(encoder.encode_labeled(c, rows[start + i].2));
                }
            }
        });
        out
    };
    let train_ctx = encode(&train_rows);
    let val_ctx = encode(&val_rows);
    let gather_s = t0.elapsed().as_secs_f64();
    notice(format!(
        "rdl_train {task}: contexts gathered and encoded in {gather_s:.1}s ({:.0} contexts/s)",
        (train_ctx.len() + val_ctx.len()) as f64 / gather_s.max(1e-9)
    ));

    let mut cfg = TrainConfig::new(kind);
    cfg.max_epochs = opts.epochs;
    cfg.lr = opts.lr;
    cfg.batch_contexts = opts.batch_size;
    cfg.patience = opts.patience;
    cfg.seed = opts.seed;
    // The budget covers the whole call: what gathering used is taken off the optimisation.
    let budget_left = (opts.time_budget_s - t0.elapsed().as_secs_f64()).max(10.0);
    cfg.time_budget_s = Some(budget_left);
    run.progress("training", 0, None);
    let metric_name = if kind == train::Task::Binary {
        "auroc"
    } else {
        "mae"
    };
    let mut on_step = |p: &Progress| -> bool {
        // Cancel and statement_timeout land here, between steps, on this thread.
        run.poll();
        if p.epoch_end {
            let per_epoch = p.elapsed_s / (p.epoch + 1) as f64;
            let eta = (per_epoch * opts.epochs.saturating_sub(p.epoch + 1) as f64)
                .min(budget_left - p.elapsed_s)
                .max(0.0);
            let val = p
                .val_metric
                .map(|m| format!("{m:.4}"))
                .unwrap_or_else(|| "-".into());
            notice(format!(
                "rdl_train {task}: epoch {}/{} loss {:.4} validation {} {val} elapsed {:.0}s ETA {:.0}s",
                p.epoch + 1,
                opts.epochs,
                p.loss,
                metric_name.to_uppercase(),
                t0.elapsed().as_secs_f64(),
                eta,
            ));
            run.progress(
                "training",
                p.epoch + 1,
                Some(json!([{
                    "epoch": p.epoch + 1,
                    "loss": p.loss,
                    (format!("val_{metric_name}")): p.val_metric,
                    "elapsed_s": t0.elapsed().as_secs_f64(),
                    "eta_s": eta,
                }])),
            );
        }
        true
    };
    let model = train::train(
        &cfg,
        &model_cfg,
        &encoder,
        &train_ctx,
        &val_ctx,
        &mut on_step,
    )
    .unwrap_or_else(|e| train_err(e).raise());
    let val_metrics = score(kind, &model, &val_ctx, &val_rows);
    let bytes = model.to_bytes().unwrap_or_else(|e| train_err(e).raise());
    let stored = StoredConfig {
        sampler,
        tables: plan.tables.keys().cloned().collect(),
        options: opts,
        train_examples: train_ctx.len(),
        val_examples: val_ctx.len(),
    };
    run.lock_for_finish();
    // Two statements: a data-modifying CTE would not let the INSERT see the UPDATE, and
    // the one-active-version index would reject the new row.
    spi(Spi::run_with_args(
        "UPDATE rdl.models SET active = false WHERE task = $1 AND active",
        &[task.into()],
    ));
    let version = query_one::<i32>(
        "INSERT INTO rdl.models (task, version, config, weights, metrics, train_seconds, data_snapshot, active)
         SELECT $1, coalesce((SELECT max(version) FROM rdl.models WHERE task = $1), 0) + 1,
                $2, $3, $4, $5, now(), true
         RETURNING version",
        &[
            task.into(),
            JsonB(serde_json::to_value(&stored).unwrap_or_default()).into(),
            bytes.into(),
            JsonB(json!({ "val": val_metrics })).into(),
            t0.elapsed().as_secs_f64().into(),
        ],
    )
    .unwrap_or(0);
    run.finish(version, json!({ "val": val_metrics }));
    notice(format!(
        "rdl_train {task}: version {version} active, validation {val_metrics}, {:.0}s in all",
        t0.elapsed().as_secs_f64()
    ));
}

fn notice(msg: String) {
    pgrx::notice!("{}", msg);
}

/// Metrics of `model` on encoded contexts with labels `rows` (aligned by the seeds found).
fn score(
    kind: train::Task,
    model: &TrainedModel,
    ctxs: &[EncodedContext],
    rows: &[(String, i64, f32)],
) -> serde_json::Value {
    let preds: Vec<f64> = model
        .predict(ctxs)
        .unwrap_or_else(|e| train_err(e).raise())
        .into_iter()
        .map(f64::from)
        .collect();
    let ys: Vec<f64> = ctxs.iter().filter_map(|c| c.label.map(f64::from)).collect();
    metrics_json(kind, &preds, &ys, rows.len())
}

fn metrics_json(kind: train::Task, preds: &[f64], ys: &[f64], n_rows: usize) -> serde_json::Value {
    match kind {
        train::Task::Binary => {
            let labels: Vec<bool> = ys.iter().map(|&y| y > 0.5).collect();
            let hard: Vec<bool> = preds.iter().map(|&p| p >= 0.5).collect();
            json!({
                "examples": ys.len(),
                "examples_without_context": n_rows.saturating_sub(ys.len()),
                "positive_rate": ys.iter().sum::<f64>() / ys.len().max(1) as f64,
                "auroc": metrics::auroc(preds, &labels),
                "average_precision": metrics::average_precision(preds, &labels),
                "accuracy": metrics::accuracy(&hard, &labels),
                "f1": metrics::f1(&hard, &labels),
                "log_loss": metrics::log_loss(preds, &labels),
                "ece": metrics::ece10(preds, &labels),
            })
        }
        _ => json!({
            "examples": ys.len(),
            "examples_without_context": n_rows.saturating_sub(ys.len()),
            "mae": metrics::mae(preds, ys),
            "rmse": metrics::rmse(preds, ys),
            "r2": metrics::r2(preds, ys),
        }),
    }
}

/// A loaded model, kept per backend and reloaded when the active version changes.
struct Loaded {
    id: i64,
    tables: Vec<String>,
    model: TrainedModel,
    plan: Plan,
}

thread_local! {
    static CACHE: RefCell<HashMap<String, Rc<Loaded>>> = RefCell::new(HashMap::new());
}

fn active_model(task: &str) -> Rc<Loaded> {
    let id = query_one::<i64>(
        "SELECT id FROM rdl.models WHERE task = $1 AND active",
        &[task.into()],
    );
    let Some(id) = id else {
        RdlError::new("55000", format!("task \"{task}\" has no trained model"))
            .hint(format!(
                "Train one with CALL rdl_train('{}');",
                task.replace('\'', "''")
            ))
            .raise()
    };
    if let Some(l) = CACHE.with(|c| c.borrow().get(task).cloned()) {
        if l.id == id {
            check_readable(task, &l.tables);
            return l;
        }
    }
    // The row exists: its id was just read in this snapshot.
    let (bytes, cfg) = spi(Spi::get_two_with_args::<Vec<u8>, JsonB>(
        "SELECT weights, config FROM rdl.models WHERE id = $1",
        &[id.into()],
    ));
    let bytes = bytes.unwrap_or_default();
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
    check_readable(task, &stored.tables);
    let model = TrainedModel::from_bytes(&bytes).unwrap_or_else(|e| train_err(e).raise());
    let mut plan = Plan::new(&catalog::read_graph(None), stored.sampler);
    // Read what the model was trained on, nothing more (a table added since is unknown to it).
    if !stored.tables.is_empty() {
        plan.tables.retain(|t, _| stored.tables.contains(t));
        plan.edges
            .retain(|e| plan.tables.contains_key(&e.child) && plan.tables.contains_key(&e.parent));
    }
    let loaded = Rc::new(Loaded {
        id,
        tables: stored.tables,
        model,
        plan,
    });
    CACHE.with(|c| c.borrow_mut().insert(task.to_string(), loaded.clone()));
    loaded
}

/// Errors with 42501 when the caller may not read a table the model reads (checked on
/// every call: the role may have changed since the model was cached).
fn check_readable(task: &str, tables: &[String]) {
    if tables.is_empty() {
        return;
    }
    let denied = query_one::<String>(
        "SELECT CASE WHEN to_regclass(t) IS NULL THEN 'missing:' ELSE '' END || t
         FROM unnest($1::text[]) AS t
         WHERE to_regclass(t) IS NULL OR NOT has_table_privilege(to_regclass(t), 'SELECT')
         LIMIT 1",
        &[tables.to_vec().into()],
    );
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

/// Predictions for seeds; `None` where the entity does not exist at its anchor.
fn predict_seeds(t: &Task, l: &Loaded, seeds: &[(String, i64)]) -> Vec<Option<f64>> {
    let mut out = vec![None; seeds.len()];
    gather_all(&l.plan, t, seeds, |start, ctxs, found| {
        let idx: Vec<usize> = (0..ctxs.len()).filter(|&i| found[i]).collect();
        let enc: Vec<EncodedContext> = idx
            .iter()
            .map(|&i| l.model.encoder.encode(&ctxs[i]))
            .collect();
        let p = l
            .model
            .predict(&enc)
            .unwrap_or_else(|e| train_err(e).raise());
        for (k, &i) in idx.iter().enumerate() {
            out[start + i] = p.get(k).map(|&v| v as f64);
        }
    });
    out
}

/// The active model's prediction for one entity as of `as_of` (default: now): the
/// probability of the positive class (binary) or the value (regression).
#[pg_extern]
fn rdl_predict(
    task: &str,
    entity_id: Option<AnyElement>,
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> Option<f64> {
    let t = load_task(task);
    let id = entity_id?;
    let key = entity::key_text(&id, &t.spec.entity.key_type, task);
    let l = active_model(task);
    let anchor = anchor_of(as_of);
    let p = predict_seeds(&t, &l, &[(key.clone(), anchor)]);
    match p[0] {
        Some(v) => Some(v),
        None => RdlError::new(
            "42704",
            format!("entity {key} does not exist in {}", t.spec.entity.table),
        )
        .hint("Check the id, or pass an as_of time at which the entity existed.")
        .raise(),
    }
}

/// Predictions for many entities at once: contexts are gathered and scored in batches, so
/// this is far faster than one `rdl_predict` per row. An id that does not exist at
/// `as_of` gets a NULL prediction.
#[pg_extern]
fn rdl_predict_batch(
    task: &str,
    entity_ids: AnyArray,
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> TableIterator<'static, (name!(entity_id, String), name!(prediction, Option<f64>))> {
    let t = load_task(task);
    let keys = entity::keys_text(&entity_ids, &t.spec.entity.key_type, task);
    let l = active_model(task);
    let anchor = anchor_of(as_of);
    let seeds: Vec<(String, i64)> = keys.iter().map(|k| (k.clone(), anchor)).collect();
    let preds = predict_seeds(&t, &l, &seeds);
    TableIterator::new(keys.into_iter().zip(preds))
}

/// Metrics of the active model on a split of the task (default: test).
#[pg_extern]
fn rdl_evaluate(task: &str, split: default!(&str, "'test'")) -> JsonB {
    let t = load_task(task);
    let kind = engine_task(&t, task);
    let l = active_model(task);
    let rows = labeled_seeds(task, &t, split);
    let seeds: Vec<(String, i64)> = rows.iter().map(|r| (r.0.clone(), r.1)).collect();
    let preds = predict_seeds(&t, &l, &seeds);
    let (p, y): (Vec<f64>, Vec<f64>) = preds
        .iter()
        .zip(&rows)
        .filter_map(|(p, r)| p.map(|p| (p, r.2 as f64)))
        .unzip();
    let mut m = metrics_json(kind, &p, &y, rows.len());
    if let Some(o) = m.as_object_mut() {
        o.insert("task".into(), task.into());
        o.insert("split".into(), split.into());
        o.insert("model_id".into(), l.id.into());
    }
    JsonB(m)
}

/// Makes `version` the active model of `task` (roll back to an earlier one).
#[pg_extern]
fn rdl_activate(task: &str, version: i32) -> bool {
    load_task(task);
    let found = query_one::<i64>(
        "SELECT id FROM rdl.models WHERE task = $1 AND version = $2",
        &[task.into(), version.into()],
    );
    if found.is_none() {
        RdlError::new(
            "42704",
            format!("task \"{task}\" has no model version {version}"),
        )
        .hint("List versions with SELECT task, version, metrics FROM rdl.models.")
        .raise()
    }
    spi(Spi::run_with_args(
        "UPDATE rdl.models SET active = (version = $2) WHERE task = $1",
        &[task.into(), version.into()],
    ));
    true
}
