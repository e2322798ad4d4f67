//! `CALL rdl_train(task, options)`: builds the train and validation tables, gathers and
//! encodes their contexts, trains with early stopping on validation, calibrates, and stores
//! the model as the task's new active version. On error or cancel the previously active
//! model stays active (see `run.rs` for what is committed while training runs).

use std::time::Instant;

use pgrx::prelude::*;
use pgrx::JsonB;
use rdl_engine::encode::{EncodedContext, Encoder};
use rdl_engine::memory;
use rdl_engine::model::ModelConfig;
use rdl_engine::pql::TaskType;
use rdl_engine::sampler::{Plan, SamplerConfig};
use rdl_engine::train::{self, Progress, TrainConfig};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::examples::{
    class_labels, engine_task, fit_classes, gather_all, labeled, sample, seeds_of, Example,
};
use crate::api::model::{score, train_err, StoredConfig};
use crate::api::task::load_task_to_modify;
use crate::catalog;
use crate::error::RdlError;
use crate::run::{self, Run};
use crate::sql::{execute, query_one};

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
    /// Validation examples used at most (a seeded sample of the validation split).
    pub max_val: usize,
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
            max_val: 100_000,
            depth: s.depth,
            fanout: s.fanout,
            max_rows: s.max_rows,
        }
    }
}

fn parse_options(options: Option<JsonB>) -> TrainOptions {
    let opts: TrainOptions = match options.map(|j| j.0) {
        None | Some(serde_json::Value::Null) => TrainOptions::default(),
        // serde would read a struct from an array too: `[]` must not mean "defaults".
        Some(v) if !v.is_object() => RdlError::new("22023", "training options must be a JSON object")
            .detail(format!("got {v}"))
            .hint("E.g. CALL rdl_train('task', '{\"epochs\": 5, \"time_budget_s\": 300}').")
            .raise(),
        Some(v) => serde_json::from_value(v).unwrap_or_else(|e| {
            RdlError::new("22023", "invalid training options")
                .detail(e.to_string())
                .hint("Options: size, epochs, lr, batch_size, patience, seed, time_budget_s, max_train, max_val, depth, fanout, max_rows.")
                .raise()
        }),
    };
    let bad = |what: &str| -> ! {
        RdlError::new("22023", format!("invalid training option: {what}"))
            .hint("epochs, batch_size, max_train and max_val must be at least 1, lr and time_budget_s positive, depth 1 to 6, fanout 1 to 1000, max_rows 1 to 10000.")
            .raise()
    };
    if opts.epochs == 0 || opts.batch_size == 0 || opts.max_train == 0 || opts.max_val == 0 {
        bad("a count is 0")
    }
    if !(opts.lr.is_finite() && opts.lr > 0.0)
        || opts.time_budget_s.is_nan()
        || opts.time_budget_s <= 0.0
    {
        bad("lr and time_budget_s must be positive")
    }
    if !(1..=6).contains(&opts.depth)
        || !(1..=1000).contains(&opts.fanout)
        || !(1..=10_000).contains(&opts.max_rows)
    {
        bad("depth, fanout or max_rows out of range")
    }
    opts
}

fn model_config(size: &str) -> ModelConfig {
    match size {
        "small" => ModelConfig::small(),
        "large" => ModelConfig::large(),
        other => RdlError::new("22023", format!("unknown model size \"{other}\""))
            .hint("Use \"small\" or \"large\".")
            .raise(),
    }
}

