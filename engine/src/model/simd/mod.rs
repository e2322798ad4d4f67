//! Small numeric helpers for the hand-written kernels, written so that LLVM vectorises them,
//! and a macro that compiles a kernel twice: once for AVX2+FMA (picked at run time when the
//! CPU has them) and once portable.
//!
//! Kernels are `fn name_impl<const F: bool>(..)` with every helper `#[inline(always)]`:
//! inlined into the `#[target_feature(enable = "avx2,fma")]` copy they vectorise to 8-lane
//! FMA code; `F` says whether a fused multiply-add may be used (`mul_add` without the FMA
//! instruction is a slow library call).
// Kernels take their operands as separate slices on purpose (no packing structs).
#![allow(clippy::too_many_arguments)]

/// Whether this CPU runs the AVX2+FMA copies of the kernels.
#[inline]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `pub fn name(args) -> R` calling `imp::<true>` in an AVX2+FMA copy when the CPU has it,
/// `imp::<false>` otherwise.
macro_rules! simd_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident : $t:ty),* $(,)?) $(-> $r:ty)? => $imp:ident;) => {
        $(#[$m])*
        $vis fn $name($($a: $t),*) $(-> $r)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast($($a: $t),*) $(-> $r)? {
                    $imp::<true>($($a),*)
                }
                if $crate::model::simd::has_avx2_fma() {
                    // SAFETY: the CPU has the features `fast` was compiled for.
                    return unsafe { fast($($a),*) };
                }
            }
            $imp::<false>($($a),*)
        }
    };
}
pub(crate) use simd_dispatch;

/// `a·b + c`, fused when `F`.
#[inline(always)]
pub fn madd<const F: bool>(a: f32, b: f32, c: f32) -> f32 {
    if F {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

#[inline(always)]
fn hsum8(a: [f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
}

/// `Σ a_i b_i` (8 partial sums).
#[inline(always)]
pub fn dot<const F: bool>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let b = &b[..n];
    let mut acc = [0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for l in 0..8 {
            acc[l] = madd::<F>(x[l], y[l], acc[l]);
        }
    }
    let mut s = hsum8(acc);
    for (x, y) in ra.iter().zip(rb) {
        s = madd::<F>(*x, *y, s);
    }
    s
}

/// `Σ a_i` (8 partial sums).
#[inline(always)]
pub fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    for x in ca {
        for l in 0..8 {
            acc[l] += x[l];
        }
    }
    let mut s = hsum8(acc);
    for x in ra {
        s += *x;
    }
    s
}

/// `y += a·x`.
#[inline(always)]
pub fn axpy<const F: bool>(y: &mut [f32], a: f32, x: &[f32]) {
    let x = &x[..y.len()];
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi = madd::<F>(a, *xi, *yi);
    }
}

/// `y += x`.
#[inline(always)]
pub fn add_to(y: &mut [f32], x: &[f32]) {
    let x = &x[..y.len()];
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += *xi;
    }
}

/// `exp(x)` (Cephes' single-precision polynomial, within 2 ulp of `f32::exp` over the range
/// where the result is a normal float; inputs are clamped to it). Branch-free, vectorises.
#[inline(always)]
pub fn exp<const F: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.336_55, 88.376_26);
    let n = madd::<F>(x, LOG2E, 0.5).floor();
    let r = madd::<F>(n, -LN2_HI, x);
    let r = madd::<F>(n, -LN2_LO, r);
    let mut p = 1.987_569_1e-4f32;
    p = madd::<F>(p, r, 1.398_199_9e-3);
    p = madd::<F>(p, r, 8.333_452e-3);
    p = madd::<F>(p, r, 4.166_579_6e-2);
    p = madd::<F>(p, r, 1.666_666_5e-1);
    p = madd::<F>(p, r, 0.5);
    let p = madd::<F>(p, r * r, r) + 1.0;
    let pow = f32::from_bits(((n as i32 + 127) << 23) as u32);
    p * pow
}

