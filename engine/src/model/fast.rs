//! What the fast paths ([`super::infer`], [`super::grad`]) share: the model's parameters as
//! one flat `f32` array in a fixed layout, a batch on the host (token arrays and the pairs of
//! every attention type in CSR form), chunks of contexts, and the forward pass of a chunk.
//!
//! The layout puts `q`, `k`, `v` of an attention layer one after the other (weights, then
//! biases), so they are one `[3d, d]` matrix and one `[3d]` bias; likewise `w1`, `w3` of the
//! feed-forward layer (`[2h, d]`). Each projection is then one matrix product.

use candle_core::{Result, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::kernels::{self, AttnShape, Csr};
use super::{Batch, Model};
use crate::encode::TIME_FEATS;

/// Offsets of a `Linear` in the flat array.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinOff {
    pub w: usize,
    pub b: usize,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct NormOff {
    pub g: usize,
    pub b: usize,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct AttnOff {
    pub norm: NormOff,
    /// `[3d, d]` / `[3d]`: q, k, v stacked.
    pub qkv: LinOff,
    pub o: LinOff,
    pub sink: usize,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct FfnOff {
    pub norm: NormOff,
    /// `[2h, d]` / `[2h]`: w1, w3 stacked.
    pub w13: LinOff,
    pub w2: LinOff,
}

/// Where every parameter of a [`Model`] lives in the flat array, and which tensor it is.
pub(crate) struct ParamLayout {
    pub d: usize,
    pub heads: usize,
    pub hid: usize,
    pub n_out: usize,
    pub col_emb: usize,
    pub kind_emb: usize,
    pub hop_emb: usize,
    pub value_emb: usize,
    pub num: LinOff,
    pub time: LinOff,
    pub blocks: Vec<(Vec<AttnOff>, FfnOff)>,
    pub final_norm: NormOff,
    pub head: LinOff,
    /// `(tensor, offset)` of every parameter, in layout order.
    pub tensors: Vec<(Tensor, usize)>,
    pub total: usize,
}

struct Builder {
    tensors: Vec<(Tensor, usize)>,
    total: usize,
}

impl Builder {
    fn add(&mut self, t: &Tensor) -> usize {
        let off = self.total;
        self.tensors.push((t.clone(), off));
        self.total += t.elem_count();
        off
    }
    fn lin(&mut self, l: &super::Linear) -> LinOff {
        let w = self.add(&l.w);
        let b = self.add(&l.b);
        LinOff { w, b }
    }
    /// Linears with the same input stacked along their outputs: weights then biases.
    fn stacked(&mut self, ls: &[&super::Linear]) -> LinOff {
        let w = self.add(&ls[0].w);
        for l in &ls[1..] {
            self.add(&l.w);
        }
        let b = self.add(&ls[0].b);
        for l in &ls[1..] {
            self.add(&l.b);
        }
        LinOff { w, b }
    }
    fn norm(&mut self, n: &super::Norm) -> NormOff {
        NormOff {
            g: self.add(&n.g),
            b: self.add(&n.b),
        }
    }
}

impl ParamLayout {
    pub fn new(m: &Model) -> ParamLayout {
        let mut b = Builder {
            tensors: Vec::new(),
            total: 0,
        };
        let col_emb = b.add(&m.col_emb);
        let kind_emb = b.add(&m.kind_emb);
        let hop_emb = b.add(&m.hop_emb);
        let value_emb = b.add(&m.value_emb);
        let num = b.lin(&m.num_lin);
        let time = b.lin(&m.time_lin);
        let blocks = m
            .blocks
            .iter()
            .map(|blk| {
                let attn = blk
                    .attn
                    .iter()
                    .map(|a| AttnOff {
                        norm: b.norm(&a.norm),
                        qkv: b.stacked(&[&a.wq, &a.wk, &a.wv]),
                        o: b.lin(&a.wo),
                        sink: b.add(&a.sink),
                    })
                    .collect();
                let f = &blk.ffn;
                let ffn = FfnOff {
                    norm: b.norm(&f.norm),
                    w13: b.stacked(&[&f.w1, &f.w3]),
                    w2: b.lin(&f.w2),
                };
                (attn, ffn)
            })
            .collect();
        let final_norm = b.norm(&m.final_norm);
        let head = b.lin(&m.head);
        ParamLayout {
            d: m.cfg.d_model,
            heads: m.cfg.heads,
            hid: m.cfg.d_model * m.cfg.ffn_mult,
            n_out: m.dims.n_out,
            col_emb,
            kind_emb,
            hop_emb,
            value_emb,
            num,
            time,
            blocks,
            final_norm,
            head,
            tensors: b.tensors,
            total: b.total,
        }
    }

    /// The current parameter values, in layout order.
    pub fn read(&self) -> Result<Vec<f32>> {
        let mut p = Vec::with_capacity(self.total);
        for (t, off) in &self.tensors {
            debug_assert_eq!(p.len(), *off);
            p.extend(t.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(p)
    }
}

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

/// The attention shape of layer `kind` for a chunk.
pub(crate) fn attn_shape<'a>(
    lay: &ParamLayout,
    hb: &'a HostBatch,
    kind: usize,
    ch: Chunk,
) -> AttnShape<'a> {
    let csr = &hb.csr[kind];
    AttnShape {
        off: &csr.off[ch.t0..=ch.t1],
        keys: &csr.keys,
        base: ch.t0,
        heads: lay.heads,
        d: lay.d,
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

/// Activations one layer keeps for the backward.
#[derive(Default)]
pub(crate) struct LayerCache {
    pub xhat: Vec<f32>,
    pub rstd: Vec<f32>,
    /// The normalised input (`x̂·g + b`).
    pub y: Vec<f32>,
    /// `qkv` (attention, `n×3d`) or `[u₁|u₃]` (feed-forward, `n×2h`).
    pub proj: Vec<f32>,
    /// Attention output before `o` (`n×d`) or `silu(u₁)·u₃` (`n×h`).
    pub act: Vec<f32>,
    /// Pair weights `P×H` and sink weights `n×H` (attention).
    pub w: Vec<f32>,
    pub wsink: Vec<f32>,
}

/// Scratch buffers of one chunk's forward pass.
#[derive(Default)]
pub(crate) struct Scratch {
    pub y: Vec<f32>,
    pub proj: Vec<f32>,
    pub act: Vec<f32>,
    pub out: Vec<f32>,
    pub pairs: Vec<f32>,
}

fn fit(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// The blocks over a chunk's embeddings `x` (`n×d`, updated in place). With `caches`
/// (one per layer, in order), keeps what the backward needs. `masks`: dropout masks of the
/// whole batch (see [`dropout_masks`]).
pub(crate) fn blocks_fwd(
    lay: &ParamLayout,
    p: &[f32],
    hb: &HostBatch,
    ch: Chunk,
    x: &mut [f32],
    mut caches: Option<&mut [LayerCache]>,
    masks: Option<&[Vec<f32>]>,
    s: &mut Scratch,
) {
    let (d, h, hid) = (lay.d, lay.heads, lay.hid);
    let n = ch.n();
    let mut layer = 0;
    let apply_mask = |masks: Option<&[Vec<f32>]>, layer: usize, o: &mut [f32]| {
        if let Some(ms) = masks {
            let m = &ms[layer][ch.t0 * d..ch.t1 * d];
            for (v, &k) in o.iter_mut().zip(m) {
                *v *= k;
            }
        }
    };
    for (attn, ffn) in &lay.blocks {
        for (kind, a) in attn.iter().enumerate() {
            let shape = attn_shape(lay, hb, kind, ch);
            let np = (shape.off[n] - shape.off[0]) as usize;
            let g = &p[a.norm.g..a.norm.g + d];
            let b = &p[a.norm.b..a.norm.b + d];
            let wq = &p[a.qkv.w..a.qkv.w + 3 * d * d];
            let bq = &p[a.qkv.b..a.qkv.b + 3 * d];
            let sink = &p[a.sink..a.sink + h];
            let out = fit(&mut s.out, n * d);
            match caches.as_deref_mut() {
                Some(cs) => {
                    let c = &mut cs[layer];
                    c.xhat.resize(n * d, 0.0);
                    c.rstd.resize(n, 0.0);
                    c.y.resize(n * d, 0.0);
                    c.proj.resize(n * 3 * d, 0.0);
                    c.act.resize(n * d, 0.0);
                    c.w.resize(np * h, 0.0);
                    c.wsink.resize(n * h, 0.0);
                    kernels::layer_norm_fwd(x, g, b, d, &mut c.y, &mut c.xhat, &mut c.rstd);
                    kernels::linear_fwd(&c.y, wq, bq, d, 3 * d, &mut c.proj);
                    kernels::attention_fwd(
                        shape,
                        &c.proj,
                        sink,
                        &mut c.act,
                        &mut c.w,
                        &mut c.wsink,
                        &mut s.pairs,
                    );
                    kernels::linear_fwd(
                        &c.act,
                        &p[a.o.w..a.o.w + d * d],
                        &p[a.o.b..a.o.b + d],
                        d,
                        d,
                        out,
                    );
                }
                None => {
                    let y = fit(&mut s.y, n * d);
                    kernels::layer_norm_fwd(x, g, b, d, y, &mut [], &mut []);
                    let qkv = fit(&mut s.proj, n * 3 * d);
                    kernels::linear_fwd(y, wq, bq, d, 3 * d, qkv);
                    let act = fit(&mut s.act, n * d);
                    kernels::attention_fwd(shape, qkv, sink, act, &mut [], &mut [], &mut s.pairs);
                    kernels::linear_fwd(
                        act,
                        &p[a.o.w..a.o.w + d * d],
                        &p[a.o.b..a.o.b + d],
                        d,
                        d,
                        out,
                    );
                }
            }
            apply_mask(masks, layer, out);
            kernels::add_assign(x, out);
            layer += 1;
        }
        let g = &p[ffn.norm.g..ffn.norm.g + d];
        let b = &p[ffn.norm.b..ffn.norm.b + d];
        let w13 = &p[ffn.w13.w..ffn.w13.w + 2 * hid * d];
        let b13 = &p[ffn.w13.b..ffn.w13.b + 2 * hid];
        let w2 = &p[ffn.w2.w..ffn.w2.w + d * hid];
        let b2 = &p[ffn.w2.b..ffn.w2.b + d];
        let out = fit(&mut s.out, n * d);
        match caches.as_deref_mut() {
            Some(cs) => {
                let c = &mut cs[layer];
                c.xhat.resize(n * d, 0.0);
                c.rstd.resize(n, 0.0);
                c.y.resize(n * d, 0.0);
                c.proj.resize(n * 2 * hid, 0.0);
                c.act.resize(n * hid, 0.0);
                kernels::layer_norm_fwd(x, g, b, d, &mut c.y, &mut c.xhat, &mut c.rstd);
                kernels::linear_fwd(&c.y, w13, b13, d, 2 * hid, &mut c.proj);
                kernels::swiglu_fwd(&c.proj, hid, &mut c.act);
                kernels::linear_fwd(&c.act, w2, b2, hid, d, out);
            }
            None => {
                let y = fit(&mut s.y, n * d);
                kernels::layer_norm_fwd(x, g, b, d, y, &mut [], &mut []);
                let u = fit(&mut s.proj, n * 2 * hid);
                kernels::linear_fwd(y, w13, b13, d, 2 * hid, u);
                let a = fit(&mut s.act, n * hid);
                kernels::swiglu_fwd(u, hid, a);
                kernels::linear_fwd(a, w2, b2, hid, d, out);
            }
        }
        apply_mask(masks, layer, out);
        kernels::add_assign(x, out);
        layer += 1;
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
