//! A compact binary form of [`EncodedContext`]s, for handing encoded batches from a
//! PostgreSQL backend to rdl's background worker through shared memory.
//!
//! Hand-rolled and little-endian: both ends are the same build on the same machine, but an
//! explicit byte order keeps the format independent of the struct layout, and decoding
//! validates everything it reads (lengths, indices), so a corrupt or truncated buffer is an
//! error, never a panic or an out-of-bounds index later in the model.
//!
//! Layout of one context (all integers little-endian):
//!
//! ```text
//! u32 n_tokens  u32 n_rows  u32 target  u8 has_label  f32 label
//! col    [u32; n_tokens]     kind  [u8; n_tokens]    num    [f32; n_tokens]
//! time   [f32; n_tokens * TIME_FEATS]                bucket [u32; n_tokens]
//! row    [u32; n_tokens]
//! row_table [u32; n_rows]    row_hop [u8; n_rows]
//! per row: u32 n_parents, [u32; n_parents]
//! ```
//!
//! A batch is `u32 count` followed by `count` contexts.

use std::fmt;

use crate::encode::{EncodedContext, N_KINDS, TIME_FEATS};

/// Contexts larger than this many tokens or rows are rejected on decode (the model caps
/// contexts far below; this only bounds what a corrupt length can make us allocate).
pub const MAX_TOKENS: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad encoded batch: {}", self.0)
    }
}

impl std::error::Error for WireError {}

fn err<T>(s: impl Into<String>) -> Result<T, WireError> {
    Err(WireError(s.into()))
}

/// The worker's outputs as it writes them: little-endian f32 (the native order on the
/// machines rdl runs on, made explicit for the day it is not).
pub fn outputs_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Exact size in bytes of one encoded context.
pub fn context_len(c: &EncodedContext) -> usize {
    let n = c.col.len();
    let r = c.row_table.len();
    let parents: usize = c.row_parents.iter().map(|p| 4 + 4 * p.len()).sum();
    4 + 4 + 4 + 1 + 4 + n * (4 + 1 + 4 + 4 * TIME_FEATS + 4 + 4) + r * (4 + 1) + parents
}

/// Exact size in bytes of a batch.
pub fn batch_len(ctxs: &[EncodedContext]) -> usize {
    4 + ctxs.iter().map(context_len).sum::<usize>()
}

/// Appends one context. Panics only on a context whose per-token arrays disagree in
/// length (a bug of the encoder, never data).
pub fn write_context(out: &mut Vec<u8>, c: &EncodedContext) {
    let n = c.col.len();
    let r = c.row_table.len();
    assert!(
        c.kind.len() == n
            && c.num.len() == n
            && c.time.len() == n * TIME_FEATS
            && c.bucket.len() == n
            && c.row.len() == n
            && c.row_hop.len() == r
            && c.row_parents.len() == r,
        "inconsistent EncodedContext"
    );
    out.reserve(context_len(c));
    put_u32(out, n as u32);
    put_u32(out, r as u32);
    put_u32(out, c.target as u32);
    out.push(u8::from(c.label.is_some()));
    out.extend_from_slice(&c.label.unwrap_or(0.0).to_le_bytes());
    for &v in &c.col {
        put_u32(out, v);
    }
    out.extend_from_slice(&c.kind);
    for &v in c.num.iter().chain(&c.time) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for &v in c.bucket.iter().chain(&c.row).chain(&c.row_table) {
        put_u32(out, v);
    }
    out.extend_from_slice(&c.row_hop);
    for p in &c.row_parents {
        put_u32(out, p.len() as u32);
        for &v in p {
            put_u32(out, v);
        }
    }
}

/// A whole batch as bytes.
pub fn encode_batch(ctxs: &[EncodedContext]) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch_len(ctxs));
    put_u32(&mut out, ctxs.len() as u32);
    for c in ctxs {
        write_context(&mut out, c);
    }
    out
}

