//! The recipe of ranking models (`LIST_DISTINCT(fact.fk, s, e, unit) RANK TOP k`): build
//! the training data — groups of anchors sharing an item-side time, each with item
//! statistics, candidates per example, item contexts per (group, item) — and train.
//!
//! **What is read, and when.** For an anchor `t`, the entity side is exact at `t`: its
//! relational context and its history in the interaction log (rows with time `<= t`). The
//! item side is computed at `t_i` = the start of `t`'s UTC day (its hour for windows in
//! hours): the pool of items (those with an interaction at or before `t_i` — nothing else
//! is ever a candidate), their statistics, and each item's relational context, gathered as
//! a seed of the item table at `t_i`. `t_i <= t`, so nothing after the anchor is read; in
//! return one item index serves every entity of the day (see [`super::recommend`]).

use std::time::Instant;

use serde_json::json;

use super::error::{Error, Result};
use super::gather::{gather_all, gather_strided, GATHER_BATCH};
use super::labels::sample;
use super::rank_data::{groups, rank_data, Groups};
use super::source::{Event, Label, Labeled, Source, Split};
use super::stored::{RankingInfo, StoredConfig};
use super::tabular::{TrainJob, Trained};
use crate::encode::{EncodedContext, Encoder, Subgraph};
use crate::pql::{Target, TaskSpec, Window};
use crate::rank::train::{item_encoder, RankTrainConfig};
use crate::rank::{self, RankConfig};
use crate::sampler::Plan;
use crate::train::Progress;

/// Selection examples ranked after every epoch, at most (and at most half the training
/// sample, at least 200).
const MAX_VAL: usize = 1000;
/// Contexts the encoder is fitted on, per side.
const FIT_CONTEXTS: usize = 1000;
/// Random negatives drawn per training group, to sample each step's from.
pub(super) const SHARED_POOL: usize = 256;

/// The item table, `k` and the window of a ranking task.
pub fn target_of(spec: &TaskSpec) -> Result<(String, usize, Window)> {
    match (&spec.target, spec.window) {
        (Target::ListDistinct { item_table, k, .. }, Some(w)) => {
            Ok((item_table.clone(), *k as usize, w))
        }
        _ => Err(Error::new("XX000", "rdl: not a ranking task")),
    }
}

pub fn rank_config(spec: &TaskSpec) -> Result<RankConfig> {
    let (_, k, window) = target_of(spec)?;
    Ok(RankConfig {
        k,
        window,
        ..RankConfig::default()
    })
}

/// One labelled (entity, anchor): the distinct items of its window.
pub struct Listed {
    pub entity: String,
    pub anchor: i64,
    pub items: Vec<String>,
}

/// The labels of a split, as item lists.
pub fn listed(rows: Vec<Labeled>) -> Vec<Listed> {
    rows.into_iter()
        .filter_map(|r| match r.label {
            Label::Items(items) => Some(Listed {
                entity: r.entity,
                anchor: r.anchor,
                items,
            }),
            _ => None,
        })
        .collect()
}

/// The keys of the item-table rows of an entity context.
pub fn context_items(sg: &Subgraph, item_table: &str) -> Vec<String> {
    sg.rows
        .iter()
        .enumerate()
        .filter(|(i, r)| *i != sg.seed && &*r.table == item_table)
        .map(|(_, r)| r.key.clone())
        .collect()
}

/// An encoded entity context and the keys of the items in it.
pub type EntityCtx = (EncodedContext, Vec<String>);

/// Encoded entity contexts with the keys of the items in them (`None` where the entity
/// does not exist then, or was not gathered: with `until`, gathering stops at that
/// deadline, see [`gather_strided`], and says after how many seeds).
pub fn entity_contexts(
    src: &mut dyn Source,
    plan: &Plan,
    table: &str,
    seeds: &[(String, i64)],
    enc: &Encoder,
    item_table: &str,
    until: Option<(Instant, f64)>,
) -> Result<(Vec<Option<EntityCtx>>, Option<usize>)> {
    let mut out = vec![None; seeds.len()];
    let cut = gather_strided(src, plan, table, seeds, None, until, &mut |_, idx, g| {
        for ((c, f), &i) in g.contexts.iter().zip(g.found).zip(idx) {
            if f {
                out[i] = Some((enc.encode(c), context_items(c, item_table)));
            }
        }
        Ok(())
    })?;
    Ok((out, cut))
}

