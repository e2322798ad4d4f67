//! Post-hoc calibration fitted on validation contexts: temperature scaling (binary and
//! multiclass) and split-conformal residual quantiles (regression).

use serde::{Deserialize, Serialize};

use super::Head;

/// Coverage levels of the stored regression intervals: 0.50, 0.51, …, 0.99.
pub fn conformal_levels() -> impl Iterator<Item = f64> {
    (50..100).map(|p| p as f64 / 100.0)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Logits are divided by this before the sigmoid / softmax.
    pub temperature: f64,
    /// `(coverage level, absolute residual quantile in target units)`.
    pub residual_quantiles: Vec<(f64, f64)>,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration {
            temperature: 1.0,
            residual_quantiles: Vec::new(),
        }
    }
}

pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

pub fn softmax(logits: &[f32], t: f64) -> Vec<f64> {
    let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let e: Vec<f64> = logits.iter().map(|&l| ((l as f64 - m) / t).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

fn nll(task: Head, raw: &[Vec<f32>], ys: &[f32], t: f64) -> f64 {
    let mut s = 0.0;
    for (r, &y) in raw.iter().zip(ys) {
        s += match task {
            Head::Multiclass { .. } => -softmax(r, t)[y as usize].max(1e-15).ln(),
            _ => {
                // stable BCE with logits
                let x = r[0] as f64 / t;
                x.max(0.0) - x * y as f64 + (-x.abs()).exp().ln_1p()
            }
        };
    }
    s / raw.len().max(1) as f64
}

impl Calibration {
    /// Fits on validation raw outputs and labels.
    pub fn fit(task: Head, raw: &[Vec<f32>], ys: &[f32], norm: Option<(f64, f64)>) -> Calibration {
        let mut c = Calibration::default();
        if raw.is_empty() {
            return c;
        }
        match task {
            Head::Binary | Head::Multiclass { .. } => {
                // log-spaced grid over [0.05, 20], then a finer grid around the best point
                let mut best = (1.0, nll(task, raw, ys, 1.0));
                let mut lo = 0.05f64.ln();
                let mut hi = 20f64.ln();
                for _ in 0..3 {
                    let n = 40;
                    for i in 0..=n {
                        let t = (lo + (hi - lo) * i as f64 / n as f64).exp();
                        let v = nll(task, raw, ys, t);
                        if v < best.1 {
                            best = (t, v);
                        }
                    }
                    let w = (hi - lo) / 10.0;
                    lo = best.0.ln() - w;
                    hi = best.0.ln() + w;
                }
                c.temperature = best.0;
            }
            Head::Regression => {
                let (m, s) = norm.unwrap_or((0.0, 1.0));
                let mut res: Vec<f64> = raw
                    .iter()
                    .zip(ys)
                    .map(|(r, &y)| (r[0] as f64 * s + m - y as f64).abs())
                    .collect();
                res.sort_by(|a, b| a.total_cmp(b));
                let n = res.len();
                for level in conformal_levels() {
                    // split-conformal: the ⌈(n+1)·level⌉-th smallest residual
                    let k = (((n + 1) as f64 * level).ceil() as usize).clamp(1, n);
                    c.residual_quantiles.push((level, res[k - 1]));
                }
            }
        }
        c
    }

    /// Calibrated prediction for one raw output.
    pub fn apply(&self, task: Head, raw: &[f32], norm: Option<(f64, f64)>) -> Vec<f32> {
        match task {
            Head::Binary => vec![sigmoid(raw[0] as f64 / self.temperature) as f32],
            Head::Multiclass { .. } => softmax(raw, self.temperature)
                .into_iter()
                .map(|p| p as f32)
                .collect(),
            Head::Regression => {
                let (m, s) = norm.unwrap_or((0.0, 1.0));
                vec![(raw[0] as f64 * s + m) as f32]
            }
        }
    }

    /// The residual quantile for coverage `level`: the stored level equal to it, else the
    /// smallest stored level above it (a wider interval, never a narrower one); `None`
    /// when no stored level reaches it.
    pub fn quantile(&self, level: f64) -> Option<f64> {
        self.residual_quantiles
            .iter()
            .filter(|(l, _)| *l >= level - 1e-9)
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, q)| *q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_shrinks_overconfident_logits() {
        // logits ±4 but only 70% right → temperature > 1
        let mut raw = Vec::new();
        let mut ys = Vec::new();
        for i in 0..100 {
            let pos = i % 2 == 0;
            raw.push(vec![if pos { 4.0 } else { -4.0 }]);
            ys.push(if (i % 10 < 7) == pos { 1.0 } else { 0.0 });
        }
        let c = Calibration::fit(Head::Binary, &raw, &ys, None);
        assert!(c.temperature > 1.5, "{}", c.temperature);
        assert!(nll(Head::Binary, &raw, &ys, c.temperature) < nll(Head::Binary, &raw, &ys, 1.0));
    }

    #[test]
    fn conformal_quantiles() {
        let raw: Vec<Vec<f32>> = (0..9).map(|_| vec![0.0]).collect();
        let ys: Vec<f32> = (1..=9).map(|i| i as f32).collect();
        let c = Calibration::fit(Head::Regression, &raw, &ys, Some((0.0, 1.0)));
        // n = 9: 80% → ⌈8.0⌉ = 8th → 8; 95% → ⌈9.5⌉ = 10 → clamped to 9th → 9
        assert_eq!(c.residual_quantiles.len(), 50);
        assert_eq!(c.quantile(0.8), Some(8.0));
        assert_eq!(c.quantile(0.95), Some(9.0));
        // 50% → ⌈5.0⌉ = 5th; a level between stored ones takes the next one up
        assert_eq!(c.quantile(0.5), Some(5.0));
        assert_eq!(c.quantile(0.795), Some(8.0));
        assert_eq!(c.quantile(0.999), None);
        assert_eq!(
            c.apply(Head::Regression, &[1.0], Some((10.0, 2.0))),
            vec![12.0]
        );
    }
}
