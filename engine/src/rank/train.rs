//! Training a ranking model, and the trained model's use: embeddings and pair scores.
//!
//! Data ([`RankData`]): encoded entity contexts (one per example), encoded item contexts
//! (one per item and **group** — the anchors that share an item-side time, see
//! [`super::item_side_time`]), the item features of each item context, and examples.
//!
//! A training step takes a batch of examples of one group. Its item set is the union of the
//! examples' positives and hard negatives, plus `shared_negatives` random items of the
//! group's pool; every example scores every item of the set (one forward pass per item
//! context, however many examples use it), and the loss is the sampled softmax of each
//! positive against the items that are not the example's positives. Early stopping on the
//! validation MAP@k, which ranks each validation example's full candidate list.

use std::collections::{BTreeMap, HashMap};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::model::{sampled_softmax, unused_parameter, RankBatch, RankModel};
use super::{pair_feats, EntityFeat, Feats, ItemFeat, RankConfig, N_ENTITY_FEATS, N_FEATS};
use crate::encode::{EncodedContext, Encoder};
use crate::metrics;
use crate::model::{sorted_vars, ModelConfig, ModelDims};
use crate::train::erased::Json;
use crate::train::fit::{self, FitConfig, Objective, Schedule};
use crate::train::{
    default_device, load_vars, meta_field, store_bytes, stored_meta, EpochStats, Progress,
    TrainError,
};

/// One (entity, anchor) example.
#[derive(Debug, Clone, PartialEq)]
pub struct RankExample {
    pub group: usize,
    /// Index of the entity's context.
    pub entity: usize,
    /// Item-context indices: at training the positives and hard negatives, at evaluation
    /// every candidate (ranked).
    pub candidates: Vec<usize>,
    /// The candidates that are in the label set.
    pub positives: Vec<usize>,
    /// Size of the label set (positives outside the candidates count against recall).
    pub n_relevant: usize,
    /// Entity features by item-context index, sorted; other items have zeros.
    pub ent_feats: Vec<(usize, EntityFeat)>,
}

impl RankExample {
    pub fn feats(&self, item: usize, item_feat: &ItemFeat) -> Feats {
        let e = match self.ent_feats.binary_search_by_key(&item, |x| x.0) {
            Ok(p) => self.ent_feats[p].1,
            Err(_) => [0.0; N_ENTITY_FEATS],
        };
        pair_feats(&e, item_feat)
    }
}

#[derive(Debug, Default)]
pub struct RankData {
    pub entities: Vec<EncodedContext>,
    pub items: Vec<EncodedContext>,
    /// Parallel to `items`.
    pub item_feats: Vec<ItemFeat>,
    /// Per group: item contexts to draw random negatives from.
    pub shared: Vec<Vec<usize>>,
    pub train: Vec<RankExample>,
    pub val: Vec<RankExample>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankTrainConfig {
    pub max_epochs: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup_steps: usize,
    pub clip_norm: f64,
    /// Examples per step.
    pub batch_examples: usize,
    pub patience: usize,
    pub seed: u64,
    pub time_budget_s: Option<f64>,
}

impl Default for RankTrainConfig {
    fn default() -> Self {
        RankTrainConfig {
            max_epochs: 20,
            lr: 2e-3,
            weight_decay: 0.01,
            warmup_steps: 20,
            clip_norm: 1.0,
            batch_examples: 32,
            patience: 3,
            seed: 0,
            time_budget_s: None,
        }
    }
}

impl RankTrainConfig {
    /// The shared loop's part of this configuration.
    pub fn fit_config(&self) -> FitConfig {
        FitConfig {
            max_epochs: self.max_epochs,
            lr: self.lr,
            weight_decay: self.weight_decay,
            warmup_steps: self.warmup_steps,
            schedule: Schedule::Cosine,
            clip_norm: self.clip_norm,
            patience: self.patience,
            seed: self.seed,
            time_budget_s: self.time_budget_s,
            // Not measured on ranking (its own benchmarks): raw weights, as before.
            ema_epochs: 0.0,
        }
    }
}

/// Ranking models in the shared loop: a step takes examples of one group and every item
/// their candidates and a sample of the group's pool hold (sampled softmax); validation
/// ranks every validation example's candidates (MAP@k).
struct Ranking<'a> {
    rc: &'a RankConfig,
    model: &'a RankModel,
    data: &'a RankData,
    n_buckets: usize,
    dev: &'a Device,
    by_group: BTreeMap<usize, Vec<usize>>,
    batch_examples: usize,
    relevant: Vec<Vec<usize>>,
}

