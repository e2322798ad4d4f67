//! Training step without candle's autograd: a hand-written forward that keeps what the
//! backward needs, and the backward itself, over chunks of whole contexts on rayon's pool.
//! The gradients come back as a candle [`GradStore`] keyed by the model's parameters, so the
//! optimiser, clipping and everything after the backward stay candle's.
//!
//! It computes the gradient of the same loss as [`Model::forward`] followed by
//! [`super::bce_with_logits`] / [`super::smooth_l1`] / [`super::cross_entropy`] (equal within float
//! rounding, see the tests), with candle's conventions: a parameter that does not take part
//! in the loss (the query/key/value side of an attention type without any pair in the batch)
//! gets no gradient, so the optimiser leaves it alone as it would under candle.

use candle_core::backprop::GradStore;
use candle_core::{Device, Result, Tensor};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::fast::{self, Chunk, HostBatch, LayerCache, ParamLayout, Scratch};
use super::kernels;
use super::{Batch, Model};
use crate::encode::TIME_FEATS;

/// Tokens per chunk of a training step.
const CHUNK_TOKENS: usize = 1024;

/// The loss of a training step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// [`super::bce_with_logits`] (one output).
    Bce,
    /// [`super::smooth_l1`] with [`super::SMOOTH_L1_BETA`] (one output).
    SmoothL1,
    /// [`super::cross_entropy`] against a one-hot target.
    CrossEntropy,
    /// No loss of its own: the targets `[B, d_model]` are the gradient of a loss computed
    /// elsewhere at [`Model::forward_repr`]'s output (the in-context model's); the head
    /// takes no part.
    Repr,
}

/// Buffers of one lane (one thread's share of a step), kept between steps.
#[derive(Default)]
struct Lane {
    caches: Vec<LayerCache>,
    scratch: Scratch,
    x: Vec<f32>,
    dx: Vec<f32>,
    /// Per-lane gradient sums, `ParamLayout::total` floats.
    grads: Vec<f32>,
    /// Gradient scratch: `dy` of a layer norm, `d·(attention out)`, `dqkv` / `du`, `da`.
    dy: Vec<f32>,
    dact: Vec<f32>,
    dproj: Vec<f32>,
    dmask: Vec<f32>,
    dxin: Vec<f32>,
    row: Vec<f32>,
    loss: f64,
}

/// Computes losses and gradients of a [`Model`] step after step, reusing its buffers.
pub struct FastTrainer {
    lay: ParamLayout,
    lanes: Vec<Lane>,
    params: Vec<f32>,
}

