//! The relational transformer (candle, CPU F32 by default).
//!
//! A token is `column embedding + kind embedding + hop embedding + value encoding`, the value
//! encoding chosen by kind: numbers → linear of `[z, is_null]`, datetimes → linear of the
//! time features, categorical/boolean → embedding; NULL and the target's mask are kind
//! embeddings. Each block runs, pre-norm with residuals, column attention, row attention
//! (same row + FK parents), neighbor attention (children rows), optionally full attention,
//! then a SwiGLU feed-forward. The head reads the target token.
//!
//! Only training-safe ops are used (`layer_norm_slow`, `ops::softmax`, `index_add`): see
//! `/work/shared/NOTES.md`.

pub mod attention;
pub mod batch;
pub mod explain;
pub mod fast;
pub mod grad;
pub mod infer;
pub mod kernels;
pub mod loss;
pub mod optim;
pub mod pair_ops;
pub(crate) mod simd;

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::encode::{N_KINDS, TIME_FEATS};
use attention::{dense_attention, sparse_attention};
pub use batch::{attn_kinds, AttnKind, Batch};
pub use loss::{bce_with_logits, cross_entropy, smooth_l1, SMOOTH_L1_BETA};

/// Architecture hyper-parameters (sizes that depend on the data are in [`ModelDims`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub d_model: usize,
    pub heads: usize,
    pub blocks: usize,
    /// Hidden width of the feed-forward layer as a multiple of `d_model`.
    pub ffn_mult: usize,
    pub dropout: f32,
    /// Tokens per context the encoder keeps.
    pub max_tokens: usize,
    pub full_attention: bool,
    pub neighbor_attention: bool,
    /// Dense masked attention instead of the sparse kernel: tests and benchmarks only.
    #[serde(default)]
    pub dense_attention: bool,
    /// Seed of the parameter initialisation.
    pub seed: u64,
}

impl ModelConfig {
    /// CPU default: trains in minutes on two cores.
    pub fn small() -> ModelConfig {
        ModelConfig {
            d_model: 64,
            heads: 4,
            blocks: 2,
            ffn_mult: 2,
            dropout: 0.0,
            max_tokens: 256,
            full_attention: false,
            neighbor_attention: true,
            dense_attention: false,
            seed: 0,
        }
    }

    /// Tests and quick trials: a quarter of `small`'s width, one block.
    pub fn tiny() -> ModelConfig {
        ModelConfig {
            d_model: 32,
            blocks: 1,
            ..ModelConfig::small()
        }
    }

    /// An encoder configuration whose token cap matches this model's `max_tokens`.
    pub fn encoder_config(&self, n_buckets: u32) -> crate::encode::EncoderConfig {
        crate::encode::EncoderConfig {
            max_tokens: self.max_tokens,
            n_buckets,
        }
    }

    /// GPU size.
    pub fn large() -> ModelConfig {
        ModelConfig {
            d_model: 256,
            heads: 8,
            blocks: 6,
            ffn_mult: 4,
            dropout: 0.1,
            max_tokens: 1024,
            full_attention: true,
            neighbor_attention: true,
            dense_attention: false,
            seed: 0,
        }
    }
}

impl ModelConfig {
    /// Refuses a configuration whose parameters could not be in `stored_bytes` of weights
    /// (each is an f32 there), before anything is allocated: a model row is read back from
    /// a table, and an absurd size must be an error, not an allocation that aborts.
    pub fn check_stored_size(&self, dims: &ModelDims, stored_bytes: usize) -> Result<()> {
        let bounded = self.d_model <= 1 << 14
            && self.heads <= 1 << 10
            && self.blocks <= 1 << 10
            && self.ffn_mult <= 64
            && self.max_tokens <= 1 << 20
            && dims.n_out <= 1 << 20;
        let d = self.d_model as u128;
        let attn = attn_kinds(self).len() as u128;
        let per_block = attn * (4 * d * d + 8 * d) + 3 * d * d * self.ffn_mult as u128 + 8 * d;
        let params = (dims.n_columns as u128 + dims.n_buckets as u128 + 64) * d
            + self.blocks as u128 * per_block
            + d * dims.n_out as u128;
        if !bounded || params > (stored_bytes as u128 / 4) + 4096 {
            candle_core::bail!(
                "the stored configuration ({} x {} blocks) does not match {stored_bytes} bytes of weights",
                self.d_model,
                self.blocks
            );
        }
        Ok(())
    }
}

