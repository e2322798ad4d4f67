//! Synthetic relational databases with known signal and realistic untidiness, for the
//! generality benchmark and for pretraining a schema-agnostic model (DESIGN §6b).
//!
//! `generate(seed, &config)` is deterministic: the same seed and config give the same
//! [`Database`] (and byte-identical files from [`write`]). Across seeds the databases range
//! from two tables (an entity and its events) to thirty: geography chains
//! (event → order → customer → region → country), items with categories and brands,
//! many-to-many links with composite keys, self-references (referrals, managers), yearly
//! summaries with composite keys and a composite foreign key, wide tables of mostly noise,
//! text keys, NULL-heavy and heavy-tailed columns, date and timestamp(tz) time columns —
//! named from one of several domains' vocabularies (retail, healthcare, ...).
//!
//! **Signal.** Each entity has latent traits (activity, spend, trend, frailty, taste) that
//! drive a day-by-day simulation of its events with feedback (habit, trouble, churn): see
//! [`simulate`]. The same process makes the past and the future, so the generated tasks
//! ([`tasks`]) — churn, activity thresholds, spend, multi-hop follow-ups, a multiclass
//! static column, next items, item demand — are learnable from multi-hop temporal
//! aggregates, with `signal` and `noise` as knobs.
//!
//! Seeds below 1000 are for pretraining, 1000 and above for benchmarks: never mix them
//! (see `bench/generality/README.md`).

mod db;
mod dims;
mod facts;
pub mod gather;
pub mod labels;
mod latent;
mod noise;
mod plan;
mod rng;
mod simulate;
mod tasks;
pub mod vocab;
pub mod write;

#[cfg(test)]
mod tests;

pub use db::{Cell, ColType, Column, Database, ForeignKey, Key, Role, Strings, Table, SCHEMA};
pub use tasks::{SplitStats, TaskDef};

use serde::{Deserialize, Serialize};

pub(crate) const DAY: i64 = crate::base::time::US_PER_DAY;

/// Seeds from this one on are reserved for benchmarks.
pub const FIRST_BENCHMARK_SEED: u64 = 1000;

/// How many rows in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// About 10^4 rows: unit tests, quick looks.
    Tiny,
    /// About 3·10^4 rows.
    Small,
    /// About 10^5 rows: the benchmark default.
    Medium,
    /// About 10^6 rows.
    Large,
}

impl Scale {
    pub fn rows(self) -> usize {
        match self {
            Scale::Tiny => 10_000,
            Scale::Small => 30_000,
            Scale::Medium => 100_000,
            Scale::Large => 1_000_000,
        }
    }

    pub fn parse(s: &str) -> Option<Scale> {
        Some(match s {
            "tiny" => Scale::Tiny,
            "small" => Scale::Small,
            "medium" => Scale::Medium,
            "large" => Scale::Large,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbConfig {
    pub scale: Scale,
    /// How much entities differ in their latent traits and how strongly observable
    /// attributes and feedback act (1: default; 0: every entity alike).
    pub signal: f64,
    /// Unobservable shocks (1: default).
    pub noise: f64,
    /// Fixes the number of optional blocks (0: two tables, 1: about thirty); drawn from
    /// the seed when `None`.
    pub complexity: Option<f64>,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig {
            scale: Scale::Medium,
            signal: 1.0,
            noise: 1.0,
            complexity: None,
        }
    }
}

/// Generates database `seed`: tables, keys, rows and tasks, in memory.
pub fn generate(seed: u64, config: &DbConfig) -> Database {
    build(seed, config).0
}

/// Database `seed` with, besides its tasks, the pretraining-only ones
/// ([`tasks::value_tasks`]); for pretraining seeds (below 1000) only.
pub fn generate_for_pretraining(seed: u64, config: &DbConfig) -> Database {
    let (mut db, plan) = build(seed, config);
    let extra = tasks::value_tasks(&db, &plan);
    db.tasks.extend(extra);
    db
}

fn build(seed: u64, config: &DbConfig) -> (Database, plan::Plan) {
    let plan = plan::plan(seed, config);
    let world = latent::world(seed, &plan, config);
    let events = simulate::simulate(seed, &plan, &world, config);
    let mut cx = dims::Ctx {
        plan: &plan,
        world: &world,
        rng: rng::Rng::new(seed, "tables"),
        noise_rng: rng::Rng::new(seed, "noise"),
        strings: Strings::default(),
        tables: Vec::new(),
        fks: Vec::new(),
        entity_keys: Vec::new(),
        item_keys: Vec::new(),
    };
    dims::dimensions(&mut cx);
    facts::noise_tables(&mut cx, true);
    dims::entity(&mut cx);
    facts::orders(&mut cx, &events);
    facts::entity_events(&mut cx, &events);
    facts::periodic(&mut cx, &events);
    facts::noise_tables(&mut cx, false);
    let mut db = Database {
        seed,
        domain: plan.domain.name.to_string(),
        tables: cx.tables,
        foreign_keys: cx.fks,
        strings: cx.strings,
        tasks: Vec::new(),
        start: plan.start,
        end: plan.start + plan.days * DAY,
    };
    db.tasks = tasks::tasks(&db, &plan);
    (db, plan)
}
