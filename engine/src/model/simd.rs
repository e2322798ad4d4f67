//! Small numeric helpers for the hand-written kernels, written so that LLVM vectorises them,
//! and a macro that compiles a kernel twice: once for AVX2+FMA (picked at run time when the
//! CPU has them) and once portable.
//!
//! Kernels are `fn name_impl<const F: bool>(..)` with every helper `#[inline(always)]`:
//! inlined into the `#[target_feature(enable = "avx2,fma")]` copy they vectorise to 8-lane
//! FMA code; `F` says whether a fused multiply-add may be used (`mul_add` without the FMA
//! instruction is a slow library call).

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
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($a: $t),*) $(-> $r)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
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
    p = madd::<F>(p, r, 5.000_000_1e-1);
    let p = madd::<F>(p, r * r, r) + 1.0;
    let pow = f32::from_bits(((n as i32 + 127) << 23) as u32);
    p * pow
}

/// Per-head dot products: `out[hh] = Σ_t a[hh·dh + t]·b[hh·dh + t]` for `hh < h`. `NV`:
/// `dh / 8` when the AVX2 code may be used (`F`) and `dh` is a multiple of 8, else 0.
#[inline(always)]
pub fn head_dots<const F: bool, const NV: usize>(
    a: &[f32],
    b: &[f32],
    h: usize,
    dh: usize,
    out: &mut [f32],
) {
    let (a, b, out) = (&a[..h * dh], &b[..h * dh], &mut out[..h]);
    #[cfg(target_arch = "x86_64")]
    if F && NV > 0 {
        debug_assert_eq!(dh, 8 * NV);
        // SAFETY: `F` is only true in code compiled for AVX2+FMA; lengths checked above.
        unsafe { x86::head_dots::<NV>(a.as_ptr(), b.as_ptr(), h, out.as_mut_ptr()) };
        return;
    }
    for hh in 0..h {
        out[hh] = dot::<F>(&a[hh * dh..(hh + 1) * dh], &b[hh * dh..(hh + 1) * dh]);
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
        axpy::<F>(&mut y[hh * dh..(hh + 1) * dh], w[hh], &x[hh * dh..(hh + 1) * dh]);
    }
}

/// Largest element (`-inf` when empty).
#[inline(always)]
pub fn max(a: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let (ch, rest) = a.as_chunks::<8>();
    for x in ch {
        for l in 0..8 {
            acc[l] = if x[l] > acc[l] { x[l] } else { acc[l] };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for v in acc.iter().chain(rest) {
        if *v > m {
            m = *v;
        }
    }
    m
}

/// `x ← x·a`.
#[inline(always)]
pub fn scale(x: &mut [f32], a: f32) {
    for v in x.iter_mut() {
        *v *= a;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Sums of `v[0..4]` as `[Σv0, Σv1, Σv2, Σv3]`.
    #[inline(always)]
    unsafe fn hsum4(v: [__m256; 4]) -> __m128 {
        let x = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
        _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps::<1>(x))
    }

    /// See [`super::head_dots`]; `dh = 8·NV`.
    #[inline(always)]
    pub unsafe fn head_dots<const NV: usize>(a: *const f32, b: *const f32, h: usize, out: *mut f32) {
        let (nv, dh) = (NV, 8 * NV);
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
            let r = hsum4(acc);
            if k == 4 {
                _mm_storeu_ps(out.add(g), r);
            } else {
                let mut tmp = [0f32; 4];
                _mm_storeu_ps(tmp.as_mut_ptr(), r);
                for t in 0..k {
                    *out.add(g + t) = tmp[t];
                }
            }
            g += 4;
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
                _mm256_storeu_ps(p, _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.add(o)), _mm256_loadu_ps(p)));
            }
        }
    }
}

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
