//! The no-autograd forward pass: [`FastModel`] holds a model's parameters as flat `f32`
//! arrays and runs the hand-written kernels of [`super::kernels`] over chunks of whole
//! contexts, chunks in parallel on rayon's pool. It computes the function of
//! [`Model::forward`] (equal within float rounding, see the tests) without building a graph.
//!
//! Inference also skips work whose result cannot reach a prediction: only the target token's
//! state leaves the last block, so each layer runs its queries (and the feed-forward layers
//! their rows) only for the tokens some later layer still reads ([`needed_rows`]).

use std::cell::RefCell;

use candle_core::Result;
use rayon::prelude::*;

use super::fast::{self, Chunk, HostBatch, ParamLayout, Scratch};
use super::{Batch, Model};

/// Tokens per chunk of the inference pass.
const CHUNK_TOKENS: usize = 512;

/// A model's parameters laid out for the fast forward pass.
pub struct FastModel {
    pub(crate) lay: ParamLayout,
    pub(crate) p: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<(Scratch, Vec<f32>)> = RefCell::new(Default::default());
}

impl FastModel {
    /// Copies the parameters of `m` (later changes to `m` are not seen). `None` when the
    /// configuration is one the fast path does not handle (see [`fast::supported`]).
    pub fn new(m: &Model) -> Result<Option<FastModel>> {
        if !fast::supported(m) {
            return Ok(None);
        }
        let lay = ParamLayout::new(m);
        let p = lay.read()?;
        Ok(Some(FastModel { lay, p }))
    }

    /// Outputs `[B][n_out]` of [`Model::forward`] (no dropout).
    pub fn forward(&self, b: &Batch) -> Result<Vec<Vec<f32>>> {
        let hb = HostBatch::from_batch(b)?;
        let out = self.forward_host(&hb, true, false);
        Ok(out
            .chunks(self.lay.n_out.max(1))
            .map(|c| c.to_vec())
            .collect())
    }

    /// The representations `B × d_model` of [`Model::forward_repr`] (no dropout), laid end
    /// to end.
    pub fn forward_repr(&self, b: &Batch) -> Result<Vec<f32>> {
        let hb = HostBatch::from_batch(b)?;
        Ok(self.forward_host(&hb, true, true))
    }

    /// Outputs of every context laid end to end (`B × n_out`, or `B × d` of
    /// representations when `repr`); chunks in parallel when `parallel` and there are
    /// several.
    pub(crate) fn forward_host(&self, hb: &HostBatch, parallel: bool, repr: bool) -> Vec<f32> {
        let no = if repr { self.lay.d } else { self.lay.n_out };
        let chunks = fast::chunks(
            &hb.spans,
            std::env::var("RDL_CHUNK")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(CHUNK_TOKENS),
        );
        let mut out = vec![0f32; hb.spans.len() * no];
        let run = |ch: &Chunk, o: &mut [f32]| {
            SCRATCH.with(|s| {
                let (s, x) = &mut *s.borrow_mut();
                self.chunk(hb, *ch, x, s, o, repr)
            })
        };
        let mut parts: Vec<(&Chunk, &mut [f32])> = Vec::with_capacity(chunks.len());
        let mut rest = &mut out[..];
        for ch in &chunks {
            let (a, b) = rest.split_at_mut((ch.c1 - ch.c0) * no);
            parts.push((ch, a));
            rest = b;
        }
        if parallel && chunks.len() > 1 && rayon::current_num_threads() > 1 {
            parts.into_par_iter().for_each(|(ch, o)| run(ch, o));
        } else {
            for (ch, o) in parts {
                run(ch, o);
            }
        }
        out
    }

