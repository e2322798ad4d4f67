//! AdamW computing exactly what `candle_nn::AdamW` computes (same float operations in the
//! same order, so the same bits), fused into one pass per parameter: candle's runs about a
//! dozen tensor operations per parameter per step, each allocating its result, which on a
//! small model costs as much as a good part of the backward pass. Moments live in plain
//! vectors; the parameter is updated in place. Parameters not on the CPU or not `f32` are
//! handed to candle's implementation.

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp1, Layout, Result, Storage, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

struct Slot {
    var: Var,
    m: Vec<f32>,
    v: Vec<f32>,
}

/// Drop-in replacement of `candle_nn::AdamW` (see the module documentation).
pub struct FastAdamW {
    slots: Vec<Slot>,
    /// Parameters candle's optimiser updates (not CPU `f32`).
    other: AdamW,
    step_t: usize,
    params: ParamsAdamW,
}

fn is_cpu_f32(v: &Var) -> bool {
    v.device().is_cpu() && v.dtype() == candle_core::DType::F32
}

/// The update of one parameter from its new moments.
struct Update<'a> {
    m: &'a [f32],
    v: &'a [f32],
    decay: f32,
    scale_m: f32,
    scale_v: f32,
    eps: f32,
    lr: f32,
}

impl InplaceOp1 for Update<'_> {
    fn name(&self) -> &'static str {
        "adamw-update"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let CpuStorage::F32(t) = s else {
            candle_core::bail!("adamw: expected f32")
        };
        let Some((a, b)) = l.contiguous_offsets() else {
            candle_core::bail!("adamw: expected a contiguous parameter")
        };
        let t = &mut t[a..b];
        if t.len() != self.m.len() {
            candle_core::bail!("adamw: parameter changed size");
        }
        for ((th, &m), &v) in t.iter_mut().zip(self.m).zip(self.v) {
            // candle: theta·(1 − lr·λ) − (m·ŝ_m / (sqrt(v·ŝ_v) + ε))·lr, scalars as f32
            let m_hat = m * self.scale_m + 0.0;
            let v_hat = v * self.scale_v + 0.0;
            let adjusted = m_hat / (v_hat.sqrt() * 1.0 + self.eps);
            *th = *th * self.decay + 0.0 - (adjusted * self.lr + 0.0);
        }
        Ok(())
    }
}

impl Optimizer for FastAdamW {
    type Config = ParamsAdamW;

    fn new(vars: Vec<Var>, params: ParamsAdamW) -> Result<Self> {
        let (mine, other): (Vec<Var>, Vec<Var>) = vars
            .into_iter()
            .filter(|v| v.dtype().is_float())
            .partition(is_cpu_f32);
        let slots = mine
            .into_iter()
            .map(|var| {
                let n = var.elem_count();
                Slot {
                    var,
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                }
            })
            .collect();
        Ok(FastAdamW {
            slots,
            other: AdamW::new(other, params.clone())?,
            step_t: 0,
            params,
        })
    }

    fn learning_rate(&self) -> f64 {
        self.params.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr;
        self.other.set_learning_rate(lr);
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.other.step(grads)?;
        self.step_t += 1;
        let p = &self.params;
        let (beta1, beta2) = (p.beta1, p.beta2);
        // candle's affine ops take their f64 scalars as f32
        let (b1, c1) = (beta1 as f32, (1.0 - beta1) as f32);
        let (b2, c2) = (beta2 as f32, (1.0 - beta2) as f32);
        let scale_m = (1f64 / (1f64 - beta1.powi(self.step_t as i32))) as f32;
        let scale_v = (1f64 / (1f64 - beta2.powi(self.step_t as i32))) as f32;
        let decay = (1f64 - p.lr * p.weight_decay) as f32;
        let (eps, lr) = (p.eps as f32, p.lr as f32);
        for slot in &mut self.slots {
            let Some(g) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            {
                let (st, l) = g.storage_and_layout();
                let g: &[f32] = match (&*st, l.contiguous_offsets()) {
                    (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => &v[a..b],
                    _ => candle_core::bail!("adamw: expected a contiguous f32 CPU gradient"),
                };
                if g.len() != slot.m.len() {
                    candle_core::bail!("adamw: gradient of another shape");
                }
                for ((m, v), &g) in slot.m.iter_mut().zip(slot.v.iter_mut()).zip(g) {
                    *m = (*m * b1 + 0.0) + (g * c1 + 0.0);
                    *v = (*v * b2 + 0.0) + ((g * g) * c2 + 0.0);
                }
            }
            slot.var.as_tensor().inplace_op1(&Update {
                m: &slot.m,
                v: &slot.v,
                decay,
                scale_m,
                scale_v,
                eps,
                lr,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// Bit for bit what candle's AdamW computes, over a few steps with changing rates.
    #[test]
    fn same_bits_as_candle() -> Result<()> {
        let dev = Device::Cpu;
        let init = |seed: f32| -> Result<Vec<Var>> {
            [(7usize, 3usize), (1, 5), (4, 1)]
                .iter()
                .map(|&(a, b)| {
                    let v: Vec<f32> = (0..a * b)
                        .map(|i| ((i as f32 + seed) * 0.37).sin())
                        .collect();
                    Var::from_tensor(&Tensor::from_vec(v, (a, b), &dev)?)
                })
                .collect()
        };
        let (va, vb) = (init(1.0)?, init(1.0)?);
        let params = ParamsAdamW {
            lr: 3e-3,
            weight_decay: 0.01,
            ..Default::default()
        };
        let mut a = AdamW::new(va.clone(), params.clone())?;
        let mut b = FastAdamW::new(vb.clone(), params)?;
        for step in 0..6 {
            let lr = 1e-3 * (step + 1) as f64;
            a.set_learning_rate(lr);
            b.set_learning_rate(lr);
            let mut ga = GradStore::default();
            let mut gb = GradStore::default();
            for (i, (x, y)) in va.iter().zip(&vb).enumerate() {
                if step == 2 && i == 1 {
                    continue; // a parameter without a gradient this step
                }
                let g = ((x.as_tensor().cos()? * (step as f64 + 1.5))? - 0.3)?;
                ga.insert(x.as_tensor(), g.clone());
                gb.insert(y.as_tensor(), g);
            }
            a.step(&ga)?;
            b.step(&gb)?;
            for (x, y) in va.iter().zip(&vb) {
                let x = x.as_tensor().flatten_all()?.to_vec1::<f32>()?;
                let y = y.as_tensor().flatten_all()?.to_vec1::<f32>()?;
                for (p, q) in x.iter().zip(&y) {
                    assert_eq!(p.to_bits(), q.to_bits(), "{p} vs {q} at step {step}");
                }
            }
        }
        Ok(())
    }
}