/// Per-head dot products, scaled: `out[hh] = scale·Σ_t a[hh·dh + t]·b[hh·dh + t]` for
/// `hh < h`. `NV`: `dh / 8` when the AVX2 code may be used (`F`) and `dh` is a multiple of
/// 8, else 0.
#[inline(always)]
pub fn head_dots<const F: bool, const NV: usize>(
    a: &[f32],
    b: &[f32],
    h: usize,
    dh: usize,
    scale: f32,
    out: &mut [f32],
) {
    let (a, b, out) = (&a[..h * dh], &b[..h * dh], &mut out[..h]);
    #[cfg(target_arch = "x86_64")]
    if F && NV > 0 {
        debug_assert_eq!(dh, 8 * NV);
        // SAFETY: `F` is only true in code compiled for AVX2+FMA; lengths checked above.
        unsafe { x86::head_dots::<NV>(a.as_ptr(), b.as_ptr(), h, scale, out.as_mut_ptr()) };
        return;
    }
    for hh in 0..h {
        out[hh] = dot::<F>(&a[hh * dh..(hh + 1) * dh], &b[hh * dh..(hh + 1) * dh]) * scale;
    }
}

/// Per-head reductions and maps over a pair-major `[nk, h]` matrix `x` (`x[j·h + hh]`). When
/// `h` divides 8 (1, 2, 4 or 8 heads), whole 8-lane vectors are processed with lane `l`
/// belonging to head `l & (h − 1)`; what is left (whole rows) row by row. No integer
/// division: it costs more than the arithmetic here.
#[inline(always)]
fn by_head(h: usize) -> bool {
    h <= 8 && 8 % h == 0
}

/// `v[l & (h − 1)]` for the 8 lanes (`by_head(h)`).
#[inline(always)]
fn pattern(v: &[f32], h: usize) -> [f32; 8] {
    let mut p = [0f32; 8];
    for (l, x) in p.iter_mut().enumerate() {
        *x = v[l & (h - 1)];
    }
    p
}

/// `m[hh] = max(init[hh], max_j x[j·h + hh])`.
#[inline(always)]
pub fn head_max(x: &[f32], h: usize, init: &[f32], m: &mut [f32]) {
    let (init, m) = (&init[..h], &mut m[..h]);
    m.copy_from_slice(init);
    let mut start = 0;
    if by_head(h) {
        let (ch, _) = x.as_chunks::<8>();
        let mut acc = [f32::NEG_INFINITY; 8];
        for c in ch {
            for l in 0..8 {
                acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
            }
        }
        for (l, &a) in acc.iter().enumerate() {
            let t = &mut m[l & (h - 1)];
            if a > *t {
                *t = a;
            }
        }
        start = ch.len() * 8;
    }
    for row in x[start..].chunks_exact(h) {
        for (t, &v) in m.iter_mut().zip(row) {
            if v > *t {
                *t = v;
            }
        }
    }
}

/// `x[j·h + hh] ← exp(x[j·h + hh] − m[hh])`, adding each head's values to `sum[hh]`.
#[inline(always)]
pub fn head_exp_sum<const F: bool>(x: &mut [f32], h: usize, m: &[f32], sum: &mut [f32]) {
    let (m, sum) = (&m[..h], &mut sum[..h]);
    let mut start = 0;
    if by_head(h) {
        let pat = pattern(m, h);
        let (ch, _) = x.as_chunks_mut::<8>();
        let mut acc = [0f32; 8];
        #[cfg(target_arch = "x86_64")]
        if F {
            // SAFETY: AVX2 code under `F`; whole chunks of 8.
            unsafe { x86::exp_sub_sum(ch, &pat, &mut acc) };
        }
        if !cfg!(target_arch = "x86_64") || !F {
            for c in ch.iter_mut() {
                for l in 0..8 {
                    c[l] = exp::<F>(c[l] - pat[l]);
                    acc[l] += c[l];
                }
            }
        }
        for (l, &a) in acc.iter().enumerate() {
            sum[l & (h - 1)] += a;
        }
        start = ch.len() * 8;
    }
    for row in x[start..].chunks_exact_mut(h) {
        for ((v, &mm), s) in row.iter_mut().zip(m).zip(sum.iter_mut()) {
            *v = exp::<F>(*v - mm);
            *s += *v;
        }
    }
}

