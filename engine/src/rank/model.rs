//! The ranking model: one relational transformer (shared by entities and items: the seed
//! row's columns tell it which it is reading) gives, per context, the final representation
//! of its target token and the mean of its seed row's token states (normalised); an entity
//! projection and an item projection turn the two, concatenated, into embeddings `e`, `v`
//! of width `repr_dim`. (The seed-row mean matters at the start: the target token's state
//! differs little between contexts at initialisation, and a dot product of two nearly
//! constant embeddings has almost no gradient — training settles on constant scores.)
//! A pair scores
//!
//! ```text
//! s(e, v, f) = <e, v> / sqrt(r) + w2 · silu(W1 [e ⊙ v ; f] + b1) + b2
//! ```
//! with `f` the pair's features ([`super::N_FEATS`]): a dot product (retrieval) plus a
//! small scorer that weighs the context match against the history and popularity
//! features. Item embeddings do not depend on the entity, so they are computed once per
//! item (and item-side time) and reused for every entity.
//!
//! Loss: sampled softmax ([`sampled_softmax`]).

use candle_core::{Device, Result, Tensor, D};
use candle_nn::VarMap;
use rand_chacha::ChaCha8Rng;

use super::{RankConfig, N_FEATS};
use crate::encode::EncodedContext;
use crate::model::{cross_entropy, Batch, Linear, Model, ModelConfig, ModelDims, ParamInit};

/// A [`Batch`] with what pooling the seed rows needs.
pub struct RankBatch {
    pub batch: Batch,
    /// Token indices of every seed-row cell (target token excluded).
    pool_tokens: Tensor,
    /// The context of each of them.
    pool_ctx: Tensor,
    /// `[B, 1]`: 1 / the number of seed-row cells (0 for none).
    pool_scale: Tensor,
}

impl RankBatch {
    pub fn new(
        ctxs: &[&EncodedContext],
        cfg: &ModelConfig,
        n_buckets: usize,
        dev: &Device,
    ) -> Result<RankBatch> {
        let batch = Batch::new(ctxs, cfg, n_buckets, dev)?;
        let (mut tok, mut ctx, mut scale) = (Vec::new(), Vec::new(), Vec::new());
        let mut off = 0u32;
        for (i, c) in ctxs.iter().enumerate() {
            let mut n = 0;
            for (t, &r) in c.row.iter().enumerate() {
                if r == 0 && t != c.target {
                    tok.push(off + t as u32);
                    ctx.push(i as u32);
                    n += 1;
                }
            }
            scale.push(if n > 0 { 1.0 / n as f32 } else { 0.0 });
            off += c.n_tokens() as u32;
        }
        let n = tok.len();
        Ok(RankBatch {
            batch,
            pool_tokens: Tensor::from_vec(tok, n, dev)?,
            pool_ctx: Tensor::from_vec(ctx, n, dev)?,
            pool_scale: Tensor::from_vec(scale, (ctxs.len(), 1), dev)?,
        })
    }
}

pub struct RankModel {
    pub tower: Model,
    pool_norm_g: Tensor,
    pool_norm_b: Tensor,
    entity: Linear,
    item: Linear,
    score1: Linear,
    score2: Linear,
    repr_dim: usize,
}

/// Names of the tower's parameters a ranking model does not use (the tower's own head).
pub fn unused_parameter(name: &str) -> bool {
    name.starts_with("head.")
}

impl RankModel {
    pub fn new(
        cfg: &ModelConfig,
        dims: &ModelDims,
        rc: &RankConfig,
        varmap: &VarMap,
        dev: &Device,
    ) -> Result<RankModel> {
        let tower = Model::new(cfg, dims, varmap, dev)?;
        let mut p = ParamInit::new(varmap, cfg.seed ^ 0x7261_6e6b, dev);
        let (d, r) = (cfg.d_model, rc.repr_dim.max(1));
        Ok(RankModel {
            tower,
            pool_norm_g: p.constant("rank.pool_norm.weight", &[d], 1.0)?,
            pool_norm_b: p.constant("rank.pool_norm.bias", &[d], 0.0)?,
            entity: Linear::new(&mut p, "rank.entity", 2 * d, r, 1.0)?,
            item: Linear::new(&mut p, "rank.item", 2 * d, r, 1.0)?,
            score1: Linear::new(&mut p, "rank.score1", r + N_FEATS, rc.hidden.max(1), 1.0)?,
            score2: Linear::new(&mut p, "rank.score2", rc.hidden.max(1), 1, 1.0)?,
            repr_dim: r,
        })
    }