/// Trains a new model version of `task`. See the module comment.
#[pg_extern(
    sql = "CREATE PROCEDURE rdl_train(task text, options jsonb DEFAULT '{}') LANGUAGE c AS 'MODULE_PATHNAME', 'rdl_train_wrapper';"
)]
fn rdl_train(task: Option<&str>, options: Option<JsonB>, fcinfo: pg_sys::FunctionCallInfo) {
    let task = crate::error::not_null(task, "task");
    let t0 = Instant::now();
    crate::guc::apply();
    let t = load_task_to_modify(task);
    let opts = parse_options(options);
    let model_cfg = model_config(&opts.size);
    catalog::check_linked_readable(&t.spec.entity.table, opts.depth, task);
    // One training per task at a time (a second one errors, or waits inside a transaction
    // block); progress is committed as it goes when the call allows it.
    let run = Run::start(
        task,
        serde_json::to_value(&opts).unwrap_or_default(),
        run::call_is_nonatomic(fcinfo),
    );
    run.progress("labels", 0, None);
    if t.spec.task_type == TaskType::Ranking {
        return crate::api::recommend::train(task, &t, opts, model_cfg, &run, t0);
    }
    let classes = match t.spec.task_type {
        TaskType::MulticlassClassification => fit_classes(&class_labels(task, &t, "train")),
        _ => Vec::new(),
    };
    let kind = engine_task(&t, task, &classes);
    let (all_train, _) = labeled(task, &t, "train", &classes);
    let mut class_prior = vec![0.0; classes.len()];
    for r in &all_train {
        if let Some(p) = class_prior.get_mut(r.2 as usize) {
            *p += 1.0 / all_train.len() as f64;
        }
    }
    let train_rows = sample(all_train, opts.max_train, opts.seed);
    let (val_rows, _) = labeled(task, &t, "val", &classes);
    let val_rows = sample(val_rows, opts.max_val, opts.seed ^ 0x5eed);
    if train_rows.is_empty() {
        run.fail(
            RdlError::new("55000", format!("task \"{task}\" has no training examples"))
                .hint("Check the task's anchors and filters with rdl_task_table(name, 'train')."),
        )
    }
    check_classes(&run, task, kind, &train_rows, classes.len());
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
    let plan = Plan::new(&catalog::read_graph(None), sampler);

    // Fit the encoder (vocabulary, numeric statistics) on training contexts only.
    let fit_n = train_rows.len().min(2000);
    let mut fit_sub = Vec::with_capacity(fit_n);
    // Within a quarter of rdl.max_memory_mb: the vocabulary is fitted on fewer if need be.
    let (fit_limit, mut fit_bytes) = (crate::guc::max_memory_bytes() / 4, 0);
    gather_all(&plan, &t, &seeds_of(&train_rows[..fit_n]), |_, ctxs, _| {
        for c in ctxs {
            fit_bytes += memory::subgraph_bytes(&c);
            if fit_bytes <= fit_limit || fit_sub.is_empty() {
                fit_sub.push(c);
            }
        }
    });
    let encoder = Encoder::fit(model_cfg.encoder_config(4096), &fit_sub);
    // rdl.max_memory_mb: three quarters for the encoded contexts (gathering pieces take the
    // rest); refused now, from the fit sample's sizes, rather than after minutes of work.
    let mut budget = memory::Budget::new(crate::guc::max_memory_bytes() / 4 * 3);
    let probe = &fit_sub[..fit_sub.len().min(200)];
    let each = probe
        .iter()
        .map(|c| memory::encoded_bytes(&encoder.encode(c)))
        .sum::<usize>()
        .div_ceil(probe.len().max(1));
    drop(fit_sub);
    let too_big = |e: memory::Exceeded| {
        let fit = e.limit / each.max(1);
        run.fail(crate::error::over_memory(
            format!(
                "training task \"{task}\" on {} training and {} validation contexts of about {} kB each",
                train_rows.len(),
                val_rows.len(),
                each.div_ceil(1024)
            ),
            e,
            &format!("Use fewer examples (options max_train and max_val: about {fit} contexts in all fit) or smaller contexts (max_rows, fanout, depth)."),
        ))
    };
    if let Err(e) = budget.fits(train_rows.len() + val_rows.len(), each) {
        too_big(e)
    }

    let mut encode = |rows: &[Example]| -> Vec<EncodedContext> {
        let mut out = Vec::with_capacity(rows.len());
        gather_all(&plan, &t, &seeds_of(rows), |start, ctxs, found| {
            run.poll();
            for (i, (c, f)) in ctxs.iter().zip(found).enumerate() {
                if f {
                    let e = encoder.encode_labeled(c, rows[start + i].2);
                    if let Err(x) = budget.charge(memory::encoded_bytes(&e)) {
                        too_big(x)
                    }
                    out.push(e);
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
    let metric_name = match kind {
        train::Task::Binary => "auroc",
        train::Task::Regression => "mae",
        train::Task::Multiclass { .. } => "log_loss",
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
    // On the background worker's device when it is a GPU (rdl.train_on_worker), else here.
    let model = crate::worker::train(
        &cfg,
        &model_cfg,
        &encoder,
        &train_ctx,
        &val_ctx,
        &mut on_step,
    )
    .unwrap_or_else(|| {
        train::train(
            &cfg,
            &model_cfg,
            &encoder,
            &train_ctx,
            &val_ctx,
            &mut on_step,
        )
    })
    .unwrap_or_else(|e| train_err(e).raise());
    let val_metrics = score(
        kind,
        &model,
        &val_ctx,
        val_rows.len(),
        &classes,
        &class_prior,
    );
    let bytes = model.to_bytes().unwrap_or_else(|e| train_err(e).raise());
    let stored = StoredConfig {
        sampler,
        tables: plan.tables.keys().cloned().collect(),
        options: opts,
        train_examples: train_ctx.len(),
        val_examples: val_ctx.len(),
        classes,
        class_prior,
        ranking: None,
    };
    store_model(task, &stored, bytes, val_metrics, &run, t0);
}

/// Stores a finished model as the task's new active version (the previous one inactive),
/// as rdl's owner, and closes the run.
pub fn store_model(
    task: &str,
    stored: &StoredConfig,
    bytes: Vec<u8>,
    val_metrics: serde_json::Value,
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
        query_one::<i32>(
            "INSERT INTO rdl.models (task, version, config, weights, metrics, train_seconds, data_snapshot, active)
             SELECT $1, COALESCE((SELECT pg_catalog.max(m.version) FROM rdl.models m
                                  WHERE m.task OPERATOR(pg_catalog.=) $1), 0) OPERATOR(pg_catalog.+) 1,
                    $2, $3, $4, $5, pg_catalog.now(), true
             RETURNING version",
            &[
                task.into(),
                JsonB(serde_json::to_value(stored).unwrap_or_default()).into(),
                bytes.into(),
                JsonB(json!({ "val": val_metrics })).into(),
                t0.elapsed().as_secs_f64().into(),
            ],
        )
        .unwrap_or(0)
    });
    run.finish(version, json!({ "val": val_metrics }));
    notice(format!(
        "rdl_train {task}: version {version} active, validation {val_metrics}, {:.0}s in all",
        t0.elapsed().as_secs_f64()
    ));
}

/// A classifier needs at least two classes among its training labels.
fn check_classes(run: &Run, task: &str, kind: train::Task, rows: &[Example], n_classes: usize) {
    let (distinct, detail) = match kind {
        train::Task::Binary => {
            let pos = rows.iter().filter(|r| r.2 > 0.5).count();
            (
                usize::from(pos > 0) + usize::from(pos < rows.len()),
                format!("{} examples, {pos} positive", rows.len()),
            )
        }
        train::Task::Multiclass { .. } => (n_classes, format!("{} examples", rows.len())),
        train::Task::Regression => return,
    };
    if distinct < 2 {
        run.fail(
            RdlError::new(
                "55000",
                format!("the training labels of task \"{task}\" have a single class"),
            )
            .detail(detail)
            .hint("A classifier needs both classes: widen the window or change the condition."),
        )
    }
}

fn notice(msg: String) {
    pgrx::notice!("{}", msg);
}
