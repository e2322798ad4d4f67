//! Recommendations: training ranking tasks (`LIST_DISTINCT(fact.fk, s, e, unit) RANK TOP k`),
//! `rdl_recommend`, `rdl_recommend_prepare`, and `rdl_evaluate` for ranking tasks.
//!
//! **What is read, and when.** For an anchor `t` (a training/evaluation anchor, or `as_of`):
//! - the entity side is exact at `t`: its relational context (the sampler, rows with time
//!   `<= t`) and its history in the interaction log (fact rows with time `<= t`);
//! - the item side is computed at `t_i` = the start of `t`'s UTC day (its hour for windows in
//!   hours): the pool of items (those with an interaction at or before `t_i` — nothing else
//!   is ever a candidate), their popularity and transition statistics, and each item's
//!   relational context, gathered as a seed of the item table at `t_i`. `t_i <= t`, so
//!   nothing after the anchor is read; the price is that the item side may be up to a day
//!   stale, and in return one item index serves every entity of the day: item embeddings
//!   are computed once per (model, `t_i`), not once per entity.
//!
//! **Caching.** Each backend keeps the loaded model per task and at most
//! [`MAX_INDEXES`] item indexes keyed by (model id, `t_i`): the interaction log up to `t_i`,
//! the item statistics, and the item embeddings computed so far (lazily, for the
//! candidates asked for; `rdl_recommend_prepare` computes them for the whole pool at once).
//! A new model version or a new day makes a new index; the first call of the day pays for
//! reading the log and for embedding its candidates.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Instant;

use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::{AnyElement, JsonB, PgOid};
use rdl_engine::encode::{EncodedContext, Encoder, Subgraph};
use rdl_engine::metrics;
use rdl_engine::model::ModelConfig;
use rdl_engine::pql::{interactions_sql, Target, TaskType};
use rdl_engine::rank::train::{
    item_encoder, RankData, RankExample, RankTrainConfig, TrainedRanker,
};
use rdl_engine::rank::{
    self, candidates, history_baseline, item_side_time, popularity_baseline,
    recent_history_baseline, EntityFeats, History, ItemStats, Log, RankConfig,
};
use rdl_engine::sampler::{Plan, SamplerConfig};
use rdl_engine::train::Progress;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::context::anchor_of;
use crate::api::examples::{gather_all, sample, GATHER_BATCH};
use crate::api::model::{
    active_id, deny, is_current, read_stored, train_err, StoredConfig, StoredModel,
};
use crate::api::task::{split_anchors, task_state, Access, Task};
use crate::api::train::TrainOptions;
use crate::catalog;
use crate::entity;
use crate::error::{spi, RdlError};
use crate::pgtime;
use crate::run::Run;

/// Item indexes kept per backend.
pub const MAX_INDEXES: usize = 4;
/// Validation examples ranked after every epoch, at most (and at most half the training
/// sample, at least 200).
const MAX_VAL: usize = 1000;
/// Contexts the encoder is fitted on, per side.
const FIT_CONTEXTS: usize = 1000;
/// Random negatives drawn per training group, to sample each step's from.
const SHARED_POOL: usize = 256;

/// What `rdl.models.config` holds for a ranking model besides the common fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RankingInfo {
    pub item_table: String,
    pub k: usize,
    /// Share of the validation label items that were among the candidates.
    pub val_candidate_recall: Option<f64>,
    pub item_contexts: usize,
}

/// The item table, `k` and the window of a ranking task.
fn target_of(t: &Task) -> (String, usize, rdl_engine::pql::Window) {
    match (&t.spec.target, t.spec.window) {
        (Target::ListDistinct { item_table, k, .. }, Some(w)) => {
            (item_table.clone(), *k as usize, w)
        }
        _ => RdlError::new("XX000", "rdl: not a ranking task").raise(),
    }
}

fn rank_config(t: &Task) -> RankConfig {
    let (_, k, window) = target_of(t);
    RankConfig {
        k,
        window,
        ..RankConfig::default()
    }
}

/// 42809 unless the task is a ranking task.
pub fn require_ranking(t: &Task, task: &str, function: &str) {
    if t.spec.task_type != TaskType::Ranking {
        RdlError::new(
            "42809",
            format!("{function} does not apply to task \"{task}\""),
        )
        .detail(format!(
            "Task \"{task}\" is a {} task; {function} needs a ranking task (PREDICT LIST_DISTINCT(...) RANK TOP k).",
            serde_json::to_value(t.spec.task_type).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
        ))
        .hint("Use rdl_predict, rdl_predict_class or rdl_predict_batch for this task.")
        .raise()
    }
}

/// One labelled (entity, anchor): the distinct items of its window.
struct Labeled {
    entity: String,
    anchor: i64,
    items: Vec<String>,
}