/// Sizes that come from the encoder and the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelDims {
    pub n_columns: usize,
    pub n_buckets: usize,
    /// 1 for binary and regression, the number of classes for multiclass.
    pub n_out: usize,
}

/// Deterministic parameter creation into a [`VarMap`].
pub struct ParamInit<'a> {
    pub varmap: &'a VarMap,
    rng: ChaCha8Rng,
    device: Device,
}

impl<'a> ParamInit<'a> {
    pub fn new(varmap: &'a VarMap, seed: u64, device: &Device) -> Self {
        ParamInit {
            varmap,
            rng: ChaCha8Rng::seed_from_u64(seed),
            device: device.clone(),
        }
    }

    fn put(&mut self, name: &str, data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        let var = Var::from_tensor(&Tensor::from_vec(data, shape, &self.device)?)?;
        let t = var.as_tensor().clone();
        self.varmap
            .data()
            .lock()
            .expect("varmap lock")
            .insert(name.to_string(), var);
        Ok(t)
    }

    pub fn normal(&mut self, name: &str, shape: &[usize], std: f32) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|_| {
                // Box–Muller
                let u1: f64 = 1.0 - self.rng.random::<f64>();
                let u2: f64 = self.rng.random::<f64>();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                z as f32 * std
            })
            .collect();
        self.put(name, data, shape)
    }

    pub fn constant(&mut self, name: &str, shape: &[usize], value: f32) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        self.put(name, vec![value; n], shape)
    }
}

/// A dense layer `x Wᵀ + b`, its weights drawn with standard deviation `gain / √inp`.
pub(crate) struct Linear {
    w: Tensor, // [out, in]
    b: Tensor, // [out]
}

impl Linear {
    pub(crate) fn new(
        p: &mut ParamInit,
        name: &str,
        inp: usize,
        out: usize,
        gain: f32,
    ) -> Result<Self> {
        Ok(Linear {
            w: p.normal(
                &format!("{name}.weight"),
                &[out, inp],
                gain / (inp as f32).sqrt(),
            )?,
            b: p.constant(&format!("{name}.bias"), &[out], 0.0)?,
        })
    }
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.w.t()?)?.broadcast_add(&self.b)
    }
}

pub(crate) struct Norm {
    g: Tensor,
    b: Tensor,
}

impl Norm {
    pub(crate) fn new(p: &mut ParamInit, name: &str, d: usize) -> Result<Self> {
        Ok(Norm {
            g: p.constant(&format!("{name}.weight"), &[d], 1.0)?,
            b: p.constant(&format!("{name}.bias"), &[d], 0.0)?,
        })
    }
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::layer_norm_slow(x, &self.g, &self.b, 1e-5)
    }
}

struct Attn {
    norm: Norm,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    sink: Tensor,
}

struct Ffn {
    norm: Norm,
    w1: Linear,
    w3: Linear,
    w2: Linear,
}

struct Block {
    attn: Vec<Attn>,
    ffn: Ffn,
}

/// The relational transformer. Its parameters live in the [`VarMap`] it was built from.
pub struct Model {
    pub cfg: ModelConfig,
    pub dims: ModelDims,
    kinds: Vec<AttnKind>,
    col_emb: Tensor,
    kind_emb: Tensor,
    hop_emb: Tensor,
    value_emb: Tensor,
    num_lin: Linear,
    time_lin: Linear,
    blocks: Vec<Block>,
    final_norm: Norm,
    head: Linear,
}

