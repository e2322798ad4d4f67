//! Pretraining on generated databases and zero-shot evaluation, all in memory: the
//! generator's tasks give labels at every anchor ([`crate::dbgen::labels`]), its sampler
//! the contexts ([`crate::dbgen::gather`]).
//!
//! Pretraining uses seeds below 1000 only; benchmark seeds (1000 and up) are for
//! evaluation ([`crate::dbgen`]). A step is one episode: a random task of a random world,
//! a random query anchor, `queries` entities at it and `examples` labelled (entity,
//! anchor) pairs from the latest anchors whose label windows closed by then.

use candle_core::{Device, Tensor, Var};
use candle_nn::{Optimizer, ParamsAdamW, VarMap};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::model::IclModel;
use super::{draw, pick, Episode, IclConfig, IclTask};
use crate::base::time::add;
use crate::dbgen::gather::MemorySampler;
use crate::dbgen::labels::Evaluator;
use crate::dbgen::{generate, generate_for_pretraining, Database, DbConfig, Scale};
use crate::encode::Subgraph;
use crate::model::grad::{FastTrainer, Loss};
use crate::model::optim::FastAdamW;
use crate::model::{bce_with_logits, smooth_l1, SMOOTH_L1_BETA};
use crate::pql::{compile, TaskType};
use crate::sampler::{Plan, SamplerConfig};

/// The share of pretraining episodes whose labels are turned around (binary: the other
/// class; regression: negated). The generator's tasks mostly rise with activity, so a
/// model pretrained on them alone learnt that direction as a prior and answered a task
/// positive for *low* values (rel-f1 driver-top3: qualifying position ≤ 3) below chance;
/// with labels turned around in half the episodes, only the examples tell the direction.
pub const FLIP: f64 = 0.5;

fn db_config(scale: Scale) -> DbConfig {
    DbConfig {
        scale,
        ..DbConfig::default()
    }
}

/// One task of a world with its labels at every anchor.
pub struct WorldTask {
    pub name: String,
    pub task: IclTask,
    pub entity_table: String,
    /// `(window end, unit)`: a label at anchor `a` is known at `add(a, end, unit)`.
    horizon: (i64, crate::base::time::Unit),
    /// `(anchor, [(entity, label)])`, anchors ascending.
    pub anchors: Vec<(i64, Vec<(String, f64)>)>,
    /// The anchors of the task's own test split (for evaluation).
    pub test_anchors: Vec<i64>,
}

impl WorldTask {
    /// When a label at `anchor` becomes known: its window's end.
    pub fn closes(&self, anchor: i64) -> i64 {
        add(anchor, self.horizon.0, self.horizon.1)
    }
}

/// A generated database with its windowed binary and regression tasks.
pub struct World {
    pub db: Database,
    pub plan: Plan,
    pub tasks: Vec<WorldTask>,
    sampler: MemorySampler,
}

impl World {
    pub fn generate(seed: u64, scale: Scale, sampler: SamplerConfig) -> World {
        World::new(generate(seed, &db_config(scale)), sampler)
    }

    /// [`World::generate`] with the pretraining-only tasks too (pretraining seeds only).
    pub fn for_pretraining(seed: u64, scale: Scale, sampler: SamplerConfig) -> World {
        World::new(generate_for_pretraining(seed, &db_config(scale)), sampler)
    }

    pub fn new(db: Database, sampler: SamplerConfig) -> World {
        let graph = db.schema_graph();
        let plan = Plan::new(&graph, sampler);
        let mut tasks = Vec::new();
        for t in &db.tasks {
            let task = match t.task_type {
                TaskType::BinaryClassification => IclTask::Binary,
                TaskType::Regression => IclTask::Regression,
                _ => continue,
            };
            let Ok(spec) = compile(&t.query, &graph, &t.options) else {
                continue;
            };
            let (Some(w), Ok(ev)) = (spec.window, Evaluator::new(&db, &spec)) else {
                continue;
            };
            let mut anchors: Vec<(i64, Vec<(String, f64)>)> = Vec::new();
            let mut test_anchors = Vec::new();
            for split in ["train", "val", "test"] {
                for r in ev.split(split).unwrap_or_default() {
                    let Some(y) = r.label else { continue };
                    if split == "test" && test_anchors.last() != Some(&r.anchor) {
                        test_anchors.push(r.anchor);
                    }
                    match anchors.iter_mut().find(|a| a.0 == r.anchor) {
                        Some(a) => a.1.push((r.entity, y)),
                        None => anchors.push((r.anchor, vec![(r.entity, y)])),
                    }
                }
            }
            anchors.sort_by_key(|a| a.0);
            tasks.push(WorldTask {
                name: t.name.clone(),
                task,
                entity_table: spec.entity.table.clone(),
                horizon: (w.end, w.unit),
                anchors,
                test_anchors,
            });
        }
        World {
            db,
            plan,
            tasks,
            sampler: MemorySampler::new(),
        }
    }