/// The labels of a split, as item lists.
fn ranking_labels(name: &str, t: &Task, split: &str) -> Vec<Labeled> {
    let anchors = split_anchors(name, split);
    let mut args: Vec<DatumWithOid> = vec![anchors.into()];
    for p in &t.spec.params {
        args.push(p.clone().into());
    }
    crate::sql::connect(|client| {
        let table = spi(client.select(t.spec.label_sql(), None, &args));
        let mut out = Vec::with_capacity(table.len());
        for row in table {
            let (Some(entity), Some(a), Some(items)) = (
                spi(row.get::<String>(1)),
                spi(row.get::<TimestampWithTimeZone>(2)),
                spi(row.get::<Vec<Option<String>>>(3)),
            ) else {
                continue;
            };
            out.push(Labeled {
                entity,
                anchor: pgtime::from_pg(a),
                items: items.into_iter().flatten().collect(),
            });
        }
        out
    })
}

/// Runs an interactions statement (`$1 timestamptz`, then text parameters), kept prepared:
/// `(entity, item, µs)` rows.
fn run_interactions(sql: &str, args: Vec<DatumWithOid>) -> Vec<(String, String, i64)> {
    let mut types = vec![PgOid::from(pg_sys::TIMESTAMPTZOID)];
    types.extend(std::iter::repeat_n(
        PgOid::from(pg_sys::TEXTOID),
        args.len() - 1,
    ));
    crate::sql::connect(|client| {
        let stmt = crate::plans::kept(client, sql, &types);
        let table = spi(client.select(&*stmt, None, &args));
        let mut v = Vec::with_capacity(table.len());
        for row in table {
            if let (Some(e), Some(i), Some(at)) = (
                spi(row.get::<String>(1)),
                spi(row.get::<String>(2)),
                spi(row.get::<i64>(3)),
            ) {
                v.push((e, i, at));
            }
        }
        v
    })
}

/// The interaction log of a ranking task up to `upto` (one statement, as the caller).
fn read_log(t: &Task, upto: i64) -> Log {
    let (sql, params) = interactions_sql(&t.spec, false).expect("a ranking task");
    let mut args: Vec<DatumWithOid> = vec![pgtime::to_pg(upto).into()];
    args.extend(params.into_iter().map(DatumWithOid::from));
    Log::new(run_interactions(&sql, args))
}

/// One entity's `(item key, µs)` interactions up to `upto`.
fn entity_events(t: &Task, key: &str, upto: i64) -> Vec<(String, i64)> {
    let (sql, params) = interactions_sql(&t.spec, true).expect("a ranking task");
    let mut args: Vec<DatumWithOid> = vec![pgtime::to_pg(upto).into()];
    args.extend(params.into_iter().map(DatumWithOid::from));
    args.push(key.to_string().into());
    run_interactions(&sql, args)
        .into_iter()
        .map(|(_, i, at)| (i, at))
        .collect()
}

/// An encoded entity context and the keys of the item-table rows in it.
type EntityCtx = (EncodedContext, Vec<String>);

fn context_items(sg: &Subgraph, item_table: &str) -> Vec<String> {
    sg.rows
        .iter()
        .enumerate()
        .filter(|(i, r)| *i != sg.seed && &*r.table == item_table)
        .map(|(_, r)| r.key.clone())
        .collect()
}

/// Gathers and encodes entity contexts (`None` where the entity does not exist then).
fn entity_contexts(
    plan: &Plan,
    t: &Task,
    seeds: &[(String, i64)],
    enc: &Encoder,
    item_table: &str,
    mut poll: impl FnMut(),
) -> Vec<Option<EntityCtx>> {
    let mut out: Vec<Option<EntityCtx>> = vec![None; seeds.len()];
    gather_all(plan, t, seeds, |start, ctxs, found| {
        poll();
        for (i, (c, f)) in ctxs.iter().zip(found).enumerate() {
            if f {
                out[start + i] = Some((enc.encode(c), context_items(c, item_table)));
            }
        }
    });
    out
}

/// Gathers and encodes item contexts, each seed `(item key, item-side time)` a row of the
/// item table (`None` where the row is not visible at that time).
fn item_contexts(
    plan: &Plan,
    item_table: &str,
    seeds: &[(String, i64)],
    enc: &Encoder,
    mut poll: impl FnMut(),
) -> Vec<Option<EncodedContext>> {
    let mut out = vec![None; seeds.len()];
    for (b, chunk) in seeds.chunks(GATHER_BATCH).enumerate() {
        poll();
        pgrx::check_for_interrupts!();
        let g = crate::sampler::gather(plan, item_table, chunk, None);
        for (i, (c, f)) in g.contexts.iter().zip(g.found).enumerate() {
            if f {
                out[b * GATHER_BATCH + i] = Some(enc.encode(c));
            }
        }
    }
    out
}