fn dropout(x: &Tensor, p: f32, rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
    match rng {
        Some(rng) if p > 0.0 => {
            let keep = 1.0 - p;
            let n = x.elem_count();
            let m: Vec<f32> = (0..n)
                .map(|_| {
                    if rng.random::<f32>() < keep {
                        1.0 / keep
                    } else {
                        0.0
                    }
                })
                .collect();
            x.mul(&Tensor::from_vec(m, x.shape(), x.device())?)
        }
        _ => Ok(x.clone()),
    }
}

impl Model {
    /// Builds a freshly initialised model; parameters are registered in `varmap`.
    pub fn new(
        cfg: &ModelConfig,
        dims: &ModelDims,
        varmap: &VarMap,
        dev: &Device,
    ) -> Result<Model> {
        if cfg.heads == 0 || !cfg.d_model.is_multiple_of(cfg.heads) || cfg.blocks == 0 {
            candle_core::bail!("d_model must be a positive multiple of heads, blocks positive");
        }
        let d = cfg.d_model;
        let mut p = ParamInit::new(varmap, cfg.seed, dev);
        let kinds = attn_kinds(cfg);
        let out_gain = 1.0 / ((2 * cfg.blocks * (kinds.len() + 1)) as f32).sqrt();
        let emb_std = 0.5;
        let col_emb = p.normal("emb.column", &[dims.n_columns, d], emb_std)?;
        let kind_emb = p.normal("emb.kind", &[N_KINDS, d], emb_std)?;
        let hop_emb = p.normal(
            "emb.hop",
            &[crate::encode::MAX_HOP as usize + 1, d],
            emb_std,
        )?;
        let value_emb = p.normal("emb.value", &[dims.n_buckets + 2, d], emb_std)?;
        let num_lin = Linear::new(&mut p, "emb.num", 2, d, 1.0)?;
        let time_lin = Linear::new(&mut p, "emb.time", TIME_FEATS, d, 1.0)?;
        let mut blocks = Vec::with_capacity(cfg.blocks);
        for b in 0..cfg.blocks {
            let mut attn = Vec::new();
            for (i, _) in kinds.iter().enumerate() {
                let n = format!("block{b}.attn{i}");
                attn.push(Attn {
                    norm: Norm::new(&mut p, &format!("{n}.norm"), d)?,
                    wq: Linear::new(&mut p, &format!("{n}.q"), d, d, 1.0)?,
                    wk: Linear::new(&mut p, &format!("{n}.k"), d, d, 1.0)?,
                    wv: Linear::new(&mut p, &format!("{n}.v"), d, d, 1.0)?,
                    wo: Linear::new(&mut p, &format!("{n}.o"), d, d, out_gain)?,
                    sink: p.constant(&format!("{n}.sink"), &[cfg.heads], 0.0)?,
                });
            }
            let h = d * cfg.ffn_mult;
            let n = format!("block{b}.ffn");
            let ffn = Ffn {
                norm: Norm::new(&mut p, &format!("{n}.norm"), d)?,
                w1: Linear::new(&mut p, &format!("{n}.w1"), d, h, 1.0)?,
                w3: Linear::new(&mut p, &format!("{n}.w3"), d, h, 1.0)?,
                w2: Linear::new(&mut p, &format!("{n}.w2"), h, d, out_gain)?,
            };
            blocks.push(Block { attn, ffn });
        }
        Ok(Model {
            cfg: cfg.clone(),
            dims: *dims,
            kinds,
            col_emb,
            kind_emb,
            hop_emb,
            value_emb,
            num_lin,
            time_lin,
            blocks,
            final_norm: Norm::new(&mut p, "final.norm", d)?,
            head: Linear::new(&mut p, "head", d, dims.n_out, 1.0)?,
        })
    }

