//! Recommendations: ranking tasks (`LIST_DISTINCT(fact.fk, start, end, unit) RANK TOP k`).
//!
//! The labels of an (entity, anchor) are the distinct items (rows of the table the foreign
//! key points at) the entity reaches through the fact table in the window after the anchor.
//! This module holds what is computed from the **interaction log** — the `(entity, item,
//! time)` triples of the fact table — at an anchor `t`, never looking past it:
//!
//! - [`ItemStats`] at `t`: per item the number of interactions in the last window
//!   `(t − len, t]`, in the same window one year earlier, and in all time up to `t`; the
//!   items seen up to `t` (the **pool**: nothing else can be recommended), ranked by
//!   popularity; and **transitions**: for item `j`, the items `i` that entities reached
//!   within one window length after `j` (`P(j → i)` = entities with both / entities with `j`).
//! - [`History`] of an entity at `t`: its items with count, last time and count in the last
//!   window.
//! - [`EntityFeats`]: the entity-specific features of every item they touch (history items,
//!   and items reached by a transition from a recent history item).
//! - [`candidates`]: history (newest first), transition neighbours, items in the entity's
//!   relational context, popular items — restricted to the pool, capped.
//! - the two baselines: popularity in the last window, and the entity's own most frequent
//!   past items.
//!
//! Every function takes the time it may look up to and ignores later events: a test
//! plants events after the anchor and checks that nothing changes.
//!
//! The two-tower model that scores (entity, item) pairs is in [`model`]; training in
//! [`train`].

pub mod model;
pub mod train;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::base::time::{add, US_PER_DAY, US_PER_HOUR};
use crate::pql::ast::Unit;
use crate::pql::Window;

/// Entity-specific features of a pair: `log1p(count)`, recency `exp(−Δt / len)`,
/// `log1p(count in the last window)`, share of the entity's interactions, transition score,
/// recency rank `1 / (1 + position among the entity's items, newest first)`.
pub const N_ENTITY_FEATS: usize = 6;
/// Item features at the item-side time: normalised `log1p` of the popularity in the last
/// window, in the same window a year earlier, and in all time.
pub const N_ITEM_FEATS: usize = 3;
pub const N_FEATS: usize = N_ENTITY_FEATS + N_ITEM_FEATS;

pub type EntityFeat = [f32; N_ENTITY_FEATS];
pub type ItemFeat = [f32; N_ITEM_FEATS];
pub type Feats = [f32; N_FEATS];

/// What a ranking model needs besides its weights: candidate generation and sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RankConfig {
    /// The task's `RANK TOP k` (the metrics' cut-off).
    pub k: usize,
    /// The task's label window (its length defines "the last window" and transitions).
    pub window: Window,
    /// Candidates scored per entity at most.
    pub max_candidates: usize,
    /// Most popular items of the last window among the candidates.
    pub popular: usize,
    /// Transition neighbours among the candidates.
    pub neighbors: usize,
    /// Distinct recent history items that transitions start from.
    pub recent: usize,
    /// Transitions kept per item.
    pub transitions_per_item: usize,
    /// Token cap of an item's context (entities use the model's `max_tokens`).
    pub item_max_tokens: usize,
    /// Training: candidates of each example used as negatives (hardest first).
    pub hard_negatives: usize,
    /// Training: random negatives from the anchor's pool shared by a batch.
    pub shared_negatives: usize,
    /// Width of the entity and item embeddings.
    pub repr_dim: usize,
    /// Hidden width of the pair scorer.
    pub hidden: usize,
}

impl Default for RankConfig {
    fn default() -> Self {
        RankConfig {
            k: 10,
            window: Window {
                start: 0,
                end: 30,
                unit: Unit::Days,
            },
            max_candidates: 400,
            popular: 200,
            neighbors: 100,
            recent: 20,
            transitions_per_item: 50,
            item_max_tokens: 64,
            hard_negatives: 4,
            shared_negatives: 32,
            repr_dim: 64,
            hidden: 64,
        }
    }
}

