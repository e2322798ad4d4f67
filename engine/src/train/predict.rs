//! Raw outputs and calibrated predictions of a trained model, in token-bounded batches
//! (the no-graph forward pass on the CPU when the model allows it).

use candle_core::Device;

use super::{make_batches, TrainError, TrainedModel};
use crate::encode::EncodedContext;
use crate::model::infer::FastModel;
use crate::model::{Batch, Model};

/// The fast forward pass of `model` on the CPU, when its configuration allows.
pub(super) fn fast_model(model: &Model, dev: &Device) -> Result<Option<FastModel>, TrainError> {
    Ok(if dev.is_cpu() {
        FastModel::new(model)?
    } else {
        None
    })
}

/// Raw model outputs (`[n_out]` per context) in batches of `batch_tokens`. `poll` runs
/// before every batch; `false` stops with [`TrainError::Cancelled`].
/// With `fast` (the same model's weights), outputs come from its no-graph forward pass.
pub(super) fn raw_outputs(
    model: &Model,
    fast: Option<&FastModel>,
    ctxs: &[EncodedContext],
    batch_tokens: usize,
    dev: &Device,
    poll: &mut dyn FnMut() -> bool,
) -> Result<Vec<Vec<f32>>, TrainError> {
    let order: Vec<usize> = (0..ctxs.len()).collect();
    let mut out = Vec::with_capacity(ctxs.len());
    for b in make_batches(ctxs, &order, batch_tokens, 256) {
        if !poll() {
            crate::threads::use_threads(crate::threads::configured());
            return Err(TrainError::Cancelled);
        }
        let refs: Vec<&EncodedContext> = b.iter().map(|&i| &ctxs[i]).collect();
        crate::threads::use_threads(crate::threads::for_tokens(
            refs.iter().map(|c| c.n_tokens()).sum(),
        ));
        let batch = Batch::new(&refs, &model.cfg, model.dims.n_buckets, dev)?;
        match fast {
            Some(f) => out.extend(f.forward(&batch)?),
            None => out.extend(model.forward(&batch, None)?.to_vec2::<f32>()?),
        }
    }
    crate::threads::use_threads(crate::threads::configured());
    Ok(out)
}

impl TrainedModel {
    /// Raw outputs (logits, or normalised regression values) per context.
    /// An ensemble's are its members' averaged.
    pub fn raw(&self, ctxs: &[EncodedContext]) -> Result<Vec<Vec<f32>>, TrainError> {
        super::ensemble::mean_raw(
            &self.members,
            ctxs,
            self.predict_batch_tokens,
            &self.device,
            &mut || true,
        )
    }

    /// The first network's parameters by name (tests).
    #[cfg(test)]
    pub(crate) fn tensors(&self) -> std::collections::HashMap<String, candle_core::Tensor> {
        let data = self.members[0].varmap.data().lock().expect("varmap lock");
        data.iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect()
    }

    /// How many networks the model averages.
    pub fn n_members(&self) -> usize {
        self.members.len()
    }

    /// Calibrated predictions: the probability of the positive class (binary), the value
    /// (regression), or `classes` probabilities per context laid end to end (multiclass).
    pub fn predict(&self, ctxs: &[EncodedContext]) -> Result<Vec<f32>, TrainError> {
        let raw = self.raw(ctxs)?;
        Ok(raw
            .iter()
            .flat_map(|r| self.calibration.apply(self.head, r, self.target_norm))
            .collect())
    }

    /// Conformal prediction intervals `(low, high)` at a stored coverage level (regression).
    pub fn predict_interval(
        &self,
        ctxs: &[EncodedContext],
        level: f64,
    ) -> Result<Option<Vec<(f32, f32)>>, TrainError> {
        let Some(q) = self.calibration.quantile(level) else {
            return Ok(None);
        };
        let p = self.predict(ctxs)?;
        Ok(Some(
            p.into_iter()
                .map(|v| (v - q as f32, v + q as f32))
                .collect(),
        ))
    }
}