fn check_item_table(plan: &Plan, item_table: &str, task: &str) {
    match plan.tables.get(item_table) {
        Some(tp) if tp.key_columns.len() == 1 => {}
        _ => RdlError::new(
            "0A000",
            format!("task \"{task}\": the items of {item_table} need a single-column primary key"),
        )
        .raise(),
    }
}

fn notice(msg: String) {
    pgrx::notice!("{}", msg);
}

/// An example before its items have contexts: item ids of the log.
struct Pending {
    group: usize,
    entity: usize,
    candidates: Vec<u32>,
    positives: Vec<u32>,
    n_relevant: usize,
    feats: EntityFeats,
    train: bool,
}

/// `CALL rdl_train` for a ranking task (dispatched from `rdl_train`).
pub fn train(
    task: &str,
    t: &Task,
    opts: TrainOptions,
    model_cfg: ModelConfig,
    run: &Run,
    t0: Instant,
) {
    let (item_table, _, _) = target_of(t);
    let rc = rank_config(t);
    catalog::check_linked_readable(&item_table, opts.depth, task);
    let train_all = ranking_labels(task, t, "train");
    if train_all.is_empty() {
        run.fail(
            RdlError::new("55000", format!("task \"{task}\" has no training examples"))
                .hint("Check the task's anchors and filters with rdl_task_table(name, 'train')."),
        )
    }
    let train_l = sample(train_all, opts.max_train, opts.seed);
    let max_val = MAX_VAL.min((opts.max_train / 2).max(200));
    let val_l = sample(ranking_labels(task, t, "val"), max_val, opts.seed ^ 1);
    let upto = train_l
        .iter()
        .chain(&val_l)
        .map(|l| l.anchor)
        .max()
        .unwrap_or(0);
    run.progress("gathering", 0, None);
    let log = read_log(t, upto);
    notice(format!(
        "rdl_train {task}: {} training and {} validation examples, {} interactions of {} items before the last anchor",
        train_l.len(),
        val_l.len(),
        log.events.len(),
        log.n_items()
    ));
    let sampler = SamplerConfig {
        depth: opts.depth,
        fanout: opts.fanout,
        max_rows: opts.max_rows,
    };
    let plan = Plan::new(&catalog::read_graph(None), sampler);
    check_item_table(&plan, &item_table, task);

    // Groups: anchors sharing an item-side time share item statistics and item contexts.
    let all: Vec<(&Labeled, bool)> = train_l
        .iter()
        .map(|l| (l, true))
        .chain(val_l.iter().map(|l| (l, false)))
        .collect();
    let mut group_of: HashMap<i64, usize> = HashMap::new();
    let mut group_time: Vec<i64> = Vec::new();
    for (l, _) in &all {
        let ti = item_side_time(l.anchor, rc.window.unit);
        group_of.entry(ti).or_insert_with(|| {
            group_time.push(ti);
            group_time.len() - 1
        });
    }
    let stats: Vec<ItemStats> = group_time
        .iter()
        .map(|&ti| {
            run.poll();
            ItemStats::at(&log, ti, &rc, true)
        })
        .collect();

    // The encoder's vocabulary and statistics: training entity and item contexts only.
    let mut fit: Vec<Subgraph> = Vec::new();
    let fit_seeds: Vec<(String, i64)> = train_l
        .iter()
        .take(FIT_CONTEXTS)
        .map(|l| (l.entity.clone(), l.anchor))
        .collect();
    gather_all(&plan, t, &fit_seeds, |_, ctxs, _| fit.extend(ctxs));
    let mut item_fit: Vec<(String, i64)> = Vec::new();
    'fit: for pass in 0..FIT_CONTEXTS {
        let mut any = false;
        for (g, s) in stats.iter().enumerate() {
            if let Some(&i) = s.popular.get(pass) {
                any = true;
                item_fit.push((log.item_keys[i as usize].clone(), group_time[g]));
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
        fit.extend(crate::sampler::gather(&plan, &item_table, chunk, None).contexts);
    }
    let encoder = Encoder::fit(model_cfg.encoder_config(4096), &fit);
    drop(fit);
    let item_enc = item_encoder(&encoder, &rc);

    let seeds: Vec<(String, i64)> = all
        .iter()
        .map(|(l, _)| (l.entity.clone(), l.anchor))
        .collect();
    let ectx = entity_contexts(&plan, t, &seeds, &encoder, &item_table, || run.poll());
    let mut entities: Vec<EncodedContext> = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
    let (mut label_items, mut label_hits) = (0usize, 0usize);
    for ((l, is_train), c) in all.iter().zip(ectx) {
        let Some((ec, ctx_keys)) = c else { continue };
        let g = group_of[&item_side_time(l.anchor, rc.window.unit)];
        let h = log.history(&l.entity, l.anchor, &rc);
        let feats = EntityFeats::new(&h, &stats[g], &rc);
        let ctx_items: Vec<u32> = ctx_keys.iter().filter_map(|k| log.item_id(k)).collect();
        let cands = candidates(&h, &feats, &stats[g], &ctx_items, &rc);
        let labels: HashSet<u32> = l.items.iter().filter_map(|k| log.item_id(k)).collect();
        let positives: Vec<u32> = cands
            .iter()
            .copied()
            .filter(|i| labels.contains(i))
            .collect();
        if !is_train {
            label_items += l.items.len();
            label_hits += positives.len();
        }
        let cands = if *is_train {
            if positives.is_empty() {
                continue; // nothing to learn from an example whose items are not candidates
            }
            let mut c = positives.clone();
            c.extend(
                cands
                    .iter()
                    .copied()
                    .filter(|i| !labels.contains(i))
                    .take(rc.hard_negatives),
            );
            c
        } else {
            cands
        };
        entities.push(ec);
        pending.push(Pending {
            group: g,
            entity: entities.len() - 1,
            candidates: cands,
            positives,
            n_relevant: l.items.len(),
            feats,
            train: *is_train,
        });
    }
    if !pending.iter().any(|p| p.train) {
        run.fail(
            RdlError::new(
                "55000",
                format!("task \"{task}\" has no training example whose items are candidates"),
            )
            .hint("Candidates are items seen before the anchor: popular ones, the entity's own history and their transitions."),
        )
    }

    // Item contexts: per group, every item an example uses, and a random pool for negatives.
    let mut shared_items: Vec<Vec<u32>> = vec![Vec::new(); group_time.len()];
    let train_groups: HashSet<usize> = pending
        .iter()
        .filter(|p| p.train)
        .map(|p| p.group)
        .collect();
    for &g in &train_groups {
        shared_items[g] = sample(stats[g].popular.clone(), SHARED_POOL, opts.seed ^ g as u64);
    }
    let mut index: HashMap<(usize, u32), usize> = HashMap::new();
    let mut item_seeds: Vec<(String, i64)> = Vec::new();
    let mut item_meta: Vec<(usize, u32)> = Vec::new();
    let mut want = |g: usize, i: u32| {
        index.entry((g, i)).or_insert_with(|| {
            item_seeds.push((log.item_keys[i as usize].clone(), group_time[g]));
            item_meta.push((g, i));
            item_seeds.len() - 1
        });
    };
    for p in &pending {
        for &i in &p.candidates {
            want(p.group, i);
        }
    }
    for (g, items) in shared_items.iter().enumerate() {
        for &i in items {
            want(g, i);
        }
    }
    notice(format!(
        "rdl_train {task}: {} entity contexts, {} item contexts to gather",
        entities.len(),
        item_seeds.len()
    ));
    let ictx = item_contexts(&plan, &item_table, &item_seeds, &item_enc, || run.poll());
    // Compact: drop items whose row is not visible at the item-side time.
    let mut data = RankData::default();
    let mut slot: HashMap<(usize, u32), usize> = HashMap::new();
    for (n, c) in ictx.into_iter().enumerate() {
        if let Some(c) = c {
            let (g, i) = item_meta[n];
            slot.insert((g, i), data.items.len());
            data.items.push(c);
            data.item_feats.push(stats[g].item_feats(i));
        }
    }
    data.shared = shared_items
        .iter()
        .enumerate()
        .map(|(g, v)| {
            v.iter()
                .filter_map(|&i| slot.get(&(g, i)).copied())
                .collect()
        })
        .collect();
    for p in pending {
        let map = |v: &[u32]| -> Vec<usize> {
            v.iter()
                .filter_map(|&i| slot.get(&(p.group, i)).copied())
                .collect()
        };
        let mut ent_feats: Vec<(usize, rank::EntityFeat)> = p
            .feats
            .0
            .iter()
            .filter_map(|(i, f)| slot.get(&(p.group, *i)).map(|&s| (s, *f)))
            .collect();
        ent_feats.sort_by_key(|x| x.0);
        let ex = RankExample {
            group: p.group,
            entity: p.entity,
            candidates: map(&p.candidates),
            positives: map(&p.positives),
            n_relevant: p.n_relevant,
            ent_feats,
        };
        if p.train {
            data.train.push(ex);
        } else {
            data.val.push(ex);
        }
    }
    data.entities = entities;
    let gather_s = t0.elapsed().as_secs_f64();
    notice(format!(
        "rdl_train {task}: contexts gathered and encoded in {gather_s:.1}s; {} training examples with a positive candidate, validation candidate recall {}",
        data.train.len(),
        if label_items > 0 { format!("{:.3}", label_hits as f64 / label_items as f64) } else { "-".into() }
    ));

    let cfg = RankTrainConfig {
        max_epochs: opts.epochs,
        lr: opts.lr,
        batch_examples: opts.batch_size,
        patience: opts.patience,
        seed: opts.seed,
        time_budget_s: Some((opts.time_budget_s - t0.elapsed().as_secs_f64()).max(10.0)),
        ..RankTrainConfig::default()
    };
    run.progress("training", 0, None);
    let mut on_step = |p: &Progress| -> bool {
        run.poll();
        if p.epoch_end {
            let val = p
                .val_metric
                .map(|m| format!("{m:.4}"))
                .unwrap_or_else(|| "-".into());
            notice(format!(
                "rdl_train {task}: epoch {}/{} loss {:.4} validation MAP@{} {val} elapsed {:.0}s",
                p.epoch + 1,
                opts.epochs,
                p.loss,
                rc.k,
                t0.elapsed().as_secs_f64(),
            ));
            run.progress(
                "training",
                p.epoch + 1,
                Some(json!([{
                    "epoch": p.epoch + 1,
                    "loss": p.loss,
                    "val_map_at_k": p.val_metric,
                    "elapsed_s": t0.elapsed().as_secs_f64(),
                }])),
            );
        }
        true
    };
    let model = rank::train::train(&cfg, &rc, &model_cfg, &encoder, &data, &mut on_step)
        .unwrap_or_else(|e| train_err(e).raise());
    let best = model
        .history
        .iter()
        .filter_map(|h| h.val_metric)
        .fold(None, |b: Option<f64>, v| Some(b.map_or(v, |b| b.max(v))));
    let recall = (label_items > 0).then(|| label_hits as f64 / label_items as f64);
    let val_metrics = json!({
        "examples": data.val.len(),
        "k": rc.k,
        "map_at_k": best,
        "candidate_recall": recall,
    });
    let bytes = model.to_bytes().unwrap_or_else(|e| train_err(e).raise());
    let mut tables: Vec<String> = plan.tables.keys().cloned().collect();
    tables.sort();
    let stored = StoredConfig {
        sampler,
        tables,
        options: opts,
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
    };
    crate::api::train::store_model(task, &stored, bytes, val_metrics, run, t0);
}

/// A loaded ranking model, kept per backend.
pub struct LoadedRanker {
    pub id: i64,
    /// The model row's version (see `TaskState::active_tag`).
    pub tag: Option<String>,
    /// The columns of its tables when it was loaded (see `TaskState::columns_tag`).
    pub columns_tag: Option<String>,
    pub version: i32,
    pub tables: Vec<String>,
    pub item_table: String,
    pub ranker: TrainedRanker,
    pub item_encoder: Encoder,
    pub plan: Plan,
}

/// The item side at one time: see the module comment.
struct ItemIndex {
    time: i64,
    log: Log,
    stats: ItemStats,
    embeddings: HashMap<u32, Vec<f32>>,
    /// Items whose row was not visible at `time`.
    absent: HashSet<u32>,
}

/// `((role, model id, item-side time), index)`.
type IndexEntry = ((pg_sys::Oid, i64, i64), Rc<RefCell<ItemIndex>>);

thread_local! {
    /// By (role, task), like the other models (see `model.rs`).
    static RANKERS: RefCell<HashMap<(pg_sys::Oid, String), Rc<LoadedRanker>>> =
        RefCell::new(HashMap::new());
    /// `((role, model id, item-side time), index)`, most recently used last. The index
    /// holds the interaction log and item rows as one role read them (row-level security
    /// applied): another role never gets it, it builds its own.
    static INDEXES: RefCell<Vec<IndexEntry>> = const { RefCell::new(Vec::new()) };
}

/// The task and its active ranking model (loaded once per backend and version).
fn ranker_for(task: &str, function: &str) -> (Rc<Task>, Rc<LoadedRanker>) {
    crate::guc::apply();
    let key = (crate::storage::caller(), task.to_string());
    let cached = RANKERS.with(|c| c.borrow().get(&key).cloned());
    let tables = cached
        .as_ref()
        .map(|l| l.tables.clone())
        .unwrap_or_default();
    let st = task_state(task, &tables, Access::Use);
    require_ranking(&st.task, task, function);
    let id = active_id(task, &st);
    if let Some(l) = cached {
        if is_current(&st, l.id, &l.tag, &l.columns_tag) {
            deny(task, st.denied_table);
            return (st.task, l);
        }
    }
    let StoredModel {
        model: ranker,
        stored,
        version,
        plan,
        columns_tag,
    } = read_stored(task, id, TrainedRanker::from_bytes, |r| &r.encoder);
    let (item_table, _, _) = target_of(&st.task);
    check_item_table(&plan, &item_table, task);
    let loaded = Rc::new(LoadedRanker {
        id,
        tag: st.active_tag.clone(),
        columns_tag,
        version,
        tables: stored.tables,
        item_encoder: ranker.item_encoder(),
        item_table,
        ranker,
        plan,
    });
    // Indexes built for an earlier model with this id (a re-created extension) are stale.
    INDEXES.with(|c| c.borrow_mut().retain(|((_, m, _), _)| *m != id));
    RANKERS.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= 256 {
            c.clear();
        }
        c.insert(key, loaded.clone())
    });
    (st.task, loaded)
}

