//! Untidiness: columns and tables that carry no signal — numbers (some heavy-tailed),
//! low- and high-cardinality categories, booleans, free-text notes, attribute dates
//! (birth, expiry: never mistaken for a time column), many of them mostly NULL. Real
//! databases are full of them; a model must learn to ignore them.

use super::db::{Cell, ColType, Strings, Table};
use super::rng::{zipf, Rng};
use super::vocab::{
    CITIES, NOISE_BOOL, NOISE_CAT_HIGH, NOISE_CAT_LOW, NOISE_DATE, NOISE_NOTE, NOISE_NUM,
    NOISE_SKEWED, WORDS,
};
use super::DAY;

/// A column name not used in `t` yet.
pub fn fresh_name(t: &Table, base: &str) -> String {
    if t.col(base).is_none() {
        return base.to_string();
    }
    (2..)
        .map(|k| format!("{base}_{k}"))
        .find(|n| t.col(n).is_none())
        .expect("some suffix is free")
}

/// Knocks out a share of the cells (NULL-heavy when `p` is large).
fn holes(rng: &mut Rng, mut v: Vec<Cell>, p: f64) -> Vec<Cell> {
    if p > 0.0 {
        for c in &mut v {
            if rng.bool(p) {
                *c = Cell::Null;
            }
        }
    }
    v
}

/// Adds `n` noise columns of random kinds to `t`.
pub fn add_noise_columns(rng: &mut Rng, t: &mut Table, n: usize, strings: &mut Strings) {
    let rows = t.rows();
    for _ in 0..n {
        // A third of noise columns are mostly empty, a third have a few holes.
        let null_p = match rng.index(3) {
            0 => rng.uniform(0.6, 0.98),
            1 => rng.uniform(0.0, 0.1),
            _ => 0.0,
        };
        let kind = rng.index(9);
        let (name, ty, data): (String, ColType, Vec<Cell>) = match kind {
            0 | 1 => {
                let (mu, sd) = (rng.uniform(-50.0, 200.0), rng.lognormal(1.0, 1.5));
                let int = rng.bool(0.4);
                let data = (0..rows)
                    .map(|_| {
                        let x = mu + sd * rng.normal();
                        if int {
                            Cell::Int(x.round() as i64)
                        } else {
                            Cell::Float((x * 1000.0).round() / 1000.0)
                        }
                    })
                    .collect();
                let ty = if int { ColType::Int } else { ColType::Float };
                (rng.pick(NOISE_NUM).to_string(), ty, data)
            }
            2 => {
                let pareto = rng.bool(0.5);
                let data = (0..rows)
                    .map(|_| {
                        if pareto {
                            Cell::Int((10.0 * rng.pareto(1.1)) as i64)
                        } else {
                            Cell::Float((rng.lognormal(5.0, 1.8) * 100.0).round() / 100.0)
                        }
                    })
                    .collect();
                let ty = if pareto {
                    ColType::BigInt
                } else {
                    ColType::Float
                };
                (rng.pick(NOISE_SKEWED).to_string(), ty, data)
            }
            3 | 4 => {
                let (name, values) = *rng.pick(NOISE_CAT_LOW);
                let w = zipf(values.len(), rng.uniform(0.0, 1.5));
                let syms: Vec<Cell> = values.iter().map(|v| strings.cell(v)).collect();
                let data = (0..rows).map(|_| syms[rng.weighted(&w)]).collect();
                (name.to_string(), ColType::Text, data)
            }
            5 => {
                let name = rng.pick(NOISE_CAT_HIGH).to_string();
                let k = rng.int(200, 5000) as usize;
                let cum: Vec<f64> = zipf(k, 0.7)
                    .iter()
                    .scan(0.0, |a, x| {
                        *a += x;
                        Some(*a)
                    })
                    .collect();
                let prefix = if name == "city" {
                    *rng.pick(CITIES)
                } else {
                    name.as_str()
                };
                let prefix = prefix.to_string();
                let data = (0..rows)
                    .map(|_| strings.cell(&format!("{prefix}_{}", rng.weighted_cum(&cum))))
                    .collect();
                (name, ColType::Text, data)
            }
            6 => {
                let p = rng.uniform(0.02, 0.9);
                let data = (0..rows).map(|_| Cell::Bool(rng.bool(p))).collect();
                (rng.pick(NOISE_BOOL).to_string(), ColType::Bool, data)
            }
            7 => {
                let name = rng.pick(NOISE_DATE).to_string();
                let birth = name.contains("birth");
                let base = if birth { -11_000 } else { 18_000 };
                let data = (0..rows)
                    .map(|_| Cell::Time((base + rng.int(0, 12_000)) * DAY))
                    .collect();
                (name, ColType::Date, data)
            }
            _ => {
                let data = (0..rows)
                    .map(|_| {
                        let n = rng.int(1, 6);
                        let words: Vec<&str> = (0..n).map(|_| *rng.pick(WORDS)).collect();
                        strings.cell(&words.join(" "))
                    })
                    .collect();
                let p = rng.uniform(0.5, 0.95).max(null_p);
                let note = NOISE_NOTE[rng.index(NOISE_NOTE.len())];
                let name = fresh_name(t, note);
                let data = holes(rng, data, p);
                t.add(&name, ColType::Text, data);
                continue;
            }
        };
        let name = fresh_name(t, &name);
        let data = holes(rng, data, null_p);
        t.add(&name, ty, data);
    }
}
