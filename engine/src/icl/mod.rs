//! In-context prediction (DESIGN §6b): a pretrained model answers a task it was never
//! trained on from labelled examples of the same task gathered at answer time.
//!
//! An **episode** is one task on one database: `E` labelled examples — (entity, anchor)
//! contexts whose label windows closed at or before the query time — and `Q` query
//! contexts whose labels are hidden. The model ([`model::IclModel`]) reads every context
//! with the relational transformer, adds to each example's representation an embedding of
//! its label, lets every context attend to the examples, and reads each query's
//! prediction from its own state. Queries never see each other, so each answer depends on
//! the examples and its own context alone.
//!
//! **Nothing in the weights depends on one database.** Columns are known by a *slot*: the
//! episode's columns are dealt to [`SLOTS`] learned embeddings in an order drawn per
//! episode in pretraining (fixed at answer time), so the model learns to relate a query's
//! cells to the examples' cells of the same column, not what a column name means. Numbers
//! are ranked among the episode's own values, categorical values hashed, times relative
//! to each context's anchor — all from the episode's contexts, never from labels.
//! Regression labels are centred on the examples' median and scaled by their mean
//! absolute deviation, so one set of weights serves any unit.

pub mod model;
pub mod pretrain;
pub mod shipped;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::encode::{EncodedContext, Encoder, EncoderConfig, Subgraph};
use crate::model::ModelConfig;

/// Column slots (ids 2.. of the model's column embedding; 0 is unused, 1 the target).
pub const SLOTS: usize = 192;

/// Rows of the reader's column embedding: the unused id, the target and the slots.
pub const READER_COLUMNS: usize = 2 + SLOTS;

/// Binary episodes hold at least this share of each class among their examples (and, in
/// pretraining, their queries) when the labels have them, the answer's logit moved back
/// to the natural rate ([`prior_shift`]). 0: examples in their natural proportions. Tried
/// at 0.25 (`bench/in_context.sh`): rare events did not improve (client-escalation 0.568
/// → 0.562) and the mean zero-shot AUROC fell by 0.003, so it is off.
pub const MIN_CLASS_SHARE: f64 = 0.0;

/// `n` of `items` (fewer when there are fewer), drawn at random; for a binary task with
/// at least [`MIN_CLASS_SHARE`] of each class where there are enough of it.
pub fn pick<T: Clone>(
    items: &[T],
    label: impl Fn(&T) -> f64,
    n: usize,
    task: IclTask,
    rng: &mut ChaCha8Rng,
) -> Vec<T> {
    use rand::seq::IndexedRandom;
    if task != IclTask::Binary || items.len() <= n {
        let mut v: Vec<T> = items.choose_multiple(rng, n).cloned().collect();
        v.shuffle(rng);
        return v;
    }
    let (pos, neg): (Vec<&T>, Vec<&T>) = items.iter().partition(|x| label(x) > 0.5);
    let natural = pos.len() as f64 / items.len() as f64;
    let min = (n as f64 * MIN_CLASS_SHARE).ceil() as usize;
    let want = (n as f64 * natural).round() as usize;
    let want = if 2 * min <= n {
        want.clamp(min, n - min)
    } else {
        want
    };
    let n_pos = want.min(pos.len()).max(n.saturating_sub(neg.len()));
    let mut v: Vec<T> = pos
        .choose_multiple(rng, n_pos)
        .map(|x| (*x).clone())
        .collect();
    v.extend(neg.choose_multiple(rng, n - n_pos).map(|x| (*x).clone()));
    v.shuffle(rng);
    v
}

/// Examples from labelled rows grouped by anchor, newest first (anchors whose windows
/// closed by the time asked): up to `n` drawn from each anchor until there are `4n`, then
/// `n` of those ([`pick`]) — examples spread over the latest few anchors, as in
/// pretraining — and the positive rate of the rows drawn.
pub fn draw(
    groups: &[(i64, &[(String, f64)])],
    n: usize,
    task: IclTask,
    rng: &mut ChaCha8Rng,
) -> (Vec<(String, i64, f64)>, f64) {
    use rand::seq::IndexedRandom;
    let mut pool: Vec<(String, i64, f64)> = Vec::new();
    for (a, rows) in groups {
        pool.extend(
            rows.choose_multiple(rng, n)
                .map(|(e, y)| (e.clone(), *a, *y)),
        );
        if pool.len() >= 4 * n {
            break;
        }
    }
    let rate = pool.iter().filter(|x| x.2 > 0.5).count() as f64 / pool.len().max(1) as f64;
    (pick(&pool, |x| x.2, n, task, rng), rate)
}

/// What to add to a logit learnt at a sample's positive rate `sample` to get one at the
/// `natural` rate (a label shift: the odds scale by the ratio of the priors' odds).
pub fn prior_shift(natural: f64, sample: f64) -> f32 {
    let logit = |p: f64| {
        let p = p.clamp(1e-4, 1.0 - 1e-4);
        (p / (1.0 - p)).ln()
    };
    (logit(natural) - logit(sample)) as f32
}

/// What kind of label an episode predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IclTask {
    Binary,
    Regression,
}

