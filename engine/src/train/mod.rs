//! Training, evaluation, calibration and (de)serialisation of a model.
//!
//! Determinism: parameter initialisation, shuffling and dropout use seeded ChaCha generators,
//! and every reduction in the sparse attention is sequential. On the CPU a step runs the
//! hand-written forward and backward of `model::grad`, which splits a batch into one share
//! per thread of rayon's pool and sums the shares' gradients in order (candle's matmul, on
//! other devices, splits work over its pool likewise); with a fixed thread count the results
//! are reproducible run to run, but a different thread count may change the last bits of the
//! floats (and so, over many steps, the trained weights).

pub mod calibrate;
mod ensemble;
pub mod explain;
pub mod fit;
mod objective;
mod predict;
mod store;
pub mod synth;

pub use store::MAX_MEMBERS;
pub(crate) use store::{erased, load_vars, meta_field, store_bytes, stored_meta};

use std::fmt;

use candle_core::Device;
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::encode::{EncodedContext, Encoder};
use crate::model::infer::FastModel;
use crate::model::{Model, ModelConfig, ModelDims};
pub use calibrate::Calibration;
use fit::FitConfig;
pub use fit::Schedule;

/// What is predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Head {
    Binary,
    Regression,
    Multiclass { classes: usize },
}

impl Head {
    pub fn n_out(&self) -> usize {
        match self {
            Head::Multiclass { classes } => *classes,
            _ => 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub head: Head,
    pub max_epochs: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Steps of linear warm-up from 0 to `lr`.
    pub warmup_steps: usize,
    /// Decay after warm-up, to 0 at the last planned step.
    pub schedule: Schedule,
    /// Gradients are rescaled when their global L2 norm exceeds this (0 = off).
    pub clip_norm: f64,
    /// Tokens per mini-batch (bounds memory); a context larger than this is a batch alone.
    pub batch_tokens: usize,
    /// Contexts per mini-batch at most.
    pub batch_contexts: usize,
    /// Epochs without improvement of the validation metric before stopping.
    pub patience: usize,
    /// Seed for shuffling and dropout.
    pub seed: u64,
    /// Wall-clock budget in seconds: training stops (keeping the best checkpoint) after it.
    pub time_budget_s: Option<f64>,
    /// Time constant of the weights' moving average, in epochs (0 = off; see
    /// [`FitConfig::ema_epochs`]).
    #[serde(default)]
    pub ema_epochs: f64,
    /// Networks trained at most (each from its own initialisation — the same pretrained
    /// reader, when [`TrainConfig::pretrained`], with its own head — and shuffling, their
    /// outputs averaged): the second and later are trained only while the time budget
    /// left holds another run as long as the first (see [`ensemble`]).
    #[serde(default = "one")]
    pub members: usize,
    /// Start from the shipped pretrained reader ([`crate::icl::shipped::start_reader`])
    /// instead of a random initialisation; the encoder must deal columns to its slots.
    #[serde(default)]
    pub pretrained: bool,
}

fn one() -> usize {
    1
}

impl TrainConfig {
    /// The shared loop's part of this configuration.
    pub fn fit_config(&self) -> FitConfig {
        FitConfig {
            max_epochs: self.max_epochs,
            lr: self.lr,
            weight_decay: self.weight_decay,
            warmup_steps: self.warmup_steps,
            schedule: self.schedule,
            clip_norm: self.clip_norm,
            patience: self.patience,
            seed: self.seed,
            time_budget_s: self.time_budget_s,
            ema_epochs: self.ema_epochs,
        }
    }

    pub fn new(head: Head) -> TrainConfig {
        TrainConfig {
            head,
            max_epochs: 30,
            lr: 3e-3,
            weight_decay: 0.01,
            warmup_steps: 20,
            schedule: Schedule::Cosine,
            clip_norm: 1.0,
            batch_tokens: 2048,
            batch_contexts: 64,
            patience: 5,
            seed: 0,
            time_budget_s: None,
            ema_epochs: 0.0,
            members: 1,
            pretrained: false,
        }
    }
}

/// Reported to the caller between steps (`epoch_end == false`) and after each epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub epoch: usize,
    pub step: usize,
    pub total_steps: usize,
    pub lr: f64,
    /// Loss of the last step (step reports) or mean training loss (epoch reports).
    pub loss: f64,
    pub epoch_end: bool,
    /// Validation metric (epoch reports with validation data): AUROC (binary), MAE in target
    /// units (regression), log-loss (multiclass).
    pub val_metric: Option<f64>,
    pub elapsed_s: f64,
}

#[derive(Debug)]
pub enum TrainError {
    /// The progress callback returned `false`.
    Cancelled,
    NoTrainingData,
    BadLabel(String),
    Candle(candle_core::Error),
    Format(String),
    /// Any other failure, described (e.g. reported by the process that trained).
    Other(String),
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::Cancelled => write!(f, "training cancelled"),
            TrainError::NoTrainingData => write!(f, "no training contexts"),
            TrainError::BadLabel(s) => write!(f, "bad label: {s}"),
            TrainError::Candle(e) => write!(f, "model error: {e}"),
            TrainError::Format(s) => write!(f, "bad model bytes: {s}"),
            TrainError::Other(s) => write!(f, "{s}"),
        }
    }
}

