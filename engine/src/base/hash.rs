//! Hashing: FNV-1a, for what must hash the same on every machine and version (category
//! buckets, entity splits, model fingerprints) and for the sampler's maps, whose keys come
//! from rdl's own statements (a keyed, DoS-resistant hash buys nothing there and costs a
//! third of the assembly time).

use std::hash::Hasher;

/// 64-bit FNV-1a: deterministic across runs and platforms.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// [`fnv1a`] of the concatenation of `parts`, without building it.
pub fn fnv1a_parts(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in parts.iter().flat_map(|p| p.iter()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// FNV-1a for the assembler's maps: keys are short strings from our own queries, so a
/// keyed (DoS-resistant) hash buys nothing and costs a third of the assembly time.
#[derive(Default)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_hash_as_their_concatenation() {
        assert_eq!(
            fnv1a_parts(&[b"results.status", b"=", b"Finished"]),
            fnv1a(b"results.status=Finished")
        );
        assert_eq!(fnv1a_parts(&[]), fnv1a(b""));
    }
}