/// The item index of a model at item-side time `ti`, from the cache or built (reads the
/// interaction log up to `ti` and computes the statistics; no embeddings yet).
fn index_for(t: &Task, l: &LoadedRanker, ti: i64) -> Rc<RefCell<ItemIndex>> {
    let key = (crate::storage::caller(), l.id, ti);
    let hit = INDEXES.with(|c| {
        let mut v = c.borrow_mut();
        let p = v.iter().position(|(k, _)| *k == key)?;
        let e = v.remove(p);
        let idx = e.1.clone();
        v.push(e);
        Some(idx)
    });
    if let Some(idx) = hit {
        return idx;
    }
    let log = read_log(t, ti);
    let stats = ItemStats::at(&log, ti, &l.ranker.rank_cfg, true);
    let idx = Rc::new(RefCell::new(ItemIndex {
        time: ti,
        log,
        stats,
        embeddings: HashMap::new(),
        absent: HashSet::new(),
    }));
    INDEXES.with(|c| {
        let mut v = c.borrow_mut();
        v.push((key, idx.clone()));
        while v.len() > MAX_INDEXES {
            v.remove(0);
        }
    });
    idx
}

/// Computes the embeddings of `items` the index does not hold yet.
fn ensure_embeddings(l: &LoadedRanker, idx: &mut ItemIndex, items: &[u32]) {
    let mut missing: Vec<u32> = items
        .iter()
        .copied()
        .filter(|i| !idx.embeddings.contains_key(i) && !idx.absent.contains(i))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return;
    }
    let seeds: Vec<(String, i64)> = missing
        .iter()
        .map(|&i| (idx.log.item_keys[i as usize].clone(), idx.time))
        .collect();
    let ctxs = item_contexts(&l.plan, &l.item_table, &seeds, &l.item_encoder, || {});
    let mut found = Vec::new();
    let mut refs = Vec::new();
    for (i, c) in missing.iter().zip(&ctxs) {
        match c {
            Some(c) => {
                found.push(*i);
                refs.push(c);
            }
            None => {
                idx.absent.insert(*i);
            }
        }
    }
    let emb = l
        .ranker
        .item_embeddings(&refs)
        .unwrap_or_else(|e| train_err(e).raise());
    for (i, e) in found.into_iter().zip(emb) {
        idx.embeddings.insert(i, e);
    }
}

