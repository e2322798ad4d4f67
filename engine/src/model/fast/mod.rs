//! What the fast paths ([`super::infer`], [`super::grad`]) share: the model's parameters as
//! one flat `f32` array in a fixed layout, a batch on the host (token arrays and the pairs of
//! every attention type in CSR form), chunks of contexts, and the forward pass of a chunk.
//!
//! The layout puts `q`, `k`, `v` of an attention layer one after the other (weights, then
//! biases), so they are one `[3d, d]` matrix and one `[3d]` bias; likewise `w1`, `w3` of the
//! feed-forward layer (`[2h, d]`). Each projection is then one matrix product.

use std::sync::Arc;

use candle_core::{Result, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

mod layout;

pub(crate) use layout::{AttnOff, FfnOff, NormOff, ParamLayout};

use super::kernels::{self, AttnShape, Csr};
use super::{Batch, Model};
use crate::encode::TIME_FEATS;

/// Whether the fast paths handle a model of this configuration (else: candle's path).
pub fn supported(m: &Model) -> bool {
    m.cfg.heads <= 64 && !m.cfg.dense_attention && m.cfg.d_model.is_multiple_of(m.cfg.heads)
}

/// A batch's inputs on the host.
pub(crate) struct HostBatch {
    pub n_tokens: usize,
    /// `(first token, tokens)` per context.
    pub spans: Vec<(usize, usize)>,
    /// Global token index of each context's target.
    pub target: Vec<u32>,
    pub col: Vec<u32>,
    pub kind: Vec<u32>,
    pub hop: Vec<u32>,
    pub value_idx: Vec<u32>,
    pub num: Vec<f32>,
    pub time: Vec<f32>,
    pub m_num: Vec<f32>,
    pub m_time: Vec<f32>,
    pub m_cat: Vec<f32>,
    /// Pairs of each attention type.
    pub csr: Vec<Csr>,
}

impl HostBatch {
    pub fn from_batch(b: &Batch) -> Result<HostBatch> {
        let n = b.n_tokens;
        let f = |t: &Tensor| -> Result<Vec<f32>> { t.flatten_all()?.to_vec1::<f32>() };
        Ok(HostBatch {
            n_tokens: n,
            spans: b.spans.clone(),
            target: b.target.to_vec1::<u32>()?,
            col: b.col.to_vec1::<u32>()?,
            kind: b.kind.to_vec1::<u32>()?,
            hop: b.hop.to_vec1::<u32>()?,
            value_idx: b.value_idx.to_vec1::<u32>()?,
            num: f(&b.num)?,
            time: f(&b.time)?,
            m_num: f(&b.m_num)?,
            m_time: f(&b.m_time)?,
            m_cat: f(&b.m_cat)?,
            csr: b
                .attn
                .iter()
                .map(|(_, p)| Csr::from_pairs(n, &p.q_host, &p.k_host))
                .collect(),
        })
    }
}

/// A run of whole contexts: contexts `c0..c1`, tokens `t0..t1`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chunk {
    pub c0: usize,
    pub c1: usize,
    pub t0: usize,
    pub t1: usize,
}

impl Chunk {
    pub fn n(&self) -> usize {
        self.t1 - self.t0
    }
}

/// Splits the contexts into runs of about `tokens` tokens (a context is never split).
pub(crate) fn chunks(spans: &[(usize, usize)], tokens: usize) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut c0 = 0;
    let mut acc = 0;
    for (c, &(_, len)) in spans.iter().enumerate() {
        acc += len;
        if acc >= tokens {
            out.push(Chunk {
                c0,
                c1: c + 1,
                t0: spans[c0].0,
                t1: spans[c].0 + len,
            });
            c0 = c + 1;
            acc = 0;
        }
    }
    if c0 < spans.len() {
        let last = spans.len() - 1;
        out.push(Chunk {
            c0,
            c1: spans.len(),
            t0: spans[c0].0,
            t1: spans[last].0 + spans[last].1,
        });
    }
    out
}