    fn chunk(
        &self,
        hb: &HostBatch,
        ch: Chunk,
        x: &mut Vec<f32>,
        s: &mut Scratch,
        out: &mut [f32],
        repr: bool,
    ) {
        let d = self.lay.d;
        let n = ch.n();
        x.resize(n * d, 0.0);
        let x = &mut x[..n * d];
        fast::embed(&self.lay, &self.p, hb, ch, x);
        let plans = fast::plan(&self.lay, hb, ch);
        fast::blocks_fwd(&self.lay, &self.p, hb, ch, &plans, x, None, None, s);
        let mut y = vec![0f32; d];
        let no = self.lay.n_out;
        let mut o = vec![0f32; no];
        for (i, c) in (ch.c0..ch.c1).enumerate() {
            let t = hb.target[c] as usize - ch.t0;
            let x = &x[t * d..(t + 1) * d];
            if repr {
                fast::head_fwd(&self.lay, &self.p, x, &mut y, &mut [], &mut [], &mut o);
                out[i * d..(i + 1) * d].copy_from_slice(&y);
            } else {
                let out = &mut out[i * no..(i + 1) * no];
                fast::head_fwd(&self.lay, &self.p, x, &mut y, &mut [], &mut [], out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{EncodedContext, Encoder, EncoderConfig};
    use crate::model::{ModelConfig, ModelDims};
    use crate::train::synth::encoded_churn;
    use candle_core::Device;
    use candle_nn::VarMap;

    fn contexts(n: usize, max_tokens: usize, orders: usize) -> (Encoder, Vec<EncodedContext>) {
        let cfg = EncoderConfig {
            max_tokens,
            n_buckets: 512,
        };
        encoded_churn(n, orders, orders * 4, 5, cfg)
    }

    /// The fast forward equals candle's for binary, regression-shaped and multiclass heads,
    /// default and non-default configurations.
    #[test]
    fn fast_forward_equals_candle() -> Result<()> {
        let dev = Device::Cpu;
        let (enc, ecs) = contexts(24, 256, 60);
        let refs: Vec<&EncodedContext> = ecs.iter().collect();
        for (n_out, cfg) in [
            (1, ModelConfig::small()),
            (3, {
                let mut c = ModelConfig::small();
                c.full_attention = true;
                c.d_model = 32;
                c.heads = 2;
                c.seed = 3;
                c
            }),
            (2, {
                let mut c = ModelConfig::small();
                c.heads = 8;
                c.seed = 4;
                c
            }),
            (1, {
                let mut c = ModelConfig::small();
                c.neighbor_attention = false;
                c.blocks = 3;
                c.ffn_mult = 3;
                c.seed = 9;
                c
            }),
        ] {
            let dims = ModelDims {
                n_columns: enc.n_columns(),
                n_buckets: 512,
                n_out,
            };
            let m = Model::new(&cfg, &dims, &VarMap::new(), &dev)?;
            let b = Batch::new(&refs, &cfg, 512, &dev)?;
            let want = m.forward(&b, None)?.to_vec2::<f32>()?;
            let fm = FastModel::new(&m)?.expect("supported");
            let got = fm.forward(&b)?;
            let one = fm.forward(&Batch::new(&refs[3..4], &cfg, 512, &dev)?)?;
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                for (a, b) in g.iter().zip(w) {
                    assert!((a - b).abs() < 1e-4, "{a} vs {b}");
                }
            }
            assert!((one[0][0] - want[3][0]).abs() < 1e-4);
        }
        Ok(())
    }
}

#[cfg(test)]
mod chunk_tests {
    use super::*;
    use crate::encode::{EncodedContext, EncoderConfig};
    use crate::model::{ModelConfig, ModelDims};
    use crate::train::synth::encoded_churn;
    use candle_core::Device;
    use candle_nn::VarMap;

    fn poison() {
        SCRATCH.with(|s| {
            let (s, x) = &mut *s.borrow_mut();
            let big = 1 << 20;
            for v in [
                &mut s.layer.xhat,
                &mut s.layer.rstd,
                &mut s.layer.y,
                &mut s.layer.proj,
                &mut s.layer.act,
                &mut s.layer.w,
                &mut s.layer.wsink,
                &mut s.xg,
                &mut s.out,
                &mut s.pairs,
                x,
            ] {
                v.clear();
                v.resize(big, f32::NAN);
            }
        });
    }

    #[test]
    fn stale_scratch_is_never_read() -> Result<()> {
        let dev = Device::Cpu;
        let cfg_e = EncoderConfig {
            max_tokens: 177,
            n_buckets: 512,
        };
        let (enc, ecs) = encoded_churn(90, 80, 320, 7, cfg_e);
        let refs: Vec<&EncodedContext> = ecs.iter().collect();
        for cfg in [ModelConfig::small(), {
            let mut c = ModelConfig::small();
            c.full_attention = true;
            c
        }] {
            let dims = ModelDims {
                n_columns: enc.n_columns(),
                n_buckets: 512,
                n_out: 1,
            };
            let m = Model::new(&cfg, &dims, &VarMap::new(), &dev)?;
            let fm = FastModel::new(&m)?.expect("supported");
            let b = Batch::new(&refs, &cfg, 512, &dev)?;
            let hb = HostBatch::from_batch(&b)?;
            let clean = std::thread::scope(|s| {
                s.spawn(|| fm.forward_host(&hb, false, false))
                    .join()
                    .unwrap()
            });
            poison();
            let dirty = fm.forward_host(&hb, false, false);
            let bad = clean.iter().zip(&dirty).filter(|(a, b)| a != b).count();
            assert_eq!(
                bad,
                0,
                "{bad} outputs read stale scratch: {:?}",
                &dirty[..4]
            );
        }
        Ok(())
    }
}
