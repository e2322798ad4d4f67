//! The ranking recipe's training data: the interaction log's groups (anchors sharing an
//! item-side time) and their item statistics, then the examples with their candidates and
//! the item contexts they use, gathered within the time budget.

use std::collections::{HashMap, HashSet};

use super::error::{Error, Result};
use super::gather::GATHER_SHARE;
use super::labels::sample;
use super::ranking::{entity_contexts, item_contexts, EntityCtx, Listed, SHARED_POOL};
use super::source::{Event, Source};
use super::tabular::TrainJob;
use crate::encode::{EncodedContext, Encoder};
use crate::rank::train::{RankData, RankExample};
use crate::rank::{self, candidates, item_side_time, EntityFeats, ItemStats, Log, RankConfig};
use crate::sampler::Plan;

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

/// The log, groups and their statistics for the examples of a training.
pub(super) struct Groups {
    pub log: Log,
    pub group_of: HashMap<i64, usize>,
    pub time: Vec<i64>,
    pub stats: Vec<ItemStats>,
}

/// The log up to the last anchor, the examples' groups and each group's item statistics.
pub(super) fn groups(
    src: &mut dyn Source,
    all: &[(&Listed, bool)],
    rc: &RankConfig,
) -> Result<Groups> {
    let upto = all.iter().map(|(l, _)| l.anchor).max().unwrap_or(0);
    let log = Log::new(src.interactions(upto, None)?);
    let (mut group_of, mut time) = (HashMap::new(), Vec::new());
    for (l, _) in all {
        let ti = item_side_time(l.anchor, rc.window.unit);
        group_of.entry(ti).or_insert_with(|| {
            time.push(ti);
            time.len() - 1
        });
    }
    let mut stats = Vec::with_capacity(time.len());
    for &ti in &time {
        src.report(Event::Poll)?;
        stats.push(ItemStats::at(&log, ti, rc, true));
    }
    Ok(Groups {
        log,
        group_of,
        time,
        stats,
    })
}

/// The training data: entity contexts and examples with their candidates, then the item
/// contexts they use (per group, and a random pool for negatives), compacted to the items
/// whose row is visible at the item-side time. Returns the selection split's candidate
/// recall too.
#[allow(clippy::too_many_arguments)]
pub(super) fn rank_data(
    src: &mut dyn Source,
    job: &TrainJob,
    plan: &Plan,
    g: &Groups,
    all: &[(&Listed, bool)],
    rc: &RankConfig,
    encoder: &Encoder,
    item_enc: &Encoder,
    item_table: &str,
) -> Result<(RankData, Option<f64>)> {
    let task = job.task;
    let seeds: Vec<(String, i64)> = all
        .iter()
        .map(|(l, _)| (l.entity.clone(), l.anchor))
        .collect();
    // Training entities are gathered within half the gathering share of the budget (items
    // take the other half), selection entities whole; `all` lists training ones first.
    let n_train = all.iter().filter(|(_, t)| *t).count();
    let share = job.opts.time_budget_s * GATHER_SHARE;
    let table = &job.spec.entity.table;
    let t0 = job.started.elapsed().as_secs_f64();
    let until = Some((job.started, t0 + share / 2.0));
    let (mut ectx, cut) = entity_contexts(
        src,
        plan,
        table,
        &seeds[..n_train],
        encoder,
        item_table,
        until,
    )?;
    let gathered = cut.unwrap_or(n_train);
    ectx.extend(
        entity_contexts(
            src,
            plan,
            table,
            &seeds[n_train..],
            encoder,
            item_table,
            None,
        )?
        .0,
    );
    let per_s = (gathered + seeds.len() - n_train) as f64
        / (job.started.elapsed().as_secs_f64() - t0).max(1e-3);
    let (entities, mut pending, recall) = pending_examples(g, all, ectx, rc);
    let items_left = (t0 + share - job.started.elapsed().as_secs_f64()).max(0.0) * per_s;
    let trained = |p: &Vec<Pending>| p.iter().filter(|p| p.train).count();
    let before = trained(&pending);
    fit_items(&mut pending, items_left);
    if cut.is_some() || trained(&pending) < before {
        src.report(Event::Notice(format!(
            "rdl_train {task}: gathering stopped at {:.0}% of the time budget; training goes on with {} of {n_train} training examples (a sample of every period). Indexes on the foreign keys (see above) or a larger time_budget_s let it gather them all.",
            GATHER_SHARE * 100.0,
            trained(&pending),
        )))?;
    }
    if !pending.iter().any(|p| p.train) {
        return Err(Error::new(
            "55000",
            format!("task \"{task}\" has no training example whose items are candidates"),
        )
        .hint("Candidates are items seen before the anchor: popular ones, the entity's own history and their transitions."));
    }
    let shared_items = shared_pools(g, &pending, job.opts.seed);
    let mut index: HashMap<(usize, u32), usize> = HashMap::new();
    let mut item_seeds: Vec<(String, i64)> = Vec::new();
    let mut item_meta: Vec<(usize, u32)> = Vec::new();
    let mut want = |gi: usize, i: u32| {
        index.entry((gi, i)).or_insert_with(|| {
            item_seeds.push((g.log.item_keys[i as usize].clone(), g.time[gi]));
            item_meta.push((gi, i));
            item_seeds.len() - 1
        });
    };
    for p in &pending {
        for &i in &p.candidates {
            want(p.group, i);
        }
    }
    for (gi, items) in shared_items.iter().enumerate() {
        for &i in items {
            want(gi, i);
        }
    }
    src.report(Event::Notice(format!(
        "rdl_train {task}: {} entity contexts, {} item contexts to gather",
        entities.len(),
        item_seeds.len()
    )))?;
    let ictx = item_contexts(src, plan, item_table, &item_seeds, item_enc)?;
    let mut data = rank_examples(g, ictx, &item_meta, &shared_items, pending);
    data.entities = entities;
    Ok((data, recall))
}