impl RankConfig {
    fn len(&self) -> i64 {
        self.window.end - self.window.start
    }

    /// `(lo, hi]` of the last window before `t`.
    pub fn last_window(&self, t: i64) -> (i64, i64) {
        (add(t, -self.len(), self.window.unit), t)
    }

    /// `(lo, hi]` of the label window one year before the one that follows `t`, cut at `t`.
    pub fn window_a_year_earlier(&self, t: i64) -> (i64, i64) {
        let w = &self.window;
        let lo = add(add(t, w.start, w.unit), -12, Unit::Months);
        let hi = add(add(t, w.end, w.unit), -12, Unit::Months);
        (lo, hi.min(t))
    }

    /// Whether `t2` is at most one window length after `t1`.
    fn within_len(&self, t1: i64, t2: i64) -> bool {
        t2 <= add(t1, self.len(), self.window.unit)
    }

    /// Window length in µs (months as 30.44 days), for recency decay.
    fn len_us(&self) -> f64 {
        let unit = match self.window.unit {
            Unit::Hours => US_PER_HOUR as f64,
            Unit::Days => US_PER_DAY as f64,
            Unit::Weeks => 7.0 * US_PER_DAY as f64,
            Unit::Months => 30.436_875 * US_PER_DAY as f64,
        };
        (self.len().max(1) as f64) * unit
    }
}

/// The time the item side (pool, statistics, item contexts) is computed at for an anchor:
/// the start of its UTC day (its hour for windows in hours). Always `<= t`, so nothing
/// after the anchor is read; all anchors of one day share one item index.
pub fn item_side_time(t: i64, unit: Unit) -> i64 {
    let q = match unit {
        Unit::Hours => US_PER_HOUR,
        _ => US_PER_DAY,
    };
    t.div_euclid(q) * q
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub time: i64,
    pub entity: u32,
    pub item: u32,
}

/// The interaction log: every `(entity, item, time)` of the fact table, interned, sorted by
/// time (then entity and item key), so the result never depends on the order rows came in.
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub entity_keys: Vec<String>,
    pub item_keys: Vec<String>,
    entity_index: HashMap<String, u32>,
    item_index: HashMap<String, u32>,
    pub events: Vec<Event>,
    /// Per entity: indices into `events`, in time order.
    by_entity: Vec<Vec<u32>>,
}

impl Log {
    pub fn new(rows: impl IntoIterator<Item = (String, String, i64)>) -> Log {
        let mut rows: Vec<(String, String, i64)> = rows.into_iter().collect();
        rows.sort_by(|a, b| {
            a.2.cmp(&b.2)
                .then_with(|| a.0.cmp(&b.0))
                .then_with(|| a.1.cmp(&b.1))
        });
        let mut log = Log::default();
        for (e, i, t) in rows {
            let entity = intern(&mut log.entity_index, &mut log.entity_keys, e);
            let item = intern(&mut log.item_index, &mut log.item_keys, i);
            if entity as usize == log.by_entity.len() {
                log.by_entity.push(Vec::new());
            }
            log.by_entity[entity as usize].push(log.events.len() as u32);
            log.events.push(Event {
                time: t,
                entity,
                item,
            });
        }
        log
    }

    pub fn n_items(&self) -> usize {
        self.item_keys.len()
    }

    pub fn item_id(&self, key: &str) -> Option<u32> {
        self.item_index.get(key).copied()
    }

    pub fn entity_id(&self, key: &str) -> Option<u32> {
        self.entity_index.get(key).copied()
    }

    /// Events with time `<= t`.
    pub fn upto(&self, t: i64) -> &[Event] {
        let n = self.events.partition_point(|e| e.time <= t);
        &self.events[..n]
    }

