//! Cost of one ranking training step and of scoring, by part: entity tower, item tower,
//! pair scorer + loss, backward. Contexts come from the synthetic churn dataset, cut to
//! the entity and item token caps.
//!
//! `cargo run --release --example rank_bench -p rdl-engine [-- B I ENTITY_TOKENS ITEM_TOKENS]`

use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rdl_engine::encode::{EncodedContext, Encoder, EncoderConfig};
use rdl_engine::model::{ModelConfig, ModelDims};
use rdl_engine::rank::model::{sampled_softmax, RankBatch, RankModel};
use rdl_engine::rank::{RankConfig, N_FEATS};
use rdl_engine::train::synth::churn_dataset;

fn contexts(n: usize, max_tokens: usize) -> (Encoder, Vec<EncodedContext>) {
    let data = churn_dataset(n, max_tokens / 2, max_tokens * 2, 7);
    let sgs: Vec<_> = data.iter().map(|(s, _)| s.clone()).collect();
    let enc = Encoder::fit(
        EncoderConfig {
            max_tokens,
            n_buckets: 4096,
        },
        &sgs,
    );
    let ecs = sgs.iter().map(|s| enc.encode(s)).collect();
    (enc, ecs)
}

fn main() -> candle_core::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let b = *args.first().unwrap_or(&32);
    let i = *args.get(1).unwrap_or(&128);
    let et = *args.get(2).unwrap_or(&256);
    let it = *args.get(3).unwrap_or(&96);
    let dev = Device::Cpu;
    let (enc, ents) = contexts(b, et);
    let (_, items) = contexts(i, it);
    let cfg = ModelConfig::small();
    let rc = RankConfig::default();
    let dims = ModelDims {
        n_columns: enc.n_columns(),
        n_buckets: 4096,
        n_out: 1,
    };
    let vm = VarMap::new();
    let model = RankModel::new(&cfg, &dims, &rc, &vm, &dev)?;
    let er: Vec<_> = ents.iter().collect();
    let ir: Vec<_> = items.iter().collect();
    let tok = |v: &[&EncodedContext]| v.iter().map(|c| c.n_tokens()).sum::<usize>();
    println!(
        "batch: {b} entities ({} tokens), {i} items ({} tokens), threads {}",
        tok(&er),
        tok(&ir),
        rdl_engine::threads::configured()
    );
    {
        let eb = RankBatch::new(&er, &cfg, 4096, &dev)?;
        let ib = RankBatch::new(&ir, &cfg, 4096, &dev)?;
        println!(
            "attention pairs: entities {} ({:?}), items {}",
            eb.batch.n_pairs(),
            eb.batch
                .attn
                .iter()
                .map(|(k, p)| (*k, p.len()))
                .collect::<Vec<_>>(),
            ib.batch.n_pairs()
        );
    }
    let pos: Vec<Vec<usize>> = (0..b).map(|x| vec![x % i]).collect();
    let ft = Tensor::zeros((b * i, N_FEATS), candle_core::DType::F32, &dev)?;
    let mut times = [0f64; 5];
    let reps = 3;
    for _ in 0..reps {
        let t = Instant::now();
        let eb = RankBatch::new(&er, &cfg, 4096, &dev)?;
        let ib = RankBatch::new(&ir, &cfg, 4096, &dev)?;
        times[0] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let e = model.entity_repr(&eb, None)?;
        times[1] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let v = model.item_repr(&ib, None)?;
        times[2] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let s = model.score_matrix(&e, &v, &ft)?;
        let loss = sampled_softmax(&s, &pos)?.expect("positives");
        times[3] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let _ = loss.backward()?;
        times[4] += t.elapsed().as_secs_f64();
    }
    let names = [
        "batch layout",
        "entity tower",
        "item tower",
        "scorer+loss",
        "backward",
    ];
    let total: f64 = times.iter().sum::<f64>() / reps as f64;
    for (n, t) in names.iter().zip(times) {
        println!("{n:>14}: {:7.1} ms", 1e3 * t / reps as f64);
    }
    println!("{:>14}: {:7.1} ms per step", "total", 1e3 * total);
    Ok(())
}
