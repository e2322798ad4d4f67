//! The AVX2+FMA intrinsics versions of the kernels of [`super`] that portable code does not
//! vectorise well. `unsafe`: used only where AVX2 and FMA are known to be present.

use std::arch::x86_64::*;

/// Sums of `v[0..4]` as `[Σv0, Σv1, Σv2, Σv3]`.
#[inline(always)]
unsafe fn hsum4(v: [__m256; 4]) -> __m128 {
    let x = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps::<1>(x))
}

/// See [`super::head_dots`]; `dh = 8·NV`.
#[inline(always)]
pub unsafe fn head_dots<const NV: usize>(
    a: *const f32,
    b: *const f32,
    h: usize,
    scale: f32,
    out: *mut f32,
) {
    let (nv, dh) = (NV, 8 * NV);
    let sc = _mm_set1_ps(scale);
    let mut g = 0;
    while g < h {
        let k = (h - g).min(4);
        let mut acc = [_mm256_setzero_ps(); 4];
        for (t, slot) in acc.iter_mut().enumerate().take(k) {
            let base = (g + t) * dh;
            let mut s = _mm256_mul_ps(_mm256_loadu_ps(a.add(base)), _mm256_loadu_ps(b.add(base)));
            for v in 1..nv {
                let o = base + 8 * v;
                s = _mm256_fmadd_ps(_mm256_loadu_ps(a.add(o)), _mm256_loadu_ps(b.add(o)), s);
            }
            *slot = s;
        }
        let r = _mm_mul_ps(hsum4(acc), sc);
        if k == 4 {
            _mm_storeu_ps(out.add(g), r);
        } else {
            let mut tmp = [0f32; 4];
            _mm_storeu_ps(tmp.as_mut_ptr(), r);
            for (t, v) in tmp.iter().enumerate().take(k) {
                *out.add(g + t) = *v;
            }
        }
        g += 4;
    }
}

/// See [`super::weighted_rows`]: `d = 8·D8`, `dh = 8·NV`, accumulators in registers.
#[inline(always)]
pub unsafe fn weighted_rows<const D8: usize, const NV: usize>(
    out: &mut [f32],
    w: &[f32],
    keys: &[u32],
    base: usize,
    src: *const f32,
    stride: usize,
    col: usize,
) {
    let h = D8 / NV;
    let mut acc = [_mm256_setzero_ps(); D8];
    for (j, &k) in keys.iter().enumerate() {
        let row = src.add((k as usize - base) * stride + col);
        for (v, a) in acc.iter_mut().enumerate() {
            let wv = _mm256_set1_ps(*w.get_unchecked(j * h + v / NV));
            *a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(row.add(8 * v)), *a);
        }
    }
    for (v, a) in acc.iter().enumerate() {
        _mm256_storeu_ps(out.as_mut_ptr().add(8 * v), *a);
    }
}

/// `exp` of 8 lanes, the same operations as [`super::exp`] with FMA.
#[inline(always)]
pub unsafe fn exp8(x: __m256) -> __m256 {
    let x = _mm256_min_ps(
        _mm256_set1_ps(88.376_26),
        _mm256_max_ps(_mm256_set1_ps(-87.336_55), x),
    );
    let n = _mm256_floor_ps(_mm256_fmadd_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
        _mm256_set1_ps(0.5),
    ));
    let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693_359_4), x);
    let r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.398_199_9e-3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.333_452e-3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.166_579_6e-2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.666_666_5e-1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5));
    let p = _mm256_add_ps(
        _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r),
        _mm256_set1_ps(1.0),
    );
    let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    _mm256_mul_ps(p, _mm256_castsi256_ps(e))
}

/// `c ← exp(c − pat)` per chunk, `acc += c`.
#[inline(always)]
pub unsafe fn exp_sub_sum(ch: &mut [[f32; 8]], pat: &[f32; 8], acc: &mut [f32; 8]) {
    let pv = _mm256_loadu_ps(pat.as_ptr());
    let mut a = _mm256_setzero_ps();
    for c in ch.iter_mut() {
        let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), pv));
        _mm256_storeu_ps(c.as_mut_ptr(), e);
        a = _mm256_add_ps(a, e);
    }
    _mm256_storeu_ps(acc.as_mut_ptr(), a);
}

