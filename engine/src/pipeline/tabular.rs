//! The recipe of binary, regression and multiclass models: train (labels, the class
//! vocabulary, the encoder, contexts gathered and encoded within the memory budget, the
//! shared training loop, calibration, metrics on the selection split), score, evaluate.

use std::time::Instant;

use serde_json::{json, Value};

use super::error::{Error, Result};
use super::gather::{gather_all, gather_strided, overlapped, Hidden, GATHER_SHARE};
use super::labels::{class_labels, examples, fit_classes, sample, seeds, Example};
use super::options::{Init, TrainOptions};
use super::report::{interval_coverage, metrics_json};
use super::servable::Servable;
use super::source::{Event, Gathered, Offload, Source, Split};
use super::stored::StoredConfig;
use crate::encode::{EncodedContext, Encoder, Subgraph};
use crate::icl::{fit_episode_encoder, IclConfig};
use crate::memory;
use crate::model::ModelConfig;
use crate::pql::{Target, TaskSpec, TaskType};
use crate::sampler::Plan;
use crate::schema::SchemaGraph;
use crate::train::{self, Head, Progress, TrainConfig, TrainedModel};

/// What one training needs to know.
pub struct TrainJob<'a> {
    /// The task's name, for messages.
    pub task: &'a str,
    pub spec: &'a TaskSpec,
    /// The catalog as the caller sees it.
    pub graph: &'a SchemaGraph,
    pub opts: TrainOptions,
    /// When the call started: the time budget covers gathering too.
    pub started: Instant,
}

/// A trained model, ready to store.
pub struct Trained {
    pub weights: Vec<u8>,
    pub stored: StoredConfig,
    /// Metrics on the selection split (the one early stopping and calibration used).
    pub metrics: Value,
}

/// The output head of a task (`classes`: a multiclass model's vocabulary).
pub fn head_of(spec: &TaskSpec, task: &str, classes: usize) -> Result<Head> {
    match spec.task_type {
        TaskType::BinaryClassification => Ok(Head::Binary),
        TaskType::Regression => Ok(Head::Regression),
        TaskType::MulticlassClassification => Ok(Head::Multiclass { classes }),
        TaskType::Ranking => Err(Error::new(
            "42809",
            format!("task \"{task}\" ranks items: it has no tabular model"),
        )),
    }
}

/// The column no context may show: a static target of the entity table.
pub fn hidden(spec: &TaskSpec) -> Option<Hidden> {
    match &spec.target {
        Target::Static(c) => Some(Hidden {
            table: spec.entity.table.clone(),
            column: c.column.clone(),
        }),
        _ => None,
    }
}

/// The name of the selection metric of a head.
pub fn metric_name(head: Head) -> &'static str {
    match head {
        Head::Binary => "auroc",
        Head::Regression => "mae",
        Head::Multiclass { .. } => "log_loss",
    }
}

/// A classifier needs at least two classes among its training labels.
fn check_classes(task: &str, head: Head, rows: &[Example], n_classes: usize) -> Result<()> {
    let (distinct, detail) = match head {
        Head::Binary => {
            let pos = rows.iter().filter(|r| r.y > 0.5).count();
            (
                usize::from(pos > 0) + usize::from(pos < rows.len()),
                format!("{} examples, {pos} positive", rows.len()),
            )
        }
        Head::Multiclass { .. } => (n_classes, format!("{} examples", rows.len())),
        Head::Regression => return Ok(()),
    };
    if distinct < 2 {
        return Err(Error::new(
            "55000",
            format!("the training labels of task \"{task}\" have a single class"),
        )
        .detail(detail)
        .hint("A classifier needs both classes: widen the window or change the condition."));
    }
    Ok(())
}

