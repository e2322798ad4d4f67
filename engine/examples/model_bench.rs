//! Training and inference throughput of `ModelConfig::small()`, sparse vs dense attention.
//!
//! `cargo run --release --example model_bench -p rdl-engine`

use std::time::Instant;

use candle_core::Device;
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use rdl_engine::encode::{EncodedContext, Encoder, EncoderConfig};
use rdl_engine::model::{bce_with_logits, sorted_vars, Batch, Model, ModelConfig, ModelDims};
use rdl_engine::train::synth::encoded_churn;

struct Row {
    tokens: usize,
    avg_tokens: f64,
    attn: &'static str,
    pairs_per_ctx: f64,
    train_steps_s: f64,
    train_ctx_s: f64,
    fwd_ctx_s: f64,
}

fn contexts(max_tokens: usize, n: usize) -> (Encoder, Vec<EncodedContext>) {
    // enough orders that every context fills its token budget
    let orders = max_tokens / 2;
    let cfg = EncoderConfig {
        max_tokens,
        n_buckets: 4096,
    };
    encoded_churn(n, orders, orders * 4, 1, cfg)
}

fn bench(
    max_tokens: usize,
    dense: bool,
    batch_ctx: usize,
    steps: usize,
) -> candle_core::Result<Row> {
    let dev = Device::Cpu;
    let (enc, ecs) = contexts(max_tokens, batch_ctx * 4);
    let mut cfg = ModelConfig::small();
    cfg.max_tokens = max_tokens;
    cfg.dense_attention = dense;
    let dims = ModelDims {
        n_columns: enc.n_columns(),
        n_buckets: enc.config.n_buckets as usize,
        n_out: 1,
    };
    let vm = VarMap::new();
    let model = Model::new(&cfg, &dims, &vm, &dev)?;
    let vars: Vec<_> = sorted_vars(&vm).into_iter().map(|(_, v)| v).collect();
    let mut opt = AdamW::new(vars, ParamsAdamW::default())?;
    let batches: Vec<Batch> = ecs
        .chunks(batch_ctx)
        .map(|c| {
            let refs: Vec<&EncodedContext> = c.iter().collect();
            Batch::new(&refs, &cfg, dims.n_buckets, &dev)
        })
        .collect::<candle_core::Result<_>>()?;
    let avg_tokens = ecs.iter().map(|c| c.n_tokens()).sum::<usize>() as f64 / ecs.len() as f64;
    let pairs = batches.iter().map(|b| b.n_pairs()).sum::<usize>() as f64 / ecs.len() as f64;
    let ys: Vec<_> = batches
        .iter()
        .map(|b| {
            let y: Vec<f32> = b.labels.iter().map(|l| l.unwrap_or(0.0)).collect();
            candle_core::Tensor::from_vec(y, (b.n_ctx, 1), &dev)
        })
        .collect::<candle_core::Result<_>>()?;
    // warm-up
    let l = bce_with_logits(&model.forward(&batches[0], None)?, &ys[0])?;
    opt.step(&l.backward()?)?;
    let t = Instant::now();
    for i in 0..steps {
        let b = i % batches.len();
        let l = bce_with_logits(&model.forward(&batches[b], None)?, &ys[b])?;
        opt.step(&l.backward()?)?;
    }
    let train_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let fwd_steps = steps * 2;
    for i in 0..fwd_steps {
        model.forward(&batches[i % batches.len()], None)?;
    }
    let fwd_s = t.elapsed().as_secs_f64();
    eprintln!("tokens/ctx {avg_tokens:.0} dense={dense} done");
    Ok(Row {
        tokens: max_tokens,
        avg_tokens,
        attn: if dense { "dense" } else { "sparse" },
        pairs_per_ctx: pairs,
        train_steps_s: steps as f64 / train_s,
        train_ctx_s: (steps * batch_ctx) as f64 / train_s,
        fwd_ctx_s: (fwd_steps * batch_ctx) as f64 / fwd_s,
    })
}

fn main() -> candle_core::Result<()> {
    let batch_ctx = 8;
    let mut rows = Vec::new();
    for &tokens in &[128usize, 512] {
        let steps = if tokens == 128 { 20 } else { 6 };
        for dense in [false, true] {
            rows.push(bench(tokens, dense, batch_ctx, steps)?);
        }
    }
    println!(
        "ModelConfig::small(), batch {batch_ctx} contexts, {} threads",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "| max tokens/ctx | mean tokens/ctx | attention | pairs/ctx | train steps/s | train ctx/s | forward ctx/s |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.0} | {} | {:.0} | {:.2} | {:.1} | {:.1} |",
            r.tokens,
            r.avg_tokens,
            r.attn,
            r.pairs_per_ctx,
            r.train_steps_s,
            r.train_ctx_s,
            r.fwd_ctx_s
        );
    }
    Ok(())
}