impl IclTask {
    pub fn index(self) -> usize {
        match self {
            IclTask::Binary => 0,
            IclTask::Regression => 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IclConfig {
    /// The relational transformer that reads each context.
    pub model: ModelConfig,
    /// Hash buckets for categorical values.
    pub n_buckets: u32,
    /// Blocks of attention to the examples after it.
    pub icl_blocks: usize,
}

impl Default for IclConfig {
    fn default() -> Self {
        IclConfig {
            model: ModelConfig {
                max_tokens: 192,
                ..ModelConfig::small()
            },
            n_buckets: 1024,
            icl_blocks: 2,
        }
    }
}

impl IclConfig {
    pub fn encoder_config(&self) -> EncoderConfig {
        self.model.encoder_config(self.n_buckets)
    }
}

/// Fits the episode's encoder on its contexts (statistics, no labels) and deals its
/// columns to slots in the order `deal` draws (0: sorted by name, as at answer time).
pub fn fit_episode_encoder(cfg: &IclConfig, contexts: &[Subgraph], deal: u64) -> Encoder {
    let mut enc = Encoder::fit(cfg.encoder_config(), contexts);
    let mut names: Vec<String> = enc.columns.keys().cloned().collect();
    if deal != 0 {
        names.shuffle(&mut ChaCha8Rng::seed_from_u64(deal));
    }
    for (i, name) in names.into_iter().enumerate() {
        enc.columns.insert(name, 2 + (i % SLOTS) as u32);
    }
    enc
}

/// Label normalisation of an episode: regression labels centred on the examples' median
/// and divided by their mean absolute deviation from it; binary labels as they are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelScale {
    pub center: f64,
    pub scale: f64,
}

/// Largest normalised label the model sees (a heavy tail must not dominate the loss).
const LABEL_CLIP: f64 = 20.0;

impl LabelScale {
    pub fn fit(task: IclTask, examples: &[f64]) -> LabelScale {
        if task == IclTask::Binary || examples.is_empty() {
            return LabelScale {
                center: 0.0,
                scale: 1.0,
            };
        }
        let mut v = examples.to_vec();
        v.sort_by(f64::total_cmp);
        let center = v[v.len() / 2];
        let mad = v.iter().map(|x| (x - center).abs()).sum::<f64>() / v.len() as f64;
        LabelScale {
            center,
            scale: if mad > 1e-9 { mad } else { 1.0 },
        }
    }

    pub fn norm(&self, y: f64) -> f32 {
        ((y - self.center) / self.scale).clamp(-LABEL_CLIP, LABEL_CLIP) as f32
    }

    pub fn denorm(&self, y: f32) -> f64 {
        self.center + self.scale * y as f64
    }
}

/// An encoded episode: the examples' contexts first, then the queries'.
pub struct Episode {
    pub task: IclTask,
    pub contexts: Vec<EncodedContext>,
    pub n_examples: usize,
    /// Normalised labels of the examples, then of the queries (known in pretraining and
    /// evaluation; never read by the model for a query).
    pub labels: Vec<f32>,
    pub scale: LabelScale,
    /// Added to a binary answer's logit: [`prior_shift`] from the examples' positive rate
    /// to the natural one (0 until [`Episode::at_rate`] sets it; 0 for regression).
    pub shift: f32,
}

impl Episode {
    /// Encodes the examples' and the queries' contexts with labels `y` (examples first).
    pub fn new(
        cfg: &IclConfig,
        task: IclTask,
        contexts: &[Subgraph],
        n_examples: usize,
        y: &[f64],
        deal: u64,
    ) -> Episode {
        let enc = fit_episode_encoder(cfg, contexts, deal);
        Episode::encoded(&enc, task, contexts, n_examples, y)
    }

    /// An episode that answers its queries: columns and numbers are fitted on the
    /// examples alone, so a query's answer does not depend on the other queries asked
    /// with it (one entity, or a batch of them, gets the same number).
    pub fn to_answer(
        cfg: &IclConfig,
        task: IclTask,
        contexts: &[Subgraph],
        n_examples: usize,
        y: &[f64],
    ) -> Episode {
        let enc = fit_episode_encoder(cfg, &contexts[..n_examples.min(contexts.len())], 0);
        Episode::encoded(&enc, task, contexts, n_examples, y)
    }

    /// The episode of `contexts` encoded by `enc`, labels scaled by the examples'.
    fn encoded(
        enc: &Encoder,
        task: IclTask,
        contexts: &[Subgraph],
        n_examples: usize,
        y: &[f64],
    ) -> Episode {
        let scale = LabelScale::fit(task, &y[..n_examples.min(y.len())]);
        Episode {
            task,
            contexts: contexts.iter().map(|c| enc.encode(c)).collect(),
            n_examples,
            labels: y.iter().map(|&v| scale.norm(v)).collect(),
            scale,
            shift: 0.0,
        }
    }

    /// A query's answer from the model's output `o`: the probability of the positive
    /// class at the natural rate (binary), or the value in the labels' unit (regression).
    pub fn value(&self, o: f32) -> f64 {
        match self.task {
            IclTask::Binary => 1.0 / (1.0 + (-((o + self.shift) as f64)).exp()),
            IclTask::Regression => self.scale.denorm(o),
        }
    }

    /// Sets the answers' shift for a binary task whose labels are positive at `natural`.
    pub fn at_rate(mut self, natural: f64) -> Episode {
        if self.task == IclTask::Binary && self.n_examples > 0 {
            let e = &self.labels[..self.n_examples];
            let sample = e.iter().filter(|&&y| y > 0.5).count() as f64 / e.len() as f64;
            self.shift = prior_shift(natural, sample);
        }
        self
    }
}

#[cfg(test)]
mod tests;
