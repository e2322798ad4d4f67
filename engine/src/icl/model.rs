//! The in-context model: the relational transformer reads every context of an episode to
//! one vector (its target token's final state); each example's vector gets its label's
//! embedding, each query's a mask; `icl_blocks` pre-norm blocks then let every context
//! attend to the examples (attention over the examples only, then a SwiGLU feed-forward)
//! and the head reads each query's prediction: a logit (binary) or a normalised value
//! (regression, see [`super::LabelScale`]).

use candle_core::{Device, Result, Tensor, D};
use candle_nn::VarMap;

use super::{Episode, IclConfig, IclTask, READER_COLUMNS};
use crate::model::infer::FastModel;
use crate::model::{Batch, Linear, Model, ModelDims, Norm, ParamInit};

struct Block {
    norm: Norm,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    ffn_norm: Norm,
    w1: Linear,
    w3: Linear,
    w2: Linear,
}

impl Block {
    fn new(p: &mut ParamInit, name: &str, d: usize, gain: f32) -> Result<Block> {
        Ok(Block {
            norm: Norm::new(p, &format!("{name}.norm"), d)?,
            wq: Linear::new(p, &format!("{name}.q"), d, d, 1.0)?,
            wk: Linear::new(p, &format!("{name}.k"), d, d, 1.0)?,
            wv: Linear::new(p, &format!("{name}.v"), d, d, 1.0)?,
            wo: Linear::new(p, &format!("{name}.o"), d, d, gain)?,
            ffn_norm: Norm::new(p, &format!("{name}.ffn.norm"), d)?,
            w1: Linear::new(p, &format!("{name}.ffn.w1"), d, 2 * d, 1.0)?,
            w3: Linear::new(p, &format!("{name}.ffn.w3"), d, 2 * d, 1.0)?,
            w2: Linear::new(p, &format!("{name}.ffn.w2"), 2 * d, d, gain)?,
        })
    }

    /// `x [N, d]`, the first `e` rows the examples: every row attends to those.
    fn forward(&self, x: &Tensor, e: usize, heads: usize) -> Result<Tensor> {
        let (n, d) = x.dims2()?;
        let dh = d / heads;
        let y = self.norm.forward(x)?;
        let split = |t: Tensor, rows: usize| -> Result<Tensor> {
            t.reshape((rows, heads, dh))?.transpose(0, 1)?.contiguous()
        };
        let q = split(self.wq.forward(&y)?, n)?;
        let ye = y.narrow(0, 0, e)?;
        let k = split(self.wk.forward(&ye)?, e)?;
        let v = split(self.wv.forward(&ye)?, e)?;
        let s = (q.matmul(&k.t()?)? * (1.0 / (dh as f64).sqrt()))?;
        let a = candle_nn::ops::softmax(&s, D::Minus1)?;
        let o = a.matmul(&v)?.transpose(0, 1)?.reshape((n, d))?;
        let x = (x + self.wo.forward(&o)?)?;
        let y = self.ffn_norm.forward(&x)?;
        let y = (self.w1.forward(&y)?.silu()? * self.w3.forward(&y)?)?;
        x + self.w2.forward(&y)?
    }
}

pub struct IclModel {
    pub cfg: IclConfig,
    pub reader: Model,
    /// Per task kind: the label's embedding (a linear map of the normalised label).
    label: Vec<Linear>,
    /// Per task kind: what a query carries instead of a label `[2, d]`.
    mask: Tensor,
    blocks: Vec<Block>,
    norm: Norm,
    head: Linear,
}

impl IclModel {
    /// A freshly initialised model; its parameters are registered in `varmap` (the
    /// reader's under their usual names, the rest under `icl.`).
    pub fn new(cfg: &IclConfig, varmap: &VarMap, dev: &Device) -> Result<IclModel> {
        let dims = ModelDims {
            n_columns: READER_COLUMNS,
            n_buckets: cfg.n_buckets as usize,
            n_out: 1,
        };
        let reader = Model::new(&cfg.model, &dims, varmap, dev)?;
        let d = cfg.model.d_model;
        let mut p = ParamInit::new(varmap, cfg.model.seed ^ 0x1c1, dev);
        let gain = 1.0 / ((2 * cfg.icl_blocks.max(1)) as f32).sqrt();
        let label = (0..2)
            .map(|i| Linear::new(&mut p, &format!("icl.label{i}"), 1, d, 1.0))
            .collect::<Result<Vec<_>>>()?;
        let mask = p.normal("icl.mask", &[2, d], 0.5)?;
        let blocks = (0..cfg.icl_blocks)
            .map(|b| Block::new(&mut p, &format!("icl.block{b}"), d, gain))
            .collect::<Result<Vec<_>>>()?;
        Ok(IclModel {
            cfg: cfg.clone(),
            reader,
            label,
            mask,
            blocks,
            norm: Norm::new(&mut p, "icl.norm", d)?,
            head: Linear::new(&mut p, "icl.head", d, 1, 1.0)?,
        })
    }

    /// Predictions `[Q]` for the queries: `examples [E, d]` and `queries [Q, d]` the
    /// contexts' representations ([`IclModel::read_episode`]), `labels [E]` the examples' normalised labels.
    pub fn answer(
        &self,
        task: IclTask,
        examples: &Tensor,
        labels: &Tensor,
        queries: &Tensor,
    ) -> Result<Tensor> {
        let (e, d) = examples.dims2()?;
        let q = queries.dim(0)?;
        let lab = self.label[task.index()].forward(&labels.reshape((e, 1))?)?;
        let mask = self.mask.narrow(0, task.index(), 1)?.broadcast_as((q, d))?;
        let x = Tensor::cat(&[(examples + lab)?, (queries.broadcast_add(&mask))?], 0)?;
        let mut x = x;
        for b in &self.blocks {
            x = b.forward(&x, e, self.cfg.model.heads)?;
        }
        let out = self
            .head
            .forward(&self.norm.forward(&x.narrow(0, e, q)?)?)?;
        out.squeeze(1)
    }

    /// An episode's contexts read by the fast forward pass (no autograd): the batch and
    /// the representations `[N, d]`.
    pub fn read_episode(&self, ep: &Episode, dev: &Device) -> Result<(Batch, Tensor)> {
        let refs: Vec<_> = ep.contexts.iter().collect();
        let batch = Batch::new(&refs, &self.cfg.model, self.cfg.n_buckets as usize, dev)?;
        let fm = FastModel::new(&self.reader)?
            .ok_or_else(|| candle_core::Error::Msg("no fast path for this reader".into()))?;
        let r = fm.forward_repr(&batch)?;
        let r = Tensor::from_vec(r, (refs.len(), self.cfg.model.d_model), dev)?;
        Ok((batch, r))
    }

    /// The outputs `[Q]` for an episode's queries from its representations `r`.
    pub fn answer_episode(&self, ep: &Episode, r: &Tensor, dev: &Device) -> Result<Tensor> {
        let (e, n) = (ep.n_examples, ep.contexts.len());
        let labels = Tensor::from_slice(&ep.labels[..e], e, dev)?;
        self.answer(
            ep.task,
            &r.narrow(0, 0, e)?,
            &labels,
            &r.narrow(0, e, n - e)?,
        )
    }
}
