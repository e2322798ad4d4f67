//! Speed of the training step and of inference, candle's path against the fast paths
//! (`model::grad`, `model::infer`), with achieved GFLOP/s against this machine's measured
//! matrix-product peak.
//!
//! `cargo run --release -p rdl-engine --example speed_bench [-- quick]`
//!
//! Data: the synthetic churn task (customers → orders → products) with up to 80 orders per
//! customer: about 200 tokens per context (256 at most), the shape of rel-f1's contexts.

use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use rdl_engine::encode::{EncodedContext, Encoder, EncoderConfig};
use rdl_engine::model::grad::{FastTrainer, Loss};
use rdl_engine::model::infer::FastModel;
use rdl_engine::model::{bce_with_logits, sorted_vars, Batch, Model, ModelConfig, ModelDims};
use rdl_engine::train::make_batches;
use rdl_engine::train::synth::churn_dataset;

type R<T> = candle_core::Result<T>;

fn contexts(n: usize) -> (Encoder, Vec<EncodedContext>) {
    let data = churn_dataset(n, 80, 4000, 1);
    let sgs: Vec<_> = data.iter().map(|(s, _)| s.clone()).collect();
    let enc = Encoder::fit(EncoderConfig::default(), &sgs);
    let ecs = data
        .iter()
        .map(|(s, y)| enc.encode_labeled(s, *y))
        .collect();
    (enc, ecs)
}

fn pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .expect("pool")
}

/// Runs `f` on `threads` threads: rayon's pool and candle's matmul both.
fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    pool(threads).install(f)
}

/// Forward FLOPs of one context: projections (2·in·out per token and matrix) and the pairs
/// (2·d for the score, 2·d for the weighted value, per pair).
fn fwd_flops(cfg: &ModelConfig, tokens: usize, pairs: usize) -> f64 {
    let d = cfg.d_model as f64;
    let h = d * cfg.ffn_mult as f64;
    let kinds = rdl_engine::model::attn_kinds(cfg).len() as f64;
    let per_token = cfg.blocks as f64 * (kinds * 2.0 * 4.0 * d * d + 2.0 * 3.0 * h * d);
    tokens as f64 * per_token + pairs as f64 * 4.0 * d
}

/// GFLOP/s of gemm on `m×k · k×n`: one thread, and two threads on one product.
fn gemm_peak(m: usize, n: usize, k: usize) -> (f64, f64, f64) {
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0f32; m * n];
    let flops = 2.0 * (m * n * k) as f64;
    let run = |c: &mut [f32], par: gemm::Parallelism| {
        // SAFETY: buffers sized for the shapes; row-major strides.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                k as isize,
                b.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                par,
            )
        }
    };
    let reps = ((2e9 / flops) as usize).max(3);
    let time = |c: &mut [f32], par: gemm::Parallelism| {
        run(c, par);
        let t = Instant::now();
        for _ in 0..reps {
            run(c, par);
        }
        flops * reps as f64 / t.elapsed().as_secs_f64() / 1e9
    };
    let one = time(&mut c, gemm::Parallelism::None);
    let two = pool(2).install(|| time(&mut c, gemm::Parallelism::Rayon(2)));
    // two independent single-threaded products at once (what the fast paths do)
    let mut c2 = vec![0f32; m * n];
    let t = Instant::now();
    rayon::join(
        || {
            for _ in 0..reps {
                run(&mut c, gemm::Parallelism::None)
            }
        },
        || {
            for _ in 0..reps {
                run(&mut c2, gemm::Parallelism::None)
            }
        },
    );
    let indep = 2.0 * flops * reps as f64 / t.elapsed().as_secs_f64() / 1e9;
    (one, two, indep)
}

struct Setup {
    cfg: ModelConfig,
    dims: ModelDims,
    ecs: Vec<EncodedContext>,
}

fn new_model(s: &Setup) -> R<(VarMap, Model)> {
    let vm = VarMap::new();
    let m = Model::new(&s.cfg, &s.dims, &vm, &Device::Cpu)?;
    Ok((vm, m))
}

fn labels(b: &Batch) -> R<Tensor> {
    let y: Vec<f32> = b.labels.iter().map(|l| l.unwrap_or(0.0)).collect();
    Tensor::from_vec(y, (b.n_ctx, 1), &Device::Cpu)
}

