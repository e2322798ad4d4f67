//! Fused CPU kernels for attention over (query, key) pairs, with backward passes.
//!
//! Gathering `K` and `V` per pair with `index_select` materialises `P × d` floats per tensor,
//! which makes the sparse path memory-bound. These two ops touch only `P × heads` floats of
//! their own:
//! - [`pair_dot`]: `out[p, h] = Σ_d a[ia[p], h, d] · b[ib[p], h, d]`
//! - [`pair_scatter`]: `out[io[p], h, :] += w[p, h] · x[ii[p], h, :]`
//!
//! Each one's backward is expressed with the other, so gradients flow to every input.
//! Loops are sequential (deterministic sums). CPU only: other devices use the gather path.

use std::sync::Arc;

use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("{what}: expected f32")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{what}: expected a contiguous tensor"),
    }
}

struct PairDot {
    ia: Arc<Vec<u32>>,
    ib: Arc<Vec<u32>>,
}

impl CustomOp2 for PairDot {
    fn name(&self) -> &'static str {
        "pair-dot"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let a = f32_slice(s1, l1, "pair-dot")?;
        let b = f32_slice(s2, l2, "pair-dot")?;
        let (na, h, dh) = l1.shape().dims3()?;
        let (nb, h2, dh2) = l2.shape().dims3()?;
        if h != h2 || dh != dh2 {
            bail!("pair-dot: shape mismatch");
        }
        let p = self.ia.len();
        let hd = h * dh;
        let mut out = vec![0f32; p * h];
        for (i, (&x, &y)) in self.ia.iter().zip(self.ib.iter()).enumerate() {
            let (x, y) = (x as usize, y as usize);
            if x >= na || y >= nb {
                bail!("pair-dot: index out of range");
            }
            let ra = &a[x * hd..(x + 1) * hd];
            let rb = &b[y * hd..(y + 1) * hd];
            for hh in 0..h {
                let s = hh * dh;
                out[i * h + hh] = ra[s..s + dh]
                    .iter()
                    .zip(&rb[s..s + dh])
                    .map(|(u, v)| u * v)
                    .sum();
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((p, h))))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let da = pair_scatter(&g, b, &self.ia, &self.ib, a.dims()[0])?;
        let db = pair_scatter(&g, a, &self.ib, &self.ia, b.dims()[0])?;
        Ok((Some(da), Some(db)))
    }
}

struct PairScatter {
    io: Arc<Vec<u32>>,
    ii: Arc<Vec<u32>>,
    n_out: usize,
}

impl CustomOp2 for PairScatter {
    fn name(&self) -> &'static str {
        "pair-scatter"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let w = f32_slice(s1, l1, "pair-scatter")?;
        let x = f32_slice(s2, l2, "pair-scatter")?;
        let (p, h) = l1.shape().dims2()?;
        let (nx, h2, dh) = l2.shape().dims3()?;
        if h != h2 || p != self.io.len() {
            bail!("pair-scatter: shape mismatch");
        }
        let hd = h * dh;
        let mut out = vec![0f32; self.n_out * hd];
        for (i, (&o, &src)) in self.io.iter().zip(self.ii.iter()).enumerate() {
            let (o, src) = (o as usize, src as usize);
            if o >= self.n_out || src >= nx {
                bail!("pair-scatter: index out of range");
            }
            let rx = &x[src * hd..(src + 1) * hd];
            let ro = &mut out[o * hd..(o + 1) * hd];
            for hh in 0..h {
                let wt = w[i * h + hh];
                let s = hh * dh;
                for (t, &v) in ro[s..s + dh].iter_mut().zip(&rx[s..s + dh]) {
                    *t += wt * v;
                }
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((self.n_out, h, dh))))
    }

    fn bwd(
        &self,
        w: &Tensor,
        x: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let dw = pair_dot(&g, x, &self.io, &self.ii)?;
        let dx = pair_scatter(w, &g, &self.ii, &self.io, x.dims()[0])?;
        Ok((Some(dw), Some(dx)))
    }
}

/// `out[p, h] = Σ_d a[ia[p], h, d] · b[ib[p], h, d]`; `a`, `b`: `[N, H, Dh]`.
pub fn pair_dot(a: &Tensor, b: &Tensor, ia: &Arc<Vec<u32>>, ib: &Arc<Vec<u32>>) -> Result<Tensor> {
    a.contiguous()?.apply_op2(
        &b.contiguous()?,
        PairDot {
            ia: ia.clone(),
            ib: ib.clone(),
        },
    )
}

/// `out[io[p], h, :] += w[p, h] · x[ii[p], h, :]` into `n_out` zero rows; `w`: `[P, H]`,
/// `x`: `[N, H, Dh]`.
pub fn pair_scatter(
    w: &Tensor,
    x: &Tensor,
    io: &Arc<Vec<u32>>,
    ii: &Arc<Vec<u32>>,
    n_out: usize,
) -> Result<Tensor> {
    w.contiguous()?.apply_op2(
        &x.contiguous()?,
        PairScatter {
            io: io.clone(),
            ii: ii.clone(),
            n_out,
        },
    )
}
