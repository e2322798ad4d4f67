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
pub mod explain;
pub mod fit;
pub mod synth;

use std::collections::HashMap;
use std::fmt;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::encode::{EncodedContext, Encoder};
use crate::metrics;
use crate::model::grad::{FastTrainer, Loss};
use crate::model::infer::FastModel;
use crate::model::{
    bce_with_logits, cross_entropy, huber, sorted_vars, Batch, Model, ModelConfig, ModelDims,
};
pub use calibrate::Calibration;
pub use fit::Schedule;
use fit::{FitConfig, Objective};

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
    varmap: VarMap,
    model: Model,
    /// `model`'s weights for the no-graph forward pass that predictions use (CPU).
    fast: Option<FastModel>,
    device: Device,
}

/// The fast forward pass of `model` on the CPU, when its configuration allows.
fn fast_model(model: &Model, dev: &Device) -> Result<Option<FastModel>, TrainError> {
    Ok(if dev.is_cpu() {
        FastModel::new(model)?
    } else {
        None
    })
}

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

/// Raw model outputs (`[n_out]` per context) in batches of `batch_tokens`. `poll` runs
/// before every batch; `false` stops with [`TrainError::Cancelled`].
/// With `fast` (the same model's weights), outputs come from its no-graph forward pass.
fn raw_outputs(
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
struct Tabular<'a> {
    cfg: &'a TrainConfig,
    model: &'a Model,
    n_buckets: usize,
    dev: &'a Device,
    train: &'a [EncodedContext],
    val: &'a [EncodedContext],
    target_norm: Option<(f64, f64)>,
    order: Vec<usize>,
    /// The hand-written forward and backward (CPU), when the configuration allows.
    fast: Option<FastTrainer>,
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
            Head::Regression => huber(&out, &y)?,
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
            Head::Regression => Loss::Huber,
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
        Head::Regression => {
            let ys: Vec<f64> = train
                .iter()
                .map(|c| c.label.unwrap_or(0.0) as f64)
                .collect();
            let m = ys.iter().sum::<f64>() / ys.len() as f64;
            let v = ys.iter().map(|y| (y - m).powi(2)).sum::<f64>() / ys.len() as f64;
            Some((m, if v.sqrt() > 1e-12 { v.sqrt() } else { 1.0 }))
        }
        _ => None,
    };
    let dims = ModelDims {
        n_columns: encoder.n_columns(),
        n_buckets: encoder.config.n_buckets as usize,
        n_out: cfg.head.n_out(),
    };
    let varmap = VarMap::new();
    let model = Model::new(model_cfg, &dims, &varmap, &dev)?;
    let vars: Vec<_> = sorted_vars(&varmap).into_iter().map(|(_, v)| v).collect();
    let mut obj = Tabular {
        cfg,
        model: &model,
        n_buckets: dims.n_buckets,
        dev: &dev,
        train,
        val,
        target_norm,
        order: (0..train.len()).collect(),
        fast: if dev.is_cpu() {
            FastTrainer::new(&model)
        } else {
            None
        },
    };
    let fitted = fit::fit(&cfg.fit_config(), &vars, &mut obj, on_step)?;
    let (history, step, total_steps, start) = (
        fitted.history,
        fitted.steps,
        fitted.total_steps,
        fitted.start,
    );
    let mut tm = TrainedModel {
        head: cfg.head,
        model_cfg: model_cfg.clone(),
        dims,
        encoder: encoder.clone(),
        target_norm,
        calibration: Calibration::default(),
        history,
        predict_batch_tokens: cfg.batch_tokens * 4,
        fast: fast_model(&model, &dev)?,
        varmap,
        model,
        device: dev,
    };
    if !val.is_empty() && val.iter().all(|c| c.label.is_some()) {
        let last = tm
            .history
            .last()
            .map_or((0, 0.0), |h| (h.epoch, h.train_loss));
        let mut poll = fit::poller(on_step, last.0, step, total_steps, last.1, start);
        let raw = raw_outputs(
            &tm.model,
            tm.fast.as_ref(),
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

pub(crate) const META_FORMAT: &str = "rdl.format";
const FORMAT_VERSION: &str = "1";

/// JSON of stored metadata fields, whatever their type.
pub(crate) mod erased {
    pub trait Json {
        fn json(&self) -> Result<String, super::TrainError>;
    }

    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> Result<String, super::TrainError> {
            serde_json::to_string(self).map_err(|e| super::TrainError::Format(e.to_string()))
        }
    }
}

/// Safetensors bytes of every variable of `varmap`, with `fields` (JSON) and the format
/// version in the metadata.
pub(crate) fn store_bytes(
    varmap: &VarMap,
    format: &str,
    fields: &[(&str, String)],
) -> Result<Vec<u8>, TrainError> {
    let mut meta: HashMap<String, String> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    meta.insert(META_FORMAT.to_string(), format.to_string());
    let tensors: Vec<(String, Tensor)> = sorted_vars(varmap)
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    safetensors::tensor::serialize(tensors, Some(meta))
        .map_err(|e| TrainError::Format(e.to_string()))
}

/// The metadata of stored model bytes, checked to be of `format` (every model kind writes
/// its own format version under [`META_FORMAT`]).
pub(crate) fn stored_meta(
    bytes: &[u8],
    format: &str,
) -> Result<HashMap<String, String>, TrainError> {
    let bad = |s: String| TrainError::Format(s);
    let (_, md) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let meta = md
        .metadata()
        .clone()
        .ok_or_else(|| bad("no metadata".into()))?;
    if meta.get(META_FORMAT).map(String::as_str) != Some(format) {
        return Err(bad(format!("not an rdl model of format {format}")));
    }
    Ok(meta)
}

/// One JSON field of stored metadata.
pub(crate) fn meta_field<T: serde::de::DeserializeOwned>(
    meta: &HashMap<String, String>,
    k: &str,
) -> Result<T, TrainError> {
    let s = meta
        .get(k)
        .ok_or_else(|| TrainError::Format(format!("missing {k}")))?;
    serde_json::from_str(s).map_err(|e| TrainError::Format(format!("{k}: {e}")))
}

/// Sets every variable of `varmap` from stored bytes, each checked to have its shape.
pub(crate) fn load_vars(varmap: &VarMap, bytes: &[u8], dev: &Device) -> Result<(), TrainError> {
    let loaded = candle_core::safetensors::load_buffer(bytes, dev)?;
    for (name, var) in sorted_vars(varmap) {
        let t = loaded
            .get(&name)
            .ok_or_else(|| TrainError::Format(format!("missing tensor {name}")))?;
        if t.dims() != var.dims() {
            return Err(TrainError::Format(format!(
                "tensor {name} has shape {:?}",
                t.dims()
            )));
        }
        var.set(t)?;
    }
    Ok(())
}

impl TrainedModel {
    /// Raw outputs (logits, or normalised regression values) per context.
    pub fn raw(&self, ctxs: &[EncodedContext]) -> Result<Vec<Vec<f32>>, TrainError> {
        raw_outputs(
            &self.model,
            self.fast.as_ref(),
            ctxs,
            self.predict_batch_tokens,
            &self.device,
            &mut || true,
        )
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
        crate::base::hash::fnv1a(s.as_bytes())
    }

    /// Safetensors bytes: the weights, with the task, configs, encoder, normalisation,
    /// calibration and history as JSON strings in the metadata.
    pub fn to_bytes(&self) -> Result<Vec<u8>, TrainError> {
        let j = |v: &dyn erased::Json| v.json();
        store_bytes(
            &self.varmap,
            FORMAT_VERSION,
            &[
                ("task", j(&self.head)?),
                ("model_config", j(&self.model_cfg)?),
                ("dims", j(&self.dims)?),
                ("encoder", j(&self.encoder)?),
                ("target_norm", j(&self.target_norm)?),
                ("calibration", j(&self.calibration)?),
                ("history", j(&self.history)?),
            ],
        )
    }

    /// A model from [`TrainedModel::to_bytes`], on the CPU.
    pub fn from_bytes(bytes: &[u8]) -> Result<TrainedModel, TrainError> {
        Self::from_bytes_on(bytes, &Device::Cpu)
    }

    /// A model from [`TrainedModel::to_bytes`], its weights on `dev`.
    pub fn from_bytes_on(bytes: &[u8], dev: &Device) -> Result<TrainedModel, TrainError> {
        let meta = stored_meta(bytes, FORMAT_VERSION)?;
        let head: Head = meta_field(&meta, "task")?;
        let model_cfg: ModelConfig = meta_field(&meta, "model_config")?;
        let dims: ModelDims = meta_field(&meta, "dims")?;
        let dev = dev.clone();
        model_cfg.check_stored_size(&dims, bytes.len())?;
        let varmap = VarMap::new();
        let model = Model::new(&model_cfg, &dims, &varmap, &dev)?;
        load_vars(&varmap, bytes, &dev)?;
        Ok(TrainedModel {
            head,
            model_cfg,
            dims,
            encoder: meta_field(&meta, "encoder")?,
            target_norm: meta_field(&meta, "target_norm")?,
            calibration: meta_field(&meta, "calibration")?,
            history: meta_field(&meta, "history")?,
            predict_batch_tokens: 8192,
            fast: fast_model(&model, &dev)?,
            varmap,
            model,
            device: dev,
        })
    }
}

#[cfg(test)]
mod tests;