/// Scores an entity's candidates: `(item id, score)`, best first, at most `k`.
fn rank_candidates(
    l: &LoadedRanker,
    idx: &ItemIndex,
    e: &[f32],
    cands: &[u32],
    feats: &EntityFeats,
    k: usize,
    exclude: &HashSet<u32>,
) -> Vec<(u32, f64)> {
    let items: Vec<u32> = cands
        .iter()
        .copied()
        .filter(|i| idx.embeddings.contains_key(i) && !exclude.contains(i))
        .collect();
    let vs: Vec<&[f32]> = items.iter().map(|i| idx.embeddings[i].as_slice()).collect();
    let fs: Vec<rank::Feats> = items
        .iter()
        .map(|&i| rank::pair_feats(&feats.get(i), &idx.stats.item_feats(i)))
        .collect();
    let s = l
        .ranker
        .score(e, &vs, &fs)
        .unwrap_or_else(|e| train_err(e).raise());
    rank::top_k(&s, k)
        .into_iter()
        .map(|j| (items[j], s[j] as f64))
        .collect()
}

/// The top `k` items for one entity as of `as_of` (default: now): `(item_id, score, rank)`.
/// `exclude_owned` leaves out the items the entity already had (up to `as_of`). NULL id:
/// no rows.
#[pg_extern]
#[allow(clippy::type_complexity)]
fn rdl_recommend(
    task: Option<&str>,
    entity_id: Option<AnyElement>,
    k: default!(i32, 10),
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
    exclude_owned: default!(bool, false),
) -> TableIterator<'static, (name!(item_id, String), name!(score, f64), name!(rank, i32))> {
    let task = crate::error::not_null(task, "task");
    if k <= 0 {
        RdlError::new("22023", format!("k must be positive, not {k}"))
            .hint("Ask for the top k items, e.g. rdl_recommend(task, id, 10).")
            .raise()
    }
    let Some(id) = entity_id else {
        // Still an error for an unknown task or a task of another kind.
        require_ranking(&crate::api::task::load_task(task), task, "rdl_recommend");
        return TableIterator::new(Vec::new());
    };
    let (t, l) = ranker_for(task, "rdl_recommend");
    let key = entity::key_text(&id, &t.spec.entity.key_type, task);
    let anchor = anchor_of(as_of);
    let rc = &l.ranker.rank_cfg;
    let g = crate::sampler::gather(
        &l.plan,
        &t.spec.entity.table,
        &[(key.clone(), anchor)],
        None,
    );
    if !g.found[0] {
        RdlError::new(
            "42704",
            format!("entity {key} does not exist in {}", t.spec.entity.table),
        )
        .hint("Check the id, or pass an as_of time at which the entity existed.")
        .raise()
    }
    let ctx = l.ranker.encoder.encode(&g.contexts[0]);
    let ctx_keys = context_items(&g.contexts[0], &l.item_table);
    let e = l
        .ranker
        .entity_embeddings(&[&ctx])
        .unwrap_or_else(|e| train_err(e).raise());
    let idx = index_for(&t, &l, item_side_time(anchor, rc.window.unit));
    let events = entity_events(&t, &key, anchor);
    let rows = {
        let mut idx = idx.borrow_mut();
        let hist = History::new(
            events
                .iter()
                .filter_map(|(i, at)| Some((idx.log.item_id(i)?, *at))),
            anchor,
            rc,
        );
        let feats = EntityFeats::new(&hist, &idx.stats, rc);
        let ctx_items: Vec<u32> = ctx_keys.iter().filter_map(|k| idx.log.item_id(k)).collect();
        let cands = candidates(&hist, &feats, &idx.stats, &ctx_items, rc);
        ensure_embeddings(&l, &mut idx, &cands);
        let exclude: HashSet<u32> = if exclude_owned {
            hist.items.iter().map(|h| h.item).collect()
        } else {
            HashSet::new()
        };
        rank_candidates(&l, &idx, &e[0], &cands, &feats, k as usize, &exclude)
            .into_iter()
            .enumerate()
            .map(|(r, (i, s))| (idx.log.item_keys[i as usize].clone(), s, r as i32 + 1))
            .collect::<Vec<_>>()
    };
    TableIterator::new(rows)
}

