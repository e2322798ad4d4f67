//! Hand-written CPU kernels of the fast paths ([`super::infer`], [`super::grad`]) over
//! contiguous row-major `f32` slices: matrix products through the `gemm` crate (the one
//! candle's CPU matmul uses), fused layer norm, attention over allowed pairs with a sink,
//! SwiGLU, each with its backward. No allocation in the hot loops; one thread each (the
//! callers run independent chunks of contexts on rayon's pool).
// Kernels take their operands as separate slices on purpose (no packing structs).
#![allow(clippy::too_many_arguments)]

use super::simd::{self, madd, simd_dispatch};

/// Layer-norm epsilon of the model (`layer_norm_slow(.., 1e-5)`).
pub const LN_EPS: f32 = 1e-5;

/// `c (m×n, row stride ldc) = [c +] a·b`, `a` (m×k) and `b` (k×n) given by their row and
/// column strides.
pub fn gemm(
    m: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    b_rs: usize,
    b_cs: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * ldc + n <= c.len(), "gemm: c too small");
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                c[r * ldc..r * ldc + n].fill(0.0);
            }
        }
        return;
    }
    assert!(
        (m - 1) * a_rs + (k - 1) * a_cs < a.len(),
        "gemm: a too small"
    );
    assert!(
        (k - 1) * b_rs + (n - 1) * b_cs < b.len(),
        "gemm: b too small"
    );
    // SAFETY: every index the product touches is in bounds (checked above); `c` does not
    // alias `a` or `b` (a `&mut` and two `&`).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// `y (m×out) = x (m×inp) · wᵀ + b` with `w` `[out, inp]` (a `Linear`'s layout).
pub fn linear_fwd(x: &[f32], w: &[f32], b: &[f32], inp: usize, out: usize, y: &mut [f32]) {
    let m = x.len() / inp;
    for row in y[..m * out].chunks_exact_mut(out) {
        row.copy_from_slice(&b[..out]);
    }
    gemm(m, out, inp, y, out, true, x, inp, 1, w, 1, inp);
}

/// Backward of [`linear_fwd`]: `dw += dyᵀ·x`, `db += Σ_rows dy`, and `dx (=|+=) dy·w` when
/// asked for.
pub fn linear_bwd(
    x: &[f32],
    dy: &[f32],
    w: &[f32],
    inp: usize,
    out: usize,
    dw: &mut [f32],
    db: &mut [f32],
    dx: Option<(&mut [f32], bool)>,
) {
    let m = dy.len() / out;
    gemm(out, inp, m, dw, inp, true, dy, 1, out, x, inp, 1);
    col_sums(dy, out, db);
    if let Some((dx, acc)) = dx {
        gemm(m, inp, out, dx, inp, acc, dy, out, 1, w, inp, 1);
    }
}

simd_dispatch! {
    /// `acc[c] += Σ_r x[r, c]` over the rows of `x` (`cols` wide).
    pub fn col_sums(x: &[f32], cols: usize, acc: &mut [f32]) => col_sums_impl;
}
#[inline(always)]
fn col_sums_impl<const F: bool>(x: &[f32], cols: usize, acc: &mut [f32]) {
    for row in x.chunks_exact(cols) {
        simd::add_to(&mut acc[..cols], row);
    }
}

simd_dispatch! {
    /// Row-wise layer norm of `x` (`d` wide): `y = x̂·g + b`. With non-empty `xhat` and
    /// `rstd`, also keeps `x̂` and `1/σ` per row for the backward.
    pub fn layer_norm_fwd(
        x: &[f32],
        g: &[f32],
        b: &[f32],
        d: usize,
        y: &mut [f32],
        xhat: &mut [f32],
        rstd: &mut [f32],
    ) => layer_norm_fwd_impl;
}
#[inline(always)]
fn layer_norm_fwd_impl<const F: bool>(
    x: &[f32],
    g: &[f32],
    b: &[f32],
    d: usize,
    y: &mut [f32],
    xhat: &mut [f32],
    rstd: &mut [f32],
) {
    let save = !xhat.is_empty();
    let (g, b) = (&g[..d], &b[..d]);
    let inv_d = 1.0 / d as f32;
    for (r, (xr, yr)) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)).enumerate() {
        let mean = simd::sum(xr) * inv_d;
        for (o, &v) in yr.iter_mut().zip(xr) {
            *o = v - mean;
        }
        let var = simd::dot::<F>(yr, yr) * inv_d;
        let rs = 1.0 / (var + LN_EPS).sqrt();
        if save {
            rstd[r] = rs;
            let xh = &mut xhat[r * d..(r + 1) * d];
            for (h, o) in xh.iter_mut().zip(yr.iter_mut()) {
                *h = *o * rs;
            }
        }
        for ((o, &gg), &bb) in yr.iter_mut().zip(g).zip(b) {
            *o = madd::<F>(*o * rs, gg, bb);
        }
    }
}