/// Token embeddings of a chunk, `n×d` (overwrites `x`). Sums in the order of
/// [`Model::embed`].
pub(crate) fn embed(lay: &ParamLayout, p: &[f32], hb: &HostBatch, ch: Chunk, x: &mut [f32]) {
    let d = lay.d;
    let row = |off: usize, i: u32| &p[off + i as usize * d..off + (i as usize + 1) * d];
    let (nw, nb) = (
        &p[lay.num.w..lay.num.w + 2 * d],
        &p[lay.num.b..lay.num.b + d],
    );
    let (tw, tb) = (
        &p[lay.time.w..lay.time.w + TIME_FEATS * d],
        &p[lay.time.b..lay.time.b + d],
    );
    for (i, t) in (ch.t0..ch.t1).enumerate() {
        let xr = &mut x[i * d..(i + 1) * d];
        let (c, k, h) = (
            row(lay.col_emb, hb.col[t]),
            row(lay.kind_emb, hb.kind[t]),
            row(lay.hop_emb, hb.hop[t]),
        );
        for j in 0..d {
            xr[j] = (c[j] + k[j]) + h[j];
        }
        if hb.m_num[t] != 0.0 {
            let (a, b) = (hb.num[2 * t], hb.num[2 * t + 1]);
            let m = hb.m_num[t];
            for j in 0..d {
                xr[j] += (a * nw[2 * j] + b * nw[2 * j + 1] + nb[j]) * m;
            }
        }
        if hb.m_time[t] != 0.0 {
            let f = &hb.time[t * TIME_FEATS..(t + 1) * TIME_FEATS];
            let m = hb.m_time[t];
            for j in 0..d {
                let w = &tw[j * TIME_FEATS..(j + 1) * TIME_FEATS];
                let mut s = 0f32;
                for (a, b) in f.iter().zip(w) {
                    s += a * b;
                }
                xr[j] += (s + tb[j]) * m;
            }
        }
        if hb.m_cat[t] != 0.0 {
            let v = row(lay.value_emb, hb.value_idx[t]);
            let m = hb.m_cat[t];
            for j in 0..d {
                xr[j] += v[j] * m;
            }
        }
    }
}