/// `x[j·h + hh] ← (x[j·h + hh] − sub[hh])·mul[hh]·w[j·h + hh]` (`w` empty: no factor).
#[inline(always)]
pub fn head_affine(x: &mut [f32], h: usize, sub: &[f32], mul: &[f32], w: &[f32]) {
    let (sub, mul) = (&sub[..h], &mul[..h]);
    let with_w = !w.is_empty();
    let mut start = 0;
    if by_head(h) {
        let (ps, pm) = (pattern(sub, h), pattern(mul, h));
        let (ch, _) = x.as_chunks_mut::<8>();
        if with_w {
            let (wc, _) = w.as_chunks::<8>();
            for (c, wv) in ch.iter_mut().zip(wc) {
                for l in 0..8 {
                    c[l] = wv[l] * ((c[l] - ps[l]) * pm[l]);
                }
            }
        } else {
            for c in ch.iter_mut() {
                for l in 0..8 {
                    c[l] = (c[l] - ps[l]) * pm[l];
                }
            }
        }
        start = ch.len() * 8;
    }
    for (r, row) in x[start..].chunks_exact_mut(h).enumerate() {
        let wr = if with_w {
            &w[start + r * h..start + (r + 1) * h]
        } else {
            &[]
        };
        for (hh, v) in row.iter_mut().enumerate() {
            let f = if with_w { wr[hh] } else { 1.0 };
            *v = f * ((*v - sub[hh]) * mul[hh]);
        }
    }
}

/// `out[hh] = Σ_j a[j·h + hh]·b[j·h + hh]`.
#[inline(always)]
pub fn head_dot_cols<const F: bool>(a: &[f32], b: &[f32], h: usize, out: &mut [f32]) {
    let out = &mut out[..h];
    out.fill(0.0);
    let b = &b[..a.len()];
    let mut start = 0;
    if by_head(h) {
        let (ca, _) = a.as_chunks::<8>();
        let (cb, _) = b.as_chunks::<8>();
        let mut acc = [0f32; 8];
        for (x, y) in ca.iter().zip(cb) {
            for l in 0..8 {
                acc[l] = madd::<F>(x[l], y[l], acc[l]);
            }
        }
        for (l, &v) in acc.iter().enumerate() {
            out[l & (h - 1)] += v;
        }
        start = ca.len() * 8;
    }
    for (ra, rb) in a[start..].chunks_exact(h).zip(b[start..].chunks_exact(h)) {
        for ((o, &x), &y) in out.iter_mut().zip(ra).zip(rb) {
            *o = madd::<F>(x, y, *o);
        }
    }
}

/// Per-head `y[hh·dh + t] += w[hh]·x[hh·dh + t]`; `NV` as in [`head_dots`].
#[inline(always)]
pub fn head_axpy<const F: bool, const NV: usize>(
    y: &mut [f32],
    w: &[f32],
    x: &[f32],
    h: usize,
    dh: usize,
) {
    let (y, w, x) = (&mut y[..h * dh], &w[..h], &x[..h * dh]);
    #[cfg(target_arch = "x86_64")]
    if F && NV > 0 {
        debug_assert_eq!(dh, 8 * NV);
        // SAFETY: as in `head_dots`.
        unsafe { x86::head_axpy::<NV>(y.as_mut_ptr(), w.as_ptr(), x.as_ptr(), h) };
        return;
    }
    for hh in 0..h {
        axpy::<F>(
            &mut y[hh * dh..(hh + 1) * dh],
            w[hh],
            &x[hh * dh..(hh + 1) * dh],
        );
    }
}

/// `out ← Σ_j Σ_hh w[j·h + hh] · src[row_j + hh·dh ..][..dh]` (per head, into that head's
/// slice of `out`), `row_j = (keys[j] − base)·stride + col`, `nk = keys.len()`: the
/// attention-weighted sum of value (or key) rows. Overwrites `out` (`h·dh`).
#[inline(always)]
pub fn weighted_rows<const F: bool, const NV: usize>(
    out: &mut [f32],
    w: &[f32],
    keys: &[u32],
    base: usize,
    src: &[f32],
    stride: usize,
    col: usize,
    h: usize,
    dh: usize,
) {
    let d = h * dh;
    let nk = keys.len();
    let (out, w) = (&mut out[..d], &w[..h * nk]);
    #[cfg(target_arch = "x86_64")]
    if F && NV > 0 && (d == 64 || d == 32) {
        check_rows(keys, base, stride, col, d, src.len());
        // SAFETY: AVX2 code under `F`; rows checked above; `out` and `w` sized above.
        unsafe {
            if d == 64 {
                x86::weighted_rows::<8, NV>(out, w, keys, base, src.as_ptr(), stride, col);
            } else {
                x86::weighted_rows::<4, NV>(out, w, keys, base, src.as_ptr(), stride, col);
            }
        }
        return;
    }
    out.fill(0.0);
    for (j, &k) in keys.iter().enumerate() {
        let r = (k as usize - base) * stride + col;
        head_axpy::<F, NV>(out, &w[j * h..(j + 1) * h], &src[r..r + d], h, dh);
    }
}