simd_dispatch! {
    /// Backward of [`layer_norm_fwd`]: `dx += ∂L/∂x`, `dg += Σ dy·x̂`, `db += Σ dy`.
    /// `scratch`: `d` floats.
    pub fn layer_norm_bwd(
        dy: &[f32],
        xhat: &[f32],
        rstd: &[f32],
        g: &[f32],
        d: usize,
        dx: &mut [f32],
        dg: &mut [f32],
        db: &mut [f32],
        scratch: &mut [f32],
    ) => layer_norm_bwd_impl;
}
#[inline(always)]
fn layer_norm_bwd_impl<const F: bool>(
    dy: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    g: &[f32],
    d: usize,
    dx: &mut [f32],
    dg: &mut [f32],
    db: &mut [f32],
    scratch: &mut [f32],
) {
    let (g, dg, db) = (&g[..d], &mut dg[..d], &mut db[..d]);
    let dxh = &mut scratch[..d];
    let inv_d = 1.0 / d as f32;
    for (r, ((dyr, xr), dxr)) in dy
        .chunks_exact(d)
        .zip(xhat.chunks_exact(d))
        .zip(dx.chunks_exact_mut(d))
        .enumerate()
    {
        for i in 0..d {
            dxh[i] = dyr[i] * g[i];
            dg[i] = madd::<F>(dyr[i], xr[i], dg[i]);
            db[i] += dyr[i];
        }
        let m1 = simd::sum(dxh) * inv_d;
        let m2 = simd::dot::<F>(dxh, xr) * inv_d;
        let rs = rstd[r];
        for i in 0..d {
            dxr[i] = madd::<F>(rs, dxh[i] - m1 - xr[i] * m2, dxr[i]);
        }
    }
}

/// Allowed (query, key) pairs of one attention type in CSR form: the keys of query `i` are
/// `keys[off[i]..off[i + 1]]` (global token indices), in the order the batch listed them.
#[derive(Debug, Clone, Default)]
pub struct Csr {
    pub off: Vec<u32>,
    pub keys: Vec<u32>,
}

impl Csr {
    /// From pair lists (any order; keys of one query keep their relative order).
    pub fn from_pairs(n: usize, q: &[u32], k: &[u32]) -> Csr {
        let mut off = vec![0u32; n + 1];
        for &qi in q {
            off[qi as usize + 1] += 1;
        }
        for i in 0..n {
            off[i + 1] += off[i];
        }
        if q.is_sorted() {
            return Csr {
                off,
                keys: k.to_vec(),
            };
        }
        let mut keys = vec![0u32; q.len()];
        let mut next: Vec<u32> = off[..n].to_vec();
        for (&qi, &ki) in q.iter().zip(k) {
            let slot = &mut next[qi as usize];
            keys[*slot as usize] = ki;
            *slot += 1;
        }
        Csr { off, keys }
    }

    /// Queries `q0..q1` (as offsets from `q0`) ordered by their first key (their own index
    /// when they have none) and key count: queries with the same keys become neighbours.
    pub fn query_order(&self, q0: usize, q1: usize, base: usize) -> Vec<u32> {
        let key = |q: usize| -> (u32, u32) {
            let (a, b) = (self.off[q] as usize, self.off[q + 1] as usize);
            let first = if a < b {
                self.keys[a] - base as u32
            } else {
                (q - q0) as u32
            };
            (first, (b - a) as u32)
        };
        let mut o: Vec<u32> = (0..(q1 - q0) as u32).collect();
        o.sort_by_key(|&i| key(q0 + i as usize));
        o
    }
}

/// One attention layer's pairs and shapes: the keys of query `i` are
/// `keys[off[i]..off[i + 1]]` (`off` may start anywhere: a slice of a larger CSR), rows of
/// `qkv` at `key − base`; query `i`'s own row of `qkv` is `qrow[i]` (`i` when `qrow` is
/// empty). Outputs are per query.
#[derive(Clone, Copy)]
pub struct AttnShape<'a> {
    pub off: &'a [u32],
    pub keys: &'a [u32],
    pub base: usize,
    pub qrow: &'a [u32],
    /// The order to visit queries in (empty: `0..nq`); queries with the same keys next to
    /// each other keep those keys' rows in cache (see [`Csr::query_order`]).
    pub order: &'a [u32],
    pub heads: usize,
    pub d: usize,
}