/// Keeps, of the training examples, an evenly spread share whose item contexts can be
/// gathered in the time left (`items_left` contexts at the rate of the entities'), with
/// every selection example's.
fn fit_items(pending: &mut Vec<Pending>, items_left: f64) {
    let need = |p: &Pending| p.candidates.len() as f64;
    let val: f64 = pending.iter().filter(|p| !p.train).map(need).sum();
    let train: f64 = pending.iter().filter(|p| p.train).map(need).sum();
    if val + train <= items_left || train == 0.0 {
        return;
    }
    let keep = ((items_left - val).max(0.0) / train).max(0.05);
    let mut acc = 0.0;
    pending.retain(|p| {
        if !p.train {
            return true;
        }
        acc += keep;
        let kept = acc >= 1.0;
        if kept {
            acc -= 1.0;
        }
        kept
    });
}

/// Per training group, a random sample of its popular items: the pool each step draws
/// its random negatives from (empty for groups with no training example).
fn shared_pools(g: &Groups, pending: &[Pending], seed: u64) -> Vec<Vec<u32>> {
    let mut shared_items: Vec<Vec<u32>> = vec![Vec::new(); g.time.len()];
    let train_groups: HashSet<usize> = pending
        .iter()
        .filter(|p| p.train)
        .map(|p| p.group)
        .collect();
    for &gi in &train_groups {
        shared_items[gi] = sample(g.stats[gi].popular.clone(), SHARED_POOL, seed ^ gi as u64);
    }
    shared_items
}

/// The examples whose entity context was found, with their candidates: a training example
/// keeps its positives and the hardest negatives (and is dropped when no label item is a
/// candidate, as there is nothing to learn from it); a selection example keeps every
/// candidate, and counts toward the candidate recall (returned too).
fn pending_examples(
    g: &Groups,
    all: &[(&Listed, bool)],
    ectx: Vec<Option<EntityCtx>>,
    rc: &RankConfig,
) -> (Vec<EncodedContext>, Vec<Pending>, Option<f64>) {
    let mut entities: Vec<EncodedContext> = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
    let (mut label_items, mut label_hits) = (0usize, 0usize);
    for ((l, is_train), c) in all.iter().zip(ectx) {
        let Some((ec, ctx_keys)) = c else { continue };
        let gi = g.group_of[&item_side_time(l.anchor, rc.window.unit)];
        let h = g.log.history(&l.entity, l.anchor, rc);
        let feats = EntityFeats::new(&h, &g.stats[gi], rc);
        let ctx_items: Vec<u32> = ctx_keys.iter().filter_map(|k| g.log.item_id(k)).collect();
        let cands = candidates(&h, &feats, &g.stats[gi], &ctx_items, rc);
        let labels: HashSet<u32> = l.items.iter().filter_map(|k| g.log.item_id(k)).collect();
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
            group: gi,
            entity: entities.len() - 1,
            candidates: cands,
            positives,
            n_relevant: l.items.len(),
            feats,
            train: *is_train,
        });
    }
    let recall = (label_items > 0).then(|| label_hits as f64 / label_items as f64);
    (entities, pending, recall)
}

/// The training data from the gathered item contexts: items whose row is not visible at
/// the item-side time are left out of every candidate list and pool, and the rest are
/// numbered by their slot in `items`.
fn rank_examples(
    g: &Groups,
    ictx: Vec<Option<EncodedContext>>,
    item_meta: &[(usize, u32)],
    shared_items: &[Vec<u32>],
    pending: Vec<Pending>,
) -> RankData {
    let mut data = RankData::default();
    let mut slot: HashMap<(usize, u32), usize> = HashMap::new();
    for (n, c) in ictx.into_iter().enumerate() {
        if let Some(c) = c {
            let (gi, i) = item_meta[n];
            slot.insert((gi, i), data.items.len());
            data.items.push(c);
            data.item_feats.push(g.stats[gi].item_feats(i));
        }
    }
    data.shared = shared_items
        .iter()
        .enumerate()
        .map(|(gi, v)| {
            v.iter()
                .filter_map(|&i| slot.get(&(gi, i)).copied())
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
    data
}