    /// An entity's `(item, time)` events with time `<= t`, oldest first.
    pub fn entity_events(&self, entity: u32, t: i64) -> impl Iterator<Item = (u32, i64)> + '_ {
        self.by_entity
            .get(entity as usize)
            .map(|v| v.as_slice())
            .unwrap_or(&[])
            .iter()
            .map(|&i| self.events[i as usize])
            .take_while(move |e| e.time <= t)
            .map(|e| (e.item, e.time))
    }

    /// The history of entity `key` at `t` (empty for an entity without events).
    pub fn history(&self, key: &str, t: i64, cfg: &RankConfig) -> History {
        match self.entity_id(key) {
            Some(e) => History::new(self.entity_events(e, t), t, cfg),
            None => History::new(std::iter::empty(), t, cfg),
        }
    }
}

fn intern(index: &mut HashMap<String, u32>, keys: &mut Vec<String>, k: String) -> u32 {
    if let Some(&i) = index.get(&k) {
        return i;
    }
    let i = keys.len() as u32;
    keys.push(k.clone());
    index.insert(k, i);
    i
}

fn norm_log(max: u32) -> f32 {
    if max == 0 {
        0.0
    } else {
        1.0 / (max as f32).ln_1p()
    }
}

/// Item statistics at one time `t` (see the module comment). Items are the log's ids.
#[derive(Debug, Clone)]
pub struct ItemStats {
    pub time: i64,
    pub pop_last: Vec<u32>,
    pub pop_year_before: Vec<u32>,
    pub pop_all: Vec<u32>,
    norms: [f32; N_ITEM_FEATS],
    /// Items seen up to `t`, most popular in the last window first (ties: all-time count,
    /// then the item's key).
    pub popular: Vec<u32>,
    /// Per item `j`: `(i, P(j → i))`, largest first.
    pub transitions: Vec<Vec<(u32, f32)>>,
}

impl ItemStats {
    /// Statistics from the log's events with time `<= t`; transitions only when asked.
    pub fn at(log: &Log, t: i64, cfg: &RankConfig, with_transitions: bool) -> ItemStats {
        let n = log.n_items();
        let (mut pop_last, mut pop_year, mut pop_all) =
            (vec![0u32; n], vec![0u32; n], vec![0u32; n]);
        let (lo, hi) = cfg.last_window(t);
        let (ylo, yhi) = cfg.window_a_year_earlier(t);
        for e in log.upto(t) {
            let i = e.item as usize;
            pop_all[i] += 1;
            if e.time > lo && e.time <= hi {
                pop_last[i] += 1;
            }
            if e.time > ylo && e.time <= yhi {
                pop_year[i] += 1;
            }
        }
        let mut popular: Vec<u32> = (0..n as u32).filter(|&i| pop_all[i as usize] > 0).collect();
        popular.sort_by(|&a, &b| {
            let (a, b) = (a as usize, b as usize);
            pop_last[b]
                .cmp(&pop_last[a])
                .then(pop_all[b].cmp(&pop_all[a]))
                .then_with(|| log.item_keys[a].cmp(&log.item_keys[b]))
        });
        let max = |v: &[u32]| v.iter().copied().max().unwrap_or(0);
        let norms = [
            norm_log(max(&pop_last)),
            norm_log(max(&pop_year)),
            norm_log(max(&pop_all)),
        ];
        let transitions = if with_transitions {
            transitions(log, t, cfg)
        } else {
            vec![Vec::new(); n]
        };
        ItemStats {
            time: t,
            pop_last,
            pop_year_before: pop_year,
            pop_all,
            norms,
            popular,
            transitions,
        }
    }

    /// Whether item `i` was seen up to the statistics' time (it is in the pool).
    pub fn seen(&self, i: u32) -> bool {
        self.pop_all.get(i as usize).is_some_and(|&c| c > 0)
    }