/// Builds the item index of the active model as of `as_of` (default: now) and embeds every
/// item of its pool, so that later `rdl_recommend` calls of the day only score. Returns
/// the item-side time, the pool size, how many items were embedded, and the seconds taken.
#[pg_extern]
fn rdl_recommend_prepare(
    task: Option<&str>,
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> JsonB {
    let task = crate::error::not_null(task, "task");
    let t0 = Instant::now();
    let (t, l) = ranker_for(task, "rdl_recommend_prepare");
    let ti = item_side_time(anchor_of(as_of), l.ranker.rank_cfg.window.unit);
    let idx = index_for(&t, &l, ti);
    let mut idx = idx.borrow_mut();
    let log_s = t0.elapsed().as_secs_f64();
    let pool = idx.stats.popular.clone();
    for chunk in pool.chunks(4 * GATHER_BATCH) {
        ensure_embeddings(&l, &mut idx, chunk);
    }
    JsonB(json!({
        "item_side_time": rdl_engine::base::time::format_timestamp(ti),
        "pool_items": pool.len(),
        "embedded_items": idx.embeddings.len(),
        "interactions": idx.log.events.len(),
        "index_seconds": log_s,
        "seconds": t0.elapsed().as_secs_f64(),
    }))
}

/// Ranking metrics of the active model on a split, next to the two baselines
/// (dispatched from `rdl_evaluate`).
pub fn evaluate(task: &str, split: &str) -> JsonB {
    let (t, l) = ranker_for(task, "rdl_evaluate");
    let rc = l.ranker.rank_cfg.clone();
    let k = rc.k.max(1);
    let labels = ranking_labels(task, &t, split);
    let upto = labels.iter().map(|x| x.anchor).max().unwrap_or(0);
    let log = read_log(&t, upto);
    let seeds: Vec<(String, i64)> = labels
        .iter()
        .map(|x| (x.entity.clone(), x.anchor))
        .collect();
    let ectx = entity_contexts(&l.plan, &t, &seeds, &l.ranker.encoder, &l.item_table, || {});
    let found: Vec<usize> = (0..labels.len()).filter(|&i| ectx[i].is_some()).collect();
    let refs: Vec<&EncodedContext> = found
        .iter()
        .filter_map(|&i| ectx[i].as_ref().map(|c| &c.0))
        .collect();
    let emb = l
        .ranker
        .entity_embeddings(&refs)
        .unwrap_or_else(|e| train_err(e).raise());

    // Group by item-side time: one index (statistics and embeddings) per group.
    let mut by_group: HashMap<i64, Vec<usize>> = HashMap::new();
    for (n, &i) in found.iter().enumerate() {
        by_group
            .entry(item_side_time(labels[i].anchor, rc.window.unit))
            .or_default()
            .push(n);
    }
    let mut groups: Vec<(i64, Vec<usize>)> = by_group.into_iter().collect();
    groups.sort_by_key(|g| g.0);
    let n = found.len();
    let mut model_lists: Vec<Vec<String>> = vec![Vec::new(); n];
    let mut pop_lists: Vec<Vec<String>> = vec![Vec::new(); n];
    let mut hist_lists: Vec<Vec<String>> = vec![Vec::new(); n];
    let mut recent_lists: Vec<Vec<String>> = vec![Vec::new(); n];
    let mut relevant: Vec<Vec<String>> = vec![Vec::new(); n];
    let (mut label_items, mut label_hits) = (0usize, 0usize);
    let mut baseline_stats: HashMap<i64, ItemStats> = HashMap::new();
    let keys = |v: Vec<u32>| -> Vec<String> {
        v.into_iter()
            .map(|i| log.item_keys[i as usize].clone())
            .collect()
    };
    for (ti, members) in groups {
        pgrx::check_for_interrupts!();
        let idx = index_for(&t, &l, ti);
        let mut idx = idx.borrow_mut();
        // Per example: history at the exact anchor (from the full log), candidates from the
        // index at ti (item ids of the index's log).
        let mut prepared = Vec::with_capacity(members.len());
        let mut all_cands: Vec<u32> = Vec::new();
        for &m in &members {
            let lab = &labels[found[m]];
            let hist = log.history(&lab.entity, lab.anchor, &rc);
            let events: Vec<(u32, i64)> = log
                .entity_id(&lab.entity)
                .map(|e| log.entity_events(e, lab.anchor).collect())
                .unwrap_or_default();
            let hist_i = History::new(
                events.iter().filter_map(|(i, at)| {
                    Some((idx.log.item_id(&log.item_keys[*i as usize])?, *at))
                }),
                lab.anchor,
                &rc,
            );
            let feats = EntityFeats::new(&hist_i, &idx.stats, &rc);
            let ctx_items: Vec<u32> = ectx[found[m]]
                .as_ref()
                .map(|c| c.1.iter().filter_map(|k| idx.log.item_id(k)).collect())
                .unwrap_or_default();
            let cands = candidates(&hist_i, &feats, &idx.stats, &ctx_items, &rc);
            all_cands.extend(&cands);
            prepared.push((m, hist, feats, cands));
        }
        ensure_embeddings(&l, &mut idx, &all_cands);
        for (m, hist, feats, cands) in prepared {
            let lab = &labels[found[m]];
            let ranked = rank_candidates(&l, &idx, &emb[m], &cands, &feats, k, &HashSet::new());
            model_lists[m] = ranked
                .into_iter()
                .map(|(i, _)| idx.log.item_keys[i as usize].clone())
                .collect();
            let in_cands: HashSet<&str> = cands
                .iter()
                .map(|&i| idx.log.item_keys[i as usize].as_str())
                .collect();
            label_items += lab.items.len();
            label_hits += lab
                .items
                .iter()
                .filter(|x| in_cands.contains(x.as_str()))
                .count();
            let bs = baseline_stats
                .entry(lab.anchor)
                .or_insert_with(|| ItemStats::at(&log, lab.anchor, &rc, false));
            pop_lists[m] = keys(popularity_baseline(bs, k));
            hist_lists[m] = keys(history_baseline(&hist, k));
            recent_lists[m] = keys(recent_history_baseline(&hist, k));
            relevant[m] = lab.items.clone();
        }
    }
    let block = |ranked: &[Vec<String>]| {
        json!({
            "map_at_k": metrics::map_at_k(ranked, &relevant, k),
            "recall_at_k": metrics::recall_at_k(ranked, &relevant, k),
            "ndcg_at_k": metrics::ndcg_at_k(ranked, &relevant, k),
        })
    };
    let mut m = block(&model_lists);
    if let Some(o) = m.as_object_mut() {
        o.insert("task".into(), task.into());
        o.insert("split".into(), split.into());
        o.insert("k".into(), k.into());
        o.insert("examples".into(), n.into());
        o.insert("examples_without_context".into(), (labels.len() - n).into());
        o.insert(
            "candidate_recall".into(),
            json!((label_items > 0).then(|| label_hits as f64 / label_items as f64)),
        );
        o.insert(
            "baselines".into(),
            json!({
                "popularity": block(&pop_lists),
                "own_history": block(&hist_lists),
            }),
        );
        // Not a baseline of the task's definition: a reference that shows how much of the
        // history's signal is recency.
        o.insert("reference_own_most_recent".into(), block(&recent_lists));
        o.insert("model_id".into(), l.id.into());
        o.insert("model_version".into(), l.version.into());
    }
    JsonB(m)
}