impl Objective for Ranking<'_> {
    type Batch = Vec<usize>;

    fn steps_per_epoch(&self) -> usize {
        let b = self.batch_examples;
        self.by_group.values().map(|v| v.len().div_ceil(b)).sum()
    }

    fn batches(&mut self, rng: &mut ChaCha8Rng) -> Vec<Vec<usize>> {
        let mut batches: Vec<Vec<usize>> = Vec::new();
        for v in self.by_group.values() {
            let mut v = v.clone();
            v.shuffle(rng);
            batches.extend(v.chunks(self.batch_examples).map(|c| c.to_vec()));
        }
        batches.shuffle(rng);
        batches
    }

    fn loss(
        &mut self,
        batch: &Vec<usize>,
        rng: &mut ChaCha8Rng,
        dropout: &mut ChaCha8Rng,
    ) -> Result<Option<Tensor>, TrainError> {
        let (data, rc, dev) = (self.data, self.rc, self.dev);
        let g = data.train[batch[0]].group;
        let mut items: Vec<usize> = Vec::new();
        let mut col: HashMap<usize, usize> = HashMap::new();
        let mut add = |i: usize, items: &mut Vec<usize>| {
            col.entry(i).or_insert_with(|| {
                items.push(i);
                items.len() - 1
            });
        };
        for &x in batch {
            for &c in &data.train[x].candidates {
                add(c, &mut items);
            }
        }
        if let Some(pool) = data.shared.get(g) {
            for &c in pool.choose_multiple(rng, rc.shared_negatives.min(pool.len())) {
                add(c, &mut items);
            }
        }
        let erefs: Vec<&EncodedContext> = batch
            .iter()
            .map(|&x| &data.entities[data.train[x].entity])
            .collect();
        let irefs: Vec<&EncodedContext> = items.iter().map(|&i| &data.items[i]).collect();
        let cfg = &self.model.tower.cfg;
        let eb = RankBatch::new(&erefs, cfg, self.n_buckets, dev)?;
        let ib = RankBatch::new(&irefs, cfg, self.n_buckets, dev)?;
        let e = self.model.entity_repr(&eb, Some(&mut *dropout))?;
        let v = self.model.item_repr(&ib, Some(dropout))?;
        let mut feats = Vec::with_capacity(batch.len() * items.len() * N_FEATS);
        for &x in batch {
            let ex = &data.train[x];
            for &i in &items {
                feats.extend_from_slice(&ex.feats(i, &data.item_feats[i]));
            }
        }
        let ft = Tensor::from_vec(feats, (batch.len() * items.len(), N_FEATS), dev)?;
        let s = self.model.score_matrix(&e, &v, &ft)?;
        let pos: Vec<Vec<usize>> = batch
            .iter()
            .map(|&x| data.train[x].positives.iter().map(|p| col[p]).collect())
            .collect();
        Ok(sampled_softmax(&s, &pos)?)
    }

    fn validate(
        &mut self,
        poll: &mut dyn FnMut() -> bool,
    ) -> Result<Option<(f64, bool)>, TrainError> {
        if self.data.val.is_empty() {
            return Ok(None);
        }
        let k = self.rc.k.max(1);
        let ranked = rank_examples(self.model, self.data, &self.data.val, k, self.dev, poll)?;
        Ok(metrics::map_at_k(&ranked, &self.relevant, k).map(|m| (m, true)))
    }
}

/// Tokens per forward batch when embedding many contexts.
const EMBED_BATCH_TOKENS: usize = 8192;

/// Embeddings of contexts (entity or item side), in batches; `poll` before each batch
/// (`false`: [`TrainError::Cancelled`]).
fn embed(
    model: &RankModel,
    ctxs: &[&EncodedContext],
    item: bool,
    dev: &Device,
    poll: &mut dyn FnMut() -> bool,
) -> Result<Vec<Vec<f32>>, TrainError> {
    let mut out = Vec::with_capacity(ctxs.len());
    let mut start = 0;
    while start < ctxs.len() {
        if !poll() {
            crate::threads::use_threads(crate::threads::configured());
            return Err(TrainError::Cancelled);
        }
        let mut tokens = 0;
        let mut end = start;
        while end < ctxs.len()
            && (end == start || tokens + ctxs[end].n_tokens() <= EMBED_BATCH_TOKENS)
            && end - start < 512
        {
            tokens += ctxs[end].n_tokens();
            end += 1;
        }
        crate::threads::use_threads(crate::threads::for_tokens(tokens));
        let b = RankBatch::new(
            &ctxs[start..end],
            &model.tower.cfg,
            model.tower.dims.n_buckets,
            dev,
        )?;
        let r = if item {
            model.item_repr(&b, None)?
        } else {
            model.entity_repr(&b, None)?
        };
        out.extend(r.to_vec2::<f32>()?);
        start = end;
    }
    crate::threads::use_threads(crate::threads::configured());
    Ok(out)
}

