//! The training objective of binary, regression and multiclass models: batches, the loss
//! against (normalised) labels, and the validation metric early stopping follows.

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::fit::Objective;
use super::predict::{fast_model, raw_outputs};
use super::{calibrate, make_batches, Head, TrainConfig, TrainError};
use crate::encode::EncodedContext;
use crate::metrics;
use crate::model::grad::{FastTrainer, Loss};
use crate::model::{bce_with_logits, cross_entropy, smooth_l1, Batch, Model, SMOOTH_L1_BETA};

fn labels_tensor(
    task: Head,
    labels: &[Option<f32>],
    norm: Option<(f64, f64)>,
    dev: &Device,
) -> Result<Tensor, TrainError> {
    let b = labels.len();
    let ys: Vec<f32> = labels
        .iter()
        .map(|l| l.ok_or_else(|| TrainError::BadLabel("a training context has no label".into())))
        .collect::<Result<_, _>>()?;
    Ok(match task {
        Head::Binary => Tensor::from_vec(ys, (b, 1), dev)?,
        Head::Regression => {
            let (m, s) = norm.unwrap_or((0.0, 1.0));
            let v = ys.iter().map(|&y| ((y as f64 - m) / s) as f32).collect();
            Tensor::from_vec(v, (b, 1), dev)?
        }
        Head::Multiclass { classes } => {
            let mut oh = vec![0f32; b * classes];
            for (i, &y) in ys.iter().enumerate() {
                oh[i * classes + y as usize] = 1.0;
            }
            Tensor::from_vec(oh, (b, classes), dev)?
        }
    })
}

/// Validation metric, and whether larger is better.
fn val_metric(
    task: Head,
    raw: &[Vec<f32>],
    ctxs: &[EncodedContext],
    norm: Option<(f64, f64)>,
) -> Option<(f64, bool)> {
    let ys: Vec<f64> = ctxs
        .iter()
        .filter_map(|c| c.label.map(|y| y as f64))
        .collect();
    if ys.len() != ctxs.len() || ys.is_empty() {
        return None;
    }
    match task {
        Head::Binary => {
            let s: Vec<f64> = raw.iter().map(|r| r[0] as f64).collect();
            let l: Vec<bool> = ys.iter().map(|&y| y > 0.5).collect();
            match metrics::auroc(&s, &l) {
                Some(a) => Some((a, true)),
                None => {
                    let p: Vec<f64> = s.iter().map(|&x| calibrate::sigmoid(x)).collect();
                    metrics::log_loss(&p, &l).map(|v| (-v, true))
                }
            }
        }
        Head::Regression => {
            let (m, sd) = norm.unwrap_or((0.0, 1.0));
            let p: Vec<f64> = raw.iter().map(|r| r[0] as f64 * sd + m).collect();
            metrics::mae(&p, &ys).map(|v| (v, false))
        }
        Head::Multiclass { .. } => {
            let p: Vec<Vec<f64>> = raw.iter().map(|r| calibrate::softmax(r, 1.0)).collect();
            let t: Vec<usize> = ys.iter().map(|&y| y as usize).collect();
            metrics::log_loss_multiclass(&p, &t).map(|v| (v, false))
        }
    }
}

/// Binary, regression and multiclass models in the shared loop.
pub(super) struct Tabular<'a> {
    pub(super) cfg: &'a TrainConfig,
    pub(super) model: &'a Model,
    pub(super) n_buckets: usize,
    pub(super) dev: &'a Device,
    pub(super) train: &'a [EncodedContext],
    pub(super) val: &'a [EncodedContext],
    pub(super) target_norm: Option<(f64, f64)>,
    pub(super) order: Vec<usize>,
    /// The hand-written forward and backward (CPU), when the configuration allows.
    pub(super) fast: Option<FastTrainer>,
}

impl Objective for Tabular<'_> {
    type Batch = Vec<usize>;

    fn steps_per_epoch(&self) -> usize {
        let order: Vec<usize> = (0..self.train.len()).collect();
        make_batches(
            self.train,
            &order,
            self.cfg.batch_tokens,
            self.cfg.batch_contexts,
        )
        .len()
    }

    fn batches(&mut self, rng: &mut ChaCha8Rng) -> Vec<Vec<usize>> {
        self.order.shuffle(rng);
        make_batches(
            self.train,
            &self.order,
            self.cfg.batch_tokens,
            self.cfg.batch_contexts,
        )
    }

    fn loss(
        &mut self,
        b: &Vec<usize>,
        _rng: &mut ChaCha8Rng,
        dropout: &mut ChaCha8Rng,
    ) -> Result<Option<Tensor>, TrainError> {
        let refs: Vec<&EncodedContext> = b.iter().map(|&i| &self.train[i]).collect();
        let batch = Batch::new(&refs, &self.model.cfg, self.n_buckets, self.dev)?;
        let y = labels_tensor(self.cfg.head, &batch.labels, self.target_norm, self.dev)?;
        let out = self.model.forward(&batch, Some(dropout))?;
        Ok(Some(match self.cfg.head {
            Head::Binary => bce_with_logits(&out, &y)?,
            Head::Regression => smooth_l1(&out, &y, SMOOTH_L1_BETA)?,
            Head::Multiclass { .. } => cross_entropy(&out, &y)?,
        }))
    }

    fn loss_and_grads(
        &mut self,
        b: &Vec<usize>,
        rng: &mut ChaCha8Rng,
        dropout: &mut ChaCha8Rng,
    ) -> Result<Option<(Tensor, GradStore)>, TrainError> {
        let Some(fast) = self.fast.as_mut() else {
            let Some(l) = self.loss(b, rng, dropout)? else {
                return Ok(None);
            };
            let g = l.backward()?;
            return Ok(Some((l, g)));
        };
        let refs: Vec<&EncodedContext> = b.iter().map(|&i| &self.train[i]).collect();
        let batch = Batch::new(&refs, &self.model.cfg, self.n_buckets, self.dev)?;
        let y = labels_tensor(self.cfg.head, &batch.labels, self.target_norm, self.dev)?;
        let loss = match self.cfg.head {
            Head::Binary => Loss::Bce,
            Head::Regression => Loss::SmoothL1,
            Head::Multiclass { .. } => Loss::CrossEntropy,
        };
        Ok(Some(fast.loss_and_grads(
            self.model,
            &batch,
            &y,
            loss,
            Some(dropout),
        )?))
    }

    fn validate(
        &mut self,
        poll: &mut dyn FnMut() -> bool,
    ) -> Result<Option<(f64, bool)>, TrainError> {
        if self.val.is_empty() {
            return Ok(None);
        }
        let fast = fast_model(self.model, self.dev)?;
        let raw = raw_outputs(
            self.model,
            fast.as_ref(),
            self.val,
            self.cfg.batch_tokens * 4,
            self.dev,
            poll,
        )?;
        Ok(val_metric(self.cfg.head, &raw, self.val, self.target_norm))
    }
}
