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
use rdl_engine::model::optim::FastAdamW;
use rdl_engine::model::{bce_with_logits, sorted_vars, Batch, Model, ModelConfig, ModelDims};
use rdl_engine::train::make_batches;
use rdl_engine::train::synth::encoded_churn;

type R<T> = candle_core::Result<T>;
type StepFn = dyn FnMut(&candle_core::backprop::GradStore) -> R<()>;

fn contexts(n: usize) -> (Encoder, Vec<EncodedContext>) {
    encoded_churn(n, 80, 4000, 1, EncoderConfig::default())
}

fn pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .expect("pool")
}

/// CPU time of this process (all live threads), in seconds: the machine may be shared, and
/// CPU time is what a run costs whatever else runs beside it.
fn cpu_s() -> f64 {
    let mut ns = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for t in dir.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    ns as f64 * 1e-9
}

/// CPU time of the calling thread, in seconds.
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0) as f64
        * 1e-9
}

/// Runs `f` on `threads` threads: rayon's pool and candle's matmul both.
fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    pool(threads).install(f)
}

/// Wall and CPU seconds of `f` (run inside the pool it measures).
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let (t, c) = (Instant::now(), cpu_s());
    let r = f();
    (r, t.elapsed().as_secs_f64(), cpu_s() - c)
}

/// A rate measured both ways: per wall second, and per CPU second of the threads used.
#[derive(Clone, Copy)]
struct Rate {
    wall: f64,
    cpu: f64,
}

impl Rate {
    fn new(work: f64, wall: f64, cpu: f64, threads: usize) -> Rate {
        Rate {
            wall: work / wall,
            cpu: work / (cpu / threads as f64),
        }
    }
    fn scale(self, k: f64) -> Rate {
        Rate {
            wall: self.wall * k,
            cpu: self.cpu * k,
        }
    }
}