/// Reads a batch written by [`encode_batch`]; the whole buffer must be consumed.
pub fn decode_batch(buf: &[u8]) -> Result<Vec<EncodedContext>, WireError> {
    let mut r = Reader { buf, pos: 0 };
    let count = r.u32()? as usize;
    // Each context takes at least 17 bytes: a count larger than that is corrupt.
    if count > buf.len() / 17 {
        return err(format!(
            "{count} contexts cannot fit in {} bytes",
            buf.len()
        ));
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        out.push(
            r.context()
                .map_err(|e| WireError(format!("context {i}: {}", e.0)))?,
        );
    }
    if r.pos != buf.len() {
        return err(format!("{} trailing bytes", buf.len() - r.pos));
    }
    Ok(out)
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.buf.len() => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            _ => err(format!(
                "truncated: {n} bytes wanted at offset {} of {}",
                self.pos,
                self.buf.len()
            )),
        }
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f32(&mut self) -> Result<f32, WireError> {
        Ok(f32::from_bits(self.u32()?))
    }

    fn u32s(&mut self, n: usize) -> Result<Vec<u32>, WireError> {
        let b = self.take(
            n.checked_mul(4)
                .ok_or_else(|| WireError("overflow".into()))?,
        )?;
        Ok(b.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn f32s(&mut self, n: usize) -> Result<Vec<f32>, WireError> {
        Ok(self.u32s(n)?.into_iter().map(f32::from_bits).collect())
    }

    fn context(&mut self) -> Result<EncodedContext, WireError> {
        let n = self.u32()? as usize;
        let rows = self.u32()? as usize;
        let target = self.u32()? as usize;
        let has_label = self.u8()?;
        let label = self.f32()?;
        if n == 0 || n > MAX_TOKENS || rows > MAX_TOKENS {
            return err(format!("{n} tokens, {rows} rows"));
        }
        if target >= n {
            return err(format!("target token {target} of {n}"));
        }
        if has_label > 1 {
            return err("label flag");
        }
        let col = self.u32s(n)?;
        let kind = self.take(n)?.to_vec();
        if let Some(k) = kind.iter().find(|&&k| k as usize >= N_KINDS) {
            return err(format!("token kind {k}"));
        }
        let num = self.f32s(n)?;
        let time = self.f32s(n * TIME_FEATS)?;
        let bucket = self.u32s(n)?;
        let row = self.u32s(n)?;
        if let Some(&x) = row.iter().find(|&&x| x as usize >= rows) {
            return err(format!("token of row {x} of {rows}"));
        }
        let row_table = self.u32s(rows)?;
        let row_hop = self.take(rows)?.to_vec();
        let mut row_parents = Vec::with_capacity(rows);
        for _ in 0..rows {
            let k = self.u32()? as usize;
            if k > rows {
                return err(format!("{k} parents of a row among {rows}"));
            }
            let p = self.u32s(k)?;
            if let Some(&x) = p.iter().find(|&&x| x as usize >= rows) {
                return err(format!("parent row {x} of {rows}"));
            }
            row_parents.push(p);
        }
        Ok(EncodedContext {
            col,
            kind,
            num,
            time,
            bucket,
            row,
            row_table,
            row_parents,
            row_hop,
            target,
            label: (has_label == 1).then_some(label),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(n: usize, rows: usize, label: Option<f32>, salt: u32) -> EncodedContext {
        EncodedContext {
            col: (0..n as u32).map(|i| i * 7 + salt).collect(),
            kind: (0..n).map(|i| (i % N_KINDS) as u8).collect(),
            num: (0..n).map(|i| i as f32 * -0.37 + salt as f32).collect(),
            time: (0..n * TIME_FEATS)
                .map(|i| (i as f32).sin() * 1e-3 + f32::EPSILON)
                .collect(),
            bucket: (0..n as u32)
                .map(|i| i.wrapping_mul(2_654_435_761))
                .collect(),
            row: (0..n).map(|i| (i % rows) as u32).collect(),
            row_table: (0..rows as u32).map(|i| i % 3 + 1).collect(),
            row_parents: (0..rows)
                .map(|i| (0..i.min(3)).map(|p| p as u32).collect())
                .collect(),
            row_hop: (0..rows).map(|i| (i % 4) as u8).collect(),
            target: n - 1,
            label,
        }
    }

    #[test]
    fn round_trip_is_exact() {
        let batch = vec![
            ctx(1, 1, None, 0),
            ctx(37, 5, Some(1.0), 3),
            ctx(256, 40, Some(-2.5e-7), 11),
            ctx(3, 3, Some(f32::MAX), 1),
        ];
        let bytes = encode_batch(&batch);
        assert_eq!(bytes.len(), batch_len(&batch));
        let back = decode_batch(&bytes).unwrap();
        assert_eq!(back, batch);
        // Bit-exact floats (PartialEq would accept -0.0 == 0.0).
        for (a, b) in back.iter().zip(&batch) {
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a.num), bits(&b.num));
            assert_eq!(bits(&a.time), bits(&b.time));
        }
        assert_eq!(decode_batch(&encode_batch(&[])).unwrap(), vec![]);
    }

    #[test]
    fn round_trip_of_real_encoder_output() {
        use crate::encode::{Encoder, EncoderConfig, RawRow, Subgraph, Value};
        use crate::schema::SemanticType as S;
        use std::sync::Arc;
        let t: Arc<str> = Arc::from("\"t\"");
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let sg = Subgraph {
            anchor: 1_000_000_000,
            seed: 0,
            rows: (0..4)
                .map(|i| RawRow {
                    table: t.clone(),
                    key: i.to_string(),
                    time: Some(i * 1000),
                    hop: i.min(2) as u8,
                    parents: if i > 0 { vec![0] } else { vec![] },
                    values: vec![
                        (a.clone(), S::Numerical, Value::Num(i as f64 * 1.5)),
                        (b.clone(), S::Categorical, Value::Text(format!("v{i}"))),
                    ],
                })
                .collect(),
        };
        let enc = Encoder::fit(EncoderConfig::default(), std::slice::from_ref(&sg));
        let c = vec![enc.encode(&sg), enc.encode_labeled(&sg, 1.0)];
        assert_eq!(decode_batch(&encode_batch(&c)).unwrap(), c);
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        let bytes = encode_batch(&[ctx(20, 4, Some(0.0), 2), ctx(5, 2, None, 1)]);
        // Every truncation fails cleanly.
        for cut in 0..bytes.len() {
            assert!(decode_batch(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // Trailing garbage.
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode_batch(&long).is_err());
        // A huge count.
        let mut huge = bytes.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_batch(&huge).is_err());
        // Target outside the context.
        let mut bad = bytes.clone();
        bad[12..16].copy_from_slice(&20u32.to_le_bytes());
        assert!(decode_batch(&bad).unwrap_err().0.contains("target"));
        // Flip every byte in turn: decoding may succeed (values change) but never panics,
        // and whatever decodes has consistent indices.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xA5;
            if let Ok(cs) = decode_batch(&b) {
                for c in cs {
                    assert!(c.target < c.n_tokens());
                    assert!(c.row.iter().all(|&r| (r as usize) < c.n_rows()));
                    assert!(c.kind.iter().all(|&k| (k as usize) < N_KINDS));
                }
            }
        }
    }
}
