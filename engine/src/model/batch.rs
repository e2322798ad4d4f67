//! A batch of encoded contexts laid end to end, with the index lists of every attention type.

use std::collections::BTreeMap;

use candle_core::{Device, Result, Tensor};

use super::attention::{masks_from_pairs, Pairs};
use super::ModelConfig;
use crate::encode::{EncodedContext, Kind, MAX_HOP, TIME_FEATS};

/// Which tokens a query token may attend to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttnKind {
    /// Tokens with the same column id in the same context.
    Column,
    /// Tokens of the same row and of that row's FK parents.
    Row,
    /// Tokens of the rows that reference the query's row (its children).
    Neighbor,
    /// Every token of the context.
    Full,
}

/// The attention types a model with `cfg` runs in each block, in order.
pub fn attn_kinds(cfg: &ModelConfig) -> Vec<AttnKind> {
    let mut v = vec![AttnKind::Column, AttnKind::Row];
    if cfg.neighbor_attention {
        v.push(AttnKind::Neighbor);
    }
    if cfg.full_attention {
        v.push(AttnKind::Full);
    }
    v
}

pub struct Batch {
    pub n_ctx: usize,
    pub n_tokens: usize,
    pub col: Tensor,
    pub kind: Tensor,
    /// Index into the value embedding: the bucket (`Cat`), `n_buckets + b` (`Bool`), 0 else.
    pub value_idx: Tensor,
    pub hop: Tensor,
    /// `[N, 2]`: z-score and NULL flag.
    pub num: Tensor,
    /// `[N, TIME_FEATS]`
    pub time: Tensor,
    /// `[N, 1]` 0/1 masks of the token kinds with a value encoder.
    pub m_num: Tensor,
    pub m_time: Tensor,
    pub m_cat: Tensor,
    /// `[B]` global token index of each context's target token.
    pub target: Tensor,
    pub labels: Vec<Option<f32>>,
    pub spans: Vec<(usize, usize)>,
    pub attn: Vec<(AttnKind, Pairs)>,
    /// Dense masks per attention type (only when the model runs dense attention).
    pub dense_masks: Vec<Vec<Tensor>>,
}

fn ctx_pairs(c: &EncodedContext, kind: AttnKind, off: u32, q: &mut Vec<u32>, k: &mut Vec<u32>) {
    let n = c.n_tokens();
    let mut by_row: Vec<Vec<u32>> = vec![Vec::new(); c.n_rows()];
    for (t, &r) in c.row.iter().enumerate() {
        by_row[r as usize].push(t as u32 + off);
    }
    match kind {
        AttnKind::Column => {
            let mut by_col: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
            for (t, &col) in c.col.iter().enumerate() {
                by_col.entry(col).or_default().push(t as u32 + off);
            }
            // grouped by query: visit tokens in order
            for (t, col) in c.col.iter().enumerate() {
                for &j in &by_col[col] {
                    q.push(t as u32 + off);
                    k.push(j);
                }
            }
        }
        AttnKind::Row => {
            for (r, toks) in by_row.iter().enumerate() {
                let mut keys: Vec<u32> = toks.clone();
                for &p in &c.row_parents[r] {
                    if p as usize != r {
                        keys.extend_from_slice(&by_row[p as usize]);
                    }
                }
                for &t in toks {
                    for &j in &keys {
                        q.push(t);
                        k.push(j);
                    }
                }
            }
        }
        AttnKind::Neighbor => {
            let mut children: Vec<Vec<usize>> = vec![Vec::new(); c.n_rows()];
            for (r, ps) in c.row_parents.iter().enumerate() {
                for &p in ps {
                    if p as usize != r && !children[p as usize].contains(&r) {
                        children[p as usize].push(r);
                    }
                }
            }
            for (r, toks) in by_row.iter().enumerate() {
                for &t in toks {
                    for &ch in &children[r] {
                        for &j in &by_row[ch] {
                            q.push(t);
                            k.push(j);
                        }
                    }
                }
            }
        }
        AttnKind::Full => {
            for t in 0..n as u32 {
                for j in 0..n as u32 {
                    q.push(t + off);
                    k.push(j + off);
                }
            }
        }
    }
    // by_row is in token order per row; Row/Neighbor queries are emitted row by row, which
    // groups pairs by query as the sparse kernel's layout expects (it only needs grouping
    // for locality, not for correctness).
}