    pub(crate) fn embed(&self, b: &Batch) -> Result<Tensor> {
        let x = self.col_emb.index_select(&b.col, 0)?;
        let x = (x + self.kind_emb.index_select(&b.kind, 0)?)?;
        let x = (x + self.hop_emb.index_select(&b.hop, 0)?)?;
        let num = self.num_lin.forward(&b.num)?.broadcast_mul(&b.m_num)?;
        let time = self.time_lin.forward(&b.time)?.broadcast_mul(&b.m_time)?;
        let cat = self
            .value_emb
            .index_select(&b.value_idx, 0)?
            .broadcast_mul(&b.m_cat)?;
        x + num + time + cat
    }

    /// Output `[B, n_out]` at each context's target token. `rng`: dropout (training only).
    pub fn forward(&self, b: &Batch, rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
        self.head.forward(&self.forward_repr(b, rng)?)
    }

    /// The final (normalised) representation `[B, d_model]` of each context's target token,
    /// before the head: what a ranking model builds its entity and item embeddings from.
    pub fn forward_repr(&self, b: &Batch, rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
        let x = self.forward_states(b, rng)?;
        self.final_norm.forward(&x.index_select(&b.target, 0)?)
    }

    /// The model's final normalisation (the one before the head) applied to `x [.., d]`.
    pub fn normalize(&self, x: &Tensor) -> Result<Tensor> {
        self.final_norm.forward(x)
    }

    /// The states `[N, d_model]` of every token after the last block (not normalised).
    pub fn forward_states(&self, b: &Batch, rng: Option<&mut ChaCha8Rng>) -> Result<Tensor> {
        let x = self.embed(b)?;
        self.states_from(b, x, rng, None)
    }

    /// [`Model::forward`] from token embeddings `x` `[N, d]`; with `trace`, the attention
    /// weights `[P, H]` of every attention layer are appended to it, in order.
    pub(crate) fn forward_embedded(
        &self,
        b: &Batch,
        x: Tensor,
        rng: Option<&mut ChaCha8Rng>,
        trace: Option<&mut Vec<Tensor>>,
    ) -> Result<Tensor> {
        let x = self.states_from(b, x, rng, trace)?;
        let t = x.index_select(&b.target, 0)?;
        self.head.forward(&self.final_norm.forward(&t)?)
    }

    fn states_from(
        &self,
        b: &Batch,
        mut x: Tensor,
        mut rng: Option<&mut ChaCha8Rng>,
        mut trace: Option<&mut Vec<Tensor>>,
    ) -> Result<Tensor> {
        if b.attn.len() != self.kinds.len()
            || (self.cfg.dense_attention && b.dense_masks.len() != self.kinds.len())
        {
            candle_core::bail!("batch built for another model configuration");
        }
        let (n, d, h) = (b.n_tokens, self.cfg.d_model, self.cfg.heads);
        let dh = d / h;
        for block in &self.blocks {
            for (i, a) in block.attn.iter().enumerate() {
                let y = a.norm.forward(&x)?;
                let q = a.wq.forward(&y)?.reshape((n, h, dh))?;
                let k = a.wk.forward(&y)?.reshape((n, h, dh))?;
                let v = a.wv.forward(&y)?.reshape((n, h, dh))?;
                if let Some(t) = trace.as_deref_mut() {
                    t.push(attention::attention_weights(&q, &k, &a.sink, &b.attn[i].1)?);
                }
                let o = if self.cfg.dense_attention {
                    dense_attention(&q, &k, &v, &a.sink, &b.spans, &b.dense_masks[i])?
                } else {
                    sparse_attention(&q, &k, &v, &a.sink, &b.attn[i].1)?
                };
                let o = a.wo.forward(&o.reshape((n, d))?)?;
                x = (x + dropout(&o, self.cfg.dropout, rng.as_deref_mut())?)?;
            }
            let f = &block.ffn;
            let y = f.norm.forward(&x)?;
            let y = (f.w1.forward(&y)?.silu()? * f.w3.forward(&y)?)?;
            let y = f.w2.forward(&y)?;
            x = (x + dropout(&y, self.cfg.dropout, rng.as_deref_mut())?)?;
        }
        Ok(x)
    }
}