/// Softmax with a sink of a query's pair-major `[nk, h]` scores, per head, in place:
/// `w = exp(s − m) / (exp(sink − m) + Σ exp(s − m))`, `m` the largest of the scores and the
/// sink. The sink's weights go to `wsink` (`h` floats; empty: not kept).
#[inline(always)]
pub fn softmax_sink<const F: bool>(sc: &mut [f32], h: usize, sink: &[f32], wsink: &mut [f32]) {
    let sink = &sink[..h];
    #[cfg(target_arch = "x86_64")]
    if F && (h == 4 || h == 8) {
        let ws = if wsink.is_empty() {
            std::ptr::null_mut()
        } else {
            wsink[..h].as_mut_ptr()
        };
        // SAFETY: AVX2 code under `F`; `sink` and `wsink` hold `h` floats.
        unsafe {
            if h == 4 {
                x86::softmax_sink::<4>(sc, sink.as_ptr(), ws)
            } else {
                x86::softmax_sink::<8>(sc, sink.as_ptr(), ws)
            }
        }
        return;
    }
    let (mut m, mut den, mut se) = ([0f32; 64], [0f32; 64], [0f32; 64]);
    let (m, den, se) = (&mut m[..h], &mut den[..h], &mut se[..h]);
    head_max(sc, h, sink, m);
    for hh in 0..h {
        se[hh] = exp::<F>(sink[hh] - m[hh]);
    }
    den.copy_from_slice(se);
    head_exp_sum::<F>(sc, h, m, den);
    for d in den.iter_mut() {
        *d = 1.0 / *d;
    }
    head_affine(sc, h, &[0f32; 64], den, &[]);
    if !wsink.is_empty() {
        for hh in 0..h {
            wsink[hh] = se[hh] * den[hh];
        }
    }
}

/// Backward of [`softmax_sink`] followed by the score scale: `ds ← w·(dw − Σ_j w·dw)·scale`
/// per head (`ds` holds `dw` on entry), and `dsink −= w_sink·Σ_j w·dw` (the sink's value is
/// zero).
#[inline(always)]
pub fn softmax_sink_bwd<const F: bool>(
    w: &[f32],
    ds: &mut [f32],
    h: usize,
    wsink: &[f32],
    scale: f32,
    dsink: &mut [f32],
) {
    let (wsink, dsink) = (&wsink[..h], &mut dsink[..h]);
    let w = &w[..ds.len()];
    #[cfg(target_arch = "x86_64")]
    if F && (h == 4 || h == 8) {
        // SAFETY: AVX2 code under `F`; `wsink` and `dsink` hold `h` floats, `w` as `ds`.
        unsafe {
            if h == 4 {
                x86::softmax_sink_bwd::<4>(w, ds, wsink.as_ptr(), scale, dsink.as_mut_ptr())
            } else {
                x86::softmax_sink_bwd::<8>(w, ds, wsink.as_ptr(), scale, dsink.as_mut_ptr())
            }
        }
        return;
    }
    let mut dot = [0f32; 64];
    let dot = &mut dot[..h];
    head_dot_cols::<F>(w, ds, h, dot);
    for hh in 0..h {
        dsink[hh] -= wsink[hh] * dot[hh];
    }
    head_affine(ds, h, dot, &[scale; 64], w);
}

/// Whether the register-resident AVX2 row kernels handle `h` heads of `dh` (`d = h·dh`):
/// `d` of 32 or 64 floats, heads by fours.
#[inline(always)]
fn rows_fast<const F: bool, const NV: usize>(h: usize, dh: usize) -> bool {
    F && NV > 0 && dh == 8 * NV && h.is_multiple_of(4) && (h * dh == 64 || h * dh == 32)
}