impl Batch {
    /// Lays out `ctxs` end to end. `n_buckets` must match the model's.
    pub fn new(
        ctxs: &[&EncodedContext],
        cfg: &ModelConfig,
        n_buckets: usize,
        dev: &Device,
    ) -> Result<Batch> {
        let n: usize = ctxs.iter().map(|c| c.n_tokens()).sum();
        let mut col = Vec::with_capacity(n);
        let mut kind = Vec::with_capacity(n);
        let mut value_idx = Vec::with_capacity(n);
        let mut hop = Vec::with_capacity(n);
        let mut num = Vec::with_capacity(2 * n);
        let mut time = Vec::with_capacity(TIME_FEATS * n);
        let (mut m_num, mut m_time, mut m_cat) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        let mut target = Vec::with_capacity(ctxs.len());
        let mut spans = Vec::with_capacity(ctxs.len());
        let kinds = attn_kinds(cfg);
        let mut qk: Vec<(Vec<u32>, Vec<u32>)> = vec![(Vec::new(), Vec::new()); kinds.len()];
        let mut off = 0usize;
        for c in ctxs {
            let len = c.n_tokens();
            spans.push((off, len));
            target.push((off + c.target) as u32);
            for t in 0..len {
                let g = off + t;
                col.push(c.col[t]);
                kind.push(c.kind[t] as u32);
                hop.push(c.row_hop[c.row[t] as usize].min(MAX_HOP) as u32);
                let k = c.kind[t];
                let null = (k == Kind::Null as u8) as u8 as f32;
                num.push(c.num[t]);
                num.push(null);
                time.extend_from_slice(&c.time[t * TIME_FEATS..(t + 1) * TIME_FEATS]);
                value_idx.push(if k == Kind::Cat as u8 {
                    c.bucket[t].min(n_buckets as u32 - 1)
                } else if k == Kind::Bool as u8 {
                    n_buckets as u32 + c.bucket[t].min(1)
                } else {
                    0
                });
                m_num[g] = (k == Kind::Num as u8) as u8 as f32;
                m_time[g] = (k == Kind::Time as u8) as u8 as f32;
                m_cat[g] = (k == Kind::Cat as u8 || k == Kind::Bool as u8) as u8 as f32;
            }
            for (i, &ak) in kinds.iter().enumerate() {
                let (q, k) = &mut qk[i];
                ctx_pairs(c, ak, off as u32, q, k);
            }
            off += len;
        }
        let mut attn = Vec::with_capacity(kinds.len());
        for (ak, (q, k)) in kinds.into_iter().zip(qk) {
            attn.push((ak, Pairs::new(q, k, dev)?));
        }
        let dense_masks = if cfg.dense_attention {
            attn.iter()
                .map(|(_, p)| masks_from_pairs(p, &spans, dev))
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let t1 = |v: Vec<f32>| Tensor::from_vec(v, (n, 1), dev);
        Ok(Batch {
            n_ctx: ctxs.len(),
            n_tokens: n,
            col: Tensor::from_vec(col, n, dev)?,
            kind: Tensor::from_vec(kind, n, dev)?,
            value_idx: Tensor::from_vec(value_idx, n, dev)?,
            hop: Tensor::from_vec(hop, n, dev)?,
            num: Tensor::from_vec(num, (n, 2), dev)?,
            time: Tensor::from_vec(time, (n, TIME_FEATS), dev)?,
            m_num: t1(m_num)?,
            m_time: t1(m_time)?,
            m_cat: t1(m_cat)?,
            target: Tensor::from_vec(target, ctxs.len(), dev)?,
            labels: ctxs.iter().map(|c| c.label).collect(),
            spans,
            attn,
            dense_masks,
        })
    }

    /// Allowed pairs over all attention types (a proxy for compute and memory).
    pub fn n_pairs(&self) -> usize {
        self.attn.iter().map(|(_, p)| p.len()).sum()
    }
}
