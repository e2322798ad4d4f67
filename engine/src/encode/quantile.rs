//! Rank encoding of numbers: a value's position among the training values of its column,
//! read from a few quantiles kept with the encoder.
//!
//! Why: a number reaches the model as one scalar times a learned direction. Z-scored, a
//! skewed column (amounts, durations, counts) puts almost every value in a sliver near 0
//! and a few far out, so the layers above see next to no difference between most rows.
//! Its rank spreads the values evenly, whatever their scale or tail, as the splits of a
//! gradient-boosted tree see them.

use crate::base::hash::fnv1a;

/// Quantiles kept per column (the 0th to the 100th percentile, evenly spaced).
pub const KNOTS: usize = 65;
/// Training values sampled per column to compute them.
const SAMPLE: usize = 8192;

/// A uniform sample of a column's values (reservoir sampling, seeded by the column name:
/// the same training contexts give the same knots).
#[derive(Debug, Clone)]
pub struct Reservoir {
    seen: u64,
    state: u64,
    values: Vec<f64>,
}

impl Reservoir {
    pub fn new(column: &str) -> Reservoir {
        Reservoir {
            seen: 0,
            state: fnv1a(column.as_bytes()) | 1,
            values: Vec::new(),
        }
    }

    pub fn add(&mut self, x: f64) {
        self.seen += 1;
        if self.values.len() < SAMPLE {
            self.values.push(x);
            return;
        }
        // xorshift64*: cheap, and good enough to pick which slot a value replaces.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let r = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) % self.seen;
        if (r as usize) < SAMPLE {
            self.values[r as usize] = x;
        }
    }

    /// The [`KNOTS`] quantiles of the sample (empty when it is empty).
    pub fn knots(mut self) -> Vec<f64> {
        if self.values.is_empty() {
            return Vec::new();
        }
        self.values.sort_by(f64::total_cmp);
        let last = (self.values.len() - 1) as f64;
        (0..KNOTS)
            .map(|i| self.values[(last * i as f64 / (KNOTS - 1) as f64).round() as usize])
            .collect()
    }
}

/// `x`'s rank among the training values, from `knots`, scaled to mean 0 and variance 1
/// (uniform on ±√3): interpolated between knots, the middle of a run of equal knots (a
/// value many rows share), and the end knot's rank beyond either end.
pub fn rank_score(knots: &[f64], x: f64) -> f64 {
    let n = knots.len();
    if n < 2 {
        return 0.0;
    }
    let lo = knots.partition_point(|&k| k < x);
    let hi = knots.partition_point(|&k| k <= x);
    let pos = if lo < hi {
        (lo + hi - 1) as f64 / 2.0
    } else if lo == 0 {
        0.0
    } else if lo == n {
        (n - 1) as f64
    } else {
        let (a, b) = (knots[lo - 1], knots[lo]);
        (lo - 1) as f64 + (x - a) / (b - a)
    };
    (pos / (n - 1) as f64 - 0.5) * 12f64.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heavy_tail_spreads_evenly() {
        let mut r = Reservoir::new("public.o.amount");
        // Log-normal-like: most values small, a few huge.
        for i in 0..20_000u32 {
            let u = (i as f64 + 0.5) / 20_000.0;
            r.add((8.0 * u).exp());
        }
        let k = r.knots();
        assert_eq!(k.len(), KNOTS);
        assert!(k.windows(2).all(|w| w[0] <= w[1]));
        // The median value sits in the middle, a quarter of the way is a quarter up:
        // z-scores would put both within 0.4 standard deviations of each other.
        assert!(rank_score(&k, 4f64.exp()).abs() < 0.08);
        let q = rank_score(&k, 2f64.exp());
        assert!((q - (0.25 - 0.5) * 12f64.sqrt()).abs() < 0.08, "{q}");
        // Beyond the ends: the ends' ranks, never more.
        let top = 3f64.sqrt();
        assert!((rank_score(&k, 1e12) - top).abs() < 1e-9);
        assert!((rank_score(&k, -1e12) + top).abs() < 1e-9);
        // Monotone.
        let xs = [0.5, 1.0, 3.0, 50.0, 400.0, 3000.0];
        assert!(xs
            .windows(2)
            .all(|w| rank_score(&k, w[0]) <= rank_score(&k, w[1])));
    }

    #[test]
    fn shared_values_take_the_middle_of_their_run() {
        let mut r = Reservoir::new("c");
        // 70% zeros, then 1..=300.
        for _ in 0..700 {
            r.add(0.0);
        }
        for i in 1..=300 {
            r.add(i as f64);
        }
        let k = r.knots();
        let zero = rank_score(&k, 0.0);
        // The zeros' middle rank is 0.35: (0.35 - 0.5) * √12.
        assert!((zero - (-0.15 * 12f64.sqrt())).abs() < 0.05, "{zero}");
        assert!(rank_score(&k, 1.0) > zero);
        // The same sample always gives the same knots.
        let mut again = Reservoir::new("c");
        (0..700).for_each(|_| again.add(0.0));
        (1..=300).for_each(|i| again.add(i as f64));
        assert_eq!(again.knots(), k);
        assert!(Reservoir::new("empty").knots().is_empty());
        assert_eq!(rank_score(&[], 3.0), 0.0);
    }
}