    /// `[B, 2d]`: the target token's final representation and the normalised mean of the
    /// seed row's token states.
    fn context_repr(&self, b: &RankBatch, rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
        let x = self.tower.forward_states(&b.batch, rng)?;
        let target = self.tower.normalize(&x.index_select(&b.batch.target, 0)?)?;
        let d = x.dim(1)?;
        let sum = Tensor::zeros((b.batch.n_ctx, d), x.dtype(), x.device())?.index_add(
            &b.pool_ctx,
            &x.index_select(&b.pool_tokens, 0)?,
            0,
        )?;
        let mean = sum.broadcast_mul(&b.pool_scale)?;
        let pooled =
            candle_nn::ops::layer_norm_slow(&mean, &self.pool_norm_g, &self.pool_norm_b, 1e-5)?;
        Tensor::cat(&[target, pooled], 1)
    }

    /// Entity embeddings `[B, r]`.
    pub fn entity_repr(&self, b: &RankBatch, rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
        self.entity.forward(&self.context_repr(b, rng)?)
    }

    /// Item embeddings `[I, r]`.
    pub fn item_repr(&self, b: &RankBatch, rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
        self.item.forward(&self.context_repr(b, rng)?)
    }

    /// Scores `[B, I]` of every (entity row, item row) pair; `feats` is `[B·I, N_FEATS]`,
    /// entity-major.
    pub fn score_matrix(&self, e: &Tensor, v: &Tensor, feats: &Tensor) -> Result<Tensor> {
        let (b, r) = e.dims2()?;
        let i = v.dim(0)?;
        let prod = e.unsqueeze(1)?.broadcast_mul(&v.unsqueeze(0)?)?; // [B, I, r]
        let dot = (prod.sum(D::Minus1)? * (1.0 / (self.repr_dim as f64).sqrt()))?;
        let x = Tensor::cat(&[prod.reshape((b * i, r))?, feats.clone()], 1)?;
        let h = self.score1.forward(&x)?.silu()?;
        let s = self.score2.forward(&h)?.reshape((b, i))?;
        dot + s
    }
}

/// Sampled softmax with several positives per row: for each row `b` and each of its
/// positive columns `p`, `logsumexp({s[b,p]} ∪ {s[b,j] : j not a positive of b}) − s[b,p]`;
/// the mean over all (row, positive). The other columns are the sampled negatives (hard
/// negatives of the row, other rows' items, random items of the pool). Rows without
/// positives contribute nothing; `None` when no row has one.
pub fn sampled_softmax(scores: &Tensor, positives: &[Vec<usize>]) -> Result<Option<Tensor>> {
    let (b, n) = scores.dims2()?;
    if positives.len() != b {
        candle_core::bail!("{} positive lists for {b} rows", positives.len());
    }
    let mut rows = Vec::new();
    let mut mask = Vec::new();
    let mut one_hot = Vec::new();
    for (r, ps) in positives.iter().enumerate() {
        for &p in ps {
            if p >= n {
                candle_core::bail!("positive column {p} out of {n}");
            }
            rows.push(r as u32);
            for j in 0..n {
                let other_positive = j != p && ps.contains(&j);
                mask.push(if other_positive { -1e9f32 } else { 0.0 });
                one_hot.push(if j == p { 1f32 } else { 0.0 });
            }
        }
    }
    if rows.is_empty() {
        return Ok(None);
    }
    let q = rows.len();
    let dev = scores.device();
    let idx = Tensor::from_vec(rows, q, dev)?;
    let logits = (scores.index_select(&idx, 0)? + Tensor::from_vec(mask, (q, n), dev)?)?;
    let y = Tensor::from_vec(one_hot, (q, n), dev)?;
    cross_entropy(&logits, &y).map(Some)
}
