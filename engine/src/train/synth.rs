//! A synthetic relational task for tests and benchmarks: customers → orders → products.
//! A customer churns iff the product of their most recent order is discontinued, so the
//! label depends only on a row two hops from the seed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::encode::{EncodedContext, Encoder, EncoderConfig, RawRow, Subgraph, Value};
use crate::schema::SemanticType as S;

const DAY: i64 = 86_400_000_000;
/// 2024-01-01T00:00:00Z in µs.
pub const ANCHOR: i64 = 1_704_067_200_000_000;

fn row(
    table: &str,
    key: String,
    time: Option<i64>,
    hop: u8,
    parents: Vec<usize>,
    values: Vec<(&str, S, Value)>,
) -> RawRow {
    RawRow::new(table, key, time, hop, parents, values)
}

/// [`churn_dataset`] encoded: an encoder fitted on it with `cfg`, and the labelled
/// contexts (the fixture of the model's tests and benches).
pub fn encoded_churn(
    n: usize,
    max_orders: usize,
    n_products: usize,
    seed: u64,
    cfg: EncoderConfig,
) -> (Encoder, Vec<EncodedContext>) {
    let data = churn_dataset(n, max_orders, n_products, seed);
    let sgs: Vec<_> = data.iter().map(|(s, _)| s.clone()).collect();
    let enc = Encoder::fit(cfg, &sgs);
    let ecs = data
        .iter()
        .map(|(s, y)| enc.encode_labeled(s, *y))
        .collect();
    (enc, ecs)
}

/// `n` labelled customer contexts with 1..=`max_orders` orders each, drawn from `n_products`
/// products (about 40% discontinued).
pub fn churn_dataset(
    n: usize,
    max_orders: usize,
    n_products: usize,
    seed: u64,
) -> Vec<(Subgraph, f32)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let products: Vec<(f64, u32, bool)> = (0..n_products)
        .map(|_| {
            (
                rng.random_range(5.0..500.0),
                rng.random_range(0..8u32),
                rng.random_bool(0.4),
            )
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for c in 0..n {
        let mut rows = vec![row(
            "public.customers",
            c.to_string(),
            Some(ANCHOR - rng.random_range(400..2000) * DAY),
            0,
            vec![],
            vec![
                ("customer_id", S::Key, Value::Num(c as f64)),
                (
                    "age",
                    S::Numerical,
                    Value::Num(rng.random_range(18.0..80.0)),
                ),
                (
                    "segment",
                    S::Categorical,
                    Value::Text(["a", "b", "c"][rng.random_range(0..3)].into()),
                ),
            ],
        )];
        let k = rng.random_range(1..=max_orders.max(1));
        let mut days = rng.random_range(1..30i64);
        let mut product_row: Vec<(usize, usize)> = Vec::new(); // (product, row index)
        let mut label = 0.0;
        for o in 0..k {
            let p = rng.random_range(0..n_products);
            if o == 0 {
                label = products[p].2 as u8 as f32;
            }
            let pr = match product_row.iter().find(|(q, _)| *q == p) {
                Some(&(_, r)) => r,
                None => {
                    let (price, cat, disc) = products[p];
                    rows.push(row(
                        "public.products",
                        p.to_string(),
                        None,
                        2,
                        vec![],
                        vec![
                            ("price", S::Numerical, Value::Num(price)),
                            ("category", S::Categorical, Value::Text(format!("cat{cat}"))),
                            ("discontinued", S::Boolean, Value::Bool(disc)),
                        ],
                    ));
                    product_row.push((p, rows.len() - 1));
                    rows.len() - 1
                }
            };
            let t = ANCHOR - days * DAY - rng.random_range(0..DAY);
            rows.push(row(
                "public.orders",
                format!("{c}-{o}"),
                Some(t),
                1,
                vec![0, pr],
                vec![
                    ("ordered_at", S::Timestamp, Value::Time(t)),
                    (
                        "quantity",
                        S::Numerical,
                        Value::Num(rng.random_range(1..10) as f64),
                    ),
                ],
            ));
            days += rng.random_range(20..120i64);
        }
        out.push((
            Subgraph {
                anchor: ANCHOR,
                rows,
                seed: 0,
            },
            label,
        ));
    }
    out
}