/// Encoded item contexts, each seed `(item key, item-side time)` a row of the item table
/// (`None` where the row is not visible then).
pub fn item_contexts(
    src: &mut dyn Source,
    plan: &Plan,
    item_table: &str,
    seeds: &[(String, i64)],
    enc: &Encoder,
) -> Result<Vec<Option<EncodedContext>>> {
    let mut out = vec![None; seeds.len()];
    for (b, chunk) in seeds.chunks(GATHER_BATCH).enumerate() {
        src.report(Event::Poll)?;
        let g = src.gather(plan, item_table, chunk)?;
        for (i, (c, f)) in g.contexts.iter().zip(g.found).enumerate() {
            if f {
                out[b * GATHER_BATCH + i] = Some(enc.encode(c));
            }
        }
    }
    Ok(out)
}

/// The encoder's vocabulary and statistics: training entity and item contexts only.
fn fit_encoder(
    src: &mut dyn Source,
    job: &TrainJob,
    plan: &Plan,
    g: &Groups,
    train: &[Listed],
    item_table: &str,
) -> Result<Encoder> {
    let mut fit: Vec<Subgraph> = Vec::new();
    let fit_seeds: Vec<(String, i64)> = train
        .iter()
        .take(FIT_CONTEXTS)
        .map(|l| (l.entity.clone(), l.anchor))
        .collect();
    gather_all(
        src,
        plan,
        &job.spec.entity.table,
        &fit_seeds,
        None,
        &mut |_, _, g| {
            fit.extend(g.contexts);
            Ok(())
        },
    )?;
    let mut item_fit: Vec<(String, i64)> = Vec::new();
    'fit: for pass in 0..FIT_CONTEXTS {
        let mut any = false;
        for (gi, s) in g.stats.iter().enumerate() {
            if let Some(&i) = s.popular.get(pass) {
                any = true;
                item_fit.push((g.log.item_keys[i as usize].clone(), g.time[gi]));
                if item_fit.len() >= FIT_CONTEXTS {
                    break 'fit;
                }
            }
        }
        if !any {
            break;
        }
    }
    for chunk in item_fit.chunks(GATHER_BATCH) {
        fit.extend(src.gather(plan, item_table, chunk)?.contexts);
    }
    Ok(Encoder::fit(
        job.opts.model_config()?.encoder_config(4096),
        &fit,
    ))
}