impl AttnShape<'_> {
    #[inline(always)]
    fn query(&self, k: usize) -> usize {
        if self.order.is_empty() {
            k
        } else {
            self.order[k] as usize
        }
    }
    #[inline(always)]
    fn qrow(&self, i: usize) -> usize {
        if self.qrow.is_empty() {
            i
        } else {
            self.qrow[i] as usize
        }
    }
}

simd_dispatch! {
    /// Attention with a sink over allowed pairs. `qkv`: rows of `3d` (queries, keys,
    /// values); `out`: `nq×d` (overwritten; a query without keys gets zeros). With non-empty
    /// `w` and `wsink`, keeps the pair weights (`P×H`, pair-major, pairs from position `off[0]`) and the sink's
    /// (`nq×H`).
    pub fn attention_fwd(
        s: AttnShape<'_>,
        qkv: &[f32],
        sink: &[f32],
        out: &mut [f32],
        w: &mut [f32],
        wsink: &mut [f32],
        scratch: &mut Vec<f32>,
    ) => attention_fwd_impl;
}
#[inline(always)]
fn attention_fwd_impl<const F: bool>(
    s: AttnShape<'_>,
    qkv: &[f32],
    sink: &[f32],
    out: &mut [f32],
    w: &mut [f32],
    wsink: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    // the head width as a constant for the AVX2 code (0: portable loops)
    match (F, s.d / s.heads) {
        (true, 8) => attention_fwd_body::<F, 1>(s, qkv, sink, out, w, wsink, scratch),
        (true, 16) => attention_fwd_body::<F, 2>(s, qkv, sink, out, w, wsink, scratch),
        (true, 32) => attention_fwd_body::<F, 4>(s, qkv, sink, out, w, wsink, scratch),
        _ => attention_fwd_body::<F, 0>(s, qkv, sink, out, w, wsink, scratch),
    }
}
#[inline(always)]
fn attention_fwd_body<const F: bool, const NV: usize>(
    s: AttnShape<'_>,
    qkv: &[f32],
    sink: &[f32],
    out: &mut [f32],
    w: &mut [f32],
    wsink: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let (h, d) = (s.heads, s.d);
    let dh = d / h;
    let d3 = 3 * d;
    let n = s.off.len() - 1;
    let scale = 1.0 / (dh as f32).sqrt();
    let save = !w.is_empty();
    let p_base = s.off[0] as usize;
    for k in 0..n {
        let i = s.query(k);
        let (p0, p1) = (s.off[i] as usize, s.off[i + 1] as usize);
        let o = &mut out[i * d..(i + 1) * d];
        if p0 == p1 {
            o.fill(0.0);
            if save {
                wsink[i * h..(i + 1) * h].fill(1.0);
            }
            continue;
        }
        let nk = p1 - p0;
        let keys = &s.keys[p0..p1];
        let qr = s.qrow(i) * d3;
        let q = &qkv[qr..qr + d];
        if scratch.len() < nk * h {
            scratch.resize(nk * h, 0.0);
        }
        // scores, pair-major [nk, h]
        let sc = &mut scratch[..nk * h];
        simd::row_dots::<F, NV>(q, keys, s.base, qkv, d3, d, h, dh, scale, sc);
        // softmax with the sink, per head
        let ws: &mut [f32] = if save {
            &mut wsink[i * h..(i + 1) * h]
        } else {
            &mut []
        };
        simd::softmax_sink::<F>(sc, h, sink, ws);
        simd::weighted_rows::<F, NV>(o, sc, keys, s.base, qkv, d3, 2 * d, h, dh);
        if save {
            w[(p0 - p_base) * h..(p1 - p_base) * h].copy_from_slice(sc);
        }
    }
}

