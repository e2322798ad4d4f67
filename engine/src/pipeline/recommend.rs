//! Recommending with a ranking model: the item index of one item-side time (the
//! interaction log up to it, item statistics, and the item embeddings computed so far —
//! lazily, for the candidates asked for, or for the whole pool at once), an entity's top
//! `k`, and evaluation next to the two baselines. See [`super::ranking`] for what is read
//! when.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use super::error::{Error, Result};
use super::gather::GATHER_BATCH;
use super::one::gather_one;
use super::ranking::{context_items, entity_contexts, item_contexts, listed, EntityCtx, Listed};
use super::servable::{Ranker, Servable};
use super::source::{Event, Source, Split};
use crate::metrics;
use crate::pql::TaskSpec;
use crate::rank::{
    self, candidates, history_baseline, item_side_time, popularity_baseline,
    recent_history_baseline, EntityFeats, History, ItemStats, Log, RankConfig,
};

/// The item side at one item-side time.
pub struct ItemIndex {
    pub time: i64,
    pub log: Log,
    pub stats: ItemStats,
    pub embeddings: HashMap<u32, Vec<f32>>,
    /// Items whose row was not visible at `time`.
    pub absent: HashSet<u32>,
}

fn ranker_of(s: &Servable) -> Result<&Ranker> {
    s.ranker()
        .ok_or_else(|| Error::new("42809", "a tabular model does not rank items"))
}

impl ItemIndex {
    /// Reads the interaction log up to `time` and computes the item statistics (no
    /// embeddings yet).
    pub fn build(src: &mut dyn Source, s: &Servable, time: i64) -> Result<ItemIndex> {
        let r = ranker_of(s)?;
        let log = Log::new(src.interactions(time, None)?);
        let stats = ItemStats::at(&log, time, &r.ranker.rank_cfg, true);
        Ok(ItemIndex {
            time,
            log,
            stats,
            embeddings: HashMap::new(),
            absent: HashSet::new(),
        })
    }

    /// Computes the embeddings of `items` the index does not hold yet.
    pub fn ensure(&mut self, src: &mut dyn Source, s: &Servable, items: &[u32]) -> Result<()> {
        let r = ranker_of(s)?;
        let mut missing: Vec<u32> = items
            .iter()
            .copied()
            .filter(|i| !self.embeddings.contains_key(i) && !self.absent.contains(i))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let seeds: Vec<(String, i64)> = missing
            .iter()
            .map(|&i| (self.log.item_keys[i as usize].clone(), self.time))
            .collect();
        let ctxs = item_contexts(src, &s.plan, &r.item_table, &seeds, &r.item_encoder)?;
        let (mut found, mut refs) = (Vec::new(), Vec::new());
        for (i, c) in missing.iter().zip(&ctxs) {
            match c {
                Some(c) => {
                    found.push(*i);
                    refs.push(c);
                }
                None => {
                    self.absent.insert(*i);
                }
            }
        }
        let emb = r.ranker.item_embeddings(&refs)?;
        for (i, e) in found.into_iter().zip(emb) {
            self.embeddings.insert(i, e);
        }
        Ok(())
    }

    /// Embeds every item of the pool (what later calls of the day then only score).
    pub fn prepare(&mut self, src: &mut dyn Source, s: &Servable) -> Result<usize> {
        let pool = self.stats.popular.clone();
        for chunk in pool.chunks(4 * GATHER_BATCH) {
            self.ensure(src, s, chunk)?;
        }
        Ok(pool.len())
    }

    /// What `rdl_recommend_prepare` reports once [`ItemIndex::prepare`] embedded a pool of
    /// `pool` items: the item-side time, what the index holds, and the seconds it took
    /// (`index_s` to read the log, `seconds` in all).
    pub fn prepared(&self, pool: usize, index_s: f64, seconds: f64) -> Value {
        json!({
            "item_side_time": crate::base::time::format_timestamp(self.time),
            "pool_items": pool,
            "embedded_items": self.embeddings.len(),
            "interactions": self.log.events.len(),
            "index_seconds": index_s,
            "seconds": seconds,
        })
    }

    /// An entity's candidates scored, best first, at most `k`: `(item id, score)`.
    fn rank(
        &self,
        r: &Ranker,
        e: &[f32],
        cands: &[u32],
        feats: &EntityFeats,
        k: usize,
        exclude: &HashSet<u32>,
    ) -> Result<Vec<(u32, f64)>> {
        let items: Vec<u32> = cands
            .iter()
            .copied()
            .filter(|i| self.embeddings.contains_key(i) && !exclude.contains(i))
            .collect();
        let vs: Vec<&[f32]> = items
            .iter()
            .map(|i| self.embeddings[i].as_slice())
            .collect();
        let fs: Vec<rank::Feats> = items
            .iter()
            .map(|&i| rank::pair_feats(&feats.get(i), &self.stats.item_feats(i)))
            .collect();
        let s = r.ranker.score(e, &vs, &fs)?;
        Ok(rank::top_k(&s, k)
            .into_iter()
            .map(|j| (items[j], s[j] as f64))
            .collect())
    }
}

