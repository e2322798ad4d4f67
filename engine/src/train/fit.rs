//! The training loop every kind of model shares: AdamW; linear warm-up, then a decay
//! planned over the steps that fit the time budget; gradient clipping; progress and cancel
//! between steps; an exponential moving average of the weights (optional), which is what
//! validation scores and what is kept; validation after each epoch, early stopping on it,
//! and the best epoch's weights restored at the end. What differs by kind — the batches, the loss, the
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
    /// Time constant, in epochs, of the moving average of the weights that validation
    /// scores and training keeps (0 = the raw weights). Averaging over the last steps
    /// removes the noise of the last mini-batches from the weights: on small data that
    /// noise moves the validation metric from epoch to epoch more than learning does, and
    /// early stopping then picks (and stops on) noise.
    pub ema_epochs: f64,
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

/// Copies of the weights, detached: a tensor computed from a variable keeps its inputs
/// alive for backprop, and a chain of them would hold every step's weights.
fn snapshot(vars: &[Var]) -> candle_core::Result<Vec<Tensor>> {
    vars.iter()
        .map(|v| Ok(v.as_tensor().copy()?.detach()))
        .collect()
}

fn restore(vars: &[Var], ts: &[Tensor]) -> candle_core::Result<()> {
    for (v, t) in vars.iter().zip(ts) {
        v.set(t)?;
    }
    Ok(())
}

/// The weights' moving average: `avg ← d·avg + (1 − d)·w` after every step, with `d`
/// ramping up over the first steps (`(1 + t) / (10 + t)`) so the start weights fade fast.
struct Average {
    decay: f64,
    steps: usize,
    avg: Vec<Tensor>,
}

impl Average {
    fn new(
        cfg: &FitConfig,
        steps_per_epoch: usize,
        vars: &[Var],
    ) -> candle_core::Result<Option<Self>> {
        if cfg.ema_epochs <= 0.0 {
            return Ok(None);
        }
        let span = (cfg.ema_epochs * steps_per_epoch as f64).max(1.0);
        Ok(Some(Average {
            decay: 1.0 - 1.0 / span,
            steps: 0,
            avg: snapshot(vars)?,
        }))
    }

    fn update(&mut self, vars: &[Var]) -> candle_core::Result<()> {
        let t = self.steps as f64;
        let d = self.decay.min((1.0 + t) / (10.0 + t));
        for (a, v) in self.avg.iter_mut().zip(vars) {
            let w = v.as_tensor().detach();
            *a = (a.affine(d, 0.0)? + w.affine(1.0 - d, 0.0)?)?.detach();
        }
        self.steps += 1;
        Ok(())
    }
}

/// A validation metric (and whether larger is better), with the averaged weights it
/// scored (`None`: it scored the raw weights, which are in `vars`).
type Scored = (Option<(f64, bool)>, Option<Vec<Tensor>>);

