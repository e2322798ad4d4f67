//! Memory accounting behind `rdl.max_memory_mb`. Rust aborts the process when an
//! allocation fails, and inside PostgreSQL that is a backend crash and a cluster restart:
//! rdl therefore counts what it holds (contexts gathered, contexts encoded) and refuses,
//! or gathers in smaller pieces, before a budget is exceeded.
//!
//! Sizes are estimates of heap use from capacities, close enough to bound growth; column
//! and table names are shared (`Arc<str>`) and not counted per row.

use std::mem::size_of;

use crate::encode::{EncodedContext, RawRow, Subgraph, Value};

/// Heap bytes a gathered context holds.
pub fn subgraph_bytes(sg: &Subgraph) -> usize {
    size_of::<Subgraph>()
        + sg.rows.capacity() * size_of::<RawRow>()
        + sg.rows
            .iter()
            .map(|r| {
                r.key.capacity()
                    + r.parents.capacity() * size_of::<usize>()
                    + r.values.capacity() * size_of::<(std::sync::Arc<str>, u8, Value)>()
                    + r.values
                        .iter()
                        .map(|(_, _, v)| match v {
                            Value::Text(s) => s.capacity(),
                            _ => 0,
                        })
                        .sum::<usize>()
            })
            .sum::<usize>()
}

/// Heap bytes an encoded context holds.
pub fn encoded_bytes(c: &EncodedContext) -> usize {
    size_of::<EncodedContext>()
        + c.col.capacity() * 4
        + c.kind.capacity()
        + c.num.capacity() * 4
        + c.time.capacity() * 4
        + c.bucket.capacity() * 4
        + c.row.capacity() * 4
        + c.row_table.capacity() * 4
        + c.row_parents.capacity() * size_of::<Vec<u32>>()
        + c.row_parents
            .iter()
            .map(|p| p.capacity() * 4)
            .sum::<usize>()
        + c.row_hop.capacity()
}

/// A budget was exceeded: what was needed and what the budget allows, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded {
    pub need: usize,
    pub limit: usize,
}

/// Bytes held against a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit: usize,
    pub used: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Budget {
        Budget { limit, used: 0 }
    }

    /// Counts `bytes` more, or says by how much the limit would be exceeded.
    pub fn charge(&mut self, bytes: usize) -> Result<(), Exceeded> {
        self.fits(1, bytes)?;
        self.used += bytes;
        Ok(())
    }

    /// Whether `n` more items of `each` bytes would fit.
    pub fn fits(&self, n: usize, each: usize) -> Result<(), Exceeded> {
        let need = self.used.saturating_add(n.saturating_mul(each));
        if need > self.limit {
            Err(Exceeded {
                need,
                limit: self.limit,
            })
        } else {
            Ok(())
        }
    }
}

/// How many contexts to gather in the next piece: at most `max`, at least 1, and about
/// `share` bytes at `each_bytes` per context (the mean of the last piece; 0 when unknown).
pub fn chunk_len(share: usize, each_bytes: usize, max: usize) -> usize {
    if each_bytes == 0 {
        return max.max(1);
    }
    (share / each_bytes).clamp(1, max.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{Encoder, EncoderConfig};
    use crate::train::synth;

    #[test]
    fn budget_refuses_past_its_limit_and_keeps_its_count() {
        let mut b = Budget::new(100);
        assert_eq!(b.charge(60), Ok(()));
        assert_eq!(
            b.charge(50),
            Err(Exceeded {
                need: 110,
                limit: 100
            })
        );
        assert_eq!(b.used, 60, "a refused charge is not counted");
        assert_eq!(b.charge(40), Ok(()));
        assert!(b.fits(1, 1).is_err());
        assert!(Budget::new(10).fits(usize::MAX, 2).is_err(), "no overflow");
    }

    #[test]
    fn chunks_shrink_with_larger_contexts() {
        assert_eq!(chunk_len(1 << 20, 0, 256), 256);
        assert_eq!(chunk_len(1 << 20, 1 << 10, 256), 256);
        assert_eq!(chunk_len(1 << 20, 1 << 14, 256), 64);
        assert_eq!(chunk_len(1 << 20, 1 << 30, 256), 1);
    }

    #[test]
    fn sizes_grow_with_the_context() {
        let data = synth::churn_dataset(40, 4, 60, 7);
        let sgs: Vec<Subgraph> = data.iter().map(|(s, _)| s.clone()).collect();
        let enc = Encoder::fit(EncoderConfig::default(), &sgs);
        let mut by_rows: Vec<(usize, usize, usize)> = sgs
            .iter()
            .map(|s| {
                (
                    s.rows.len(),
                    subgraph_bytes(s),
                    encoded_bytes(&enc.encode(s)),
                )
            })
            .collect();
        by_rows.sort();
        let (small, large) = (by_rows[0], by_rows[by_rows.len() - 1]);
        assert!(
            large.0 > small.0,
            "the dataset has contexts of different sizes"
        );
        assert!(
            large.1 > small.1 && large.2 > small.2,
            "{small:?} {large:?}"
        );
        // At least the token arrays' own bytes: 45 per token (col, kind, num, 7 time, bucket, row).
        let c = enc.encode(&sgs[0]);
        assert!(encoded_bytes(&c) >= 45 * c.n_tokens());
    }
}