/// Steps/s and losses of `steps` training steps over `batches` (candle or fast path).
fn train_run(s: &Setup, batches: &[Batch], steps: usize, fast: bool) -> R<(f64, Vec<f32>)> {
    let (vm, model) = new_model(s)?;
    let vars: Vec<_> = sorted_vars(&vm).into_iter().map(|(_, v)| v).collect();
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: 3e-3,
            weight_decay: 0.01,
            ..Default::default()
        },
    )?;
    let mut ft = FastTrainer::new(&model).expect("supported");
    let ys: Vec<Tensor> = batches.iter().map(labels).collect::<R<_>>()?;
    let mut losses = Vec::with_capacity(steps);
    let mut step = |i: usize| -> R<()> {
        let b = i % batches.len();
        let (loss, grads) = if fast {
            ft.loss_and_grads(&model, &batches[b], &ys[b], Loss::Bce, None)?
        } else {
            let l = bce_with_logits(&model.forward(&batches[b], None)?, &ys[b])?;
            let g = l.backward()?;
            (l, g)
        };
        opt.step(&grads)?;
        losses.push(loss.to_scalar::<f32>()?);
        Ok(())
    };
    step(0)?; // warm-up (allocations)
    let t = Instant::now();
    for i in 1..=steps {
        step(i)?;
    }
    Ok((steps as f64 / t.elapsed().as_secs_f64(), losses))
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn main() -> R<()> {
    let quick = std::env::args().any(|a| a == "quick");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (enc, ecs) = contexts(if quick { 256 } else { 512 });
    let cfg = ModelConfig::small();
    let dims = ModelDims {
        n_columns: enc.n_columns(),
        n_buckets: enc.config.n_buckets as usize,
        n_out: 1,
    };
    let s = Setup { cfg, dims, ecs };
    let dev = Device::Cpu;
    let tokens: usize = s.ecs.iter().map(|c| c.n_tokens()).sum();
    let all_refs: Vec<&EncodedContext> = s.ecs.iter().collect();
    let all = Batch::new(&all_refs, &s.cfg, s.dims.n_buckets, &dev)?;
    let pairs = all.n_pairs();
    let n = s.ecs.len() as f64;
    let flops_ctx = fwd_flops(&s.cfg, tokens, pairs) / n;
    println!(
        "# ModelConfig::small(): {} contexts, {:.0} tokens and {:.0} pairs per context, {:.1} MFLOP per context forward; {threads} cores",
        s.ecs.len(),
        tokens as f64 / n,
        pairs as f64 / n,
        flops_ctx / 1e6
    );

    // machine peak
    println!(
        "\n## gemm f32 peak (GFLOP/s): 1 thread | 2 threads on one product | 2 products at once"
    );
    let mut peak1 = 0f64;
    let mut peak2 = 0f64;
    for (m, nn, k) in [
        (256, 256, 256),
        (4096, 64, 64),
        (1024, 192, 64),
        (64, 64, 1024),
    ] {
        let (a, b, c) = gemm_peak(m, nn, k);
        peak1 = peak1.max(a);
        peak2 = peak2.max(b.max(c));
        println!("| {m}x{k} · {k}x{nn} | {a:.1} | {b:.1} | {c:.1} |");
    }
    println!("peak used below: {peak1:.1} GFLOP/s one thread, {peak2:.1} two threads");

    // training
    let order: Vec<usize> = (0..s.ecs.len()).collect();
    println!("\n## training step (forward + backward + AdamW), BCE");
    println!("| batch | path | threads | steps/s | examples/s | GFLOP/s | % peak |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (label, bt, bc) in [
        ("2048 tokens (TrainConfig default)", 2048, 64),
        ("64 contexts", 1 << 20, 64),
    ] {
        let bidx = make_batches(&s.ecs, &order, bt, bc);
        let batches: Vec<Batch> = bidx
            .iter()
            .map(|b| {
                let r: Vec<&EncodedContext> = b.iter().map(|&i| &s.ecs[i]).collect();
                Batch::new(&r, &s.cfg, s.dims.n_buckets, &dev)
            })
            .collect::<R<_>>()?;
        let per_batch = s.ecs.len() as f64 / batches.len() as f64;
        for th in [1, threads] {
            for fast in [false, true] {
                let steps = match (fast, bc == 64 && bt > 4096, quick) {
                    (false, true, _) => 3,
                    (false, false, _) => 8,
                    (true, _, true) => 10,
                    (true, _, false) => 30,
                };
                let (sps, _) = with_threads(th, || train_run(&s, &batches, steps, fast))?;
                let ex = sps * per_batch;
                let gf = ex * 3.0 * flops_ctx / 1e9;
                let pk = if th == 1 { peak1 } else { peak2 };
                println!(
                    "| {label} | {} | {th} | {sps:.2} | {ex:.0} | {gf:.1} | {:.0}% |",
                    if fast { "fast" } else { "candle" },
                    100.0 * gf / pk
                );
            }
        }
        if bt == 2048 {
            let steps = if quick { 20 } else { 40 };
            let (_, a) = with_threads(threads, || train_run(&s, &batches, steps, false))?;
            let (_, b) = with_threads(threads, || train_run(&s, &batches, steps, true))?;
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs() / x.abs().max(1e-6))
                .fold(0f32, f32::max);
            println!(
                "loss trajectory over {} steps (same seed): first {:.6} / {:.6}, last {:.6} / {:.6} (candle / fast), max relative difference {worst:.2e}",
                a.len(),
                a[0],
                b[0],
                a[a.len() - 1],
                b[b.len() - 1]
            );
        }
    }

    // inference
    let (_, model) = new_model(&s)?;
    let fm = FastModel::new(&model)?.expect("supported");
    println!("\n## inference (forward to the head's outputs)");
    println!("| batch | path | threads | contexts/s | GFLOP/s | % peak |");
    println!("|---|---|---:|---:|---:|---:|");
    let b256: Vec<Batch> = s
        .ecs
        .chunks(256)
        .map(|c| {
            let r: Vec<&EncodedContext> = c.iter().collect();
            Batch::new(&r, &s.cfg, s.dims.n_buckets, &dev)
        })
        .collect::<R<_>>()?;
    let b1: Vec<Batch> = s.ecs[..if quick { 64 } else { 200 }]
        .iter()
        .map(|c| Batch::new(&[c], &s.cfg, s.dims.n_buckets, &dev))
        .collect::<R<_>>()?;
    for (label, bs) in [("256", &b256), ("1", &b1)] {
        let ctx_per = bs.iter().map(|b| b.n_ctx).sum::<usize>() as f64;
        for th in [1, threads] {
            for fast in [false, true] {
                let reps = if fast { 3 } else { 1 };
                let rate = with_threads(th, || -> R<f64> {
                    let run = || -> R<()> {
                        for b in bs.iter() {
                            if fast {
                                fm.forward(b)?;
                            } else {
                                model.forward(b, None)?.to_vec2::<f32>()?;
                            }
                        }
                        Ok(())
                    };
                    run()?;
                    let t = Instant::now();
                    for _ in 0..reps {
                        run()?;
                    }
                    Ok(ctx_per * reps as f64 / t.elapsed().as_secs_f64())
                })?;
                let gf = rate * flops_ctx / 1e9;
                let pk = if th == 1 { peak1 } else { peak2 };
                println!(
                    "| {label} | {} | {th} | {rate:.0} | {gf:.1} | {:.0}% |",
                    if fast { "fast" } else { "candle" },
                    100.0 * gf / pk
                );
            }
        }
    }
    // latency of one context, one thread
    let mut lat = Vec::new();
    let mut lat_b = Vec::new();
    let mut lat_c = Vec::new();
    with_threads(1, || -> R<()> {
        for (c, b) in s.ecs.iter().zip(&b1) {
            let t = Instant::now();
            fm.forward(b)?;
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            let b2 = Batch::new(&[c], &s.cfg, s.dims.n_buckets, &dev)?;
            fm.forward(&b2)?;
            lat_b.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            model.forward(b, None)?.to_vec2::<f32>()?;
            lat_c.push(t.elapsed().as_secs_f64() * 1e6);
        }
        Ok(())
    })?;
    println!(
        "\none context, one thread (µs): fast p50 {:.0} p99 {:.0}; fast with Batch::new p50 {:.0} p99 {:.0}; candle p50 {:.0} p99 {:.0}",
        percentile(&mut lat, 0.5),
        percentile(&mut lat, 0.99),
        percentile(&mut lat_b, 0.5),
        percentile(&mut lat_b, 0.99),
        percentile(&mut lat_c, 0.5),
        percentile(&mut lat_c, 0.99)
    );
    Ok(())
}