fn fit(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// Two disjoint mutable ranges of `g`.
fn two(g: &mut [f32], a: (usize, usize), b: (usize, usize)) -> (&mut [f32], &mut [f32]) {
    if a.0 < b.0 {
        let (lo, hi) = g.split_at_mut(b.0);
        (&mut lo[a.0..a.0 + a.1], &mut hi[..b.1])
    } else {
        let (lo, hi) = g.split_at_mut(a.0);
        (&mut hi[..a.1], &mut lo[b.0..b.0 + b.1])
    }
}

impl FastTrainer {
    /// `None` when the configuration is one the fast path does not handle.
    pub fn new(m: &Model) -> Option<FastTrainer> {
        fast::supported(m).then(|| FastTrainer {
            lay: ParamLayout::new(m),
            lanes: Vec::new(),
            params: Vec::new(),
        })
    }

    /// The loss (a scalar tensor) and the gradients of every parameter that takes part in
    /// it, for targets `y` as the training loop builds them (`[B, 1]` labels, or `[B, C]`
    /// one-hot for [`Loss::CrossEntropy`]). `rng`: dropout, drawn as [`Model::forward`]
    /// draws it.
    pub fn loss_and_grads(
        &mut self,
        m: &Model,
        b: &Batch,
        y: &Tensor,
        loss: Loss,
        rng: Option<&mut ChaCha8Rng>,
    ) -> Result<(Tensor, GradStore)> {
        let lay = &self.lay;
        if b.attn.len() != m.kinds.len() {
            candle_core::bail!("batch built for another model configuration");
        }
        let (bsz, no) = y.dims2()?;
        let width_ok = match loss {
            Loss::Repr => no == lay.d,
            Loss::CrossEntropy => no == lay.n_out,
            Loss::Bce | Loss::SmoothL1 => no == lay.n_out && no == 1,
        };
        if bsz != b.n_ctx || !width_ok {
            candle_core::bail!("targets of shape {:?} for {} contexts", y.dims(), b.n_ctx);
        }
        lay.read_into(&mut self.params)?;
        let p = &self.params;
        let hb = HostBatch::from_batch(b)?;
        let ys = y.flatten_all()?.to_vec1::<f32>()?;
        let masks = fast::dropout_masks(m, hb.n_tokens, rng);
        let chunks = fast::chunks(
            &hb.spans,
            std::env::var("RDL_CHUNK")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(CHUNK_TOKENS),
        );
        let n_lanes = rayon::current_num_threads().clamp(1, chunks.len().max(1));
        self.lanes.resize_with(n_lanes, Lane::default);
        let ctx = StepCtx {
            lay,
            p,
            hb: &hb,
            ys: &ys,
            loss,
            masks: masks.as_deref(),
            inv_b: 1.0 / bsz as f32,
        };
        let lanes = &mut self.lanes[..n_lanes];
        let run = |(l, lane): (usize, &mut Lane)| {
            let g = fit(&mut lane.grads, lay.total);
            g.fill(0.0);
            lane.loss = 0.0;
            for ch in chunks.iter().skip(l).step_by(n_lanes) {
                ctx.chunk(*ch, lane);
            }
        };
        if n_lanes > 1 {
            lanes.par_iter_mut().enumerate().for_each(run);
        } else {
            lanes.iter_mut().enumerate().for_each(run);
        }
        let (first, rest) = lanes.split_first_mut().expect("one lane");
        let mut total_loss = first.loss;
        let g = &mut first.grads[..lay.total];
        for l in rest.iter() {
            kernels::add_assign(g, &l.grads[..lay.total]);
            total_loss += l.loss;
        }
        // parameters outside the graph: the q/k/v side of attention types without pairs
        let unused = |off: usize| {
            (loss == Loss::Repr && (off == lay.head.w || off == lay.head.b))
                || lay.blocks.iter().any(|(attn, _)| {
                    attn.iter().enumerate().any(|(k, a)| {
                        hb.csr[k].keys.is_empty()
                            && (off == a.norm.g
                                || off == a.norm.b
                                || off == a.sink
                                || (a.qkv.w..a.qkv.w + 3 * lay.d * lay.d).contains(&off)
                                || (a.qkv.b..a.qkv.b + 3 * lay.d).contains(&off))
                    })
                })
        };
        let mut store = GradStore::default();
        for (t, off) in &lay.tensors {
            if unused(*off) {
                continue;
            }
            let gt = Tensor::from_slice(&g[*off..*off + t.elem_count()], t.shape(), &Device::Cpu)?;
            store.insert(t, gt);
        }
        let l = Tensor::new((total_loss * ctx.inv_b as f64) as f32, &Device::Cpu)?;
        Ok((l, store))
    }
}

struct StepCtx<'a> {
    lay: &'a ParamLayout,
    p: &'a [f32],
    hb: &'a HostBatch,
    ys: &'a [f32],
    loss: Loss,
    masks: Option<&'a [Vec<f32>]>,
    inv_b: f32,
}

