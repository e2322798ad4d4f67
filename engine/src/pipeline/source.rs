//! Where a recipe's data comes from. The extension implements [`Source`] with SPI, as the
//! calling user (privileges and row-level security apply); the engine's tests with data
//! generated in memory. A recipe never talks to PostgreSQL itself.

use std::str::FromStr;

use super::error::{Error, Result};
use crate::encode::{EncodedContext, Encoder, Subgraph};
use crate::model::ModelConfig;
use crate::sampler::Plan;
use crate::train::{Progress, TrainConfig, TrainError, TrainedModel};

/// A task's splits (anchors fixed when the task was created).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

impl FromStr for Split {
    type Err = Error;
    fn from_str(s: &str) -> Result<Split> {
        match s {
            "train" => Ok(Split::Train),
            "val" => Ok(Split::Val),
            "test" => Ok(Split::Test),
            other => Err(Error::new("22023", format!("unknown split \"{other}\""))
                .hint("Use 'train', 'val' or 'test'.")),
        }
    }
}

/// A label as the task's label statement computes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    /// NULL (e.g. a value of an entity with no row in the window, where that has no 0).
    Missing,
    /// 0/1 (binary) or the value (regression).
    Value(f64),
    /// A class (multiclass).
    Class(String),
    /// Distinct items (ranking).
    Items(Vec<String>),
}

impl Label {
    /// The label as SQL shows it: `label` holds binary and regression labels,
    /// `label_text` the class of a multiclass task and the item list of a ranking task.
    pub fn columns(self) -> (Option<f64>, Option<String>) {
        match self {
            Label::Missing => (None, None),
            Label::Value(v) => (Some(v), None),
            Label::Class(c) => (None, Some(c)),
            Label::Items(items) => (None, Some(format!("{{{}}}", items.join(",")))),
        }
    }
}

/// One labelled (entity, anchor) of a split.
#[derive(Debug, Clone, PartialEq)]
pub struct Labeled {
    pub entity: String,
    /// µs since the Unix epoch, UTC.
    pub anchor: i64,
    pub label: Label,
}

/// The labelled rows of one key's splits, kept while the key stays the same (the
/// extension's key: the role, the transaction and the task's label statement), so that
/// many in-context answers in one statement run each label statement once. One key at a
/// time: what it holds is bounded by one task's labels.
#[derive(Default)]
pub struct LabelCache {
    key: String,
    splits: std::collections::HashMap<Split, Vec<Labeled>>,
    /// Rows at anchors outside the splits ([`Source::labels_at`]), by anchor.
    at: std::collections::HashMap<i64, Vec<Labeled>>,
}

/// Rows at anchors outside the splits held at most: past it, all but the anchors of the
/// request at hand are forgotten (a long transaction asking at ever new times must not
/// grow the cache without bound).
pub const MAX_ROWS_HELD: usize = 200_000;

impl LabelCache {
    fn keep(&mut self, key: String) {
        if self.key != key {
            (self.key, self.splits, self.at) = (key, Default::default(), Default::default());
        }
    }

    /// The rows of `split` under `key`, from `compute` when not held.
    pub fn get_or(
        &mut self,
        key: String,
        split: Split,
        compute: impl FnOnce() -> Vec<Labeled>,
    ) -> Vec<Labeled> {
        self.keep(key);
        self.splits.entry(split).or_insert_with(compute).clone()
    }

    /// The rows at `anchors` under `key`: those held, the others from one `compute` of the
    /// anchors not held.
    pub fn at_or(
        &mut self,
        key: String,
        anchors: &[i64],
        compute: impl FnOnce(&[i64]) -> Vec<Labeled>,
    ) -> Vec<Labeled> {
        self.keep(key);
        let mut missing: Vec<i64> = (anchors.iter())
            .filter(|a| !self.at.contains_key(a))
            .copied()
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let fresh = compute(&missing);
            let held: usize = self.at.values().map(Vec::len).sum();
            if held + fresh.len() > MAX_ROWS_HELD {
                self.at.retain(|a, _| anchors.contains(a));
            }
            for a in &missing {
                self.at.insert(*a, Vec::new());
            }
            for r in fresh {
                self.at.entry(r.anchor).or_default().push(r);
            }
        }
        (anchors.iter())
            .flat_map(|a| self.at.get(a).cloned().unwrap_or_default())
            .collect()
    }
}

/// The contexts of a batch of seeds.
#[derive(Debug, Clone, Default)]
pub struct Gathered {
    pub contexts: Vec<Subgraph>,
    /// Via which foreign key each row of each context was reached.
    pub via: Vec<Vec<Option<String>>>,
    /// Whether each seed's row was found (visible at its anchor).
    pub found: Vec<bool>,
}

/// What happens during a long call: reported as it goes, and where cancel is heard (an
/// `Err` from [`Source::report`] stops the call).
#[derive(Debug)]
pub enum Event<'a> {
    /// A new phase: `labels`, `gathering`, `training`.
    Phase(&'static str),
    /// A line for the user.
    Notice(String),
    /// Between training steps.
    Step(&'a Progress),
    /// After an epoch, with the entry to keep in the run's history.
    Epoch(&'a Progress, serde_json::Value),
    /// Between pieces of other work.
    Poll,
}

pub trait Source {
    /// The labelled examples of a split, ordered by anchor then entity.
    fn labels(&mut self, split: Split) -> Result<Vec<Labeled>>;

    /// The labelled examples at `anchors` (µs), outside the splits, computed by the task's
    /// label statement: an in-context answer's newest examples. Default: none.
    fn labels_at(&mut self, _anchors: &[i64]) -> Result<Vec<Labeled>> {
        Ok(Vec::new())
    }

    /// The contexts of `seeds` (keys of rows of `table`, each with its anchor), gathered
    /// with `plan`. One call is one piece: the caller sizes pieces to the memory budget.
    fn gather(&mut self, plan: &Plan, table: &str, seeds: &[(String, i64)]) -> Result<Gathered>;

    /// The interaction log of a ranking task up to `upto` (µs): `(entity, item, µs)`
    /// rows, all entities' or one's.
    fn interactions(
        &mut self,
        upto: i64,
        entity: Option<&str>,
    ) -> Result<Vec<(String, String, i64)>>;

    /// Bytes one call may hold in contexts.
    fn memory_limit(&self) -> usize;

    fn report(&mut self, event: Event<'_>) -> Result<()>;
}

/// Where computation may run instead of here: rdl's background worker and its device.
/// The default does everything here.
pub trait Offload {
    /// Trains elsewhere; `None`: train here.
    fn train(
        &self,
        _cfg: &TrainConfig,
        _model_cfg: &ModelConfig,
        _encoder: &Encoder,
        _train: &[EncodedContext],
        _val: &[EncodedContext],
        _on_step: &mut dyn FnMut(&Progress) -> bool,
    ) -> Option<std::result::Result<TrainedModel, TrainError>> {
        None
    }

    /// Calibrated outputs per context, computed elsewhere; `None`: score here.
    fn score(
        &self,
        _model_id: i64,
        _version: i32,
        _model: &TrainedModel,
        _ctxs: &[EncodedContext],
    ) -> Option<Result<Vec<Vec<f64>>>> {
        None
    }
}

/// Everything here.
pub struct Here;

impl Offload for Here {}