/// Trains a model of the task. See the module comment.
pub fn train(src: &mut dyn Source, off: &dyn Offload, job: &TrainJob) -> Result<Trained> {
    let (task, spec, opts) = (job.task, job.spec, &job.opts);
    let model_cfg = opts.model_config()?;
    let multiclass = spec.task_type == TaskType::MulticlassClassification;
    let train_labels = src.labels(Split::Train)?;
    let classes = if multiclass {
        fit_classes(class_labels(&train_labels))
    } else {
        Vec::new()
    };
    let head = head_of(spec, task, classes.len())?;
    let cls = multiclass.then_some(classes.as_slice());
    let (all_train, _) = examples(train_labels, cls);
    let class_prior = class_prior(&all_train, classes.len());
    let train_rows = sample(all_train, opts.max_train, opts.seed);
    let (val_rows, _) = examples(src.labels(Split::Val)?, cls);
    let val_rows = sample(val_rows, opts.max_val, opts.seed ^ 0x5eed);
    if train_rows.is_empty() {
        return Err(
            Error::new("55000", format!("task \"{task}\" has no training examples"))
                .hint("Check the task's anchors and filters with rdl_task_table(name, 'train')."),
        );
    }
    check_classes(task, head, &train_rows, classes.len())?;
    src.report(Event::Phase("gathering"))?;
    src.report(Event::Notice(format!(
        "rdl_train {task}: {} training and {} validation examples",
        train_rows.len(),
        val_rows.len()
    )))?;
    let sampler = opts.sampler();
    let plan = Plan::new(job.graph, sampler);
    super::gather::advise_indexes(src, task, &plan)?;
    let hide = hidden(spec);
    let table = spec.entity.table.as_str();

    let fitted = fit_encoder(src, &plan, table, &train_rows, hide.as_ref(), opts)?;
    let (encoder, each) = (fitted.encoder, fitted.each);
    // Three quarters of the budget for the encoded contexts (gathering pieces take the
    // rest); refused now, from the fit sample's sizes, rather than after minutes of work.
    let mut budget = memory::Budget::new(src.memory_limit() / 4 * 3);
    let too_big = |e: memory::Exceeded| {
        let fit = e.limit / each.max(1);
        Error::over_memory(
            format!(
                "training task \"{task}\" on {} training and {} validation contexts of about {} kB each",
                train_rows.len(),
                val_rows.len(),
                each.div_ceil(1024)
            ),
            e,
            &format!("Use fewer examples (options max_train and max_val: about {fit} contexts in all fit) or smaller contexts (max_rows, fanout, depth)."),
        )
    };
    budget
        .fits(train_rows.len() + val_rows.len(), each)
        .map_err(too_big)?;
    // Gathering training contexts may take at most this share of the time budget: on a
    // database too slow to gather them all, training goes on with those gathered.
    let mut g = Gathering {
        task,
        started: job.started,
        plan: &plan,
        table,
        hide: hide.as_ref(),
        encoder: &encoder,
        budget: &mut budget,
        too_big: &too_big,
    };
    let until = Some(opts.time_budget_s * GATHER_SHARE);
    let train_ctx = g.encode(src, &train_rows, fitted.sample, until)?;
    let val_ctx = g.encode(src, &val_rows, Vec::new(), None)?;
    let gather_s = job.started.elapsed().as_secs_f64();
    src.report(Event::Notice(format!(
        "rdl_train {task}: contexts gathered and encoded in {gather_s:.1}s ({:.0} contexts/s)",
        (train_ctx.len() + val_ctx.len()) as f64 / gather_s.max(1e-9)
    )))?;

    let cfg = train_config(head, job);
    src.report(Event::Phase("training"))?;
    let model = fit_model(
        src, off, job, &cfg, &model_cfg, &encoder, &train_ctx, &val_ctx,
    )?;
    if model.n_members() > 1 {
        src.report(Event::Notice(format!(
            "rdl_train {task}: {} networks trained in the time budget, their outputs averaged",
            model.n_members()
        )))?;
    }
    let preds = score_local(src, &model, &val_ctx)?;
    let ys: Vec<f64> = val_ctx
        .iter()
        .filter_map(|c| c.label.map(f64::from))
        .collect();
    let mut metrics = metrics_json(head, &preds, &ys, val_rows.len(), &classes, &class_prior);
    metrics["networks"] = json!(model.n_members());
    let weights = model.to_bytes()?;
    let stored = StoredConfig {
        sampler,
        tables: plan.tables.keys().cloned().collect(),
        options: opts.clone(),
        train_examples: train_ctx.len(),
        val_examples: val_ctx.len(),
        classes,
        class_prior,
        ranking: None,
    };
    Ok(Trained {
        weights,
        stored,
        metrics,
    })
}

/// What gathering and encoding labelled contexts needs.
struct Gathering<'a> {
    task: &'a str,
    started: Instant,
    plan: &'a Plan,
    table: &'a str,
    hide: Option<&'a Hidden>,
    encoder: &'a Encoder,
    budget: &'a mut memory::Budget,
    too_big: &'a (dyn Fn(memory::Exceeded) -> Error + Sync),
}