impl std::error::Error for TrainError {}

impl From<candle_core::Error> for TrainError {
    fn from(e: candle_core::Error) -> Self {
        TrainError::Candle(e)
    }
}

/// One epoch's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_metric: Option<f64>,
}

/// The device `auto` picks: the first GPU when built with `cuda` and one is present, else
/// the CPU. Backends never use it (they compute on the CPU, see [`crate::device`]); rdl's
/// background worker opens the device its `rdl.device` setting names.
pub fn default_device() -> Device {
    crate::device::open(crate::device::DeviceSpec::Auto).device
}

/// Splits `order` into batches of at most `max_tokens` tokens and `max_ctx` contexts.
pub fn make_batches(
    ctxs: &[EncodedContext],
    order: &[usize],
    max_tokens: usize,
    max_ctx: usize,
) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut tokens = 0;
    for &i in order {
        let n = ctxs[i].n_tokens();
        if !cur.is_empty() && (tokens + n > max_tokens || cur.len() >= max_ctx.max(1)) {
            out.push(std::mem::take(&mut cur));
            tokens = 0;
        }
        cur.push(i);
        tokens += n;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A trained model with everything needed to use it on new contexts.
pub struct TrainedModel {
    pub head: Head,
    pub model_cfg: ModelConfig,
    pub dims: ModelDims,
    pub encoder: Encoder,
    /// Regression target mean and standard deviation on the training contexts.
    pub target_norm: Option<(f64, f64)>,
    pub calibration: Calibration,
    pub history: Vec<EpochStats>,
    /// Tokens per batch at prediction time.
    pub predict_batch_tokens: usize,
    /// The trained networks (at least one): predictions average their raw outputs.
    members: Vec<Member>,
    /// The training history of every member after the first (`history` is the first's).
    pub member_history: Vec<Vec<EpochStats>>,
    device: Device,
}

/// One trained network of a model.
struct Member {
    varmap: VarMap,
    model: Model,
    /// `model`'s weights for the no-graph forward pass that predictions use (CPU).
    fast: Option<FastModel>,
}

fn check_labels(task: Head, ctxs: &[EncodedContext], need: bool) -> Result<(), TrainError> {
    for c in ctxs {
        match (c.label, task) {
            (None, _) if need => return Err(TrainError::BadLabel("missing label".into())),
            (None, _) => {}
            (Some(y), _) if !y.is_finite() => {
                return Err(TrainError::BadLabel(format!("non-finite label {y}")))
            }
            (Some(y), Head::Binary) if y != 0.0 && y != 1.0 => {
                return Err(TrainError::BadLabel(format!(
                    "binary label {y} is not 0 or 1"
                )))
            }
            (Some(y), Head::Multiclass { classes })
                if y < 0.0 || y.fract() != 0.0 || y as usize >= classes =>
            {
                return Err(TrainError::BadLabel(format!(
                    "class {y} is not in 0..{classes}"
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Trains a model on the CPU. `on_step` runs on the caller's thread after every step and
/// after every epoch; returning `false` cancels with [`TrainError::Cancelled`].
pub fn train(
    cfg: &TrainConfig,
    model_cfg: &ModelConfig,
    encoder: &Encoder,
    train: &[EncodedContext],
    val: &[EncodedContext],
    on_step: &mut dyn FnMut(&Progress) -> bool,
) -> Result<TrainedModel, TrainError> {
    train_on(&Device::Cpu, cfg, model_cfg, encoder, train, val, on_step)
}

/// Regression targets are trained as `(y − median) / scale`, the scale being the mean
/// absolute deviation from the median: the centre and spread an L1-type loss works in (a
/// heavy tail inflates the standard deviation and would squash the typical target).
fn target_norm(train: &[EncodedContext]) -> (f64, f64) {
    let mut ys: Vec<f64> = train
        .iter()
        .map(|c| c.label.unwrap_or(0.0) as f64)
        .collect();
    ys.sort_by(f64::total_cmp);
    let n = ys.len();
    let med = if n % 2 == 1 {
        ys[n / 2]
    } else {
        (ys[n / 2 - 1] + ys[n / 2]) / 2.0
    };
    let mad = ys.iter().map(|y| (y - med).abs()).sum::<f64>() / n.max(1) as f64;
    (med, if mad > 1e-12 { mad } else { 1.0 })
}

/// Fine-tuning reads the task as the pretrained reader does: its bucket count, every column
/// in a slot. Anything else would fail later, as a shape error, or read a column as
/// another.
fn check_pretrained_encoder(encoder: &Encoder) -> Result<(), TrainError> {
    let icl = crate::icl::IclConfig::default();
    let slots = 2..crate::icl::READER_COLUMNS as u32;
    if encoder.config.n_buckets != icl.n_buckets
        || !encoder.columns.values().all(|i| slots.contains(i))
    {
        return Err(TrainError::Other(format!(
            "fine-tuning needs the pretrained reader's encoding ({} buckets, columns in its {} slots)",
            icl.n_buckets,
            crate::icl::SLOTS
        )));
    }
    Ok(())
}

/// [`train`] on a given device.
pub fn train_on(
    dev: &Device,
    cfg: &TrainConfig,
    model_cfg: &ModelConfig,
    encoder: &Encoder,
    train: &[EncodedContext],
    val: &[EncodedContext],
    on_step: &mut dyn FnMut(&Progress) -> bool,
) -> Result<TrainedModel, TrainError> {
    if train.is_empty() {
        return Err(TrainError::NoTrainingData);
    }
    check_labels(cfg.head, train, true)?;
    check_labels(cfg.head, val, false)?;
    crate::threads::use_threads(crate::threads::configured());
    let dev = dev.clone();
    let target_norm = match cfg.head {
        Head::Regression => Some(target_norm(train)),
        _ => None,
    };
    if cfg.pretrained {
        check_pretrained_encoder(encoder)?;
    }
    let dims = ModelDims {
        // The pretrained reader's column embedding has a row per slot.
        n_columns: if cfg.pretrained {
            crate::icl::READER_COLUMNS
        } else {
            encoder.n_columns()
        },
        n_buckets: encoder.config.n_buckets as usize,
        n_out: cfg.head.n_out(),
    };
    let job = ensemble::MemberJob {
        cfg,
        model_cfg,
        dims: &dims,
        dev: &dev,
        train,
        val,
        target_norm,
    };
    let started = std::time::Instant::now();
    let (first, fitted) = ensemble::fit_member(&job, 0, cfg.time_budget_s, on_step)?;
    let first_s = started.elapsed().as_secs_f64();
    let (mut step, mut total_steps, mut start) = (fitted.steps, fitted.total_steps, fitted.start);
    let mut members = vec![first];
    let mut member_history = Vec::new();
    let left = || {
        cfg.time_budget_s
            .map(|b| b - started.elapsed().as_secs_f64())
    };
    while members.len() < cfg.members.max(1) && ensemble::room(left(), first_s) {
        let (m, f) = ensemble::fit_member(&job, members.len(), left(), on_step)?;
        (step, total_steps, start) = (f.steps, f.total_steps, f.start);
        members.push(m);
        member_history.push(f.history);
    }
    let mut tm = TrainedModel {
        head: cfg.head,
        model_cfg: model_cfg.clone(),
        dims,
        encoder: encoder.clone(),
        target_norm,
        calibration: Calibration::default(),
        history: fitted.history,
        predict_batch_tokens: cfg.batch_tokens * 4,
        members,
        member_history,
        device: dev,
    };
    if !val.is_empty() && val.iter().all(|c| c.label.is_some()) {
        let last = tm
            .member_history
            .last()
            .unwrap_or(&tm.history)
            .last()
            .map_or((0, 0.0), |h| (h.epoch, h.train_loss));
        let mut poll = fit::poller(on_step, last.0, step, total_steps, last.1, start);
        let raw = ensemble::mean_raw(
            &tm.members,
            val,
            tm.predict_batch_tokens,
            &tm.device,
            &mut poll,
        )?;
        let ys: Vec<f32> = val.iter().map(|c| c.label.unwrap_or(0.0)).collect();
        tm.calibration = Calibration::fit(cfg.head, &raw, &ys, target_norm);
    }
    Ok(tm)
}

impl TrainedModel {
    /// A 64-bit identity of this trained model: a hash of its task, shapes, training
    /// history (every epoch's loss and validation metric) and calibration. Two training
    /// runs differ in it unless they computed the very same floats (and so the same
    /// weights); it distinguishes models that share a database id across a re-created
    /// extension.
    pub fn fingerprint(&self) -> u64 {
        let s = serde_json::to_string(&(
            &self.head,
            &self.dims,
            &self.model_cfg,
            &self.history,
            &self.calibration,
            &self.target_norm,
        ))
        .unwrap_or_default();
        // A single network's identity is what it was before ensembles.
        let s = if self.member_history.is_empty() {
            s
        } else {
            s + &serde_json::to_string(&self.member_history).unwrap_or_default()
        };
        crate::base::hash::fnv1a(s.as_bytes())
    }
}

#[cfg(test)]
mod tests;