impl StepCtx<'_> {
    /// Loss of context `c` from its outputs `o`, and `dL/do` (already divided by the batch
    /// size) into `g`.
    fn loss_grad(&self, c: usize, o: &[f32], g: &mut [f32]) -> f64 {
        let no = o.len();
        let y = &self.ys[c * no..(c + 1) * no];
        match self.loss {
            Loss::Bce => {
                let (x, t) = (o[0] as f64, y[0] as f64);
                g[0] = ((1.0 / (1.0 + (-x).exp()) - t) as f32) * self.inv_b;
                x.max(0.0) - x * t + (-x.abs()).exp().ln_1p()
            }
            Loss::SmoothL1 => {
                let beta = super::SMOOTH_L1_BETA as f64;
                let r = o[0] as f64 - y[0] as f64;
                let a = r.abs();
                let q = a.min(beta);
                g[0] = (r.signum() * q / beta) as f32 * self.inv_b;
                0.5 * q * q / beta + (a - q)
            }
            Loss::Repr => 0.0,
            Loss::CrossEntropy => {
                let mx = o.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
                let se: f64 = o.iter().map(|&v| (v as f64 - mx).exp()).sum();
                let lse = se.ln();
                let ysum: f64 = y.iter().map(|&v| v as f64).sum();
                let mut l = 0.0;
                for k in 0..no {
                    let logp = o[k] as f64 - mx - lse;
                    l -= y[k] as f64 * logp;
                    g[k] = ((logp.exp() * ysum - y[k] as f64) as f32) * self.inv_b;
                }
                l
            }
        }
    }

    /// Forward and backward of one chunk; gradients added to the lane's.
    fn chunk(&self, ch: Chunk, lane: &mut Lane) {
        let lay = self.lay;
        let (d, n) = (lay.d, ch.n());
        let n_layers = lay.blocks.iter().map(|(a, _)| a.len() + 1).sum::<usize>();
        lane.caches.resize_with(n_layers, LayerCache::default);
        let plans = fast::plan(lay, self.hb, ch);
        let x = fit(&mut lane.x, n * d);
        fast::embed(lay, self.p, self.hb, ch, x);
        fast::blocks_fwd(
            lay,
            self.p,
            self.hb,
            ch,
            &plans,
            x,
            Some(&mut lane.caches),
            self.masks,
            &mut lane.scratch,
        );
        let g = &mut lane.grads[..lay.total];
        let dx = fit(&mut lane.dx, n * d);
        dx.fill(0.0);
        lane.loss += self.head_bwd(ch, x, g, dx, &mut lane.row);
        let mut bufs = Bufs {
            dy: &mut lane.dy,
            dact: &mut lane.dact,
            dproj: &mut lane.dproj,
            dxin: &mut lane.dxin,
            pairs: &mut lane.scratch.pairs,
            tmp: vec![0.0; d],
        };
        // layers, last first
        let subs: Vec<(Option<&fast::AttnOff>, &fast::FfnOff)> = lay
            .blocks
            .iter()
            .flat_map(|(attn, ffn)| {
                attn.iter()
                    .map(move |a| (Some(a), ffn))
                    .chain(std::iter::once((None, ffn)))
            })
            .collect();
        for (layer, &sub) in subs.iter().enumerate().rev() {
            let at = Layer {
                ch,
                index: layer,
                plan: &plans[layer],
                cache: &lane.caches[layer],
            };
            self.layer_bwd(&at, sub, g, dx, &mut lane.dmask, &mut bufs);
        }
        self.embed_bwd(ch, dx, g);
    }

    /// The head of each target state (final norm, outputs), its loss (returned) and the
    /// gradients: the head's and the final norm's into `g`, the state's into `dx`.
    fn head_bwd(
        &self,
        ch: Chunk,
        x: &[f32],
        g: &mut [f32],
        dx: &mut [f32],
        row: &mut Vec<f32>,
    ) -> f64 {
        let (lay, p, hb) = (self.lay, self.p, self.hb);
        let (d, no) = (lay.d, lay.n_out);
        let row = fit(row, 4 * d + 2 * no + 1);
        let (yf, rest) = row.split_at_mut(d);
        let (xhat, rest) = rest.split_at_mut(d);
        let (dy, rest) = rest.split_at_mut(d);
        let (tmp, rest) = rest.split_at_mut(d);
        let (o, rest) = rest.split_at_mut(no);
        let (go, rstd) = rest.split_at_mut(no);
        let (hw, hb_) = (lay.head.w, lay.head.b);
        let (fg, fb) = (lay.final_norm.g, lay.final_norm.b);
        let mut loss = 0.0;
        for c in ch.c0..ch.c1 {
            let t = hb.target[c] as usize - ch.t0;
            fast::head_fwd(lay, p, &x[t * d..(t + 1) * d], yf, xhat, rstd, o);
            if self.loss == Loss::Repr {
                dy.copy_from_slice(&self.ys[c * d..(c + 1) * d]);
                let (dg, db) = two(g, (fg, d), (fb, d));
                let dxt = &mut dx[t * d..(t + 1) * d];
                kernels::layer_norm_bwd(dy, xhat, rstd, &p[fg..fg + d], d, dxt, dg, db, tmp);
                continue;
            }
            loss += self.loss_grad(c, o, go);
            // dWh += go ⊗ yf, dbh += go, dy = go · Wh
            dy.fill(0.0);
            for k in 0..no {
                let gk = go[k];
                for j in 0..d {
                    g[hw + k * d + j] += gk * yf[j];
                    dy[j] += gk * p[hw + k * d + j];
                }
                g[hb_ + k] += gk;
            }
            let (dg, db) = two(g, (fg, d), (fb, d));
            let dxt = &mut dx[t * d..(t + 1) * d];
            kernels::layer_norm_bwd(dy, xhat, rstd, &p[fg..fg + d], d, dxt, dg, db, tmp);
        }
        loss
    }

    /// The backward of one layer (attention of one type, or the feed-forward): `dx` holds
    /// the gradient at the layer's output rows and gets the gradient at its input rows.
    fn layer_bwd(
        &self,
        at: &Layer,
        (a, ffn): (Option<&fast::AttnOff>, &fast::FfnOff),
        g: &mut [f32],
        dx: &mut [f32],
        dmask: &mut Vec<f32>,
        bufs: &mut Bufs,
    ) {
        let (p, d) = (self.p, self.lay.d);
        let (plan, n) = (at.plan, at.ch.n());
        let n_in = plan.n_inp(n);
        // gradient at the layer's output rows (through dropout)
        let dout: &[f32] = match (self.masks, &plan.out) {
            (None, None) => &*dx,
            (masks, _) => {
                let dm = dmask;
                dm.clear();
                for i in 0..plan.n_out(n) {
                    let r = plan.out_row(i);
                    let src = &dx[r * d..(r + 1) * d];
                    match masks {
                        Some(ms) => {
                            let t = at.ch.t0 + r;
                            let m = &ms[at.index][t * d..(t + 1) * d];
                            dm.extend(src.iter().zip(m).map(|(a, k)| a * k));
                        }
                        None => dm.extend_from_slice(src),
                    }
                }
                dm
            }
        };
        let norm = match a {
            Some(a) => self.attention_bwd(at, a, dout, g, bufs),
            None => self.ffn_bwd(at, ffn, dout, g, bufs),
        };
        let dyb = &bufs.dy[..n_in * d];
        let c = at.cache;
        let (dg, db) = two(g, (norm.g, d), (norm.b, d));
        let gain = &p[norm.g..norm.g + d];
        match &plan.inp {
            None => {
                kernels::layer_norm_bwd(dyb, &c.xhat, &c.rstd, gain, d, dx, dg, db, &mut bufs.tmp)
            }
            Some(rows) => {
                let dxi = fit(bufs.dxin, n_in * d);
                dxi.fill(0.0);
                kernels::layer_norm_bwd(dyb, &c.xhat, &c.rstd, gain, d, dxi, dg, db, &mut bufs.tmp);
                for (i, &r) in rows.iter().enumerate() {
                    let r = r as usize;
                    kernels::add_assign(&mut dx[r * d..(r + 1) * d], &dxi[i * d..(i + 1) * d]);
                }
            }
        }
    }

    /// Attention's backward from `dout` (output projection, attention over pairs with the
    /// sink, q/k/v projection) down to the gradient of its normed input in `bufs.dy`;
    /// returns the layer's norm.
    fn attention_bwd(
        &self,
        at: &Layer,
        a: &fast::AttnOff,
        dout: &[f32],
        g: &mut [f32],
        bufs: &mut Bufs,
    ) -> fast::NormOff {
        let (lay, p, d, h) = (self.lay, self.p, self.lay.d, self.lay.heads);
        let (c, plan, n) = (at.cache, at.plan, at.ch.n());
        let (n_in, n_out) = (plan.n_inp(n), plan.n_out(n));
        let datt = fit(bufs.dact, n_out * d);
        let (dw, db) = two(g, (a.o.w, d * d), (a.o.b, d));
        let wo = &p[a.o.w..a.o.w + d * d];
        kernels::linear_bwd(&c.act, dout, wo, d, d, dw, db, Some((datt, false)));
        let dqkv = fit(bufs.dproj, n_in * 3 * d);
        dqkv.fill(0.0);
        let shape = fast::attn_shape(lay, self.hb, at.ch, plan);
        let dsink = &mut g[a.sink..a.sink + h];
        kernels::attention_bwd(
            shape, &c.proj, &c.w, &c.wsink, datt, dqkv, dsink, bufs.pairs,
        );
        let (dw, db) = two(g, (a.qkv.w, 3 * d * d), (a.qkv.b, 3 * d));
        let wqkv = &p[a.qkv.w..a.qkv.w + 3 * d * d];
        let dyb = fit(bufs.dy, n_in * d);
        kernels::linear_bwd(&c.y, dqkv, wqkv, d, 3 * d, dw, db, Some((dyb, false)));
        a.norm
    }

    /// The feed-forward's backward from `dout` (w2, SwiGLU, w1/w3) down to the gradient of
    /// its normed input in `bufs.dy`; returns the layer's norm.
    fn ffn_bwd(
        &self,
        at: &Layer,
        ffn: &fast::FfnOff,
        dout: &[f32],
        g: &mut [f32],
        bufs: &mut Bufs,
    ) -> fast::NormOff {
        let (p, d, hid) = (self.p, self.lay.d, self.lay.hid);
        let (c, plan, n) = (at.cache, at.plan, at.ch.n());
        let (n_in, n_out) = (plan.n_inp(n), plan.n_out(n));
        let da = fit(bufs.dact, n_out * hid);
        let (dw, db) = two(g, (ffn.w2.w, d * hid), (ffn.w2.b, d));
        let w2 = &p[ffn.w2.w..ffn.w2.w + d * hid];
        kernels::linear_bwd(&c.act, dout, w2, hid, d, dw, db, Some((da, false)));
        let du = fit(bufs.dproj, n_in * 2 * hid);
        kernels::swiglu_bwd(&c.proj, da, hid, du);
        let (dw, db) = two(g, (ffn.w13.w, 2 * hid * d), (ffn.w13.b, 2 * hid));
        let w13 = &p[ffn.w13.w..ffn.w13.w + 2 * hid * d];
        let dyb = fit(bufs.dy, n_in * d);
        kernels::linear_bwd(&c.y, du, w13, d, 2 * hid, dw, db, Some((dyb, false)));
        ffn.norm
    }

    /// The embeddings' gradients from the gradient `dx` at the first layer's input.
    fn embed_bwd(&self, ch: Chunk, dx: &[f32], g: &mut [f32]) {
        let (lay, hb, d) = (self.lay, self.hb, self.lay.d);
        let (nw, nb, tw, tb) = (lay.num.w, lay.num.b, lay.time.w, lay.time.b);
        for (i, t) in (ch.t0..ch.t1).enumerate() {
            let gr = &dx[i * d..(i + 1) * d];
            for (off, idx) in [
                (lay.col_emb, hb.col[t]),
                (lay.kind_emb, hb.kind[t]),
                (lay.hop_emb, hb.hop[t]),
            ] {
                let s = off + idx as usize * d;
                kernels::add_assign(&mut g[s..s + d], gr);
            }
            let mn = hb.m_num[t];
            if mn != 0.0 {
                let (a, b) = (hb.num[2 * t], hb.num[2 * t + 1]);
                for j in 0..d {
                    let v = gr[j] * mn;
                    g[nw + 2 * j] += v * a;
                    g[nw + 2 * j + 1] += v * b;
                    g[nb + j] += v;
                }
            }
            let mt = hb.m_time[t];
            if mt != 0.0 {
                let f = &hb.time[t * TIME_FEATS..(t + 1) * TIME_FEATS];
                for j in 0..d {
                    let v = gr[j] * mt;
                    for (k, &fk) in f.iter().enumerate() {
                        g[tw + j * TIME_FEATS + k] += v * fk;
                    }
                    g[tb + j] += v;
                }
            }
            let mc = hb.m_cat[t];
            if mc != 0.0 {
                let s = lay.value_emb + hb.value_idx[t] as usize * d;
                for j in 0..d {
                    g[s + j] += gr[j] * mc;
                }
            }
        }
    }
}