/// The item-side time of an anchor for a model.
pub fn index_time(s: &Servable, anchor: i64) -> Result<i64> {
    Ok(item_side_time(
        anchor,
        ranker_of(s)?.ranker.rank_cfg.window.unit,
    ))
}

/// The top `k` items for one entity at `anchor`: `(item key, score, rank)`. With
/// `exclude_owned`, the items the entity already had are left out. The index must be
/// the model's at [`index_time`] of `anchor`.
pub fn recommend(
    src: &mut dyn Source,
    s: &Servable,
    spec: &TaskSpec,
    idx: &mut ItemIndex,
    (key, anchor): (&str, i64),
    k: usize,
    exclude_owned: bool,
) -> Result<Vec<(String, f64, i32)>> {
    let r = ranker_of(s)?;
    let rc = &r.ranker.rank_cfg;
    let one = gather_one(src, &s.plan, &spec.entity.table, (key, anchor), None, None)?;
    let ctx = r.ranker.encoder.encode(&one.context);
    let ctx_keys = context_items(&one.context, &r.item_table);
    let e = r.ranker.entity_embeddings(&[&ctx])?;
    let events = src.interactions(anchor, Some(key))?;
    let hist = History::new(
        events
            .iter()
            .filter_map(|(_, i, at)| Some((idx.log.item_id(i)?, *at))),
        anchor,
        rc,
    );
    let feats = EntityFeats::new(&hist, &idx.stats, rc);
    let ctx_items: Vec<u32> = ctx_keys.iter().filter_map(|k| idx.log.item_id(k)).collect();
    let cands = candidates(&hist, &feats, &idx.stats, &ctx_items, rc);
    idx.ensure(src, s, &cands)?;
    let exclude: HashSet<u32> = if exclude_owned {
        hist.items.iter().map(|h| h.item).collect()
    } else {
        HashSet::new()
    };
    Ok(idx
        .rank(r, &e[0], &cands, &feats, k, &exclude)?
        .into_iter()
        .enumerate()
        .map(|(n, (i, sc))| (idx.log.item_keys[i as usize].clone(), sc, n as i32 + 1))
        .collect())
}

/// The caller's cache of item indexes: the model's index at an item-side time.
pub type IndexFn<'a> =
    dyn FnMut(&mut dyn Source, i64) -> Result<std::rc::Rc<std::cell::RefCell<ItemIndex>>> + 'a;

