//! The pair-attention kernels alone (forward and backward) on the contexts of `speed_bench`:
//! nanoseconds per pair, per CPU second.
//!
//! `cargo run --release -p rdl-engine --example attn_bench`

use candle_core::Device;
use rdl_engine::encode::{EncodedContext, Encoder, EncoderConfig};
use rdl_engine::model::kernels::{attention_bwd, attention_fwd, AttnShape, Csr};
use rdl_engine::model::{Batch, ModelConfig};
use rdl_engine::train::synth::churn_dataset;

fn cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0) as f64
        * 1e-9
}

fn main() -> candle_core::Result<()> {
    let n_ctx: usize = std::env::var("N_CTX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let data = churn_dataset(n_ctx, 80, 4000, 1);
    let sgs: Vec<_> = data.iter().map(|(s, _)| s.clone()).collect();
    let enc = Encoder::fit(EncoderConfig::default(), &sgs);
    let ecs: Vec<EncodedContext> = sgs.iter().map(|s| enc.encode(s)).collect();
    let cfg = ModelConfig::small();
    let refs: Vec<&EncodedContext> = ecs.iter().collect();
    let b = Batch::new(&refs, &cfg, 4096, &Device::Cpu)?;
    let n = b.n_tokens;
    let (d, h) = (cfg.d_model, cfg.heads);
    let qkv: Vec<f32> = (0..n * 3 * d).map(|i| ((i as f32) * 0.013).sin()).collect();
    let dout: Vec<f32> = (0..n * d).map(|i| ((i as f32) * 0.007).cos()).collect();
    let sink = vec![0.1f32; h];
    for (kind, p) in &b.attn {
        let csr = Csr::from_pairs(n, &p.q_host, &p.k_host);
        let np = csr.keys.len();
        let order = if std::env::args().any(|a| a == "unordered") {
            Vec::new()
        } else {
            csr.query_order(0, n, 0)
        };
        let s = AttnShape {
            off: &csr.off,
            keys: &csr.keys,
            base: 0,
            qrow: &[],
            order: &order,
            heads: h,
            d,
        };
        let mut out = vec![0f32; n * d];
        let mut w = vec![0f32; np * h];
        let mut ws = vec![0f32; n * h];
        let mut scratch = Vec::new();
        let reps = (40_000_000 / np.max(1)).max(3);
        let c = cpu_s();
        for _ in 0..reps {
            attention_fwd(s, &qkv, &sink, &mut out, &mut w, &mut ws, &mut scratch);
        }
        let fwd = (cpu_s() - c) / (reps * np) as f64 * 1e9;
        let mut dqkv = vec![0f32; n * 3 * d];
        let mut dsink = vec![0f32; h];
        let c = cpu_s();
        for _ in 0..reps {
            attention_bwd(s, &qkv, &w, &ws, &dout, &mut dqkv, &mut dsink, &mut scratch);
        }
        let bwd = (cpu_s() - c) / (reps * np) as f64 * 1e9;
        println!(
            "{kind:?}: {:.1} pairs per query, forward {fwd:.1} ns/pair, backward {bwd:.1} ns/pair",
            np as f64 / n as f64
        );
    }
    Ok(())
}
