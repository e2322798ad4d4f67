//! Ensembles: a model may hold several networks of the same shape, each trained from its
//! own initialisation and shuffling, whose raw outputs are averaged. On small training
//! sets early stopping ends a run well inside the time budget, and the chosen epoch rests
//! on a noisy validation metric; a second or third run spends the time left on averaging
//! that noise away instead of leaving it unused.

use candle_core::Device;
use candle_nn::VarMap;

use super::fit::{self, Fitted};
use super::objective::Tabular;
use super::predict::{fast_model, raw_outputs};
use super::{Member, Progress, TrainConfig, TrainError};
use crate::encode::EncodedContext;
use crate::model::grad::FastTrainer;
use crate::model::{sorted_vars, Model, ModelConfig, ModelDims};

/// What training one member needs besides its index.
pub(super) struct MemberJob<'a> {
    pub cfg: &'a TrainConfig,
    pub model_cfg: &'a ModelConfig,
    pub dims: &'a ModelDims,
    pub dev: &'a Device,
    pub train: &'a [EncodedContext],
    pub val: &'a [EncodedContext],
    pub target_norm: Option<(f64, f64)>,
}

/// The configuration of member `i`: its own initialisation and shuffling seeds (member 0
/// is the single model rdl trained before ensembles).
fn member_model_config(cfg: &ModelConfig, i: usize) -> ModelConfig {
    ModelConfig {
        seed: cfg.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        ..cfg.clone()
    }
}

/// Trains member `i` within `budget_s` seconds.
pub(super) fn fit_member(
    job: &MemberJob,
    i: usize,
    budget_s: Option<f64>,
    on_step: &mut dyn FnMut(&Progress) -> bool,
) -> Result<(Member, Fitted), TrainError> {
    let varmap = VarMap::new();
    let model = Model::new(
        &member_model_config(job.model_cfg, i),
        job.dims,
        &varmap,
        job.dev,
    )?;
    if job.cfg.pretrained {
        crate::icl::shipped::start_reader(&varmap)?;
    }
    let vars: Vec<_> = sorted_vars(&varmap).into_iter().map(|(_, v)| v).collect();
    let cfg = TrainConfig {
        seed: job.cfg.seed.wrapping_add(i as u64 * 1_000_003),
        time_budget_s: budget_s,
        ..job.cfg.clone()
    };
    let mut obj = Tabular {
        cfg: &cfg,
        model: &model,
        n_buckets: job.dims.n_buckets,
        dev: job.dev,
        train: job.train,
        val: job.val,
        target_norm: job.target_norm,
        order: (0..job.train.len()).collect(),
        fast: if job.dev.is_cpu() {
            FastTrainer::new(&model)
        } else {
            None
        },
    };
    let fitted = fit::fit(&cfg.fit_config(), &vars, &mut obj, on_step)?;
    let fast = fast_model(&model, job.dev)?;
    Ok((
        Member {
            varmap,
            model,
            fast,
        },
        fitted,
    ))
}

/// Whether another member fits in `left` seconds (`None`: no budget): another run as long
/// as the first took, plus a tenth (no member is cut short by the budget: a run stopped
/// early by it would be a worse network, averaged in at full weight).
pub(super) fn room(left: Option<f64>, first_s: f64) -> bool {
    left.is_none_or(|l| l >= 1.1 * first_s)
}

/// The members' raw outputs, averaged (logits, or normalised regression values).
pub(super) fn mean_raw(
    members: &[Member],
    ctxs: &[EncodedContext],
    batch_tokens: usize,
    dev: &Device,
    poll: &mut dyn FnMut() -> bool,
) -> Result<Vec<Vec<f32>>, TrainError> {
    let mut out: Vec<Vec<f32>> = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let raw = raw_outputs(&m.model, m.fast.as_ref(), ctxs, batch_tokens, dev, poll)?;
        if i == 0 {
            out = raw;
        } else {
            out.iter_mut().zip(&raw).for_each(|(a, b)| add(a, b));
        }
    }
    let k = members.len().max(1) as f32;
    if k > 1.0 {
        out.iter_mut().flatten().for_each(|x| *x /= k);
    }
    Ok(out)
}

/// Adds `b` to `a` element by element (`a` empty: becomes `b`).
pub(super) fn add(a: &mut Vec<f32>, b: &[f32]) {
    if a.is_empty() {
        a.extend_from_slice(b);
    } else {
        a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
    }
}
