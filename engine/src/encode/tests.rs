//! Encoder tests: vocabulary, statistics and encoding on hand-made subgraphs.

use super::*;
use SemanticType as S;

const DAY: i64 = 86_400_000_000;

fn row(table: &str, hop: u8, parents: Vec<usize>, values: Vec<(&str, S, Value)>) -> RawRow {
    RawRow::new(table, "k", None, hop, parents, values)
}

fn sg(amount: f64) -> Subgraph {
    Subgraph {
        anchor: 100 * DAY,
        seed: 0,
        rows: vec![
            row(
                "public.c",
                0,
                vec![],
                vec![
                    ("id", S::Key, Value::Num(7.0)),
                    ("age", S::Numerical, Value::Num(amount)),
                    ("vip", S::Boolean, Value::Bool(true)),
                ],
            ),
            row(
                "public.o",
                1,
                vec![0],
                vec![
                    ("at", S::Timestamp, Value::Time(90 * DAY)),
                    ("kind", S::Categorical, Value::Text("x".into())),
                    ("note", S::Text, Value::Null),
                ],
            ),
        ],
    }
}

#[test]
fn stats_come_from_training_only() {
    let enc = Encoder::fit(EncoderConfig::default(), &[sg(10.0), sg(20.0)]);
    let s = &enc.num_stats["public.c.age"];
    assert!((s.mean - 15.0).abs() < 1e-12 && (s.std - 5.0).abs() < 1e-12);
    // a test context with an extreme value does not move the statistics: it takes the
    // highest training value's rank
    let e = enc.encode(&sg(1e9));
    let age = e
        .col
        .iter()
        .position(|&c| c == enc.columns["public.c.age"])
        .unwrap();
    assert_eq!(e.num[age], 3f32.sqrt());
    let at = |x: f64| enc.encode(&sg(x)).num[age];
    assert!(at(10.0) < at(15.0) && at(15.0) < at(20.0) && at(20.0) < at(1e9));
    // A model stored before the quantiles reads the z-score, clipped.
    let mut old = enc.clone();
    old.num_stats.get_mut("public.c.age").unwrap().knots.clear();
    assert_eq!(old.encode(&sg(1e9)).num[age], 10.0);
    assert_eq!(old.encode(&sg(20.0)).num[age], 1.0);
}

/// A numeric column that is NULL in every training context has no statistics, but it
/// was still read as a number: a later type check must not call it changed.
#[test]
fn semantics_are_recorded_even_without_statistics() {
    let enc = Encoder::fit(EncoderConfig::default(), &[sg(f64::NAN)]);
    assert!(!enc.num_stats.contains_key("public.c.age"));
    assert!(enc.read_as_numeric("public.c.age"));
    assert!(!enc.read_as_numeric("public.o.kind"));
    assert_eq!(enc.semantics["public.o.note"], S::Text);
    // Stored before semantics were recorded: the statistics are all there is.
    let mut json =
        serde_json::to_value(Encoder::fit(EncoderConfig::default(), &[sg(3.0)])).unwrap();
    assert!(json.as_object_mut().unwrap().remove("semantics").is_some());
    let old: Encoder = serde_json::from_value(json).unwrap();
    assert!(old.semantics.is_empty() && old.read_as_numeric("public.c.age"));
}

#[test]
fn keys_are_not_encoded_and_target_is_in_seed_row() {
    let enc = Encoder::fit(EncoderConfig::default(), &[sg(1.0)]);
    assert!(!enc.columns.contains_key("public.c.id"));
    let e = enc.encode(&sg(1.0));
    // target + age + vip + at + kind + note
    assert_eq!(e.n_tokens(), 6);
    assert_eq!(e.col[e.target], TARGET_COLUMN);
    assert_eq!(e.kind[e.target], Kind::Mask as u8);
    assert_eq!(e.row[e.target], 0);
    assert_eq!(e.row_parents, vec![vec![], vec![0]]);
    assert_eq!(e.row_hop, vec![0, 1]);
}

#[test]
fn nulls_bools_categories_and_oov() {
    let enc = Encoder::fit(EncoderConfig::default(), &[sg(1.0)]);
    let e = enc.encode(&sg(1.0));
    let kinds: Vec<u8> = e.kind.clone();
    assert_eq!(
        kinds,
        vec![5, Kind::Num as u8, Kind::Bool as u8, 1, 2, Kind::Null as u8]
    );
    assert_eq!(e.bucket[2], 1);
    assert_eq!(
        e.bucket[4],
        enc.bucket(&enc.col("public.o.kind".into()), "x")
    );
    // Buckets are stored models' vocabulary: the hash of `table.column=value`, as ever.
    let n = enc.config.n_buckets as u64;
    let old =
        |r: &str| (crate::base::hash::fnv1a(format!("public.o.kind={r}").as_bytes()) % n) as u32;
    let kept = enc
        .frequent
        .get("public.o.kind")
        .is_none_or(|k| k.contains(&old("x")));
    assert_eq!(
        e.bucket[4],
        if kept {
            old("x")
        } else {
            old(super::rare::RARE)
        }
    );
    assert!(e.bucket[4] < enc.config.n_buckets);
    let mut other = sg(1.0);
    other.rows[1]
        .values
        .push(("new".into(), S::Numerical, Value::Num(3.0)));
    other.rows[1].table = "public.unknown".into();
    let e = enc.encode(&other);
    assert!(e.col[3..].iter().all(|&c| c == OOV_COLUMN));
    assert_eq!(e.row_table[1], OOV_TABLE);
    assert!(e.num.iter().all(|x| x.is_finite()));
}

#[test]
fn time_is_relative_to_anchor() {
    let f = time_features(90 * DAY, 100 * DAY);
    assert!((f[0] as f64 - (-(11f64.ln()))).abs() < 1e-6);
    let g = time_features(190 * DAY, 200 * DAY);
    assert_eq!(f[0], g[0]); // same offset, same first feature
    assert_eq!(time_features(5, 5)[0], 0.0);
    // day of week: 1970-01-05 was a Monday → phase 0
    let m = time_features(4 * DAY, 0);
    assert!(m[1].abs() < 1e-6 && (m[2] - 1.0).abs() < 1e-6);
}

#[test]
fn token_cap_drops_far_and_old_rows_first() {
    let mut g = sg(1.0);
    for (i, t) in [(2, 10), (3, 50)] {
        let mut r = row(
            "public.o",
            1,
            vec![0],
            vec![("kind", S::Categorical, Value::Text(format!("{i}")))],
        );
        r.time = Some(t * DAY);
        g.rows.push(r);
    }
    g.rows[1].hop = 2;
    let enc = Encoder::fit(
        EncoderConfig {
            max_tokens: 4,
            n_buckets: 16,
        },
        &[g.clone()],
    );
    let e = enc.encode(&g);
    // seed: 3 tokens; room for one more: the newest hop-1 row (time 50)
    assert_eq!(e.n_tokens(), 4);
    assert_eq!(e.n_rows(), 2);
    assert_eq!(
        e.bucket[3],
        enc.bucket(&enc.col("public.o.kind".into()), "3")
    );
    let s = serde_json::to_string(&enc).unwrap();
    assert_eq!(serde_json::from_str::<Encoder>(&s).unwrap(), enc);
}
