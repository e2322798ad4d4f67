//! Structured attention over allowed (query, key) pairs, and the dense masked reference.
//!
//! Every query also sees a learned per-head **sink** logit whose value vector is zero: it
//! lets a query attend to "nothing", makes a query with no allowed keys return exactly zero
//! (never NaN), and keeps the query/key projections trainable when a query has one key.

use std::sync::Arc;

use candle_core::{DType, Device, Result, Tensor, D};

use super::pair_ops::{pair_dot, pair_scatter};

/// Allowed (query, key) pairs of one attention type for a batch, token indices global to the
/// batch. Pairs are grouped by query.
#[derive(Debug, Clone)]
pub struct Pairs {
    pub q_host: Arc<Vec<u32>>,
    pub k_host: Arc<Vec<u32>>,
    pub q: Tensor,
    pub k: Tensor,
}

impl Pairs {
    pub fn new(q_host: Vec<u32>, k_host: Vec<u32>, device: &Device) -> Result<Pairs> {
        let q = Tensor::from_slice(&q_host, q_host.len(), device)?;
        let k = Tensor::from_slice(&k_host, k_host.len(), device)?;
        Ok(Pairs {
            q_host: Arc::new(q_host),
            k_host: Arc::new(k_host),
            q,
            k,
        })
    }
    pub fn len(&self) -> usize {
        self.q_host.len()
    }
    pub fn is_empty(&self) -> bool {
        self.q_host.is_empty()
    }
}

/// Sparse attention. `q`, `k`, `v`: `[N, H, Dh]`; `sink`: `[H]`. Returns `[N, H, Dh]`.
/// On the CPU it runs the fused pair kernels ([`sparse_attention_fused`]), elsewhere the
/// gather formulation ([`sparse_attention_gather`]); both compute the same function.
pub fn sparse_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    sink: &Tensor,
    pairs: &Pairs,
) -> Result<Tensor> {
    if q.device().is_cpu() {
        sparse_attention_fused(q, k, v, sink, pairs)
    } else {
        sparse_attention_gather(q, k, v, sink, pairs)
    }
}

/// Per-query max over its keys' scores and the sink, `[N, H]`, taken off the graph (a
/// constant shift leaves the softmax and its gradient unchanged).
fn segment_max(scores: &Tensor, sink: &Tensor, pairs: &Pairs, n: usize) -> Result<Tensor> {
    let h = sink.dims1()?;
    let s_host = scores.detach().flatten_all()?.to_vec1::<f32>()?;
    let sink_host = sink.detach().to_vec1::<f32>()?;
    let mut m = Vec::with_capacity(n * h);
    for _ in 0..n {
        m.extend_from_slice(&sink_host);
    }
    for (p, &qi) in pairs.q_host.iter().enumerate() {
        let row = &mut m[qi as usize * h..(qi as usize + 1) * h];
        for (mx, &s) in row.iter_mut().zip(&s_host[p * h..(p + 1) * h]) {
            if s > *mx {
                *mx = s;
            }
        }
    }
    Tensor::from_vec(m, (n, h), scores.device())
}

/// Segment softmax weights `[P, H]` of pair scores `[P, H]` (sink included in the sums).
fn segment_softmax(scores: &Tensor, sink: &Tensor, pairs: &Pairs, n: usize) -> Result<Tensor> {
    let m = segment_max(scores, sink, pairs, n)?;
    let e = scores.sub(&m.index_select(&pairs.q, 0)?)?.exp()?; // [P, H]
    let sink_e = sink.unsqueeze(0)?.broadcast_sub(&m)?.exp()?; // [N, H]
    let denom = sink_e.index_add(&pairs.q, &e, 0)?; // [N, H]
    e.div(&denom.index_select(&pairs.q, 0)?)
}

/// The attention weights `[P, H]` of the allowed pairs (the sink's share is what is left
/// of each query's unit mass). For explanations; not on the training path.
pub fn attention_weights(q: &Tensor, k: &Tensor, sink: &Tensor, pairs: &Pairs) -> Result<Tensor> {
    let (n, h, dh) = q.dims3()?;
    if pairs.is_empty() {
        return Tensor::zeros((0, h), DType::F32, q.device());
    }
    let scale = 1.0 / (dh as f64).sqrt();
    let qg = q.index_select(&pairs.q, 0)?;
    let kg = k.index_select(&pairs.k, 0)?;
    let scores = ((qg * kg)?.sum(D::Minus1)? * scale)?;
    segment_softmax(&scores, sink, pairs, n)
}

