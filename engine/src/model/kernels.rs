//! Hand-written CPU kernels of the fast paths ([`super::infer`], [`super::grad`]) over
//! contiguous row-major `f32` slices: matrix products through the `gemm` crate (the one
//! candle's CPU matmul uses), fused layer norm, attention over allowed pairs with a sink,
//! SwiGLU, each with its backward. No allocation in the hot loops; one thread each (the
//! callers run independent chunks of contexts on rayon's pool).

use super::simd::{self, madd, simd_dispatch};

/// Layer-norm epsilon of the model (`layer_norm_slow(.., 1e-5)`).
pub const LN_EPS: f32 = 1e-5;

/// `c (m×n, row stride ldc) = [c +] a·b`, `a` (m×k) and `b` (k×n) given by their row and
/// column strides.
#[allow(clippy::too_many_arguments)]
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
#[allow(clippy::too_many_arguments)]
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
        let mut keys = vec![0u32; q.len()];
        let mut next: Vec<u32> = off[..n].to_vec();
        for (&qi, &ki) in q.iter().zip(k) {
            let slot = &mut next[qi as usize];
            keys[*slot as usize] = ki;
            *slot += 1;
        }
        Csr { off, keys }
    }
}

/// One attention layer's shapes and pairs for a chunk of `n` tokens starting at global token
/// `base`: `off` is the chunk's `n + 1` slice of the CSR offsets (absolute pair positions).
#[derive(Clone, Copy)]
pub struct AttnShape<'a> {
    pub off: &'a [u32],
    pub keys: &'a [u32],
    pub base: usize,
    pub heads: usize,
    pub d: usize,
}

simd_dispatch! {
    /// Attention with a sink over allowed pairs. `qkv`: `n×3d` (queries, keys, values);
    /// `out`: `n×d` (overwritten; a query without keys gets zeros). With non-empty `w` and
    /// `wsink`, keeps the pair weights (per query, head-major: `w[(p0 + hh·nk + j)]` for
    /// the query's `nk` pairs from chunk position `p0`) and the sink's (`n×H`).
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
    let mut tmp = [0f32; 64];
    let tmp = &mut tmp[..h];
    for i in 0..n {
        let (p0, p1) = (s.off[i] as usize, s.off[i + 1] as usize);
        let o = &mut out[i * d..(i + 1) * d];
        o.fill(0.0);
        if p0 == p1 {
            if save {
                wsink[i * h..(i + 1) * h].fill(1.0);
            }
            continue;
        }
        let nk = p1 - p0;
        let keys = &s.keys[p0..p1];
        let q = &qkv[i * d3..i * d3 + d];
        if scratch.len() < nk * h {
            scratch.resize(nk * h, 0.0);
        }
        let sc = &mut scratch[..nk * h];
        for (j, &kg) in keys.iter().enumerate() {
            let kr = (kg as usize - s.base) * d3 + d;
            simd::head_dots::<F, NV>(q, &qkv[kr..kr + d], h, dh, tmp);
            for hh in 0..h {
                sc[hh * nk + j] = tmp[hh] * scale;
            }
        }
        for hh in 0..h {
            let row = &mut sc[hh * nk..(hh + 1) * nk];
            let m = simd::max(row).max(sink[hh]);
            for v in row.iter_mut() {
                *v = simd::exp::<F>(*v - m);
            }
            let se = simd::exp::<F>(sink[hh] - m);
            let inv = 1.0 / (se + simd::sum(row));
            simd::scale(row, inv);
            if save {
                wsink[i * h + hh] = se * inv;
            }
        }
        for (j, &kg) in keys.iter().enumerate() {
            let vr = (kg as usize - s.base) * d3 + 2 * d;
            for hh in 0..h {
                tmp[hh] = sc[hh * nk + j];
            }
            simd::head_axpy::<F, NV>(o, tmp, &qkv[vr..vr + d], h, dh);
        }
        if save {
            w[(p0 - p_base) * h..(p1 - p_base) * h].copy_from_slice(sc);
        }
    }
}

simd_dispatch! {
    /// Backward of [`attention_fwd`]: `dqkv` (`n×3d`, accumulated: keys and values of
    /// other queries add to it) and `dsink += ∂L/∂sink` from `dout` (`n×d`).
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
    let mut tmp = [0f32; 64];
    let tmp = &mut tmp[..h];
    for i in 0..n {
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
        let dq = &mut dq[..d];
        dq.fill(0.0);
        // dw = g·v per head; dv += w·g
        for (j, &kg) in keys.iter().enumerate() {
            let vr = (kg as usize - s.base) * d3 + 2 * d;
            simd::head_dots::<F, NV>(g, &qkv[vr..vr + d], h, dh, tmp);
            for hh in 0..h {
                ds[hh * nk + j] = tmp[hh];
                tmp[hh] = wi[hh * nk + j];
            }
            simd::head_axpy::<F, NV>(&mut dqkv[vr..vr + d], tmp, g, h, dh);
        }
        // ds = w·(dw − Σ w·dw)·scale; the sink's value is zero: dsink = −w_sink·Σ w·dw
        for hh in 0..h {
            let (wr, dr) = (&wi[hh * nk..(hh + 1) * nk], &mut ds[hh * nk..(hh + 1) * nk]);
            let dot = simd::dot::<F>(wr, dr);
            dsink[hh] -= wsink[i * h + hh] * dot;
            for (v, &ww) in dr.iter_mut().zip(wr) {
                *v = ww * (*v - dot) * scale;
            }
        }
        // dq += ds·k, dk += ds·q
        let q = &qkv[i * d3..i * d3 + d];
        for (j, &kg) in keys.iter().enumerate() {
            let kr = (kg as usize - s.base) * d3 + d;
            for hh in 0..h {
                tmp[hh] = ds[hh * nk + j];
            }
            simd::head_axpy::<F, NV>(dq, tmp, &qkv[kr..kr + d], h, dh);
            simd::head_axpy::<F, NV>(&mut dqkv[kr..kr + d], tmp, q, h, dh);
        }
        simd::add_to(&mut dqkv[i * d3..i * d3 + d], dq);
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