    pub fn item_feats(&self, i: u32) -> ItemFeat {
        let i = i as usize;
        let f = |v: &[u32], k: usize| {
            v.get(i)
                .map_or(0.0, |&c| (c as f32).ln_1p() * self.norms[k])
        };
        [
            f(&self.pop_last, 0),
            f(&self.pop_year_before, 1),
            f(&self.pop_all, 2),
        ]
    }
}

/// `P(j → i)`: of the entities that had `j` (up to `t`), the share that had `i` within one
/// window length after one of their `j` events (smoothed: `/ (entities with j + 2)`).
fn transitions(log: &Log, t: i64, cfg: &RankConfig) -> Vec<Vec<(u32, f32)>> {
    let n = log.n_items();
    let mut counts: HashMap<(u32, u32), u32> = HashMap::new();
    let mut had = vec![0u32; n];
    let mut pairs: std::collections::HashSet<(u32, u32)> = std::collections::HashSet::new();
    let mut items: std::collections::HashSet<u32> = std::collections::HashSet::new();
    let r = cfg.recent.max(1);
    for e in 0..log.entity_keys.len() as u32 {
        let mut recent: Vec<(u32, i64)> = Vec::new();
        for (i, t2) in log.entity_events(e, t) {
            for &(j, tj) in &recent {
                if j != i && cfg.within_len(tj, t2) {
                    pairs.insert((j, i));
                }
            }
            if let Some(p) = recent.iter().position(|x| x.0 == i) {
                recent.remove(p);
            }
            recent.push((i, t2));
            if recent.len() > r {
                recent.remove(0);
            }
            items.insert(i);
        }
        for p in pairs.drain() {
            *counts.entry(p).or_default() += 1;
        }
        for i in items.drain() {
            had[i as usize] += 1;
        }
    }
    let mut rows: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
    for ((j, i), c) in counts {
        rows[j as usize].push((i, c as f32 / (had[j as usize] as f32 + 2.0)));
    }
    for row in rows.iter_mut() {
        row.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        row.truncate(cfg.transitions_per_item);
    }
    rows
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistItem {
    pub item: u32,
    pub count: u32,
    pub last: i64,
    pub count_last_window: u32,
}

/// An entity's items up to `time`, newest (by last interaction) first.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub time: i64,
    pub items: Vec<HistItem>,
    pub total: u32,
}

impl History {
    /// From `(item, time)` events; events after `t` are ignored.
    pub fn new(events: impl Iterator<Item = (u32, i64)>, t: i64, cfg: &RankConfig) -> History {
        let (lo, _) = cfg.last_window(t);
        let mut by: HashMap<u32, HistItem> = HashMap::new();
        let mut total = 0;
        for (i, ti) in events {
            if ti > t {
                continue;
            }
            total += 1;
            let h = by.entry(i).or_insert(HistItem {
                item: i,
                count: 0,
                last: i64::MIN,
                count_last_window: 0,
            });
            h.count += 1;
            h.last = h.last.max(ti);
            if ti > lo {
                h.count_last_window += 1;
            }
        }
        let mut items: Vec<HistItem> = by.into_values().collect();
        items.sort_by(|a, b| {
            b.last
                .cmp(&a.last)
                .then(b.count.cmp(&a.count))
                .then(a.item.cmp(&b.item))
        });
        History {
            time: t,
            items,
            total,
        }
    }

    pub fn contains(&self, i: u32) -> bool {
        self.items.iter().any(|h| h.item == i)
    }
}

/// Entity-specific features of every item the entity touches (see [`N_ENTITY_FEATS`]);
/// any other item's are zeros. Sorted by item.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntityFeats(pub Vec<(u32, EntityFeat)>);