/// Sparse attention with the fused pair kernels: only `P × H` scores and weights are
/// materialised (CPU).
pub fn sparse_attention_fused(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    sink: &Tensor,
    pairs: &Pairs,
) -> Result<Tensor> {
    let (n, h, dh) = q.dims3()?;
    if pairs.is_empty() {
        return Tensor::zeros((n, h, dh), DType::F32, q.device());
    }
    let scale = 1.0 / (dh as f64).sqrt();
    let scores = (pair_dot(q, k, &pairs.q_host, &pairs.k_host)? * scale)?;
    let w = segment_softmax(&scores, sink, pairs, n)?;
    pair_scatter(&w, v, &pairs.q_host, &pairs.k_host, n)
}

/// Sparse attention by gathering: scores are computed for the allowed pairs only (gathered
/// with `index_select`), normalised per query by a segment softmax (sums with `index_add`),
/// and the weighted values summed back per query with `index_add`. Materialises `P × d`
/// floats per gathered tensor; runs on any device.
pub fn sparse_attention_gather(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    sink: &Tensor,
    pairs: &Pairs,
) -> Result<Tensor> {
    let (n, h, dh) = q.dims3()?;
    let dev = q.device();
    if pairs.is_empty() {
        return Tensor::zeros((n, h, dh), DType::F32, dev);
    }
    let scale = 1.0 / (dh as f64).sqrt();
    let qg = q.index_select(&pairs.q, 0)?;
    let kg = k.index_select(&pairs.k, 0)?;
    let scores = ((qg * kg)?.sum(D::Minus1)? * scale)?; // [P, H]

    let w = segment_softmax(&scores, sink, pairs, n)?; // [P, H]
    let vg = v.index_select(&pairs.k, 0)?; // [P, H, Dh]
    let weighted = vg.broadcast_mul(&w.unsqueeze(D::Minus1)?)?;
    Tensor::zeros((n, h, dh), DType::F32, dev)?.index_add(&pairs.q, &weighted, 0)
}

/// Dense masked reference (tests and benchmarks only): for each span `(start, len)` of
/// tokens, full `len × len` scores masked by `masks[i]` (row-major, `true` = allowed).
pub fn dense_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    sink: &Tensor,
    spans: &[(usize, usize)],
    masks: &[Tensor],
) -> Result<Tensor> {
    let (n, h, dh) = q.dims3()?;
    let scale = 1.0 / (dh as f64).sqrt();
    let mut outs = Vec::with_capacity(spans.len());
    for (&(start, len), mask) in spans.iter().zip(masks) {
        if len == 0 {
            continue;
        }
        let qs = q.narrow(0, start, len)?.transpose(0, 1)?.contiguous()?; // [H, L, Dh]
        let ks = k.narrow(0, start, len)?.transpose(0, 1)?.contiguous()?;
        let vs = v.narrow(0, start, len)?.transpose(0, 1)?.contiguous()?;
        let scores = (qs.matmul(&ks.t()?)? * scale)?; // [H, L, L]
        let mask_b = mask.unsqueeze(0)?.broadcast_as((h, len, len))?; // f32 0/1
        let neg = ((mask_b.affine(1.0, -1.0))? * 1e30)?; // 0 where allowed, -1e30 elsewhere
        let scores = (scores.mul(&mask_b)? + neg)?;
        let sink_col = sink.reshape((h, 1, 1))?.broadcast_as((h, len, 1))?;
        let full = Tensor::cat(&[&scores, &sink_col.contiguous()?], 2)?;
        let w = candle_nn::ops::softmax(&full, D::Minus1)?.narrow(2, 0, len)?;
        let w = w.mul(&mask_b)?;
        outs.push(w.matmul(&vs)?.transpose(0, 1)?); // [L, H, Dh]
    }
    let out = Tensor::cat(&outs, 0)?;
    debug_assert_eq!(out.dims3()?.0, n);
    Ok(out)
}