/// Ranking metrics of a model on a split, next to the two baselines. `index` gives the
/// model's item index at an item-side time (the caller's cache).
pub fn evaluate(
    src: &mut dyn Source,
    s: &Servable,
    spec: &TaskSpec,
    split: Split,
    index: &mut IndexFn,
) -> Result<Value> {
    let r = ranker_of(s)?;
    let rc = r.ranker.rank_cfg.clone();
    let k = rc.k.max(1);
    let labels = listed(src.labels(split)?);
    let upto = labels.iter().map(|x| x.anchor).max().unwrap_or(0);
    let log = Log::new(src.interactions(upto, None)?);
    let seeds: Vec<(String, i64)> = labels
        .iter()
        .map(|x| (x.entity.clone(), x.anchor))
        .collect();
    let ectx = entity_contexts(
        src,
        &s.plan,
        &spec.entity.table,
        &seeds,
        &r.ranker.encoder,
        &r.item_table,
        None,
    )?
    .0;
    let found: Vec<usize> = (0..labels.len()).filter(|&i| ectx[i].is_some()).collect();
    let refs: Vec<_> = found
        .iter()
        .filter_map(|&i| ectx[i].as_ref().map(|c| &c.0))
        .collect();
    let emb = r.ranker.entity_embeddings(&refs)?;
    let groups = item_time_groups(&labels, &found, &rc);
    let n = found.len();
    let mut lists: [Vec<Vec<String>>; 4] = Default::default();
    for l in lists.iter_mut() {
        *l = vec![Vec::new(); n];
    }
    let mut relevant: Vec<Vec<String>> = vec![Vec::new(); n];
    let (mut label_items, mut label_hits) = (0usize, 0usize);
    let mut baseline_stats: HashMap<i64, ItemStats> = HashMap::new();
    let keys = |v: Vec<u32>| -> Vec<String> {
        v.into_iter()
            .map(|i| log.item_keys[i as usize].clone())
            .collect()
    };
    for (ti, members) in groups {
        src.report(Event::Poll)?;
        let idx = index(src, ti)?;
        let mut idx = idx.borrow_mut();
        // Per example: history at the exact anchor (from the full log), candidates from
        // the index at ti (item ids of the index's log).
        let mut prepared = Vec::with_capacity(members.len());
        let mut all_cands: Vec<u32> = Vec::new();
        for &m in &members {
            let ctx = ectx[found[m]].as_ref();
            let (hist, feats, cands) = example_candidates(&log, &idx, &labels[found[m]], ctx, &rc);
            all_cands.extend(&cands);
            prepared.push((m, hist, feats, cands));
        }
        idx.ensure(src, s, &all_cands)?;
        for (m, hist, feats, cands) in prepared {
            let lab = &labels[found[m]];
            let ranked = idx.rank(r, &emb[m], &cands, &feats, k, &HashSet::new())?;
            lists[0][m] = ranked
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
            lists[1][m] = keys(popularity_baseline(bs, k));
            lists[2][m] = keys(history_baseline(&hist, k));
            lists[3][m] = keys(recent_history_baseline(&hist, k));
            relevant[m] = lab.items.clone();
        }
    }
    let block = |ranked: &[Vec<String>]| ranking_block(ranked, &relevant, k);
    let mut m = block(&lists[0]);
    if let Some(o) = m.as_object_mut() {
        o.insert("split".into(), split.name().into());
        o.insert("k".into(), k.into());
        o.insert("examples".into(), n.into());
        o.insert("examples_without_context".into(), (labels.len() - n).into());
        o.insert(
            "candidate_recall".into(),
            json!((label_items > 0).then(|| label_hits as f64 / label_items as f64)),
        );
        o.insert(
            "baselines".into(),
            json!({"popularity": block(&lists[1]), "own_history": block(&lists[2])}),
        );
        // Not a baseline of the task's definition: a reference that shows how much of the
        // history's signal is recency.
        o.insert("reference_own_most_recent".into(), block(&lists[3]));
        o.insert("model_id".into(), s.id.into());
        o.insert("model_version".into(), s.version.into());
    }
    Ok(m)
}

/// The examples (their numbers in `found`) grouped by item-side time, in time order: one
/// item index (statistics and embeddings) serves each group.
fn item_time_groups(labels: &[Listed], found: &[usize], rc: &RankConfig) -> Vec<(i64, Vec<usize>)> {
    let mut by_group: HashMap<i64, Vec<usize>> = HashMap::new();
    for (n, &i) in found.iter().enumerate() {
        by_group
            .entry(item_side_time(labels[i].anchor, rc.window.unit))
            .or_default()
            .push(n);
    }
    let mut groups: Vec<(i64, Vec<usize>)> = by_group.into_iter().collect();
    groups.sort_by_key(|g| g.0);
    groups
}

/// An example's history at the exact anchor (from the full log, for the baselines), and
/// its features and candidates from the index at the item-side time (item ids of the
/// index's log, which the model ranks in).
fn example_candidates(
    log: &Log,
    idx: &ItemIndex,
    lab: &Listed,
    ctx: Option<&EntityCtx>,
    rc: &RankConfig,
) -> (History, EntityFeats, Vec<u32>) {
    let hist = log.history(&lab.entity, lab.anchor, rc);
    let events: Vec<(u32, i64)> = log
        .entity_id(&lab.entity)
        .map(|e| log.entity_events(e, lab.anchor).collect())
        .unwrap_or_default();
    let hist_i = History::new(
        events
            .iter()
            .filter_map(|(i, at)| Some((idx.log.item_id(&log.item_keys[*i as usize])?, *at))),
        lab.anchor,
        rc,
    );
    let feats = EntityFeats::new(&hist_i, &idx.stats, rc);
    let ctx_items: Vec<u32> = ctx
        .map(|c| c.1.iter().filter_map(|k| idx.log.item_id(k)).collect())
        .unwrap_or_default();
    let cands = candidates(&hist_i, &feats, &idx.stats, &ctx_items, rc);
    (hist, feats, cands)
}

/// MAP, recall and NDCG at `k` of one ranking of every example.
fn ranking_block(ranked: &[Vec<String>], relevant: &[Vec<String>], k: usize) -> Value {
    json!({
        "map_at_k": metrics::map_at_k(ranked, relevant, k),
        "recall_at_k": metrics::recall_at_k(ranked, relevant, k),
        "ndcg_at_k": metrics::ndcg_at_k(ranked, relevant, k),
    })
}