impl Gathering<'_> {
    /// The rows' contexts, encoded and charged to the budget; `have`: those gathered
    /// already (position, entity found, context). With `until` (seconds since the start)
    /// the others are gathered in strided pieces and cut short there: what was gathered is
    /// a sample of every period, not the oldest anchors. Whole, in the rows' order.
    fn encode(
        &mut self,
        src: &mut dyn Source,
        rows: &[Example],
        have: Vec<(usize, bool, Subgraph)>,
        until: Option<f64>,
    ) -> Result<Vec<EncodedContext>> {
        let mut out: Vec<(usize, EncodedContext)> = Vec::with_capacity(rows.len());
        let (encoder, budget, too_big) = (self.encoder, &mut *self.budget, self.too_big);
        // Row `i`'s context, encoded and charged when its entity was found.
        let mut take = |i: usize, found: bool, c: &Subgraph| -> Result<()> {
            if found {
                let e = encoder.encode_labeled(c, rows[i].y);
                budget.charge(memory::encoded_bytes(&e)).map_err(too_big)?;
                out.push((i, e));
            }
            Ok(())
        };
        let mut gathered = vec![false; rows.len()];
        for (i, found, c) in have {
            gathered[i] = true;
            take(i, found, &c)?;
        }
        let rest: Vec<usize> = (0..rows.len()).filter(|&i| !gathered[i]).collect();
        let rest_seeds: Vec<(String, i64)> = rest.iter().map(|&i| rows[i].seed()).collect();
        let (plan, table, hide) = (self.plan, self.table, self.hide);
        let until = until.map(|u| (self.started, u));
        // Encoded on a second thread while the next piece is gathered.
        let cut = overlapped(
            |hand: &mut dyn FnMut((Vec<usize>, Gathered)) -> Result<()>| {
                gather_strided(
                    src,
                    plan,
                    table,
                    &rest_seeds,
                    hide,
                    until,
                    &mut |_, idx, g| hand((idx.iter().map(|&j| rest[j]).collect(), g)),
                )
            },
            |(idx, g): (Vec<usize>, Gathered)| {
                for ((c, f), i) in g.contexts.iter().zip(g.found).zip(idx) {
                    take(i, f, c)?;
                }
                Ok(())
            },
        )?
        .map(|done| done + rows.len() - rest.len());
        if let Some(done) = cut {
            src.report(Event::Notice(format!(
                "rdl_train {}: gathering stopped at {:.0}% of the time budget, after {} of {} training contexts; training goes on with those (a sample of every period). Indexes on the foreign keys (see above) or a larger time_budget_s let it gather them all.",
                self.task,
                GATHER_SHARE * 100.0,
                done,
                rows.len()
            )))?;
        }
        out.sort_by_key(|(i, _)| *i);
        Ok(out.into_iter().map(|(_, e)| e).collect())
    }
}

/// Each class's share of the training examples (before sampling): the prior that metrics
/// compare a multiclass model with.
fn class_prior(rows: &[Example], n_classes: usize) -> Vec<f64> {
    let mut prior = vec![0.0; n_classes];
    for r in rows {
        if let Some(p) = prior.get_mut(r.y as usize) {
            *p += 1.0 / rows.len() as f64;
        }
    }
    prior
}

/// Training contexts the encoder is fitted on, at most.
const FIT_CONTEXTS: usize = 2000;

/// The encoder and what fitting it gathered.
struct Fitted {
    encoder: Encoder,
    /// A context's encoded size, estimated from the fit sample.
    each: usize,
    /// The fit sample's contexts with their rows' positions and whether their entity was
    /// found: encoded for training as they are, not gathered again.
    sample: Vec<(usize, bool, Subgraph)>,
}