/// One layer of a chunk's backward: which, its plan and what its forward kept.
struct Layer<'a> {
    ch: Chunk,
    index: usize,
    plan: &'a fast::LayerPlan,
    cache: &'a LayerCache,
}

/// A lane's gradient scratch, lent to the backward of each layer in turn.
struct Bufs<'a> {
    /// The gradient at a layer's normed input (`dy` of its layer norm).
    dy: &'a mut Vec<f32>,
    /// The gradient at the attention's output, or at the SwiGLU's.
    dact: &'a mut Vec<f32>,
    /// `dqkv`, or `du` of the feed-forward.
    dproj: &'a mut Vec<f32>,
    dxin: &'a mut Vec<f32>,
    pairs: &'a mut Vec<f32>,
    tmp: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{EncodedContext, Encoder, EncoderConfig};
    use crate::model::{
        bce_with_logits, cross_entropy, smooth_l1, sorted_vars, ModelConfig, ModelDims,
    };
    use crate::train::synth::encoded_churn;
    use candle_nn::VarMap;
    use rand::SeedableRng;

    fn contexts(n: usize, orders: usize) -> (Encoder, Vec<EncodedContext>) {
        let cfg = EncoderConfig {
            max_tokens: 256,
            n_buckets: 512,
        };
        encoded_churn(n, orders, orders * 4, 11, cfg)
    }

    fn compare(
        cfg: &ModelConfig,
        n_out: usize,
        loss: Loss,
        ecs: &[EncodedContext],
        n_cols: usize,
    ) -> Result<()> {
        let dev = Device::Cpu;
        let dims = ModelDims {
            n_columns: n_cols,
            n_buckets: 512,
            n_out,
        };
        let vm = VarMap::new();
        let m = Model::new(cfg, &dims, &vm, &dev)?;
        let refs: Vec<&EncodedContext> = ecs.iter().collect();
        let b = Batch::new(&refs, cfg, 512, &dev)?;
        let bsz = refs.len();
        let y = match loss {
            Loss::CrossEntropy => {
                let mut oh = vec![0f32; bsz * n_out];
                for i in 0..bsz {
                    oh[i * n_out + i % n_out] = 1.0;
                }
                Tensor::from_vec(oh, (bsz, n_out), &dev)?
            }
            Loss::Bce => Tensor::from_vec(
                (0..bsz).map(|i| (i % 2) as f32).collect::<Vec<_>>(),
                (bsz, 1),
                &dev,
            )?,
            Loss::SmoothL1 => Tensor::from_vec(
                (0..bsz).map(|i| i as f32 * 0.7 - 3.0).collect::<Vec<_>>(),
                (bsz, 1),
                &dev,
            )?,
            Loss::Repr => {
                let d = cfg.d_model;
                let g = (0..bsz * d).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.1);
                Tensor::from_vec(g.collect::<Vec<_>>(), (bsz, d), &dev)?
            }
        };
        let mut r1 = ChaCha8Rng::seed_from_u64(5);
        let l = match loss {
            Loss::Bce => bce_with_logits(&m.forward(&b, Some(&mut r1))?, &y)?,
            Loss::SmoothL1 => smooth_l1(
                &m.forward(&b, Some(&mut r1))?,
                &y,
                crate::model::SMOOTH_L1_BETA,
            )?,
            Loss::CrossEntropy => cross_entropy(&m.forward(&b, Some(&mut r1))?, &y)?,
            // a loss whose gradient at the representations is `y`
            Loss::Repr => (m.forward_repr(&b, Some(&mut r1))? * &y)?.sum_all()?,
        };
        let want = l.backward()?;
        let mut ft = FastTrainer::new(&m).expect("supported");
        let mut r2 = ChaCha8Rng::seed_from_u64(5);
        let (l2, got) = ft.loss_and_grads(&m, &b, &y, loss, Some(&mut r2))?;
        let (l, l2) = (l.to_scalar::<f32>()?, l2.to_scalar::<f32>()?);
        assert!(
            loss == Loss::Repr || (l - l2).abs() < 1e-5 * l.abs().max(1.0),
            "loss {l} vs {l2}"
        );
        for (name, v) in sorted_vars(&vm) {
            let w = want.get(v.as_tensor());
            let g = got.get(v.as_tensor());
            match (w, g) {
                (None, None) => {}
                (Some(w), Some(g)) => {
                    let w = w.flatten_all()?.to_vec1::<f32>()?;
                    let g = g.flatten_all()?.to_vec1::<f32>()?;
                    let scale = w.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-3);
                    for (a, b) in w.iter().zip(&g) {
                        assert!(
                            (a - b).abs() <= 1e-4 * scale,
                            "{name}: {a} vs {b} (scale {scale})"
                        );
                    }
                }
                _ => panic!("{name}: gradient present in one path only: {}", w.is_some()),
            }
        }
        Ok(())
    }

    #[test]
    fn fast_gradients_equal_candle() -> Result<()> {
        let (enc, ecs) = contexts(12, 30);
        let nc = enc.n_columns();
        // default model, three losses
        let cfg = ModelConfig::small();
        compare(&cfg, 1, Loss::Bce, &ecs, nc)?;
        compare(&cfg, 1, Loss::SmoothL1, &ecs, nc)?;
        compare(&cfg, 4, Loss::CrossEntropy, &ecs, nc)?;
        compare(&cfg, 1, Loss::Repr, &ecs, nc)?;
        // eight heads of 8 (the other vectorised attention shape)
        let mut c8 = ModelConfig::small();
        c8.heads = 8;
        compare(&c8, 1, Loss::Bce, &ecs, nc)?;
        // dropout, full attention, another shape
        let mut c2 = ModelConfig::small();
        c2.dropout = 0.2;
        c2.full_attention = true;
        c2.d_model = 24;
        c2.heads = 3;
        c2.ffn_mult = 3;
        c2.blocks = 1;
        compare(&c2, 1, Loss::Bce, &ecs[..5], nc)?;
        // contexts of one row: no neighbor pairs at all (those parameters get no gradient)
        let (enc1, one) = contexts(6, 1);
        let lone: Vec<EncodedContext> = one
            .into_iter()
            .map(|mut c| {
                let keep: Vec<usize> = (0..c.n_tokens()).filter(|&t| c.row[t] == 0).collect();
                let pick = |v: &Vec<u32>| keep.iter().map(|&t| v[t]).collect::<Vec<_>>();
                c.col = pick(&c.col);
                c.bucket = pick(&c.bucket);
                c.row = pick(&c.row);
                c.kind = keep.iter().map(|&t| c.kind[t]).collect();
                c.num = keep.iter().map(|&t| c.num[t]).collect();
                c.time = keep
                    .iter()
                    .flat_map(|&t| c.time[t * TIME_FEATS..(t + 1) * TIME_FEATS].to_vec())
                    .collect();
                c.target = keep.iter().position(|&t| t == c.target).expect("target");
                c.row_table.truncate(1);
                c.row_parents = vec![vec![]];
                c.row_hop.truncate(1);
                c
            })
            .collect();
        compare(&cfg, 1, Loss::Bce, &lone, enc1.n_columns())?;
        Ok(())
    }
}