/// Validates the weights training would keep — the average when there is one, the raw
/// weights otherwise. The raw weights are in `vars` again afterwards: training goes on
/// from them.
fn validate_kept<O: Objective>(
    obj: &mut O,
    vars: &[Var],
    average: Option<&Average>,
    poll: &mut dyn FnMut() -> bool,
) -> Result<Scored, TrainError> {
    let Some(a) = average else {
        return Ok((obj.validate(poll)?, None));
    };
    let live = snapshot(vars)?;
    restore(vars, &a.avg)?;
    let vm = obj.validate(poll);
    restore(vars, &live)?;
    // The averaged tensors are never written in place: sharing them is a snapshot.
    Ok((vm?, Some(a.avg.clone())))
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
    let mut average = Average::new(cfg, obj.steps_per_epoch(), vars)?;
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
            if let Some(a) = &mut average {
                a.update(vars)?;
            }
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
        let (vm, scored) = {
            let mut poll = poller(on_step, epoch, step, total_steps, train_loss, start);
            validate_kept(obj, vars, average.as_ref(), &mut poll)?
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
            // The raw weights are copied only when they are the best so far.
            best = Some((score, higher, scored.map_or_else(|| snapshot(vars), Ok)?));
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
        restore(vars, snap)?;
    }
    Ok(Fitted {
        history,
        steps: step,
        total_steps,
        start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::Rng;

    /// One weight `w`, loss `(w − 1)² + noise·w`: the optimum is 1, and each step's
    /// gradient carries noise of the given size (the steps wander around the optimum
    /// faster than an epoch, as on small data). Records the weight every step trains from
    /// and every weight validation scores.
    struct Noisy {
        w: Var,
        noise: f64,
        trained_from: Vec<f32>,
        validated: Vec<f32>,
    }

    impl Objective for Noisy {
        type Batch = f64;
        fn steps_per_epoch(&self) -> usize {
            200
        }
        fn batches(&mut self, rng: &mut ChaCha8Rng) -> Vec<f64> {
            (0..200)
                .map(|_| self.noise * (rng.random::<f64>() * 2.0 - 1.0))
                .collect()
        }
        fn loss(
            &mut self,
            noise: &f64,
            _: &mut ChaCha8Rng,
            _: &mut ChaCha8Rng,
        ) -> Result<Option<Tensor>, TrainError> {
            let w = self.w.as_tensor();
            self.trained_from
                .push(w.flatten_all()?.to_vec1::<f32>()?[0]);
            let l = ((w - 1.0)?.sqr()? + w.affine(*noise, 0.0)?)?.sum_all()?;
            Ok(Some(l))
        }
        fn validate(
            &mut self,
            _: &mut dyn FnMut() -> bool,
        ) -> Result<Option<(f64, bool)>, TrainError> {
            let w = self.w.as_tensor().flatten_all()?.to_vec1::<f32>()?[0];
            self.validated.push(w);
            Ok(Some(((w as f64 - 1.0).abs(), false)))
        }
    }

    fn run_config() -> FitConfig {
        FitConfig {
            max_epochs: 15,
            lr: 0.05,
            weight_decay: 0.0,
            warmup_steps: 1,
            schedule: Schedule::Linear,
            clip_norm: 0.0,
            patience: 1000,
            seed: 3,
            time_budget_s: None,
            ema_epochs: 0.0,
        }
    }

    fn run(ema_epochs: f64, noise: f64) -> Noisy {
        let cfg = FitConfig {
            ema_epochs,
            ..run_config()
        };
        let w = Var::zeros(1, candle_core::DType::F32, &Device::Cpu).unwrap();
        let mut obj = Noisy {
            w: w.clone(),
            noise,
            trained_from: Vec::new(),
            validated: Vec::new(),
        };
        fit(&cfg, &[w], &mut obj, &mut |_| true).unwrap();
        obj
    }

    #[test]
    fn the_average_holds_no_graph() {
        // Each average computed from the last would otherwise keep it (and so every
        // step's weights) alive: a backend ran out of memory that way.
        let w = Var::ones(4, candle_core::DType::F32, &Device::Cpu).unwrap();
        let cfg = FitConfig {
            ema_epochs: 1.0,
            ..run_config()
        };
        let mut a = Average::new(&cfg, 10, std::slice::from_ref(&w))
            .unwrap()
            .unwrap();
        for _ in 0..3 {
            w.set(&(w.as_tensor() * 2.0).unwrap()).unwrap();
            a.update(std::slice::from_ref(&w)).unwrap();
        }
        assert!(a.avg.iter().all(|t| !t.track_op()));
        assert!(snapshot(&[w]).unwrap().iter().all(|t| !t.track_op()));
    }

    #[test]
    fn averaging_validates_smoother_weights_and_leaves_training_alone() {
        let (raw, avg) = (run(0.0, 6.0), run(1.0, 6.0));
        // The steps are the same: the average is only ever scored and kept.
        assert_eq!(raw.trained_from, avg.trained_from);
        assert_ne!(raw.validated, avg.validated);
        // Past the first epochs, the averaged weights sit closer to the optimum than the
        // raw ones the noisy last steps left.
        let err = |v: &[f32]| v[5..].iter().map(|w| (w - 1.0).abs() as f64).sum::<f64>();
        let (e_raw, e_avg) = (err(&raw.validated), err(&avg.validated));
        assert!(e_avg < 0.75 * e_raw, "averaged {e_avg} raw {e_raw}");
    }
}
