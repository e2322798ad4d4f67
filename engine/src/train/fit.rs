//! The training loop every kind of model shares: AdamW; linear warm-up, then a decay
//! planned over the steps that fit the time budget; gradient clipping; progress and cancel
//! between steps; validation after each epoch, early stopping on it, and the best epoch's
//! weights restored at the end. What differs by kind — the batches, the loss, the
//! validation metric — comes from an [`Objective`].

use std::time::{Duration, Instant};

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::{Optimizer, ParamsAdamW};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{EpochStats, Progress, TrainError};
use crate::model::optim::FastAdamW;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Cosine,
    Linear,
}

/// The loop's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FitConfig {
    pub max_epochs: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Steps of linear warm-up from 0 to `lr`.
    pub warmup_steps: usize,
    /// Decay after warm-up, to its floor at the last planned step.
    pub schedule: Schedule,
    /// Gradients are rescaled when their global L2 norm exceeds this (0 = off).
    pub clip_norm: f64,
    /// Epochs without improvement of the validation metric before stopping.
    pub patience: usize,
    /// Seed of shuffling and sampling (dropout has a generator of its own, derived).
    pub seed: u64,
    /// Wall-clock budget in seconds: training stops (keeping the best epoch) after it.
    pub time_budget_s: Option<f64>,
}

/// What a kind of model brings to the loop.
pub trait Objective {
    type Batch;
    /// Steps in one epoch (plans the learning-rate schedule).
    fn steps_per_epoch(&self) -> usize;
    /// The epoch's batches, in the order they are stepped.
    fn batches(&mut self, rng: &mut ChaCha8Rng) -> Vec<Self::Batch>;
    /// The loss of one batch; `None` when the batch has nothing to learn from.
    fn loss(
        &mut self,
        batch: &Self::Batch,
        rng: &mut ChaCha8Rng,
        dropout: &mut ChaCha8Rng,
    ) -> Result<Option<Tensor>, TrainError>;
    /// The loss of one batch and its gradients: candle's backward of [`Objective::loss`]
    /// unless the objective computes them faster.
    fn loss_and_grads(
        &mut self,
        batch: &Self::Batch,
        rng: &mut ChaCha8Rng,
        dropout: &mut ChaCha8Rng,
    ) -> Result<Option<(Tensor, GradStore)>, TrainError> {
        match self.loss(batch, rng, dropout)? {
            Some(l) => {
                let g = l.backward()?;
                Ok(Some((l, g)))
            }
            None => Ok(None),
        }
    }
    /// The validation metric and whether larger is better; `None` without validation
    /// data. `poll` before each piece of work: `false` means cancel.
    fn validate(
        &mut self,
        poll: &mut dyn FnMut() -> bool,
    ) -> Result<Option<(f64, bool)>, TrainError>;
}

/// What the loop did.
pub struct Fitted {
    pub history: Vec<EpochStats>,
    pub steps: usize,
    pub total_steps: usize,
    pub start: Instant,
}

/// The learning rate at `step` of `total`.
pub fn lr_at(cfg: &FitConfig, step: usize, total: usize) -> f64 {
    if step < cfg.warmup_steps {
        return cfg.lr * (step + 1) as f64 / cfg.warmup_steps as f64;
    }
    let span = total.saturating_sub(cfg.warmup_steps).max(1) as f64;
    let p = ((step - cfg.warmup_steps) as f64 / span).min(1.0);
    match cfg.schedule {
        // Floor at 5%: a budget estimate that runs a little long still makes progress.
        Schedule::Cosine => cfg.lr * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())),
        Schedule::Linear => cfg.lr * (1.0 - p),
    }
}

/// Reports repeats of the last step while validation scores (so cancel is heard there).
pub(crate) fn poller<'a>(
    on_step: &'a mut dyn FnMut(&Progress) -> bool,
    epoch: usize,
    step: usize,
    total_steps: usize,
    loss: f64,
    start: Instant,
) -> impl FnMut() -> bool + 'a {
    move || {
        on_step(&Progress {
            epoch,
            step,
            total_steps,
            lr: 0.0,
            loss,
            epoch_end: false,
            val_metric: None,
            elapsed_s: start.elapsed().as_secs_f64(),
        })
    }
}