/// Dense 0/1 masks (`[L, L]`, f32) for each span, from pair lists.
pub fn masks_from_pairs(
    pairs: &Pairs,
    spans: &[(usize, usize)],
    dev: &Device,
) -> Result<Vec<Tensor>> {
    let mut ctx_of = Vec::new();
    for (i, &(_, len)) in spans.iter().enumerate() {
        ctx_of.extend(std::iter::repeat_n(i, len));
    }
    let mut data: Vec<Vec<f32>> = spans.iter().map(|&(_, l)| vec![0.0; l * l]).collect();
    for (&qi, &ki) in pairs.q_host.iter().zip(pairs.k_host.iter()) {
        let c = ctx_of[qi as usize];
        let (s, l) = spans[c];
        data[c][(qi as usize - s) * l + (ki as usize - s)] = 1.0;
    }
    data.into_iter()
        .zip(spans)
        .map(|(d, &(_, l))| Tensor::from_vec(d, (l, l), dev))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn sparse_equals_dense_with_empty_rows() -> Result<()> {
        let dev = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let spans = vec![(0usize, 9usize), (9, 5), (14, 11)];
        let n = 25;
        let (h, dh) = (3, 4);
        let mut qh = Vec::new();
        let mut kh = Vec::new();
        let mut empty = Vec::new();
        for &(s, l) in &spans {
            for i in s..s + l {
                if rng.random_bool(0.2) {
                    empty.push(i);
                    continue; // a query with no allowed keys
                }
                for j in s..s + l {
                    if rng.random_bool(0.4) {
                        qh.push(i as u32);
                        kh.push(j as u32);
                    }
                }
            }
        }
        assert!(!empty.is_empty());
        let rand_t = |rng: &mut ChaCha8Rng, shape: &[usize]| {
            let len: usize = shape.iter().product();
            let v: Vec<f32> = (0..len).map(|_| rng.random_range(-2.0..2.0)).collect();
            Tensor::from_vec(v, shape, &dev)
        };
        let q = rand_t(&mut rng, &[n, h, dh])?;
        let k = rand_t(&mut rng, &[n, h, dh])?;
        let v = rand_t(&mut rng, &[n, h, dh])?;
        let sink = rand_t(&mut rng, &[h])?;
        let pairs = Pairs::new(qh, kh, &dev)?;
        let masks = masks_from_pairs(&pairs, &spans, &dev)?;
        let a = sparse_attention_fused(&q, &k, &v, &sink, &pairs)?;
        let b = dense_attention(&q, &k, &v, &sink, &spans, &masks)?;
        let c = sparse_attention_gather(&q, &k, &v, &sink, &pairs)?;
        let a = a.flatten_all()?.to_vec1::<f32>()?;
        let b = b.flatten_all()?.to_vec1::<f32>()?;
        let c = c.flatten_all()?.to_vec1::<f32>()?;
        for ((x, y), z) in a.iter().zip(&b).zip(&c) {
            assert!(x.is_finite() && y.is_finite());
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
            assert!((x - z).abs() < 1e-5, "{x} vs {z}");
        }
        // gradients of the three formulations agree too
        let grads = |f: &dyn Fn(&Tensor, &Tensor, &Tensor, &Tensor) -> Result<Tensor>| -> Result<Vec<Vec<f32>>> {
            let vars: Vec<candle_core::Var> = [&q, &k, &v, &sink]
                .iter()
                .map(|t| candle_core::Var::from_tensor(t))
                .collect::<Result<_>>()?;
            let out = f(&vars[0], &vars[1], &vars[2], &vars[3])?;
            let w = Tensor::arange(0f32, out.elem_count() as f32, &dev)?
                .reshape(out.shape())?
                .sin()?;
            let g = out.mul(&w)?.sum_all()?.backward()?;
            vars.iter()
                .map(|x| g.get(x.as_tensor()).expect("grad").flatten_all()?.to_vec1::<f32>())
                .collect()
        };
        let ga = grads(&|q, k, v, s| sparse_attention_fused(q, k, v, s, &pairs))?;
        let gb = grads(&|q, k, v, s| dense_attention(q, k, v, s, &spans, &masks))?;
        let gc = grads(&|q, k, v, s| sparse_attention_gather(q, k, v, s, &pairs))?;
        for ((x, y), z) in ga
            .iter()
            .flatten()
            .zip(gb.iter().flatten())
            .zip(gc.iter().flatten())
        {
            assert!((x - y).abs() < 1e-4, "grad {x} vs {y}");
            assert!((x - z).abs() < 1e-4, "grad {x} vs {z}");
        }
        for &i in &empty {
            assert!(a[i * h * dh..(i + 1) * h * dh].iter().all(|&x| x == 0.0));
            assert!(b[i * h * dh..(i + 1) * h * dh].iter().all(|&x| x == 0.0));
        }
        // no pairs at all → zeros
        let none = Pairs::new(vec![], vec![], &dev)?;
        let z = sparse_attention(&q, &k, &v, &sink, &none)?;
        assert_eq!(z.abs()?.sum_all()?.to_scalar::<f32>()?, 0.0);
        Ok(())
    }

    #[test]
    fn large_scores_do_not_overflow() -> Result<()> {
        let dev = Device::Cpu;
        let q = (Tensor::ones((2, 1, 2), DType::F32, &dev)? * 1e3)?;
        let v = Tensor::ones((2, 1, 2), DType::F32, &dev)?;
        let sink = Tensor::zeros(1, DType::F32, &dev)?;
        let pairs = Pairs::new(vec![0, 0, 1], vec![0, 1, 1], &dev)?;
        let out = sparse_attention(&q, &q, &v, &sink, &pairs)?;
        let o = out.flatten_all()?.to_vec1::<f32>()?;
        assert!(o.iter().all(|x| (x - 1.0).abs() < 1e-5), "{o:?}");
        Ok(())
    }
}
