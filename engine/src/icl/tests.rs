//! In-context model tests: no label from after the query time in an episode, slots that
//! carry no database vocabulary, and pretraining that learns on generated databases.

use candle_core::Device;
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::model::IclModel;
use super::pretrain::{pretrain, PretrainConfig, World};
use super::*;
use crate::dbgen::Scale;
use crate::model::ModelConfig;
use crate::sampler::SamplerConfig;

fn tiny_cfg() -> IclConfig {
    IclConfig {
        model: ModelConfig {
            max_tokens: 96,
            ..ModelConfig::tiny()
        },
        n_buckets: 256,
        icl_blocks: 1,
    }
}

fn world(seed: u64) -> World {
    let sc = SamplerConfig {
        fanout: 6,
        max_rows: 40,
        ..SamplerConfig::default()
    };
    World::generate(seed, Scale::Tiny, sc)
}

/// Every example of an episode is a label whose window closed at or before the query
/// anchor, and its context holds nothing after the example's own anchor.
#[test]
fn no_label_from_after_the_query_time() {
    let mut w = world(11);
    assert!(!w.tasks.is_empty());
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut checked = 0;
    for t in 0..w.tasks.len() {
        let anchors: Vec<i64> = w.tasks[t].anchors.iter().map(|a| a.0).collect();
        for &at in anchors.iter().rev().take(3) {
            let (ex, _) = w.examples(t, at, 32, &mut rng);
            for (_, a, _) in &ex {
                let task = &w.tasks[t];
                let closes = task.closes(*a);
                assert!(
                    closes <= at,
                    "{}: example at {a} closes {closes} > {at}",
                    task.name
                );
            }
            let seeds: Vec<(String, i64)> = ex.iter().map(|e| (e.0.clone(), e.1)).collect();
            for (sg, (_, a)) in w.contexts(t, &seeds).iter().zip(&seeds) {
                assert!(sg.rows.iter().all(|r| r.time.is_none_or(|x| x <= *a)));
            }
            checked += ex.len();
        }
    }
    assert!(checked > 100, "only {checked} examples checked");
}

/// Columns are dealt to slots without their names mattering: the same contexts dealt
/// twice with the same draw give the same ids, another draw a permutation of them.
#[test]
fn slots_carry_no_vocabulary() {
    let mut w = world(12);
    let seeds: Vec<(String, i64)> = w.tasks[0].anchors[3]
        .1
        .iter()
        .take(8)
        .map(|(e, _)| (e.clone(), w.tasks[0].anchors[3].0))
        .collect();
    let ctxs = w.contexts(0, &seeds);
    let cfg = tiny_cfg();
    let a = fit_episode_encoder(&cfg, &ctxs, 5);
    let b = fit_episode_encoder(&cfg, &ctxs, 5);
    let c = fit_episode_encoder(&cfg, &ctxs, 6);
    assert_eq!(a.columns, b.columns);
    assert_ne!(a.columns, c.columns);
    let mut ids_a: Vec<u32> = a.columns.values().copied().collect();
    let mut ids_c: Vec<u32> = c.columns.values().copied().collect();
    ids_a.sort_unstable();
    ids_c.sort_unstable();
    assert_eq!(ids_a, ids_c);
    assert!(ids_a.iter().all(|&i| (2..2 + SLOTS as u32).contains(&i)));
}

/// Binary examples keep the classes' proportions (at least [`MIN_CLASS_SHARE`] each); a
/// shifted logit reads the natural rate again.
#[test]
fn binary_examples_keep_the_classes() {
    let items: Vec<f64> = (0..1000).map(|i| (i % 20 == 0) as u8 as f64).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let v = pick(&items, |&y| y, 64, IclTask::Binary, &mut rng);
    assert_eq!(v.len(), 64);
    let want = ((64.0 * MIN_CLASS_SHARE).ceil() as usize).max(3);
    assert_eq!(v.iter().filter(|&&y| y > 0.5).count(), want);
    // a logit of 0 at a 25% sample is the prior odds: at a 5% natural rate it reads
    // (0.05 / 0.95) / (0.25 / 0.75)
    let shifted = prior_shift(0.05, 0.25) as f64;
    let p = 1.0 / (1.0 + (-shifted).exp());
    let odds = (0.05 / 0.95) / (0.25 / 0.75);
    assert!((p / (1.0 - p) - odds).abs() < 1e-4);
}