simd_dispatch! {
    /// Backward of [`attention_fwd`]: `dqkv` (rows of `3d` as `qkv`, accumulated) and
    /// `dsink += ∂L/∂sink` from `dout` (`nq×d`).
    pub fn attention_bwd(
        s: AttnShape<'_>,
        qkv: &[f32],
        w: &[f32],
        wsink: &[f32],
        dout: &[f32],
        dqkv: &mut [f32],
        dsink: &mut [f32],
        scratch: &mut Vec<f32>,
    ) => attention_bwd_impl;
}
#[inline(always)]
fn attention_bwd_impl<const F: bool>(
    s: AttnShape<'_>,
    qkv: &[f32],
    w: &[f32],
    wsink: &[f32],
    dout: &[f32],
    dqkv: &mut [f32],
    dsink: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    // the head width as a constant for the AVX2 code (0: portable loops)
    match (F, s.d / s.heads) {
        (true, 8) => attention_bwd_body::<F, 1>(s, qkv, w, wsink, dout, dqkv, dsink, scratch),
        (true, 16) => attention_bwd_body::<F, 2>(s, qkv, w, wsink, dout, dqkv, dsink, scratch),
        (true, 32) => attention_bwd_body::<F, 4>(s, qkv, w, wsink, dout, dqkv, dsink, scratch),
        _ => attention_bwd_body::<F, 0>(s, qkv, w, wsink, dout, dqkv, dsink, scratch),
    }
}
#[inline(always)]
fn attention_bwd_body<const F: bool, const NV: usize>(
    s: AttnShape<'_>,
    qkv: &[f32],
    w: &[f32],
    wsink: &[f32],
    dout: &[f32],
    dqkv: &mut [f32],
    dsink: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let (h, d) = (s.heads, s.d);
    let dh = d / h;
    let d3 = 3 * d;
    let n = s.off.len() - 1;
    let scale = 1.0 / (dh as f32).sqrt();
    let p_base = s.off[0] as usize;
    for k in 0..n {
        let i = s.query(k);
        let (p0, p1) = (s.off[i] as usize, s.off[i + 1] as usize);
        if p0 == p1 {
            continue;
        }
        let nk = p1 - p0;
        let keys = &s.keys[p0..p1];
        let wi = &w[(p0 - p_base) * h..(p1 - p_base) * h];
        let g = &dout[i * d..(i + 1) * d];
        if scratch.len() < nk * h + d {
            scratch.resize(nk * h + d, 0.0);
        }
        let (ds, dq) = scratch.split_at_mut(nk * h);
        let (ds, dq) = (&mut ds[..nk * h], &mut dq[..d]);
        let qr = s.qrow(i) * d3;
        // dw = g·v per head (pair-major); dv += w·g
        simd::row_dots::<F, NV>(g, keys, s.base, qkv, d3, 2 * d, h, dh, 1.0, ds);
        simd::row_axpys::<F, NV>(dqkv, keys, s.base, d3, 2 * d, wi, g, h, dh);
        // ds = w·(dw − Σ w·dw)·scale; the sink's value is zero: dsink = −w_sink·Σ w·dw
        simd::softmax_sink_bwd::<F>(wi, ds, h, &wsink[i * h..(i + 1) * h], scale, dsink);
        // dq = ds·k, dk += ds·q
        simd::weighted_rows::<F, NV>(dq, ds, keys, s.base, qkv, d3, d, h, dh);
        simd::row_axpys::<F, NV>(dqkv, keys, s.base, d3, d, ds, &qkv[qr..qr + d], h, dh);
        simd::add_to(&mut dqkv[qr..qr + d], dq);
    }
}

simd_dispatch! {
    /// SwiGLU: `a = silu(u₁)·u₃` per row of `u` = `[u₁ (hid) | u₃ (hid)]`.
    pub fn swiglu_fwd(u: &[f32], hid: usize, a: &mut [f32]) => swiglu_fwd_impl;
}
#[inline(always)]
fn swiglu_fwd_impl<const F: bool>(u: &[f32], hid: usize, a: &mut [f32]) {
    for (ur, ar) in u.chunks_exact(2 * hid).zip(a.chunks_exact_mut(hid)) {
        let (u1, u3) = ur.split_at(hid);
        for ((o, &x), &g) in ar.iter_mut().zip(u1).zip(u3) {
            *o = x / (1.0 + simd::exp::<F>(-x)) * g;
        }
    }
}

simd_dispatch! {
    /// Backward of [`swiglu_fwd`]: `du` (overwritten) from `da`.
    pub fn swiglu_bwd(u: &[f32], da: &[f32], hid: usize, du: &mut [f32]) => swiglu_bwd_impl;
}
#[inline(always)]
fn swiglu_bwd_impl<const F: bool>(u: &[f32], da: &[f32], hid: usize, du: &mut [f32]) {
    for ((ur, dar), dur) in u
        .chunks_exact(2 * hid)
        .zip(da.chunks_exact(hid))
        .zip(du.chunks_exact_mut(2 * hid))
    {
        let (u1, u3) = ur.split_at(hid);
        let (d1, d3) = dur.split_at_mut(hid);
        for i in 0..hid {
            let x = u1[i];
            let sg = 1.0 / (1.0 + simd::exp::<F>(-x));
            let silu = x * sg;
            d3[i] = dar[i] * silu;
            d1[i] = dar[i] * u3[i] * (sg * (1.0 + x * (1.0 - sg)));
        }
    }
}

simd_dispatch! {
    /// `x += y` elementwise.
    pub fn add_assign(x: &mut [f32], y: &[f32]) => add_assign_impl;
}
#[inline(always)]
fn add_assign_impl<const F: bool>(x: &mut [f32], y: &[f32]) {
    simd::add_to(x, y);
}
