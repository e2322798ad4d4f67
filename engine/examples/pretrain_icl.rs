//! Pretrains the in-context model on generated databases and scores it zero-shot on
//! benchmark seeds it never saw:
//! `cargo run --release -p rdl-engine --example pretrain_icl -- --out DIR
//! [--worlds N] [--scale tiny|small|medium] [--steps N] [--seed N] [--eval 1000,1002,...]
//! [--eval-scale small|medium] [--examples N] [--queries N] [--init DIR] [--eval-value-tasks]`
//!
//! `--eval-value-tasks` also scores the pretraining-only value tasks of the evaluation
//! seeds (never pretrained on: those seeds are not pretraining worlds), e.g. whether the
//! model reads a task positive for *low* values the right way round.
//! Pretraining worlds are seeds `0..N` (below 1000: never a benchmark seed). DIR gets
//! `icl.safetensors` and `card.json` (configuration, worlds, steps, losses, seconds, the
//! weights' SHA-256 and the zero-shot results). `--init DIR` starts from DIR's weights.

use std::path::PathBuf;
use std::time::Instant;

use candle_nn::VarMap;
use rdl_engine::dbgen::Scale;
use rdl_engine::icl::model::IclModel;
use rdl_engine::icl::pretrain::{pretrain, zero_shot, PretrainConfig, World};
use rdl_engine::icl::IclConfig;
use rdl_engine::sampler::SamplerConfig;

fn usage() -> ! {
    eprintln!(
        "usage: pretrain_icl --out DIR [--worlds N] [--scale S] [--steps N] [--seed N] \
         [--eval SEEDS] [--eval-scale S] [--examples N] [--queries N] [--init DIR] \
         [--eval-value-tasks]"
    );
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut out: Option<PathBuf> = None;
    let mut init: Option<PathBuf> = None;
    let (mut n_worlds, mut scale, mut eval_scale) = (16u64, Scale::Small, Scale::Medium);
    let mut eval: Vec<u64> = Vec::new();
    let mut value_tasks = false;
    let mut pc = PretrainConfig::default();
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--out" => out = Some(PathBuf::from(val())),
            "--init" => init = Some(PathBuf::from(val())),
            "--eval-value-tasks" => value_tasks = true,
            "--worlds" => n_worlds = val().parse().unwrap_or_else(|_| usage()),
            "--scale" => scale = Scale::parse(&val()).unwrap_or_else(|| usage()),
            "--eval-scale" => eval_scale = Scale::parse(&val()).unwrap_or_else(|| usage()),
            "--steps" => pc.steps = val().parse().unwrap_or_else(|_| usage()),
            "--seed" => pc.seed = val().parse().unwrap_or_else(|_| usage()),
            "--examples" => pc.examples = val().parse().unwrap_or_else(|_| usage()),
            "--queries" => pc.queries = val().parse().unwrap_or_else(|_| usage()),
            "--eval" => {
                eval = val()
                    .split(',')
                    .map(|s| s.trim().parse().unwrap_or_else(|_| usage()))
                    .collect()
            }
            _ => usage(),
        }
    }
    let out = out.unwrap_or_else(|| usage());
    assert!(n_worlds <= 1000, "pretraining seeds must stay below 1000");
    assert!(
        eval.iter().all(|&s| s >= 1000),
        "evaluation seeds start at 1000"
    );
    std::fs::create_dir_all(&out).expect("create the output directory");
    let cfg = IclConfig::default();
    let sc = SamplerConfig::default();
    let dev = candle_core::Device::Cpu;
    let mut varmap = VarMap::new();
    let model = IclModel::new(&cfg, &varmap, &dev).expect("model");
    if let Some(dir) = &init {
        varmap
            .load(dir.join("icl.safetensors"))
            .expect("load the initial weights");
    }
    let t0 = Instant::now();
    let mut worlds: Vec<World> = (0..n_worlds)
        .map(|s| World::for_pretraining(s, scale, sc))
        .collect();
    let n_tasks: usize = worlds.iter().map(|w| w.tasks.len()).sum();
    eprintln!(
        "{} worlds, {n_tasks} tasks generated in {:.0}s",
        worlds.len(),
        t0.elapsed().as_secs_f64()
    );
    let t1 = Instant::now();
    let mut window = Vec::new();
    let mut curve = Vec::new();
    pretrain(&model, &varmap, &mut worlds, &pc, &dev, |step, loss| {
        window.push(loss);
        if window.len() == 100 {
            let m = window.iter().sum::<f32>() / window.len() as f32;
            eprintln!(
                "step {:>6}  loss {m:.4}  {:.0}s",
                step + 1,
                t1.elapsed().as_secs_f64()
            );
            curve.push((step + 1, m));
            window.clear();
        }
    })
    .expect("pretraining");
    let train_s = t1.elapsed().as_secs_f64();
    let path = out.join("icl.safetensors");
    varmap.save(&path).expect("save the weights");
    let bytes = std::fs::read(&path).expect("read the weights back");
    let sha = sha256_hex(&bytes);
    let mut results = Vec::new();
    for seed in eval {
        let mut w = match value_tasks {
            true => World::for_pretraining(seed, eval_scale, sc),
            false => World::generate(seed, eval_scale, sc),
        };
        for t in 0..w.tasks.len() {
            let r = zero_shot(&model, &mut w, t, pc.examples, usize::MAX, &dev).expect("zero-shot");
            println!(
                "zero-shot seed {seed} {:<28} {:?} {:.4} ({} queries, {} examples each)",
                r.task, r.kind, r.metric, r.queries, r.examples
            );
            results.push(serde_json::json!({"seed": seed, "result": r}));
        }
    }
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let card = serde_json::json!({
        "model": "rdl in-context relational transformer",
        "date": rdl_engine::base::time::format_timestamp(now_us),
        "data": "generated databases only (engine/src/dbgen, seeds below 1000); no real data",
        "config": cfg,
        "pretrain": pc,
        "worlds": format!("dbgen seeds 0..{n_worlds} at {scale:?} scale"),
        "tasks": n_tasks,
        "loss_curve": curve,
        "train_seconds": train_s.round(),
        "init": init.map(|p| p.display().to_string()),
        "sha256": sha,
        "zero_shot": results,
    });
    std::fs::write(
        out.join("card.json"),
        serde_json::to_string_pretty(&card).expect("card"),
    )
    .expect("write the card");
    eprintln!(
        "wrote {} ({} bytes, sha256 {sha})",
        path.display(),
        bytes.len()
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}