/// Per-head values of a pair-major block as 8 lanes: `H = 8` as is, `H = 4` the two
/// halves folded (`f`), then duplicated back.
#[inline(always)]
unsafe fn fold<const H: usize>(v: __m256, f: impl Fn(__m128, __m128) -> __m128) -> __m256 {
    if H == 8 {
        v
    } else {
        let x = f(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        _mm256_set_m128(x, x)
    }
}

/// See [`super::softmax_sink`]; `H` 4 or 8.
#[inline(always)]
pub unsafe fn softmax_sink<const H: usize>(sc: &mut [f32], sink: *const f32, ws: *mut f32) {
    let n = sc.len();
    let full = n / 8 * 8;
    let p = sc.as_mut_ptr();
    // per-head sink as 8 lanes
    let s8 = if H == 8 {
        _mm256_loadu_ps(sink)
    } else {
        let s = _mm_loadu_ps(sink);
        _mm256_set_m128(s, s)
    };
    let mut m8 = s8;
    let mut c = 0;
    while c < full {
        m8 = _mm256_max_ps(m8, _mm256_loadu_ps(p.add(c)));
        c += 8;
    }
    // a last key of 4 heads (H = 4, odd key count): lanes 0..4
    let tail = full < n;
    let t4 = if tail {
        _mm_loadu_ps(p.add(full))
    } else {
        _mm_set1_ps(f32::NEG_INFINITY)
    };
    let m = if H == 8 {
        m8
    } else {
        let x = _mm_max_ps(
            _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps::<1>(m8)),
            t4,
        );
        _mm256_set_m128(x, x)
    };
    let mut acc = _mm256_setzero_ps();
    let mut c = 0;
    while c < full {
        let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(c)), m));
        _mm256_storeu_ps(p.add(c), e);
        acc = _mm256_add_ps(acc, e);
        c += 8;
    }
    let sum = fold::<H>(acc, |a, b| _mm_add_ps(a, b));
    let (sum, te) = if tail {
        let e = _mm256_castps256_ps128(exp8(_mm256_sub_ps(_mm256_set_m128(t4, t4), m)));
        (_mm256_add_ps(sum, _mm256_set_m128(e, e)), e)
    } else {
        (sum, _mm_setzero_ps())
    };
    let se = exp8(_mm256_sub_ps(s8, m));
    let inv = _mm256_div_ps(_mm256_set1_ps(1.0), _mm256_add_ps(sum, se));
    let mut c = 0;
    while c < full {
        _mm256_storeu_ps(p.add(c), _mm256_mul_ps(_mm256_loadu_ps(p.add(c)), inv));
        c += 8;
    }
    if tail {
        _mm_storeu_ps(p.add(full), _mm_mul_ps(te, _mm256_castps256_ps128(inv)));
    }
    if !ws.is_null() {
        let x = _mm256_mul_ps(se, inv);
        if H == 8 {
            _mm256_storeu_ps(ws, x);
        } else {
            _mm_storeu_ps(ws, _mm256_castps256_ps128(x));
        }
    }
}

