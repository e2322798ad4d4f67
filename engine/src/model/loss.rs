//! The training losses, as candle ops (the fast trainer's hand-written gradients in
//! `grad.rs` are checked against these).

use candle_core::{Result, Tensor, D};

/// Mean of the numerically stable BCE-with-logits `relu(x) − x·y + log(1 + exp(−|x|))`.
pub fn bce_with_logits(logits: &Tensor, y: &Tensor) -> Result<Tensor> {
    let l = (logits.relu()? - logits.mul(y)?)?;
    let l = (l + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    l.mean_all()
}

/// Where the regression loss turns from quadratic to linear, in normalised target units
/// (mean absolute deviations from the median; see `train::target_norm`).
pub const SMOOTH_L1_BETA: f32 = 0.1;

/// Mean smooth L1 loss: `r²/(2β)` for `|r| ≤ β`, `|r| − β/2` beyond. Its slope is L1's
/// outside a small band, so the prediction it trains is the conditional median, which
/// minimises MAE: a squared loss's mean is pulled by a heavy tail that MAE ignores.
pub fn smooth_l1(pred: &Tensor, y: &Tensor, beta: f32) -> Result<Tensor> {
    let a = (pred - y)?.abs()?;
    let q = a.clamp(0f32, beta)?;
    ((q.sqr()? * (0.5 / beta as f64))? + (a - q)?)?.mean_all()
}

/// Mean cross-entropy of `logits [B, C]` against class indices (as a one-hot `[B, C]`).
pub fn cross_entropy(logits: &Tensor, one_hot: &Tensor) -> Result<Tensor> {
    let m = logits.detach().max_keepdim(D::Minus1)?;
    let z = logits.broadcast_sub(&m)?;
    let lse = z.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let logp = z.broadcast_sub(&lse)?;
    (logp.mul(one_hot)?.sum(D::Minus1)?.neg()?).mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn stable_losses() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[1000f32, -1000., 0.], &dev)?;
        let y = Tensor::new(&[1f32, 1., 0.], &dev)?;
        let l = bce_with_logits(&x, &y)?.to_scalar::<f32>()?;
        assert!((l - (1000.0 + 2f32.ln()) / 3.0).abs() < 1e-3, "{l}");
        let h = smooth_l1(
            &Tensor::new(&[0f32, 3.], &dev)?,
            &Tensor::new(&[0.5f32, 0.], &dev)?,
            1.0,
        )?;
        assert!((h.to_scalar::<f32>()? - (0.125 + 2.5) / 2.0).abs() < 1e-6);
        // β = 0.1: 0.05 is inside the band (0.05²/0.2), 3 beyond it (3 − 0.05)
        let h = smooth_l1(
            &Tensor::new(&[0f32, 3.], &dev)?,
            &Tensor::new(&[0.05f32, 0.], &dev)?,
            0.1,
        )?;
        assert!((h.to_scalar::<f32>()? - (0.0125 + 2.95) / 2.0).abs() < 1e-6);
        let logits = Tensor::new(&[[1000f32, 0.]], &dev)?;
        let oh = Tensor::new(&[[0f32, 1.]], &dev)?;
        let ce = cross_entropy(&logits, &oh)?.to_scalar::<f32>()?;
        assert!((ce - 1000.0).abs() < 1e-2);
        Ok(())
    }
}