#[test]
fn label_scale_round_trips() {
    let s = LabelScale::fit(IclTask::Regression, &[1.0, 2.0, 3.0, 10.0]);
    assert_eq!(s.center, 3.0);
    assert!((s.denorm(s.norm(7.5)) - 7.5).abs() < 1e-5);
    let b = LabelScale::fit(IclTask::Binary, &[0.0, 1.0]);
    assert_eq!(b.norm(1.0), 1.0);
}

/// A few hundred episodes of pretraining lower the query loss: the model reads labels
/// from the examples (a model that could not would stay at the loss of the base rate).
#[test]
fn pretraining_lowers_the_episode_loss() {
    let cfg = tiny_cfg();
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let model = IclModel::new(&cfg, &varmap, &dev).unwrap();
    let mut worlds: Vec<World> = (1..=3).map(world).collect();
    let pc = PretrainConfig {
        steps: 240,
        examples: 24,
        queries: 8,
        ..PretrainConfig::default()
    };
    let mut losses = Vec::new();
    pretrain(&model, &varmap, &mut worlds, &pc, &dev, |_, l| {
        losses.push(l)
    })
    .unwrap();
    let mean = |s: &[f32]| s.iter().sum::<f32>() / s.len() as f32;
    let (first, last) = (mean(&losses[..60]), mean(&losses[180..]));
    assert!(last < 0.9 * first, "loss {first} -> {last}");
}

/// The examples an answer in SQL draws (`pipeline::in_context`) are labels whose windows
/// closed by the answer's time, for any time asked.
#[test]
fn answers_draw_only_closed_labels() {
    use crate::dbgen::labels::Evaluator;
    use crate::pipeline::in_context;
    let w = world(13);
    let graph = w.db.schema_graph();
    for def in &w.db.tasks {
        let Ok(spec) = crate::pql::compile(&def.query, &graph, &def.options) else {
            continue;
        };
        let Some(win) = spec.window else { continue };
        let Ok(kind) = in_context::kind(&def.name, &spec) else {
            continue;
        };
        let ev = Evaluator::new(&w.db, &spec).unwrap();
        let mut known = Vec::new();
        for split in ["train", "val"] {
            for r in ev.split(split).unwrap() {
                if let Some(y) = r.label {
                    known.push((r.entity, r.anchor, y));
                }
            }
        }
        let test = ev.split("test").unwrap();
        let asked: Vec<i64> = test.iter().map(|r| r.anchor).chain([known[0].1]).collect();
        for as_of in asked.into_iter().step_by(50) {
            let (ex, _) = in_context::examples(&spec, kind, &known, as_of, 64);
            for (_, a, _) in &ex {
                let closes = crate::base::time::add(*a, win.end, win.unit);
                assert!(
                    closes <= as_of,
                    "{}: {a} closes {closes} after {as_of}",
                    def.name
                );
            }
        }
    }
}

/// The shipped weights fit the default configuration and answer a generated task
/// zero-shot better than chance.
#[test]
fn shipped_weights_answer() {
    let model = shipped::load().unwrap();
    let mut w = World::generate(1001, Scale::Tiny, SamplerConfig::default());
    let t = (0..w.tasks.len())
        .find(|&t| w.tasks[t].task == IclTask::Binary && w.tasks[t].name.ends_with("active"))
        .unwrap();
    let r = super::pretrain::zero_shot(&model, &mut w, t, 64, 400, &Device::Cpu).unwrap();
    assert!(r.metric > 0.6, "{r:?}");
}