/// Trains a ranking model of the task. See the module comment.
pub fn train(src: &mut dyn Source, job: &TrainJob) -> Result<Trained> {
    let (task, spec, opts) = (job.task, job.spec, &job.opts);
    let model_cfg = opts.model_config()?;
    if opts.pretrained()? {
        return Err(Error::new(
            "0A000",
            format!("task \"{task}\" ranks items: init \"pretrained\" is not supported for ranking"),
        )
        .hint("The pretrained weights serve binary, regression and multiclass tasks; train this one with init \"scratch\" (the default)."));
    }
    let (item_table, _, _) = target_of(spec)?;
    let rc = rank_config(spec)?;
    let train_all = listed(src.labels(Split::Train)?);
    if train_all.is_empty() {
        return Err(
            Error::new("55000", format!("task \"{task}\" has no training examples"))
                .hint("Check the task's anchors and filters with rdl_task_table(name, 'train')."),
        );
    }
    let train_l = sample(train_all, opts.max_train, opts.seed);
    let max_val = MAX_VAL.min((opts.max_train / 2).max(200));
    let val_l = sample(listed(src.labels(Split::Val)?), max_val, opts.seed ^ 1);
    src.report(Event::Phase("gathering"))?;
    let all: Vec<(&Listed, bool)> = train_l
        .iter()
        .map(|l| (l, true))
        .chain(val_l.iter().map(|l| (l, false)))
        .collect();
    let g = groups(src, &all, &rc)?;
    src.report(Event::Notice(format!(
        "rdl_train {task}: {} training and {} validation examples, {} interactions of {} items before the last anchor",
        train_l.len(),
        val_l.len(),
        g.log.events.len(),
        g.log.n_items()
    )))?;
    let sampler = opts.sampler();
    let plan = Plan::new(job.graph, sampler);
    super::gather::advise_indexes(src, task, &plan)?;
    check_item_key(&plan, &item_table, task)?;
    let encoder = fit_encoder(src, job, &plan, &g, &train_l, &item_table)?;
    let item_enc = item_encoder(&encoder, &rc);
    let (data, recall) = rank_data(
        src,
        job,
        &plan,
        &g,
        &all,
        &rc,
        &encoder,
        &item_enc,
        &item_table,
    )?;
    let gather_s = job.started.elapsed().as_secs_f64();
    src.report(Event::Notice(format!(
        "rdl_train {task}: contexts gathered and encoded in {gather_s:.1}s; {} training examples with a positive candidate, selection candidate recall {}",
        data.train.len(),
        recall.map_or("-".into(), |r| format!("{r:.3}"))
    )))?;
    let cfg = rank_train_config(job);
    src.report(Event::Phase("training"))?;
    let mut failure: Option<Error> = None;
    let mut on_step = |p: &Progress| -> bool {
        let r = if p.epoch_end {
            report_epoch(src, job, rc.k, p)
        } else {
            src.report(Event::Step(p))
        };
        r.map_err(|e| failure = Some(e)).is_ok()
    };
    let model = rank::train::train(&cfg, &rc, &model_cfg, &encoder, &data, &mut on_step)
        .map_err(|e| failure.take().unwrap_or_else(|| e.into()))?;
    // The best epoch's MAP on the selection split: the split early stopping chose it on.
    let best = model
        .history
        .iter()
        .filter_map(|h| h.val_metric)
        .fold(None, |b: Option<f64>, v| Some(b.map_or(v, |b| b.max(v))));
    let metrics = json!({
        "examples": data.val.len(),
        "k": rc.k,
        "map_at_k": best,
        "candidate_recall": recall,
    });
    let mut tables: Vec<String> = plan.tables.keys().cloned().collect();
    tables.sort();
    Ok(Trained {
        weights: model.to_bytes()?,
        stored: StoredConfig {
            sampler,
            tables,
            options: opts.clone(),
            train_examples: data.train.len(),
            val_examples: data.val.len(),
            classes: Vec::new(),
            class_prior: Vec::new(),
            ranking: Some(RankingInfo {
                item_table,
                k: rc.k,
                val_candidate_recall: recall,
                item_contexts: data.items.len(),
            }),
        },
        metrics,
    })
}

/// Items are ranked by their key: the item table needs a single-column primary key.
fn check_item_key(plan: &Plan, item_table: &str, task: &str) -> Result<()> {
    match plan.tables.get(item_table) {
        Some(tp) if tp.key_columns.len() == 1 => Ok(()),
        _ => Err(Error::new(
            "0A000",
            format!("task \"{task}\": the items of {item_table} need a single-column primary key"),
        )),
    }
}

/// The ranking loop's configuration from the task's options. The time budget covers the
/// whole call: what gathering used is taken off the optimisation.
fn rank_train_config(job: &TrainJob) -> RankTrainConfig {
    let opts = &job.opts;
    RankTrainConfig {
        max_epochs: opts.epochs,
        lr: opts.lr.unwrap_or(super::options::RANKING_LR),
        batch_examples: opts.batch_size,
        patience: opts.patience,
        seed: opts.seed,
        time_budget_s: Some((opts.time_budget_s - job.started.elapsed().as_secs_f64()).max(10.0)),
        ..RankTrainConfig::default()
    }
}

/// The end of an epoch, told to the user (a notice) and to the progress record.
fn report_epoch(src: &mut dyn Source, job: &TrainJob, k: usize, p: &Progress) -> Result<()> {
    let (task, opts) = (job.task, &job.opts);
    let sel = p
        .val_metric
        .map(|m| format!("{m:.4}"))
        .unwrap_or_else(|| "-".into());
    let elapsed = job.started.elapsed().as_secs_f64();
    src.report(Event::Notice(format!(
        "rdl_train {task}: epoch {}/{} loss {:.4} selection MAP@{} {sel} elapsed {elapsed:.0}s",
        p.epoch + 1,
        opts.epochs,
        p.loss,
        k,
    )))
    .and_then(|()| {
        src.report(Event::Epoch(
            p,
            json!([{
                "epoch": p.epoch + 1,
                "loss": p.loss,
                "selection_map_at_k": p.val_metric,
                "elapsed_s": elapsed,
            }]),
        ))
    })
}