/// The encoder (vocabulary, numeric statistics), fitted on the first training contexts
/// only, within a quarter of the memory budget; with the encoded size of a context,
/// estimated from the fit sample, so that the budget for all contexts can be checked
/// before gathering them. `pretrained`: the columns dealt to the pretrained reader's slots
/// in name order and its bucket count, as in-context answers are encoded; the task's own
/// token cap (the reader was pretrained at 192 tokens: fine-tuning adapts it to more).
fn fit_encoder(
    src: &mut dyn Source,
    plan: &Plan,
    table: &str,
    train_rows: &[Example],
    hide: Option<&Hidden>,
    opts: &TrainOptions,
) -> Result<Fitted> {
    let (model_cfg, pretrained) = (opts.model_config()?, opts.pretrained()?);
    let fit_seeds = seeds(&train_rows[..train_rows.len().min(FIT_CONTEXTS)]);
    let (fit_limit, mut fit_bytes) = (src.memory_limit() / 4, 0);
    let (mut fit_sub, mut kept) = (Vec::with_capacity(fit_seeds.len()), Vec::new());
    gather_all(src, plan, table, &fit_seeds, hide, &mut |_, start, g| {
        for (j, (c, f)) in g.contexts.into_iter().zip(g.found).enumerate() {
            fit_bytes += memory::subgraph_bytes(&c);
            if fit_bytes <= fit_limit || fit_sub.is_empty() {
                fit_sub.push(c);
                kept.push((start + j, f));
            }
        }
        Ok(())
    })?;
    let encoder = if pretrained {
        let icl = IclConfig {
            model: model_cfg.clone(),
            ..IclConfig::default()
        };
        fit_episode_encoder(&icl, &fit_sub, 0)
    } else {
        Encoder::fit(model_cfg.encoder_config(4096), &fit_sub)
    };
    let probe = &fit_sub[..fit_sub.len().min(200)];
    let each = probe
        .iter()
        .map(|c| memory::encoded_bytes(&encoder.encode(c)))
        .sum::<usize>()
        .div_ceil(probe.len().max(1));
    let sample = kept
        .into_iter()
        .zip(fit_sub)
        .map(|((i, f), c)| (i, f, c))
        .collect();
    Ok(Fitted {
        encoder,
        each,
        sample,
    })
}

/// The training loop's configuration from the task's options. The time budget covers the
/// whole call: what gathering used is taken off the optimisation.
fn train_config(head: Head, job: &TrainJob) -> TrainConfig {
    let opts = &job.opts;
    let mut cfg = TrainConfig::new(head);
    cfg.max_epochs = opts.epochs;
    cfg.lr = opts.lr.unwrap_or(super::options::TABULAR_LR);
    cfg.batch_contexts = opts.batch_size;
    cfg.patience = opts.patience;
    cfg.seed = opts.seed;
    cfg.members = opts.members;
    // `fit_encoder` refused an init that does not fit the model's size.
    cfg.pretrained = opts.init == Init::Pretrained;
    cfg.ema_epochs = opts
        .ema
        .unwrap_or(super::options::tabular_ema(head == Head::Regression));
    let budget_left = (opts.time_budget_s - job.started.elapsed().as_secs_f64()).max(10.0);
    cfg.time_budget_s = Some(budget_left);
    cfg
}

/// The training itself, on the worker's device when the source offers one, else here;
/// every step and epoch reported through the source (where cancel is heard).
#[allow(clippy::too_many_arguments)]
fn fit_model(
    src: &mut dyn Source,
    off: &dyn Offload,
    job: &TrainJob,
    cfg: &TrainConfig,
    model_cfg: &ModelConfig,
    encoder: &Encoder,
    train_ctx: &[EncodedContext],
    val_ctx: &[EncodedContext],
) -> Result<TrainedModel> {
    let (task, epochs, started) = (job.task, job.opts.epochs, job.started);
    let budget_left = cfg.time_budget_s.unwrap_or(f64::INFINITY);
    let metric = metric_name(cfg.head);
    let mut failure: Option<Error> = None;
    // Epochs restart at 0 for each network of an ensemble.
    let (mut network, mut last_epoch) = (1, None);
    let mut on_step = |p: &Progress| -> bool {
        let r = if p.epoch_end {
            if last_epoch.is_some_and(|e| p.epoch <= e) {
                network += 1;
            }
            last_epoch = Some(p.epoch);
            let of = if network > 1 {
                format!(" (network {network})")
            } else {
                String::new()
            };
            let per_epoch = p.elapsed_s / (p.epoch + 1) as f64;
            let eta = (per_epoch * epochs.saturating_sub(p.epoch + 1) as f64)
                .min(budget_left - p.elapsed_s)
                .max(0.0);
            let sel = p
                .val_metric
                .map(|m| format!("{m:.4}"))
                .unwrap_or_else(|| "-".into());
            let elapsed = started.elapsed().as_secs_f64();
            src.report(Event::Notice(format!(
                "rdl_train {task}: epoch {}/{epochs}{of} loss {:.4} selection {} {sel} elapsed {elapsed:.0}s ETA {eta:.0}s",
                p.epoch + 1,
                p.loss,
                metric.to_uppercase(),
            )))
            .and_then(|()| {
                src.report(Event::Epoch(
                    p,
                    json!([{
                        "epoch": p.epoch + 1,
                        "network": network,
                        "loss": p.loss,
                        (format!("selection_{metric}")): p.val_metric,
                        "elapsed_s": elapsed,
                        "eta_s": eta,
                    }]),
                ))
            })
        } else {
            src.report(Event::Step(p))
        };
        r.map_err(|e| failure = Some(e)).is_ok()
    };
    let result = off
        .train(cfg, model_cfg, encoder, train_ctx, val_ctx, &mut on_step)
        .unwrap_or_else(|| train::train(cfg, model_cfg, encoder, train_ctx, val_ctx, &mut on_step));
    result.map_err(|e| failure.take().unwrap_or_else(|| e.into()))
}