/// Panics unless every row `(k − base)·stride + col` of `keys` has `d` floats in `len`.
#[inline(always)]
fn check_rows(keys: &[u32], base: usize, stride: usize, col: usize, d: usize, len: usize) {
    let (mut lo, mut hi) = (u32::MAX, 0u32);
    for &k in keys {
        lo = lo.min(k);
        hi = hi.max(k);
    }
    if keys.is_empty() {
        return;
    }
    assert!(lo as usize >= base, "key below the chunk");
    assert!(
        (hi as usize - base) * stride + col + d <= len,
        "key row out of range"
    );
}

/// Per-head dot products of `a` with rows: `out[j·h + hh] = scale·Σ_t a[hh·dh + t]·
/// src[row_j + hh·dh + t]`, `row_j = (keys[j] − base)·stride + col`.
#[inline(always)]
pub fn row_dots<const F: bool, const NV: usize>(
    a: &[f32],
    keys: &[u32],
    base: usize,
    src: &[f32],
    stride: usize,
    col: usize,
    h: usize,
    dh: usize,
    scale: f32,
    out: &mut [f32],
) {
    let d = h * dh;
    let (a, out) = (&a[..d], &mut out[..keys.len() * h]);
    #[cfg(target_arch = "x86_64")]
    if rows_fast::<F, NV>(h, dh) {
        check_rows(keys, base, stride, col, d, src.len());
        // SAFETY: AVX2 code under `F`; rows, `a` and `out` checked above.
        unsafe {
            if d == 64 {
                x86::row_dots::<8, NV>(
                    a.as_ptr(),
                    keys,
                    base,
                    src.as_ptr(),
                    stride,
                    col,
                    scale,
                    out.as_mut_ptr(),
                );
            } else {
                x86::row_dots::<4, NV>(
                    a.as_ptr(),
                    keys,
                    base,
                    src.as_ptr(),
                    stride,
                    col,
                    scale,
                    out.as_mut_ptr(),
                );
            }
        }
        return;
    }
    for (j, &k) in keys.iter().enumerate() {
        let r = (k as usize - base) * stride + col;
        head_dots::<F, NV>(
            a,
            &src[r..r + d],
            h,
            dh,
            scale,
            &mut out[j * h..(j + 1) * h],
        );
    }
}

/// Per-head updates of rows: `dst[row_j + hh·dh + t] += w[j·h + hh]·x[hh·dh + t]`.
#[inline(always)]
pub fn row_axpys<const F: bool, const NV: usize>(
    dst: &mut [f32],
    keys: &[u32],
    base: usize,
    stride: usize,
    col: usize,
    w: &[f32],
    x: &[f32],
    h: usize,
    dh: usize,
) {
    let d = h * dh;
    let (x, w) = (&x[..d], &w[..keys.len() * h]);
    #[cfg(target_arch = "x86_64")]
    if rows_fast::<F, NV>(h, dh) {
        check_rows(keys, base, stride, col, d, dst.len());
        // SAFETY: as in `row_dots`.
        unsafe {
            if d == 64 {
                x86::row_axpys::<8, NV>(
                    dst.as_mut_ptr(),
                    keys,
                    base,
                    stride,
                    col,
                    w.as_ptr(),
                    x.as_ptr(),
                );
            } else {
                x86::row_axpys::<4, NV>(
                    dst.as_mut_ptr(),
                    keys,
                    base,
                    stride,
                    col,
                    w.as_ptr(),
                    x.as_ptr(),
                );
            }
        }
        return;
    }
    for (j, &k) in keys.iter().enumerate() {
        let r = (k as usize - base) * stride + col;
        head_axpy::<F, NV>(&mut dst[r..r + d], &w[j * h..(j + 1) * h], x, h, dh);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            for y in [exp::<true>(x), exp::<false>(x)] {
                let e = x.exp();
                worst = worst.max(((y - e) / e).abs());
            }
            x += 0.0137;
        }
        assert!(worst < 5e-7, "{worst}");
        assert_eq!(exp::<true>(0.0), 1.0);
        assert!(exp::<true>(-1e4) < 1e-37);
        assert!(exp::<true>(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn dot_and_sum() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.1).collect();
        let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot::<true>(&a, &b) - want).abs() < 1e-3);
        assert!((dot::<false>(&a, &b) - want).abs() < 1e-3);
        assert!((sum(&a) - a.iter().sum::<f32>()).abs() < 1e-3);
    }
}