/// Scales `grads` so that their global L2 norm is at most `max` (no-op at 0).
fn clip(
    grads: &mut candle_core::backprop::GradStore,
    vars: &[Var],
    max: f64,
) -> candle_core::Result<()> {
    if max <= 0.0 {
        return Ok(());
    }
    let mut sq = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
    }
    let norm = sq.sqrt();
    if norm.is_finite() && norm > max {
        let s = max / norm;
        for v in vars {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * s)?);
            }
        }
    }
    Ok(())
}

/// Trains `vars` on `obj`. `on_step` runs on the caller's thread after every step and
/// every epoch; `false` cancels with [`TrainError::Cancelled`].
pub fn fit<O: Objective>(
    cfg: &FitConfig,
    vars: &[Var],
    obj: &mut O,
    on_step: &mut dyn FnMut(&Progress) -> bool,
) -> Result<Fitted, TrainError> {
    let start = Instant::now();
    let budget = cfg.time_budget_s.map(Duration::from_secs_f64);
    // candle's AdamW, fused (the same arithmetic; see `model::optim`)
    let mut opt = FastAdamW::new(
        vars.to_vec(),
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        },
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut drop_rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x9e37_79b9_7f4a_7c15);
    let total_steps = obj.steps_per_epoch() * cfg.max_epochs.max(1);
    let mut step = 0usize;
    let mut best: Option<(f64, bool, Vec<Tensor>)> = None;
    let mut since_best = 0usize;
    let mut history = Vec::new();
    for epoch in 0..cfg.max_epochs.max(1) {
        let (mut loss_sum, mut loss_n) = (0.0, 0usize);
        for b in obj.batches(&mut rng) {
            let Some((loss, mut grads)) = obj.loss_and_grads(&b, &mut rng, &mut drop_rng)? else {
                continue;
            };
            clip(&mut grads, vars, cfg.clip_norm)?;
            // Under a time budget the schedule ends where the budget will: decay is planned
            // over the steps that fit, not over epochs that will never run.
            let planned = match budget {
                Some(b) if step > 0 => {
                    let rate = step as f64 / start.elapsed().as_secs_f64().max(1e-9);
                    total_steps.min(((rate * b.as_secs_f64()) as usize).max(step + 1))
                }
                _ => total_steps,
            };
            let lr = lr_at(cfg, step, planned);
            opt.set_learning_rate(lr);
            opt.step(&grads)?;
            let l = loss.to_scalar::<f32>()? as f64;
            loss_sum += l;
            loss_n += 1;
            step += 1;
            let p = Progress {
                epoch,
                step,
                total_steps,
                lr,
                loss: l,
                epoch_end: false,
                val_metric: None,
                elapsed_s: start.elapsed().as_secs_f64(),
            };
            if !on_step(&p) {
                return Err(TrainError::Cancelled);
            }
            if budget.is_some_and(|b| start.elapsed() > b) {
                break;
            }
        }
        let train_loss = loss_sum / loss_n.max(1) as f64;
        let vm = {
            let mut poll = poller(on_step, epoch, step, total_steps, train_loss, start);
            obj.validate(&mut poll)?
        };
        // Without a usable validation metric, the training loss decides.
        let (score, higher) = vm.unwrap_or((train_loss, false));
        history.push(EpochStats {
            epoch,
            train_loss,
            val_metric: vm.map(|v| v.0),
        });
        let improved = match &best {
            None => true,
            Some((b, _, _)) if higher => score > *b,
            Some((b, _, _)) => score < *b,
        };
        if improved {
            let snap = vars
                .iter()
                .map(|v| v.as_tensor().copy())
                .collect::<candle_core::Result<Vec<_>>>()?;
            best = Some((score, higher, snap));
            since_best = 0;
        } else {
            since_best += 1;
        }
        let p = Progress {
            epoch,
            step,
            total_steps,
            lr: lr_at(cfg, step.saturating_sub(1), total_steps),
            loss: train_loss,
            epoch_end: true,
            val_metric: vm.map(|v| v.0),
            elapsed_s: start.elapsed().as_secs_f64(),
        };
        if !on_step(&p) {
            return Err(TrainError::Cancelled);
        }
        if since_best >= cfg.patience.max(1) || budget.is_some_and(|b| start.elapsed() > b) {
            break;
        }
    }
    if let Some((_, _, snap)) = &best {
        for (v, t) in vars.iter().zip(snap) {
            v.set(t)?;
        }
    }
    Ok(Fitted {
        history,
        steps: step,
        total_steps,
        start,
    })
}