/// Forward FLOPs of `tokens` tokens with `pairs` pairs (all attention types of a block):
/// projections (2·in·out per token and matrix) and the pairs (2·d for the score, 2·d for the
/// weighted value, per pair and block).
fn fwd_flops(cfg: &ModelConfig, tokens: usize, pairs: usize) -> f64 {
    let d = cfg.d_model as f64;
    let h = d * cfg.ffn_mult as f64;
    let kinds = rdl_engine::model::attn_kinds(cfg).len() as f64;
    let per_token = cfg.blocks as f64 * (kinds * 2.0 * 4.0 * d * d + 2.0 * 3.0 * h * d);
    tokens as f64 * per_token + cfg.blocks as f64 * pairs as f64 * 4.0 * d
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
    // one thread: per CPU second (the machine may be shared)
    let one = {
        run(&mut c, gemm::Parallelism::None);
        let c0 = cpu_s();
        for _ in 0..reps {
            run(&mut c, gemm::Parallelism::None);
        }
        flops * reps as f64 / (cpu_s() - c0) / 1e9
    };
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

/// Steps/s and losses of `steps` training steps over `batches` (candle or fast path) on
/// `threads` threads.
fn train_run(
    s: &Setup,
    batches: &[Batch],
    steps: usize,
    fast: bool,
    threads: usize,
) -> R<(Rate, Vec<f32>)> {
    let (vm, model) = new_model(s)?;
    let vars: Vec<_> = sorted_vars(&vm).into_iter().map(|(_, v)| v).collect();
    let params = ParamsAdamW {
        lr: 3e-3,
        weight_decay: 0.01,
        ..Default::default()
    };
    // candle's AdamW with candle's path, the fused one (same bits) with the fast path
    let mut opt: Box<StepFn> = if fast {
        let mut o = FastAdamW::new(vars, params)?;
        Box::new(move |g| o.step(g))
    } else {
        let mut o = AdamW::new(vars, params)?;
        Box::new(move |g| o.step(g))
    };
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
        opt(&grads)?;
        losses.push(loss.to_scalar::<f32>()?);
        Ok(())
    };
    step(0)?; // warm-up (allocations)
    let (r, wall, cpu) = timed(|| -> R<()> {
        for i in 1..=steps {
            step(i)?;
        }
        Ok(())
    });
    r?;
    Ok((Rate::new(steps as f64, wall, cpu, threads), losses))
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// `profile-{train,infer}[-candle]`: that workload alone on one thread for ~20 s (for
/// `perf record`).
fn profile(s: &Setup, what: &str) -> R<()> {
    let dev = Device::Cpu;
    let order: Vec<usize> = (0..s.ecs.len()).collect();
    let candle = what.ends_with("-candle");
    let t = Instant::now();
    if what.starts_with("profile-train") {
        let batches: Vec<Batch> = make_batches(&s.ecs, &order, 2048, 64)
            .iter()
            .map(|b| {
                let r: Vec<&EncodedContext> = b.iter().map(|&i| &s.ecs[i]).collect();
                Batch::new(&r, &s.cfg, s.dims.n_buckets, &dev)
            })
            .collect::<R<_>>()?;
        let steps = if candle { 60 } else { 200 };
        let (sps, _) = with_threads(1, || train_run(s, &batches, steps, !candle, 1))?;
        println!(
            "{what}: {:.2} steps/s ({:.2} per CPU second)",
            sps.wall, sps.cpu
        );
    } else {
        let (_, model) = new_model(s)?;
        let fm = FastModel::new(&model)?.expect("supported");
        // profile-infer: batches of 256 contexts; profile-infer1: one context at a time
        let per = if what.starts_with("profile-infer1") {
            1
        } else {
            256
        };
        let bs: Vec<Batch> = s
            .ecs
            .chunks(per)
            .take(256 / per)
            .map(|c| {
                let r: Vec<&EncodedContext> = c.iter().collect();
                Batch::new(&r, &s.cfg, s.dims.n_buckets, &dev)
            })
            .collect::<R<_>>()?;
        let (r, wall, cpu) = with_threads(1, || {
            timed(|| -> R<()> {
                for _ in 0..if candle { 10 } else { 40 } {
                    for b in &bs {
                        if candle {
                            model.forward(b, None)?;
                        } else {
                            fm.forward(b)?;
                        }
                    }
                }
                Ok(())
            })
        });
        r?;
        let n = (if candle { 10 } else { 40 } * 256) as f64;
        println!(
            "{what}: {:.0} contexts/s ({:.0} per CPU second)",
            n / wall,
            n / cpu
        );
    }
    println!("{what}: {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> R<()> {
    let quick = std::env::args().any(|a| a == "quick");
    let prof = std::env::args().find(|a| a.starts_with("profile-"));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (enc, ecs) = contexts(if quick { 256 } else { 512 });
    let cfg = ModelConfig::small();
    let dims = ModelDims {
        n_columns: enc.n_columns(),
        n_buckets: enc.config.n_buckets as usize,
        n_out: 1,
    };
    let s = Setup { cfg, dims, ecs };
    if let Some(p) = prof {
        return profile(&s, &p);
    }
    if std::env::args().any(|a| a == "peak") {
        for (m, nn, k) in [
            (256, 256, 256),
            (4096, 64, 64),
            (1024, 192, 64),
            (1024, 64, 64),
            (1024, 256, 64),
            (1024, 64, 128),
            (64, 64, 1024),
            (192, 64, 1024),
        ] {
            let (a, b, c) = gemm_peak(m, nn, k);
            println!("| {m}x{k} · {k}x{nn} | {a:.1} | {b:.1} | {c:.1} |");
        }
        return Ok(());
    }
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
        "\n## gemm f32 (GFLOP/s): 1 thread per CPU second | 2 threads on one product (wall) | 2 products at once (wall)"
    );
    let mut peak1 = 0f64;
    for (m, nn, k) in [
        (256, 256, 256),
        (4096, 64, 64),
        (1024, 192, 64),
        (64, 64, 1024),
    ] {
        let (a, b, c) = gemm_peak(m, nn, k);
        peak1 = peak1.max(a);
        println!("| {m}x{k} · {k}x{nn} | {a:.1} | {b:.1} | {c:.1} |");
    }
    let peak = |threads: usize| peak1 * threads as f64;
    println!(
        "peak used below: {peak1:.1} GFLOP/s per core (the best single-thread product), {:.1} for {threads} cores",
        peak(threads)
    );
    let pct = |r: Rate, th: usize| format!("{:.0}%", 100.0 * r.cpu / peak(th));

    // training
    let order: Vec<usize> = (0..s.ecs.len()).collect();
    println!("\n## training step (forward + backward + AdamW), BCE");
    println!("rates per wall second [per CPU second of the threads used]; GFLOP/s counts 3× the forward's FLOPs");
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
                let steps = match (fast, bt > 4096, quick) {
                    (false, true, _) => 3,
                    (false, false, _) => 8,
                    (true, true, _) => 8,
                    (true, false, true) => 20,
                    (true, false, false) => 60,
                };
                let (sps, _) = with_threads(th, || train_run(&s, &batches, steps, fast, th))?;
                let ex = sps.scale(per_batch);
                let gf = ex.scale(3.0 * flops_ctx / 1e9);
                println!(
                    "| {label} | {} | {th} | {:.2} [{:.2}] | {:.0} [{:.0}] | {:.1} [{:.1}] | {} |",
                    if fast { "fast" } else { "candle" },
                    sps.wall,
                    sps.cpu,
                    ex.wall,
                    ex.cpu,
                    gf.wall,
                    gf.cpu,
                    pct(gf, th)
                );
            }
        }
        if bt == 2048 {
            let steps = if quick { 20 } else { 40 };
            let (_, a) = with_threads(threads, || train_run(&s, &batches, steps, false, threads))?;
            let (_, b) = with_threads(threads, || train_run(&s, &batches, steps, true, threads))?;
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs() / x.abs().max(1e-6))
                .fold(0f32, f32::max);
            println!(
                "\nloss trajectory over {} steps (same seed, {threads} threads): first {:.6} / {:.6}, last {:.6} / {:.6} (candle / fast), max relative difference {worst:.2e}\n",
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
    println!("\n## inference (forward to the head's outputs), contexts/s per wall second [per CPU second]");
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
    let b1: Vec<Batch> = s.ecs[..if quick { 64 } else { 256 }]
        .iter()
        .map(|c| Batch::new(&[c], &s.cfg, s.dims.n_buckets, &dev))
        .collect::<R<_>>()?;
    for (label, bs) in [("256", &b256), ("1", &b1)] {
        let ctx_per = bs.iter().map(|b| b.n_ctx).sum::<usize>() as f64;
        for th in [1, threads] {
            for fast in [false, true] {
                let reps = if fast { 4 } else { 1 };
                let rate = with_threads(th, || -> R<Rate> {
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
                    let (r, wall, cpu) = timed(|| -> R<()> {
                        for _ in 0..reps {
                            run()?;
                        }
                        Ok(())
                    });
                    r?;
                    Ok(Rate::new(ctx_per * reps as f64, wall, cpu, th))
                })?;
                let gf = rate.scale(flops_ctx / 1e9);
                println!(
                    "| {label} | {} | {th} | {:.0} [{:.0}] | {:.1} [{:.1}] | {} |",
                    if fast { "fast" } else { "candle" },
                    rate.wall,
                    rate.cpu,
                    gf.wall,
                    gf.cpu,
                    pct(gf, th)
                );
            }
        }
    }
    // latency of one context, one thread: wall, and the thread's CPU time
    let mut lat = Vec::new();
    let mut lat_cpu = Vec::new();
    let mut lat_b = Vec::new();
    let mut lat_c = Vec::new();
    with_threads(1, || -> R<()> {
        for (c, b) in s.ecs.iter().zip(&b1) {
            let (r, wall, _) = timed(|| fm.forward(b));
            r?;
            lat.push(wall * 1e6);
            let c0 = thread_cpu_s();
            fm.forward(b)?;
            lat_cpu.push((thread_cpu_s() - c0) * 1e6);
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
        "\none context, one thread (µs): fast p50 {:.0} p99 {:.0} (thread CPU time p50 {:.0} p99 {:.0}); fast with Batch::new p50 {:.0} p99 {:.0}; candle p50 {:.0} p99 {:.0}",
        percentile(&mut lat, 0.5),
        percentile(&mut lat, 0.99),
        percentile(&mut lat_cpu, 0.5),
        percentile(&mut lat_cpu, 0.99),
        percentile(&mut lat_b, 0.5),
        percentile(&mut lat_b, 0.99),
        percentile(&mut lat_c, 0.5),
        percentile(&mut lat_c, 0.99)
    );
    Ok(())
}