/// Scores of one entity embedding against item embeddings with their pair features.
fn score_items(
    model: &RankModel,
    e: &[f32],
    items: &[&[f32]],
    feats: &[Feats],
    dev: &Device,
) -> Result<Vec<f32>, TrainError> {
    let r = e.len();
    let c = items.len();
    if c == 0 {
        return Ok(Vec::new());
    }
    let et = Tensor::from_slice(e, (1, r), dev)?;
    let vt = Tensor::from_vec(items.concat(), (c, r), dev)?;
    let ft = Tensor::from_vec(feats.concat(), (c, N_FEATS), dev)?;
    Ok(model
        .score_matrix(&et, &vt, &ft)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

/// Ranked candidate lists (item-context indices, best first, at most `k`) of examples.
fn rank_examples(
    model: &RankModel,
    data: &RankData,
    examples: &[RankExample],
    k: usize,
    dev: &Device,
    poll: &mut dyn FnMut() -> bool,
) -> Result<Vec<Vec<usize>>, TrainError> {
    let mut needed: Vec<usize> = examples
        .iter()
        .flat_map(|e| e.candidates.iter().copied())
        .collect();
    needed.sort_unstable();
    needed.dedup();
    let refs: Vec<&EncodedContext> = needed.iter().map(|&i| &data.items[i]).collect();
    let reprs = embed(model, &refs, true, dev, poll)?;
    let pos: HashMap<usize, usize> = needed.iter().enumerate().map(|(p, &i)| (i, p)).collect();
    let erefs: Vec<&EncodedContext> = examples.iter().map(|e| &data.entities[e.entity]).collect();
    let ereprs = embed(model, &erefs, false, dev, poll)?;
    crate::threads::use_threads(1);
    let mut out = Vec::with_capacity(examples.len());
    for (n, (ex, e)) in examples.iter().zip(&ereprs).enumerate() {
        if n % 64 == 0 && !poll() {
            crate::threads::use_threads(crate::threads::configured());
            return Err(TrainError::Cancelled);
        }
        let vs: Vec<&[f32]> = ex
            .candidates
            .iter()
            .map(|i| reprs[pos[i]].as_slice())
            .collect();
        let fs: Vec<Feats> = ex
            .candidates
            .iter()
            .map(|&i| ex.feats(i, &data.item_feats[i]))
            .collect();
        let s = score_items(model, e, &vs, &fs, dev)?;
        out.push(
            super::top_k(&s, k)
                .into_iter()
                .map(|j| ex.candidates[j])
                .collect(),
        );
    }
    crate::threads::use_threads(crate::threads::configured());
    Ok(out)
}

/// The label sets of examples as comparable lists: the positives, then one distinct
/// placeholder per relevant item outside the candidates.
pub fn relevant_lists(examples: &[RankExample]) -> Vec<Vec<usize>> {
    examples
        .iter()
        .map(|e| {
            let mut v = e.positives.clone();
            for m in 0..e.n_relevant.saturating_sub(e.positives.len()) {
                v.push(usize::MAX - m);
            }
            v
        })
        .collect()
}

/// Trains a ranking model; `on_step` as in [`crate::train::train`] (validation metric:
/// MAP@k).
pub fn train(
    cfg: &RankTrainConfig,
    rc: &RankConfig,
    model_cfg: &ModelConfig,
    encoder: &Encoder,
    data: &RankData,
    on_step: &mut dyn FnMut(&Progress) -> bool,
) -> Result<TrainedRanker, TrainError> {
    let usable: Vec<usize> = (0..data.train.len())
        .filter(|&i| !data.train[i].positives.is_empty())
        .collect();
    if usable.is_empty() {
        return Err(TrainError::NoTrainingData);
    }
    crate::threads::use_threads(crate::threads::configured());
    let dev = default_device();
    let dims = ModelDims {
        n_columns: encoder.n_columns(),
        n_buckets: encoder.config.n_buckets as usize,
        n_out: 1,
    };
    let varmap = VarMap::new();
    let model = RankModel::new(model_cfg, &dims, rc, &varmap, &dev)?;
    let vars: Vec<_> = sorted_vars(&varmap)
        .into_iter()
        .filter(|(n, _)| !unused_parameter(n))
        .map(|(_, v)| v)
        .collect();
    let mut by_group: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &i in &usable {
        by_group.entry(data.train[i].group).or_default().push(i);
    }
    let mut obj = Ranking {
        rc,
        model: &model,
        data,
        n_buckets: dims.n_buckets,
        dev: &dev,
        by_group,
        batch_examples: cfg.batch_examples.max(1),
        relevant: relevant_lists(&data.val),
    };
    let fitted = fit::fit(&cfg.fit_config(), &vars, &mut obj, on_step)?;
    let history = fitted.history;
    Ok(TrainedRanker {
        rank_cfg: rc.clone(),
        model_cfg: model_cfg.clone(),
        dims,
        encoder: encoder.clone(),
        history,
        varmap,
        model,
        device: dev,
    })
}

/// A trained ranking model with everything needed to use it.
pub struct TrainedRanker {
    pub rank_cfg: RankConfig,
    pub model_cfg: ModelConfig,
    pub dims: ModelDims,
    /// Fitted on entity and item contexts; entities use it as is.
    pub encoder: Encoder,
    pub history: Vec<EpochStats>,
    varmap: VarMap,
    model: RankModel,
    device: Device,
}

const FORMAT_VERSION: &str = "rank-1";

impl TrainedRanker {
    /// The encoder for item contexts: the same vocabulary, the item token cap.
    pub fn item_encoder(&self) -> Encoder {
        item_encoder(&self.encoder, &self.rank_cfg)
    }

    pub fn entity_embeddings(&self, ctxs: &[&EncodedContext]) -> Result<Vec<Vec<f32>>, TrainError> {
        embed(&self.model, ctxs, false, &self.device, &mut || true)
    }

    pub fn item_embeddings(&self, ctxs: &[&EncodedContext]) -> Result<Vec<Vec<f32>>, TrainError> {
        embed(&self.model, ctxs, true, &self.device, &mut || true)
    }

    /// Scores of items (their embeddings and pair features) for one entity embedding.
    pub fn score(
        &self,
        e: &[f32],
        items: &[&[f32]],
        feats: &[Feats],
    ) -> Result<Vec<f32>, TrainError> {
        crate::threads::use_threads(1);
        let s = score_items(&self.model, e, items, feats, &self.device);
        crate::threads::use_threads(crate::threads::configured());
        s
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, TrainError> {
        let j = |v: &dyn Json| v.json();
        store_bytes(
            &self.varmap,
            FORMAT_VERSION,
            &[
                ("model_config", j(&self.model_cfg)?),
                ("dims", j(&self.dims)?),
                ("encoder", j(&self.encoder)?),
                ("rank_config", j(&self.rank_cfg)?),
                ("history", j(&self.history)?),
            ],
        )
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<TrainedRanker, TrainError> {
        let bad = |s: String| TrainError::Format(s);
        let meta = stored_meta(bytes, FORMAT_VERSION)?;
        let model_cfg: ModelConfig = meta_field(&meta, "model_config")?;
        let dims: ModelDims = meta_field(&meta, "dims")?;
        let rank_cfg: RankConfig = meta_field(&meta, "rank_config")?;
        let dev = default_device();
        model_cfg.check_stored_size(&dims, bytes.len())?;
        let (d, r, h) = (model_cfg.d_model, rank_cfg.repr_dim, rank_cfg.hidden);
        if r > 1 << 14 || h > 1 << 14 || (2 * d * r + 2 * r * h) / 4 > bytes.len() {
            return Err(bad(format!(
                "ranking dimensions {r} x {h} do not match {} bytes of weights",
                bytes.len()
            )));
        }
        let varmap = VarMap::new();
        let model = RankModel::new(&model_cfg, &dims, &rank_cfg, &varmap, &dev)?;
        load_vars(&varmap, bytes, &dev)?;
        Ok(TrainedRanker {
            rank_cfg,
            model_cfg,
            dims,
            encoder: meta_field(&meta, "encoder")?,
            history: meta_field(&meta, "history")?,
            varmap,
            model,
            device: dev,
        })
    }
}

/// The item-context encoder of a ranking model: `encoder` with the item token cap.
pub fn item_encoder(encoder: &Encoder, rc: &RankConfig) -> Encoder {
    let mut e = encoder.clone();
    e.config.max_tokens = rc.item_max_tokens.max(1);
    e
}