    /// The contexts of `seeds` of task `t`'s entity table.
    pub fn contexts(&mut self, t: usize, seeds: &[(String, i64)]) -> Vec<Subgraph> {
        let table = self.tasks[t].entity_table.clone();
        self.sampler
            .gather(&self.db, &self.plan, &table, seeds)
            .contexts
    }

    /// Up to `n` labelled examples of task `t` known at `at` ([`draw`]) and the positive
    /// rate of the rows they were drawn from.
    pub fn examples(
        &self,
        t: usize,
        at: i64,
        n: usize,
        rng: &mut ChaCha8Rng,
    ) -> (Vec<(String, i64, f64)>, f64) {
        let task = &self.tasks[t];
        let groups: Vec<(i64, &[(String, f64)])> = (task.anchors.iter().rev())
            .filter(|(a, _)| task.closes(*a) <= at)
            .map(|(a, rows)| (*a, rows.as_slice()))
            .collect();
        draw(&groups, n, task.task, rng)
    }

    /// A random episode: task, query anchor, queries, examples (`None` when the drawn
    /// anchor has too few examples known).
    pub fn episode(
        &mut self,
        cfg: &IclConfig,
        n_examples: usize,
        n_queries: usize,
        rng: &mut ChaCha8Rng,
    ) -> Option<Episode> {
        if self.tasks.is_empty() {
            return None;
        }
        let t = rng.random_range(0..self.tasks.len());
        let task = &self.tasks[t];
        let (at, rows) = task.anchors.choose(rng)?;
        let at = *at;
        let qs = pick(rows, |x| x.1, n_queries, task.task, rng);
        let (ex, _) = self.examples(t, at, n_examples, rng);
        if ex.len() < n_examples / 2 || qs.is_empty() {
            return None;
        }
        let mut seeds: Vec<(String, i64)> = ex.iter().map(|e| (e.0.clone(), e.1)).collect();
        seeds.extend(qs.iter().map(|q| (q.0.clone(), at)));
        let mut y: Vec<f64> = ex.iter().map(|e| e.2).collect();
        y.extend(qs.iter().map(|q| q.1));
        let ctxs = self.contexts(t, &seeds);
        let kind = self.tasks[t].task;
        if rng.random_bool(FLIP) {
            for v in &mut y {
                *v = match kind {
                    IclTask::Binary => 1.0 - *v,
                    IclTask::Regression => -*v,
                };
            }
        }
        Some(Episode::new(
            cfg,
            kind,
            &ctxs,
            ex.len(),
            &y,
            rng.random::<u64>() | 1,
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainConfig {
    pub steps: usize,
    pub lr: f64,
    pub warmup: usize,
    pub examples: usize,
    pub queries: usize,
    pub seed: u64,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        PretrainConfig {
            steps: 2000,
            lr: 1e-3,
            warmup: 100,
            examples: 48,
            queries: 16,
            seed: 0,
        }
    }
}

/// The loss of an episode's queries and their outputs, from representations `r`.
fn episode_loss(
    model: &IclModel,
    ep: &Episode,
    r: &Tensor,
    dev: &Device,
) -> candle_core::Result<(Tensor, Tensor)> {
    let e = ep.n_examples;
    let target = Tensor::from_slice(&ep.labels[e..], ep.labels.len() - e, dev)?;
    let out = model.answer_episode(ep, r, dev)?;
    let loss = match ep.task {
        IclTask::Binary => bce_with_logits(&out, &target)?,
        IclTask::Regression => smooth_l1(&out, &target, SMOOTH_L1_BETA)?,
    };
    Ok((loss, out))
}

/// Pretrains `model` (its parameters in `varmap`) on episodes of `worlds`; `log` gets
/// each step's number and loss.
///
/// A step reads the episode's contexts with the fast forward pass, runs the in-context
/// blocks under candle's autograd from those representations, and hands their gradient
/// to the reader's hand-written backward ([`Loss::Repr`]): the reader, most of the work,
/// never runs under autograd.
pub fn pretrain(
    model: &IclModel,
    varmap: &VarMap,
    worlds: &mut [World],
    pc: &PretrainConfig,
    dev: &Device,
    mut log: impl FnMut(usize, f32),
) -> candle_core::Result<()> {
    let params = ParamsAdamW {
        lr: pc.lr,
        weight_decay: 0.01,
        ..ParamsAdamW::default()
    };
    let vars = varmap.all_vars();
    let mut opt = FastAdamW::new(vars.clone(), params)?;
    let mut trainer = FastTrainer::new(&model.reader)
        .ok_or_else(|| candle_core::Error::Msg("no fast path for this reader".into()))?;
    let mut rng = ChaCha8Rng::seed_from_u64(pc.seed);
    let mut step = 0;
    while step < pc.steps {
        let w = rng.random_range(0..worlds.len());
        let Some(ep) = worlds[w].episode(&model.cfg, pc.examples, pc.queries, &mut rng) else {
            continue;
        };
        // linear warmup, then a linear decay to a tenth
        let warm = ((step + 1) as f64 / pc.warmup.max(1) as f64).min(1.0);
        let decay = 1.0 - 0.9 * step as f64 / pc.steps as f64;
        opt.set_learning_rate(pc.lr * warm * decay);
        let (batch, r) = model.read_episode(&ep, dev)?;
        let r = Var::from_tensor(&r)?;
        let (loss, _) = episode_loss(model, &ep, r.as_tensor(), dev)?;
        let mut grads = loss.backward()?;
        let g = grads
            .remove(r.as_tensor())
            .ok_or_else(|| candle_core::Error::Msg("no gradient at the representations".into()))?;
        let (_, reader) = trainer.loss_and_grads(&model.reader, &batch, &g, Loss::Repr, None)?;
        for v in &vars {
            if let Some(t) = reader.get(v.as_tensor()) {
                grads.insert(v.as_tensor(), t.clone());
            }
        }
        opt.step(&grads)?;
        log(step, loss.to_scalar::<f32>()?);
        step += 1;
    }
    Ok(())
}

/// A zero-shot result on one task's test split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZeroShot {
    pub task: String,
    pub kind: IclTask,
    /// AUROC (binary) or MAE (regression) on the test rows scored.
    pub metric: f64,
    pub queries: usize,
    pub examples: usize,
}

/// Scores task `t`'s test split (at most `max_queries` rows, evenly spread) from
/// `n_examples` examples known at each test anchor.
pub fn zero_shot(
    model: &IclModel,
    world: &mut World,
    t: usize,
    n_examples: usize,
    max_queries: usize,
    dev: &Device,
) -> candle_core::Result<ZeroShot> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let task = &world.tasks[t];
    let mut rows: Vec<(String, i64, f64)> = Vec::new();
    for a in &task.test_anchors {
        if let Some((_, r)) = task.anchors.iter().find(|x| x.0 == *a) {
            rows.extend(r.iter().map(|(e, y)| (e.clone(), *a, *y)));
        }
    }
    let stride = rows.len().div_ceil(max_queries.max(1)).max(1);
    let rows: Vec<_> = rows.into_iter().step_by(stride).collect();
    let (kind, name) = (task.task, task.name.clone());
    let (mut pred, mut truth) = (Vec::new(), Vec::new());
    let anchors: Vec<i64> = world.tasks[t].test_anchors.clone();
    let mut n_ex = 0;
    for a in anchors {
        let qs: Vec<&(String, i64, f64)> = rows.iter().filter(|r| r.1 == a).collect();
        if qs.is_empty() {
            continue;
        }
        let (ex, rate) = world.examples(t, a, n_examples, &mut rng);
        n_ex = n_ex.max(ex.len());
        for chunk in qs.chunks(64) {
            let mut seeds: Vec<(String, i64)> = ex.iter().map(|e| (e.0.clone(), e.1)).collect();
            seeds.extend(chunk.iter().map(|q| (q.0.clone(), q.1)));
            let mut y: Vec<f64> = ex.iter().map(|e| e.2).collect();
            y.extend(chunk.iter().map(|q| q.2));
            let ctxs = world.contexts(t, &seeds);
            let ep = Episode::to_answer(&model.cfg, kind, &ctxs, ex.len(), &y).at_rate(rate);
            let (_, r) = model.read_episode(&ep, dev)?;
            let (_, out) = episode_loss(model, &ep, &r, dev)?;
            for (o, q) in out.to_vec1::<f32>()?.into_iter().zip(chunk) {
                pred.push(ep.value(o));
                truth.push(q.2);
            }
        }
    }
    let metric = match kind {
        IclTask::Binary => {
            let labels: Vec<bool> = truth.iter().map(|&y| y > 0.5).collect();
            crate::metrics::auroc(&pred, &labels).unwrap_or(f64::NAN)
        }
        IclTask::Regression => crate::metrics::mae(&pred, &truth).unwrap_or(f64::NAN),
    };
    Ok(ZeroShot {
        task: name,
        kind,
        metric,
        queries: pred.len(),
        examples: n_ex,
    })
}
