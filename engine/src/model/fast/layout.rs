//! The model's parameters as one flat `f32` array: where each tensor lies in it (`q`, `k`,
//! `v` stacked as one `[3d, d]` matrix, `w1`, `w3` as one `[2h, d]`), and reading the
//! current values into it.

use candle_core::{CpuStorage, Result, Storage, Tensor};

use crate::model::{Linear, Model, Norm};

/// Offsets of a `Linear` in the flat array.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinOff {
    pub w: usize,
    pub b: usize,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct NormOff {
    pub g: usize,
    pub b: usize,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct AttnOff {
    pub norm: NormOff,
    /// `[3d, d]` / `[3d]`: q, k, v stacked.
    pub qkv: LinOff,
    pub o: LinOff,
    pub sink: usize,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct FfnOff {
    pub norm: NormOff,
    /// `[2h, d]` / `[2h]`: w1, w3 stacked.
    pub w13: LinOff,
    pub w2: LinOff,
}

/// Where every parameter of a [`Model`] lives in the flat array, and which tensor it is.
pub(crate) struct ParamLayout {
    pub d: usize,
    pub heads: usize,
    pub hid: usize,
    pub n_out: usize,
    pub col_emb: usize,
    pub kind_emb: usize,
    pub hop_emb: usize,
    pub value_emb: usize,
    pub num: LinOff,
    pub time: LinOff,
    pub blocks: Vec<(Vec<AttnOff>, FfnOff)>,
    pub final_norm: NormOff,
    pub head: LinOff,
    /// `(tensor, offset)` of every parameter, in layout order.
    pub tensors: Vec<(Tensor, usize)>,
    pub total: usize,
}

struct Builder {
    tensors: Vec<(Tensor, usize)>,
    total: usize,
}

impl Builder {
    fn add(&mut self, t: &Tensor) -> usize {
        let off = self.total;
        self.tensors.push((t.clone(), off));
        self.total += t.elem_count();
        off
    }
    fn lin(&mut self, l: &Linear) -> LinOff {
        let w = self.add(&l.w);
        let b = self.add(&l.b);
        LinOff { w, b }
    }
    /// Linears with the same input stacked along their outputs: weights then biases.
    fn stacked(&mut self, ls: &[&Linear]) -> LinOff {
        let w = self.add(&ls[0].w);
        for l in &ls[1..] {
            self.add(&l.w);
        }
        let b = self.add(&ls[0].b);
        for l in &ls[1..] {
            self.add(&l.b);
        }
        LinOff { w, b }
    }
    fn norm(&mut self, n: &Norm) -> NormOff {
        NormOff {
            g: self.add(&n.g),
            b: self.add(&n.b),
        }
    }
}

impl ParamLayout {
    pub fn new(m: &Model) -> ParamLayout {
        let mut b = Builder {
            tensors: Vec::new(),
            total: 0,
        };
        let col_emb = b.add(&m.col_emb);
        let kind_emb = b.add(&m.kind_emb);
        let hop_emb = b.add(&m.hop_emb);
        let value_emb = b.add(&m.value_emb);
        let num = b.lin(&m.num_lin);
        let time = b.lin(&m.time_lin);
        let blocks = m
            .blocks
            .iter()
            .map(|blk| {
                let attn = blk
                    .attn
                    .iter()
                    .map(|a| AttnOff {
                        norm: b.norm(&a.norm),
                        qkv: b.stacked(&[&a.wq, &a.wk, &a.wv]),
                        o: b.lin(&a.wo),
                        sink: b.add(&a.sink),
                    })
                    .collect();
                let f = &blk.ffn;
                let ffn = FfnOff {
                    norm: b.norm(&f.norm),
                    w13: b.stacked(&[&f.w1, &f.w3]),
                    w2: b.lin(&f.w2),
                };
                (attn, ffn)
            })
            .collect();
        let final_norm = b.norm(&m.final_norm);
        let head = b.lin(&m.head);
        ParamLayout {
            d: m.cfg.d_model,
            heads: m.cfg.heads,
            hid: m.cfg.d_model * m.cfg.ffn_mult,
            n_out: m.dims.n_out,
            col_emb,
            kind_emb,
            hop_emb,
            value_emb,
            num,
            time,
            blocks,
            final_norm,
            head,
            tensors: b.tensors,
            total: b.total,
        }
    }

    /// The current parameter values, in layout order.
    pub fn read(&self) -> Result<Vec<f32>> {
        let mut p = Vec::with_capacity(self.total);
        self.read_into(&mut p)?;
        Ok(p)
    }

    /// [`ParamLayout::read`] into `p` (its buffer reused).
    pub fn read_into(&self, p: &mut Vec<f32>) -> Result<()> {
        p.clear();
        for (t, off) in &self.tensors {
            debug_assert_eq!(p.len(), *off);
            let (st, l) = t.storage_and_layout();
            match (&*st, l.contiguous_offsets()) {
                (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => p.extend_from_slice(&v[a..b]),
                _ => {
                    drop(st);
                    p.extend(t.flatten_all()?.to_vec1::<f32>()?);
                }
            }
        }
        Ok(())
    }
}