/// Dropout masks of a batch in the order [`Model::forward`] draws them: per block, one
/// `n×d` mask per attention layer then one for the feed-forward layer. `None` without
/// dropout.
pub(crate) fn dropout_masks(
    m: &Model,
    n_tokens: usize,
    rng: Option<&mut ChaCha8Rng>,
) -> Option<Vec<Vec<f32>>> {
    let p = m.cfg.dropout;
    let rng = rng?;
    if p <= 0.0 {
        return None;
    }
    let keep = 1.0 - p;
    let layers = m.blocks.len() * (m.kinds.len() + 1);
    let n = n_tokens * m.cfg.d_model;
    Some(
        (0..layers)
            .map(|_| {
                (0..n)
                    .map(|_| {
                        if rng.random::<f32>() < keep {
                            1.0 / keep
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect(),
    )
}

/// Which rows of a chunk one layer computes. Only the target tokens' states leave the last
/// layer, so going backwards from them: a feed-forward layer needs its rows, an attention
/// layer its queries' rows and their keys. Rows outside are never read by anything that
/// reaches an output (their gradients are exactly zero): skipping them changes nothing.
#[derive(Debug, Default)]
pub(crate) struct LayerPlan {
    /// Attention type, `None` for the feed-forward layer.
    pub kind: Option<usize>,
    /// Rows (chunk-local, sorted) whose output is read later; `None`: every row.
    pub out: Option<Vec<u32>>,
    /// Rows whose normalised input the layer reads (`out` and, for attention, their keys);
    /// `None`: every row.
    pub inp: Option<Vec<u32>>,
    /// Attention with a subset of queries: their pairs, keys as indices into the input rows.
    pub csr: Option<Csr>,
    /// ... and each query's own index in the input rows.
    pub qrow: Vec<u32>,
    /// Attention: the order to visit the queries in (shared by the layers of a type).
    pub order: Arc<[u32]>,
}

impl LayerPlan {
    pub fn n_out(&self, n: usize) -> usize {
        self.out.as_ref().map_or(n, Vec::len)
    }
    pub fn n_inp(&self, n: usize) -> usize {
        self.inp.as_ref().map_or(n, Vec::len)
    }
    /// Chunk row of output `i`.
    #[inline]
    pub fn out_row(&self, i: usize) -> usize {
        self.out.as_ref().map_or(i, |r| r[i] as usize)
    }
}

/// The layers' plans of a chunk, in forward order (see [`LayerPlan`]).
pub(crate) fn plan(lay: &ParamLayout, hb: &HostBatch, ch: Chunk) -> Vec<LayerPlan> {
    let n = ch.n();
    let mut kinds = Vec::new();
    for (attn, _) in &lay.blocks {
        kinds.extend((0..attn.len()).map(Some));
        kinds.push(None);
    }
    let mut need = vec![false; n];
    for c in ch.c0..ch.c1 {
        need[hb.target[c] as usize - ch.t0] = true;
    }
    let rows = |m: &[bool]| -> Option<Vec<u32>> {
        let r: Vec<u32> = (0..n as u32).filter(|&t| m[t as usize]).collect();
        (r.len() < n).then_some(r)
    };
    let mut plans: Vec<LayerPlan> = Vec::with_capacity(kinds.len());
    let mut orders: Vec<Option<Arc<[u32]>>> = vec![None; hb.csr.len()];
    for kind in kinds.into_iter().rev() {
        let out = rows(&need);
        let Some(k) = kind else {
            plans.push(LayerPlan {
                kind,
                inp: out.clone(),
                out,
                ..Default::default()
            });
            continue;
        };
        let Some(out_rows) = out else {
            plans.push(LayerPlan {
                kind,
                order: orders[k]
                    .get_or_insert_with(|| hb.csr[k].query_order(ch.t0, ch.t1, ch.t0).into())
                    .clone(),
                ..Default::default()
            });
            continue;
        };
        let csr = &hb.csr[k];
        for &q in &out_rows {
            let t = q as usize + ch.t0;
            for &key in &csr.keys[csr.off[t] as usize..csr.off[t + 1] as usize] {
                need[key as usize - ch.t0] = true;
            }
        }
        let inp = rows(&need);
        // index of each chunk row among the input rows
        let idx: Vec<u32> = match &inp {
            Some(r) => {
                let mut idx = vec![u32::MAX; n];
                for (i, &t) in r.iter().enumerate() {
                    idx[t as usize] = i as u32;
                }
                idx
            }
            None => (0..n as u32).collect(),
        };
        let mut off = Vec::with_capacity(out_rows.len() + 1);
        let mut keys = Vec::new();
        off.push(0u32);
        for &q in &out_rows {
            let t = q as usize + ch.t0;
            for &key in &csr.keys[csr.off[t] as usize..csr.off[t + 1] as usize] {
                keys.push(idx[key as usize - ch.t0]);
            }
            off.push(keys.len() as u32);
        }
        let csr = Csr { off, keys };
        plans.push(LayerPlan {
            kind,
            qrow: out_rows.iter().map(|&q| idx[q as usize]).collect(),
            order: csr.query_order(0, out_rows.len(), 0).into(),
            out: Some(out_rows),
            inp,
            csr: Some(csr),
        });
    }
    plans.reverse();
    plans
}

/// The attention shape of an attention layer of a chunk under its plan.
pub(crate) fn attn_shape<'a>(
    lay: &ParamLayout,
    hb: &'a HostBatch,
    ch: Chunk,
    plan: &'a LayerPlan,
) -> AttnShape<'a> {
    match &plan.csr {
        Some(c) => AttnShape {
            off: &c.off,
            keys: &c.keys,
            base: 0,
            qrow: &plan.qrow,
            order: &plan.order,
            heads: lay.heads,
            d: lay.d,
        },
        None => {
            let c = &hb.csr[plan.kind.expect("attention layer")];
            AttnShape {
                off: &c.off[ch.t0..=ch.t1],
                keys: &c.keys,
                base: ch.t0,
                qrow: &[],
                order: &plan.order,
                heads: lay.heads,
                d: lay.d,
            }
        }
    }
}

/// Rows `rows` of `x` (`d` wide) into `dst`.
pub(crate) fn gather(x: &[f32], rows: &[u32], d: usize, dst: &mut Vec<f32>) {
    dst.clear();
    for &r in rows {
        dst.extend_from_slice(&x[r as usize * d..(r as usize + 1) * d]);
    }
}

/// Activations one layer keeps for the backward (input rows and output rows of its plan).
#[derive(Default)]
pub(crate) struct LayerCache {
    pub xhat: Vec<f32>,
    pub rstd: Vec<f32>,
    /// The normalised input (`x̂·g + b`).
    pub y: Vec<f32>,
    /// `qkv` (attention, `3d` per input row) or `[u₁|u₃]` (feed-forward, `2h` per row).
    pub proj: Vec<f32>,
    /// Attention output before `o` (`d` per query) or `silu(u₁)·u₃` (`h` per row).
    pub act: Vec<f32>,
    /// Pair weights (`H` per pair) and sink weights (`H` per query).
    pub w: Vec<f32>,
    pub wsink: Vec<f32>,
}

/// Scratch buffers of one chunk's forward pass.
#[derive(Default)]
pub(crate) struct Scratch {
    /// The layer's activations when nothing is kept for a backward.
    pub layer: LayerCache,
    pub xg: Vec<f32>,
    pub out: Vec<f32>,
    pub pairs: Vec<f32>,
}

fn fit(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// The blocks over a chunk's embeddings `x` (`n×d`, updated in place; rows outside the
/// plans are left behind). With `caches` (one per layer, in order), keeps what the backward
/// needs. `masks`: dropout masks of the whole batch (see [`dropout_masks`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn blocks_fwd(
    lay: &ParamLayout,
    p: &[f32],
    hb: &HostBatch,
    ch: Chunk,
    plans: &[LayerPlan],
    x: &mut [f32],
    mut caches: Option<&mut [LayerCache]>,
    masks: Option<&[Vec<f32>]>,
    s: &mut Scratch,
) {
    let (d, h, hid) = (lay.d, lay.heads, lay.hid);
    let n = ch.n();
    let save = caches.is_some();
    let mut layer = 0;
    for (attn, ffn) in &lay.blocks {
        let subs = attn
            .iter()
            .map(|a| (Some(a), a.norm))
            .chain(std::iter::once((None, ffn.norm)));
        for (a, norm) in subs {
            let plan = &plans[layer];
            let (n_in, n_out) = (plan.n_inp(n), plan.n_out(n));
            let c = match caches.as_deref_mut() {
                Some(cs) => &mut cs[layer],
                None => &mut s.layer,
            };
            let xin: &[f32] = match &plan.inp {
                Some(rows) => {
                    gather(x, rows, d, &mut s.xg);
                    &s.xg
                }
                None => x,
            };
            let y = fit(&mut c.y, n_in * d);
            let (xhat, rstd): (&mut [f32], &mut [f32]) = if save {
                (fit(&mut c.xhat, n_in * d), fit(&mut c.rstd, n_in))
            } else {
                (&mut [], &mut [])
            };
            kernels::layer_norm_fwd(
                xin,
                &p[norm.g..norm.g + d],
                &p[norm.b..norm.b + d],
                d,
                y,
                xhat,
                rstd,
            );
            let out = fit(&mut s.out, n_out * d);
            match a {
                Some(a) => {
                    let shape = attn_shape(lay, hb, ch, plan);
                    let np = (shape.off[n_out] - shape.off[0]) as usize;
                    let proj = fit(&mut c.proj, n_in * 3 * d);
                    kernels::linear_fwd(
                        y,
                        &p[a.qkv.w..a.qkv.w + 3 * d * d],
                        &p[a.qkv.b..a.qkv.b + 3 * d],
                        d,
                        3 * d,
                        proj,
                    );
                    let act = fit(&mut c.act, n_out * d);
                    let (w, wsink): (&mut [f32], &mut [f32]) = if save {
                        (fit(&mut c.w, np * h), fit(&mut c.wsink, n_out * h))
                    } else {
                        (&mut [], &mut [])
                    };
                    kernels::attention_fwd(
                        shape,
                        proj,
                        &p[a.sink..a.sink + h],
                        act,
                        w,
                        wsink,
                        &mut s.pairs,
                    );
                    kernels::linear_fwd(
                        act,
                        &p[a.o.w..a.o.w + d * d],
                        &p[a.o.b..a.o.b + d],
                        d,
                        d,
                        out,
                    );
                }
                None => {
                    let proj = fit(&mut c.proj, n_in * 2 * hid);
                    kernels::linear_fwd(
                        y,
                        &p[ffn.w13.w..ffn.w13.w + 2 * hid * d],
                        &p[ffn.w13.b..ffn.w13.b + 2 * hid],
                        d,
                        2 * hid,
                        proj,
                    );
                    let act = fit(&mut c.act, n_out * hid);
                    kernels::swiglu_fwd(proj, hid, act);
                    kernels::linear_fwd(
                        act,
                        &p[ffn.w2.w..ffn.w2.w + d * hid],
                        &p[ffn.w2.b..ffn.w2.b + d],
                        hid,
                        d,
                        out,
                    );
                }
            }
            let mask = masks.map(|ms| ms[layer].as_slice());
            residual(x, out, plan, ch, d, mask);
            layer += 1;
        }
    }
}

/// Adds a sub-layer's output `out` (`n_out×d`, dropout applied first when `mask` is given:
/// the batch's mask of this layer) to the rows of `x` its plan writes.
fn residual(
    x: &mut [f32],
    out: &mut [f32],
    plan: &LayerPlan,
    ch: Chunk,
    d: usize,
    mask: Option<&[f32]>,
) {
    let n_out = plan.n_out(ch.n());
    if let Some(m) = mask {
        for i in 0..n_out {
            let r = ch.t0 + plan.out_row(i);
            for (v, &k) in out[i * d..(i + 1) * d]
                .iter_mut()
                .zip(&m[r * d..(r + 1) * d])
            {
                *v *= k;
            }
        }
    }
    match &plan.out {
        None => kernels::add_assign(x, out),
        Some(rows) => {
            for (i, &r) in rows.iter().enumerate() {
                let r = r as usize;
                kernels::add_assign(&mut x[r * d..(r + 1) * d], &out[i * d..(i + 1) * d]);
            }
        }
    }
}

/// Final norm and head of one token state `x` (`d`): the normalised state into `y` (`d`),
/// the outputs into `out` (`n_out`).
pub(crate) fn head_fwd(
    lay: &ParamLayout,
    p: &[f32],
    x: &[f32],
    y: &mut [f32],
    xhat: &mut [f32],
    rstd: &mut [f32],
    out: &mut [f32],
) {
    let d = lay.d;
    let fg = &p[lay.final_norm.g..lay.final_norm.g + d];
    let fb = &p[lay.final_norm.b..lay.final_norm.b + d];
    kernels::layer_norm_fwd(x, fg, fb, d, y, xhat, rstd);
    kernels::linear_fwd(
        y,
        &p[lay.head.w..lay.head.w + lay.n_out * d],
        &p[lay.head.b..lay.head.b + lay.n_out],
        d,
        lay.n_out,
        out,
    );
}