impl EntityFeats {
    pub fn new(h: &History, stats: &ItemStats, cfg: &RankConfig) -> EntityFeats {
        let len = cfg.len_us();
        let mut m: HashMap<u32, EntityFeat> = HashMap::new();
        for (rank, hi) in h.items.iter().enumerate() {
            let dt = (h.time - hi.last).max(0) as f64;
            m.insert(
                hi.item,
                [
                    (hi.count as f32).ln_1p(),
                    (-dt / len).exp() as f32,
                    (hi.count_last_window as f32).ln_1p(),
                    hi.count as f32 / h.total.max(1) as f32,
                    0.0,
                    1.0 / (1.0 + rank as f32),
                ],
            );
        }
        for hi in h.items.iter().take(cfg.recent) {
            let w = (-((h.time - hi.last).max(0) as f64) / len).exp() as f32;
            let Some(row) = stats.transitions.get(hi.item as usize) else {
                continue;
            };
            for &(i, p) in row {
                let f = m.entry(i).or_insert([0.0; N_ENTITY_FEATS]);
                f[4] = (f[4] + w * p).min(5.0);
            }
        }
        let mut v: Vec<(u32, EntityFeat)> = m.into_iter().collect();
        v.sort_by_key(|x| x.0);
        EntityFeats(v)
    }

    pub fn get(&self, i: u32) -> EntityFeat {
        match self.0.binary_search_by_key(&i, |x| x.0) {
            Ok(p) => self.0[p].1,
            Err(_) => [0.0; N_ENTITY_FEATS],
        }
    }

    /// Items with a transition score, best first (ties by id).
    pub fn neighbors(&self) -> Vec<u32> {
        let mut v: Vec<(u32, f32)> = self
            .0
            .iter()
            .filter(|x| x.1[4] > 0.0)
            .map(|x| (x.0, x.1[4]))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter().map(|x| x.0).collect()
    }
}

/// The full feature vector of a pair.
pub fn pair_feats(ent: &EntityFeat, item: &ItemFeat) -> Feats {
    let mut f = [0.0; N_FEATS];
    f[..N_ENTITY_FEATS].copy_from_slice(ent);
    f[N_ENTITY_FEATS..].copy_from_slice(item);
    f
}

/// The candidates of an entity: its history (newest first), transition neighbours, the
/// items in its relational context, then the popular items of the last window — only
/// items of the pool (`stats.seen`), each once, at most `max_candidates`.
pub fn candidates(
    h: &History,
    ent: &EntityFeats,
    stats: &ItemStats,
    context_items: &[u32],
    cfg: &RankConfig,
) -> Vec<u32> {
    let cap = cfg.max_candidates.max(1);
    let mut out: Vec<u32> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let hist = h.items.iter().map(|x| x.item);
    let neigh = ent.neighbors().into_iter().take(cfg.neighbors);
    let pop = stats.popular.iter().copied().take(cfg.popular);
    for i in hist
        .chain(neigh)
        .chain(context_items.iter().copied())
        .chain(pop)
    {
        if out.len() >= cap {
            break;
        }
        if stats.seen(i) && seen.insert(i) {
            out.push(i);
        }
    }
    out
}

/// Baseline 1: the most popular items of the last window before the statistics' time.
pub fn popularity_baseline(stats: &ItemStats, k: usize) -> Vec<u32> {
    stats
        .popular
        .iter()
        .copied()
        .filter(|&i| stats.pop_last[i as usize] > 0)
        .take(k)
        .collect()
}

/// Baseline 2: the entity's own most frequent past items (ties: the most recent first).
pub fn history_baseline(h: &History, k: usize) -> Vec<u32> {
    let mut v = h.items.clone();
    v.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(b.last.cmp(&a.last))
            .then(a.item.cmp(&b.item))
    });
    v.into_iter().take(k).map(|x| x.item).collect()
}

/// A reference, not one of the two baselines: the entity's most recent past items first.
pub fn recent_history_baseline(h: &History, k: usize) -> Vec<u32> {
    h.items.iter().take(k).map(|x| x.item).collect()
}

/// Indices of the `k` largest scores, best first (ties: the earlier index).
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

#[cfg(test)]
mod tests;