/// Parameters in a stable order (by name).
pub fn sorted_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// F32 zeros helper.
pub fn zeros(shape: &[usize], dev: &Device) -> Result<Tensor> {
    Tensor::zeros(shape, DType::F32, dev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{Encoder, EncoderConfig, RawRow, Subgraph, Value};
    use crate::schema::SemanticType as S;

    fn ctx(i: usize) -> Subgraph {
        let row = |table: &str, hop, parents, values: Vec<(&str, S, Value)>| {
            RawRow::new(table, "", None, hop, parents, values)
        };
        Subgraph {
            anchor: 1_000_000_000_000_000,
            seed: 0,
            rows: vec![
                row(
                    "c",
                    0,
                    vec![],
                    vec![
                        ("age", S::Numerical, Value::Num(i as f64)),
                        ("vip", S::Boolean, Value::Bool(i.is_multiple_of(2))),
                    ],
                ),
                row(
                    "o",
                    1,
                    vec![0, 2],
                    vec![
                        ("at", S::Timestamp, Value::Time(999_000_000_000_000)),
                        ("q", S::Numerical, Value::Null),
                    ],
                ),
                row(
                    "p",
                    2,
                    vec![],
                    vec![("kind", S::Categorical, Value::Text(format!("k{i}")))],
                ),
            ],
        }
    }

    #[test]
    fn every_parameter_gets_a_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let sgs: Vec<Subgraph> = (0..4).map(ctx).collect();
        let enc = Encoder::fit(EncoderConfig::default(), &sgs);
        let ecs: Vec<_> = sgs
            .iter()
            .enumerate()
            .map(|(i, s)| enc.encode_labeled(s, (i % 2) as f32))
            .collect();
        let mut cfg = ModelConfig::small();
        cfg.full_attention = true;
        cfg.d_model = 16;
        let dims = ModelDims {
            n_columns: enc.n_columns(),
            n_buckets: 64,
            n_out: 1,
        };
        let vm = VarMap::new();
        let model = Model::new(&cfg, &dims, &vm, &dev)?;
        let refs: Vec<_> = ecs.iter().collect();
        let b = Batch::new(&refs, &cfg, dims.n_buckets, &dev)?;
        let out = model.forward(&b, None)?;
        assert_eq!(out.dims(), &[4, 1]);
        let y = Tensor::from_vec(vec![0f32, 1., 0., 1.], (4, 1), &dev)?;
        let loss = bce_with_logits(&out, &y)?;
        let grads = loss.backward()?;
        for (name, var) in sorted_vars(&vm) {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let s = g.abs()?.sum_all()?.to_scalar::<f32>()?;
            assert!(s > 0.0 && s.is_finite(), "zero gradient for {name}");
        }
        Ok(())
    }

    #[test]
    fn sparse_and_dense_models_agree() -> Result<()> {
        let dev = Device::Cpu;
        let sgs: Vec<Subgraph> = (0..3).map(ctx).collect();
        let enc = Encoder::fit(EncoderConfig::default(), &sgs);
        let ecs: Vec<_> = sgs.iter().map(|s| enc.encode(s)).collect();
        let refs: Vec<_> = ecs.iter().collect();
        let dims = ModelDims {
            n_columns: enc.n_columns(),
            n_buckets: 64,
            n_out: 3,
        };
        let mut cfg = ModelConfig::small();
        cfg.d_model = 16;
        let a = Model::new(&cfg, &dims, &VarMap::new(), &dev)?
            .forward(&Batch::new(&refs, &cfg, 64, &dev)?, None)?;
        cfg.dense_attention = true;
        let b = Model::new(&cfg, &dims, &VarMap::new(), &dev)?
            .forward(&Batch::new(&refs, &cfg, 64, &dev)?, None)?;
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        Ok(())
    }
}