/// Calibrated outputs per context, computed here, in pieces (cancel heard between them).
pub fn score_local(
    src: &mut dyn Source,
    model: &TrainedModel,
    ctxs: &[EncodedContext],
) -> Result<Vec<Vec<f64>>> {
    let n = model.head.n_out().max(1);
    let mut out = Vec::with_capacity(ctxs.len());
    for piece in ctxs.chunks(256) {
        src.report(Event::Poll)?;
        let p = model.predict(piece)?;
        out.extend(
            p.chunks(n)
                .map(|c| c.iter().map(|&v| v as f64).collect::<Vec<_>>()),
        );
    }
    Ok(out)
}

/// Calibrated outputs per context of a served model: on the worker when the source
/// offers one, else here.
pub fn score(
    src: &mut dyn Source,
    off: &dyn Offload,
    s: &Servable,
    ctxs: &[EncodedContext],
) -> Result<Vec<Vec<f64>>> {
    let model = s
        .tabular()
        .ok_or_else(|| Error::new("42809", "a ranking model does not predict values"))?;
    if let Some(r) = off.score(s.id, s.version, model, ctxs) {
        return r;
    }
    score_local(src, model, ctxs)
}

/// Outputs per seed (rows of the entity table): `None` where the entity does not exist
/// at its anchor.
pub fn predict_seeds(
    src: &mut dyn Source,
    off: &dyn Offload,
    s: &Servable,
    spec: &TaskSpec,
    seeds: &[(String, i64)],
) -> Result<Vec<Option<Vec<f64>>>> {
    let mut out = vec![None; seeds.len()];
    let hide = hidden(spec);
    let enc = s.encoder();
    gather_all(
        src,
        &s.plan,
        &spec.entity.table,
        seeds,
        hide.as_ref(),
        &mut |src, start, g| {
            let idx: Vec<usize> = (0..g.contexts.len()).filter(|&i| g.found[i]).collect();
            let ctxs: Vec<EncodedContext> =
                idx.iter().map(|&i| enc.encode(&g.contexts[i])).collect();
            for (k, p) in score(src, off, s, &ctxs)?.into_iter().enumerate() {
                out[start + idx[k]] = Some(p);
            }
            Ok(())
        },
    )?;
    Ok(out)
}

/// Metrics of a served model on a split of its task.
pub fn evaluate(
    src: &mut dyn Source,
    off: &dyn Offload,
    s: &Servable,
    spec: &TaskSpec,
    split: Split,
) -> Result<Value> {
    let model = s
        .tabular()
        .ok_or_else(|| Error::new("42809", "not a tabular model"))?;
    let classes = &s.stored.classes;
    let multiclass = spec.task_type == TaskType::MulticlassClassification;
    let (rows, unknown) = examples(src.labels(split)?, multiclass.then_some(classes.as_slice()));
    let preds = predict_seeds(src, off, s, spec, &seeds(&rows))?;
    let (p, y): (Vec<Vec<f64>>, Vec<f64>) = preds
        .into_iter()
        .zip(&rows)
        .filter_map(|(p, r)| p.map(|p| (p, r.y as f64)))
        .unzip();
    let mut m = metrics_json(
        model.head,
        &p,
        &y,
        rows.len(),
        classes,
        &s.stored.class_prior,
    );
    if let Some(o) = m.as_object_mut() {
        o.insert("split".into(), split.name().into());
        o.insert("model_id".into(), s.id.into());
        o.insert("model_version".into(), s.version.into());
        if unknown > 0 {
            // Labels of a class the model never saw cannot be scored.
            o.insert("examples_of_unseen_classes".into(), unknown.into());
        }
        if model.head == Head::Regression {
            o.insert("interval_coverage".into(), interval_coverage(model, &p, &y));
        }
    }
    Ok(m)
}