/// See [`super::softmax_sink_bwd`]; `H` 4 or 8.
#[inline(always)]
pub unsafe fn softmax_sink_bwd<const H: usize>(
    w: &[f32],
    ds: &mut [f32],
    wsink: *const f32,
    scale: f32,
    dsink: *mut f32,
) {
    let n = ds.len();
    let full = n / 8 * 8;
    let (wp, p) = (w.as_ptr(), ds.as_mut_ptr());
    let mut acc = _mm256_setzero_ps();
    let mut c = 0;
    while c < full {
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(wp.add(c)), _mm256_loadu_ps(p.add(c)), acc);
        c += 8;
    }
    let tail = full < n;
    let mut dot = fold::<H>(acc, |a, b| _mm_add_ps(a, b));
    if tail {
        let t = _mm_mul_ps(_mm_loadu_ps(wp.add(full)), _mm_loadu_ps(p.add(full)));
        dot = _mm256_add_ps(dot, _mm256_set_m128(t, t));
    }
    if H == 8 {
        let d = _mm256_loadu_ps(dsink);
        _mm256_storeu_ps(dsink, _mm256_fnmadd_ps(_mm256_loadu_ps(wsink), dot, d));
    } else {
        let d = _mm_loadu_ps(dsink);
        let x = _mm_fnmadd_ps(_mm_loadu_ps(wsink), _mm256_castps256_ps128(dot), d);
        _mm_storeu_ps(dsink, x);
    }
    let sc = _mm256_set1_ps(scale);
    let mut c = 0;
    while c < full {
        let x = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(p.add(c)), dot), sc);
        _mm256_storeu_ps(p.add(c), _mm256_mul_ps(_mm256_loadu_ps(wp.add(c)), x));
        c += 8;
    }
    if tail {
        let x = _mm_mul_ps(
            _mm_sub_ps(_mm_loadu_ps(p.add(full)), _mm256_castps256_ps128(dot)),
            _mm256_castps256_ps128(sc),
        );
        _mm_storeu_ps(p.add(full), _mm_mul_ps(_mm_loadu_ps(wp.add(full)), x));
    }
}

/// See [`super::row_dots`]: `d = 8·D8`, `dh = 8·NV`, heads by fours; `a` in registers.
#[inline(always)]
pub unsafe fn row_dots<const D8: usize, const NV: usize>(
    a: *const f32,
    keys: &[u32],
    base: usize,
    src: *const f32,
    stride: usize,
    col: usize,
    scale: f32,
    out: *mut f32,
) {
    let h = D8 / NV;
    let mut av = [_mm256_setzero_ps(); D8];
    for (v, x) in av.iter_mut().enumerate() {
        *x = _mm256_loadu_ps(a.add(8 * v));
    }
    let sc = _mm_set1_ps(scale);
    for (j, &k) in keys.iter().enumerate() {
        let row = src.add((k as usize - base) * stride + col);
        let mut g = 0;
        while g < h {
            let mut acc = [_mm256_setzero_ps(); 4];
            for (t, slot) in acc.iter_mut().enumerate() {
                let v0 = (g + t) * NV;
                let mut x = _mm256_mul_ps(av[v0], _mm256_loadu_ps(row.add(8 * v0)));
                for u in 1..NV {
                    x = _mm256_fmadd_ps(av[v0 + u], _mm256_loadu_ps(row.add(8 * (v0 + u))), x);
                }
                *slot = x;
            }
            _mm_storeu_ps(out.add(j * h + g), _mm_mul_ps(hsum4(acc), sc));
            g += 4;
        }
    }
}

/// See [`super::row_axpys`]: `d = 8·D8`, `dh = 8·NV`; `x` in registers.
#[inline(always)]
pub unsafe fn row_axpys<const D8: usize, const NV: usize>(
    dst: *mut f32,
    keys: &[u32],
    base: usize,
    stride: usize,
    col: usize,
    w: *const f32,
    x: *const f32,
) {
    let h = D8 / NV;
    let mut xv = [_mm256_setzero_ps(); D8];
    for (v, r) in xv.iter_mut().enumerate() {
        *r = _mm256_loadu_ps(x.add(8 * v));
    }
    for (j, &k) in keys.iter().enumerate() {
        let row = dst.add((k as usize - base) * stride + col);
        for (v, xr) in xv.iter().enumerate() {
            let wv = _mm256_set1_ps(*w.add(j * h + v / NV));
            let p = row.add(8 * v);
            _mm256_storeu_ps(p, _mm256_fmadd_ps(wv, *xr, _mm256_loadu_ps(p)));
        }
    }
}

/// See [`super::head_axpy`]; `dh = 8·NV`.
#[inline(always)]
pub unsafe fn head_axpy<const NV: usize>(y: *mut f32, w: *const f32, x: *const f32, h: usize) {
    let (nv, dh) = (NV, 8 * NV);
    for hh in 0..h {
        let wv = _mm256_set1_ps(*w.add(hh));
        for v in 0..nv {
            let o = hh * dh + 8 * v;
            let p = y.add(o);
            _mm256_storeu_ps(
                p,
                _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.add(o)), _mm256_loadu_ps(p)),
            );
        }
    }
}
