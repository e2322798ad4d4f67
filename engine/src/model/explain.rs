//! Per-token attributions of one prediction, two ways:
//!
//! - **Attention rollout** (Abnar & Zuidema, 2020) through every attention layer of every
//!   block to the target token: each layer's attention, averaged over heads, mixed half and
//!   half with the residual identity, rows renormalised, multiplied layer after layer.
//!   Structural: it says where information flowed, not in which direction it pushed.
//! - **Gradient × input** on the token embeddings: `Σ_d ∂y/∂x_{t,d} · x_{t,d}` for output
//!   `y`. Signed: a positive value pushed the output up.
//!
//! Both run on a batch of one context.

use candle_core::{IndexOp, Result, Var};

use super::{Batch, Model};

/// Attributions of one output of one context, per token of the batch.
#[derive(Debug, Clone)]
pub struct TokenAttribution {
    /// The raw output (logit or normalised value) attributed.
    pub output: f32,
    /// Rollout weight of each token at the target token (non-negative, sums to 1).
    pub rollout: Vec<f32>,
    /// Gradient × input of each token (signed).
    pub grad_x_input: Vec<f32>,
}

impl Model {
    /// Attributions of output `out_index` of the single context in `b`.
    pub fn attribute(&self, b: &Batch, out_index: usize) -> Result<TokenAttribution> {
        if b.n_ctx != 1 {
            candle_core::bail!("attributions are computed one context at a time");
        }
        let x0 = self.embed(b)?.detach();
        let xv = Var::from_tensor(&x0)?;
        let mut trace = Vec::new();
        let out = self.forward_embedded(b, xv.as_tensor().clone(), None, Some(&mut trace))?;
        let y = out.i((0, out_index))?;
        let output = y.to_scalar::<f32>()?;
        let grads = y.backward()?;
        let grad_x_input = match grads.get(xv.as_tensor()) {
            Some(g) => (g * &x0)?.sum(1)?.to_vec1::<f32>()?,
            None => vec![0.0; b.n_tokens],
        };
        let target = b.target.to_vec1::<u32>()?[0] as usize;
        let rollout = rollout(b, &trace, target)?;
        Ok(TokenAttribution {
            output,
            rollout,
            grad_x_input,
        })
    }
}

/// Attention rollout to token `target` from the per-layer pair weights in `trace` (the
/// layers cycle through the batch's attention types, block after block).
fn rollout(b: &Batch, trace: &[candle_core::Tensor], target: usize) -> Result<Vec<f32>> {
    let n = b.n_tokens;
    // Only the target's row of the product is needed: r = e_target · A_L · … · A_1, applied
    // from the last layer down: r ← r · A_l.
    let mut r = vec![0f32; n];
    r[target] = 1.0;
    let kinds = b.attn.len().max(1);
    for (layer, w) in trace.iter().enumerate().rev() {
        let pairs = &b.attn[layer % kinds].1;
        let (p, h) = w.dims2()?;
        let w = w.flatten_all()?.to_vec1::<f32>()?;
        // A = ½ I + ½ W̄ with W̄ the head-mean attention; rows renormalised.
        let mut row_sum = vec![0.5f32; n];
        let mut wbar = Vec::with_capacity(p);
        for i in 0..p {
            let m = w[i * h..(i + 1) * h].iter().sum::<f32>() / h as f32 * 0.5;
            wbar.push(m);
            row_sum[pairs.q_host[i] as usize] += m;
        }
        let mut next = vec![0f32; n];
        for t in 0..n {
            next[t] += r[t] * 0.5 / row_sum[t];
        }
        for ((&q, &k), &wb) in pairs.q_host.iter().zip(pairs.k_host.iter()).zip(&wbar) {
            let (q, k) = (q as usize, k as usize);
            next[k] += r[q] * wb / row_sum[q];
        }
        r = next;
    }
    let total: f32 = r.iter().sum();
    if total > 0.0 {
        r.iter_mut().for_each(|v| *v /= total);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{Encoder, EncoderConfig};
    use crate::model::{ModelConfig, ModelDims};
    use crate::train::synth::churn_dataset;
    use candle_core::Device;
    use candle_nn::VarMap;

    #[test]
    fn rollout_is_a_distribution_and_gradients_match_a_finite_difference() -> Result<()> {
        let dev = Device::Cpu;
        let data = churn_dataset(4, 6, 20, 3);
        let sgs: Vec<_> = data.iter().map(|(s, _)| s.clone()).collect();
        let enc = Encoder::fit(EncoderConfig::default(), &sgs);
        let ec = enc.encode(&sgs[0]);
        let mut cfg = ModelConfig::small();
        cfg.d_model = 16;
        let dims = ModelDims {
            n_columns: enc.n_columns(),
            n_buckets: 4096,
            n_out: 1,
        };
        let model = Model::new(&cfg, &dims, &VarMap::new(), &dev)?;
        let b = Batch::new(&[&ec], &cfg, 4096, &dev)?;
        let a = model.attribute(&b, 0)?;
        assert_eq!(a.rollout.len(), ec.n_tokens());
        assert!((a.rollout.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        assert!(a.rollout.iter().all(|&v| v >= 0.0));
        // The output attributed is the model's forward output.
        let y = model.forward(&b, None)?.to_vec2::<f32>()?[0][0];
        assert!((y - a.output).abs() < 1e-5);
        // Gradient × input sums to the first-order change when every embedding is scaled
        // by (1 + ε): Σ_t g_t · x_t · ε ≈ y(1+ε) − y.
        let eps = 1e-3;
        let x = model.embed(&b)?;
        let y2 = model
            .forward_embedded(&b, (x * (1.0 + eps))?, None, None)?
            .to_vec2::<f32>()?[0][0];
        let lin: f32 = a.grad_x_input.iter().sum::<f32>() * eps as f32;
        assert!(
            ((y2 - y) - lin).abs() < 0.05 * lin.abs().max(1e-3),
            "finite difference {} vs gradient {}",
            y2 - y,
            lin
        );
        Ok(())
    }
}
