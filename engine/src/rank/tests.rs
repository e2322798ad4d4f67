use super::model::{sampled_softmax, unused_parameter, RankBatch, RankModel};
use super::train::{train, RankData, RankExample, RankTrainConfig};
use super::*;
use crate::encode::{Encoder, EncoderConfig, RawRow, Subgraph, Value};
use crate::model::{sorted_vars, ModelConfig, ModelDims};
use crate::schema::SemanticType as S;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;

const DAY: i64 = US_PER_DAY;
const T0: i64 = 1_704_067_200_000_000; // 2024-01-01

fn cfg() -> RankConfig {
    RankConfig {
        k: 3,
        window: Window {
            start: 0,
            end: 30,
            unit: Unit::Days,
        },
        ..RankConfig::default()
    }
}

fn ev(e: &str, i: &str, day: i64) -> (String, String, i64) {
    (e.to_string(), i.to_string(), T0 + day * DAY)
}

fn log() -> Log {
    Log::new(vec![
        ev("a", "x", 1),
        ev("a", "x", 3),
        ev("a", "y", 5),
        ev("b", "x", 2),
        ev("b", "z", 10),
        ev("c", "y", 20),
        ev("c", "w", 100), // far after the others
    ])
}

#[test]
fn log_is_sorted_and_cut_at_the_anchor() {
    let l = log();
    assert!(l.events.windows(2).all(|w| w[0].time <= w[1].time));
    assert_eq!(l.upto(T0 + 5 * DAY).len(), 4);
    // same rows in another order: same log
    let mut rows = vec![
        ev("c", "w", 100),
        ev("a", "y", 5),
        ev("b", "x", 2),
        ev("a", "x", 1),
    ];
    let l1 = Log::new(rows.clone());
    rows.reverse();
    let l2 = Log::new(rows);
    assert_eq!(l1.events, l2.events);
    assert_eq!(l1.item_keys, l2.item_keys);
    let h = l.history("a", T0 + 4 * DAY, &cfg());
    assert_eq!(h.total, 2);
    assert_eq!(h.items.len(), 1);
    assert_eq!(h.items[0].count, 2);
    assert_eq!(l.history("nobody", T0, &cfg()).total, 0);
}

#[test]
fn nothing_after_the_anchor_changes_anything() {
    let t = T0 + 30 * DAY;
    let c = cfg();
    let base = log();
    let mut rows = vec![
        ev("a", "x", 1),
        ev("a", "x", 3),
        ev("a", "y", 5),
        ev("b", "x", 2),
        ev("b", "z", 10),
        ev("c", "y", 20),
        ev("c", "w", 100),
    ];
    // Events after t: new items, more of old items, new transitions.
    rows.push(ev("a", "new", 31));
    rows.push(ev("a", "z", 31));
    rows.push(ev("b", "y", 40));
    let more = Log::new(rows);
    let key = |l: &Log, v: &[u32]| {
        v.iter()
            .map(|&i| l.item_keys[i as usize].clone())
            .collect::<Vec<_>>()
    };
    for e in ["a", "b", "c"] {
        let (s1, s2) = (
            ItemStats::at(&base, t, &c, true),
            ItemStats::at(&more, t, &c, true),
        );
        let (h1, h2) = (base.history(e, t, &c), more.history(e, t, &c));
        assert_eq!(h1.total, h2.total);
        let (f1, f2) = (
            EntityFeats::new(&h1, &s1, &c),
            EntityFeats::new(&h2, &s2, &c),
        );
        let c1 = candidates(&h1, &f1, &s1, &[], &c);
        let c2 = candidates(&h2, &f2, &s2, &[], &c);
        assert_eq!(key(&base, &c1), key(&more, &c2));
        for (a, b) in c1.iter().zip(&c2) {
            assert_eq!(f1.get(*a), f2.get(*b));
            assert_eq!(s1.item_feats(*a), s2.item_feats(*b));
        }
        assert_eq!(
            key(&base, &popularity_baseline(&s1, 3)),
            key(&more, &popularity_baseline(&s2, 3))
        );
        assert_eq!(
            key(&base, &history_baseline(&h1, 3)),
            key(&more, &history_baseline(&h2, 3))
        );
    }
}

#[test]
fn an_item_first_seen_after_the_anchor_is_never_a_candidate() {
    let c = cfg();
    let l = log();
    let w = l.item_id("w").unwrap(); // first seen at day 100
    for day in [0, 20, 50, 99] {
        let t = T0 + day * DAY;
        let s = ItemStats::at(&l, t, &c, true);
        assert!(!s.seen(w));
        for e in ["a", "b", "c"] {
            let h = l.history(e, t, &c);
            let f = EntityFeats::new(&h, &s, &c);
            // even when it is handed in as a context item
            let cands = candidates(&h, &f, &s, &[w], &c);
            assert!(!cands.contains(&w), "day {day} entity {e}");
        }
        assert!(!popularity_baseline(&s, 10).contains(&w));
    }
    let s = ItemStats::at(&l, T0 + 100 * DAY, &c, true);
    assert!(s.seen(w));
}

#[test]
fn popularity_windows_and_baselines() {
    let c = cfg();
    let l = log();
    let t = T0 + 25 * DAY;
    let s = ItemStats::at(&l, t, &c, false);
    let id = |k: &str| l.item_id(k).unwrap();
    // last window (t-30d, t]: x 3, y 2, z 1
    assert_eq!(s.pop_last[id("x") as usize], 3);
    assert_eq!(s.pop_last[id("y") as usize], 2);
    assert_eq!(popularity_baseline(&s, 2), vec![id("x"), id("y")]);
    // one year later, the same events are "the window a year earlier"
    let t2 = add(t, 12, Unit::Months);
    let s2 = ItemStats::at(&l, t2, &c, false);
    assert_eq!(s2.pop_last.iter().sum::<u32>(), 0);
    // (t2, t2+30d] a year earlier is (t, t+30d]: only c's w at day 100 is outside it
    assert_eq!(s2.pop_year_before.iter().sum::<u32>(), 0);
    let s3 = ItemStats::at(&l, add(T0, 12, Unit::Months), &c, false);
    // (T0, T0+30d] a year earlier: x3 y2 z1 (day 20 included)
    assert_eq!(s3.pop_year_before.iter().sum::<u32>(), 6);
    assert!(
        popularity_baseline(&s3, 5).is_empty(),
        "nothing in the last window"
    );
    // history baseline: most frequent first, then the most recent
    let h = l.history("a", t, &c);
    assert_eq!(history_baseline(&h, 5), vec![id("x"), id("y")]);
    // history itself is newest first
    assert_eq!(h.items[0].item, id("y"));
}

#[test]
fn transitions_count_entities_within_one_window() {
    let c = cfg();
    let l = Log::new(vec![
        ev("a", "j", 0),
        ev("a", "i", 10),
        ev("a", "i", 11), // same pair again: counted once for a
        ev("b", "j", 0),
        ev("b", "i", 40), // more than 30 days later: not a transition
        ev("c", "j", 0),
        ev("c", "k", 5),
    ]);
    let s = ItemStats::at(&l, T0 + 50 * DAY, &c, true);
    let id = |k: &str| l.item_id(k).unwrap();
    let row = &s.transitions[id("j") as usize];
    // 3 entities had j; i and k each followed once: 1 / (3 + 2)
    assert_eq!(row.len(), 2);
    for &(_, p) in row {
        assert!((p - 0.2).abs() < 1e-6, "{p}");
    }
    assert!(s.transitions[id("k") as usize].is_empty());
    // an entity with only j gets i and k as neighbours and candidates
    let h = History::new([(id("j"), T0 + 49 * DAY)].into_iter(), T0 + 50 * DAY, &c);
    let f = EntityFeats::new(&h, &s, &c);
    assert!(f.get(id("i"))[4] > 0.0 && f.get(id("k"))[4] > 0.0);
    let cands = candidates(&h, &f, &s, &[], &c);
    assert_eq!(cands[0], id("j"));
    assert!(cands.contains(&id("i")) && cands.contains(&id("k")));
    // history features
    let fj = f.get(id("j"));
    assert!((fj[0] - 2f32.ln()).abs() < 1e-6); // log1p(1)
    assert!(fj[1] > 0.96 && fj[5] == 1.0 && fj[3] == 1.0);
}

#[test]
fn candidates_are_capped_and_unique() {
    let mut c = cfg();
    c.max_candidates = 2;
    let l = log();
    let t = T0 + 30 * DAY;
    let s = ItemStats::at(&l, t, &c, true);
    let h = l.history("a", t, &c);
    let f = EntityFeats::new(&h, &s, &c);
    let x = l.item_id("x").unwrap();
    let cands = candidates(&h, &f, &s, &[x, x], &c);
    assert_eq!(cands.len(), 2);
    assert_ne!(cands[0], cands[1]);
}

#[test]
fn item_side_time_is_the_start_of_the_day() {
    assert_eq!(item_side_time(T0 + 5 * US_PER_HOUR, Unit::Days), T0);
    assert_eq!(item_side_time(T0, Unit::Months), T0);
    assert_eq!(
        item_side_time(T0 + 5 * US_PER_HOUR + 7, Unit::Hours),
        T0 + 5 * US_PER_HOUR
    );
    assert!(item_side_time(-7, Unit::Days) <= -7);
}

#[test]
fn sampled_softmax_matches_hand_computation() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let s = Tensor::new(&[[1f32, 2., 0.5, -1.], [0., 0., 3., 1.]], &dev)?;
    // row 0: positives 0 and 1; row 1: positive 2
    let l = sampled_softmax(&s, &[vec![0, 1], vec![2]])?
        .unwrap()
        .to_scalar::<f32>()?;
    let lse = |v: &[f32]| v.iter().map(|x| x.exp()).sum::<f32>().ln();
    let q0 = lse(&[1., 0.5, -1.]) - 1.0; // positive 0 vs negatives (1 masked)
    let q1 = lse(&[2., 0.5, -1.]) - 2.0;
    let q2 = lse(&[0., 0., 3., 1.]) - 3.0;
    let want = (q0 + q1 + q2) / 3.0;
    assert!((l - want).abs() < 1e-5, "{l} vs {want}");
    // no positives anywhere: no loss
    assert!(sampled_softmax(&s, &[vec![], vec![]])?.is_none());
    // huge scores stay finite
    let big = Tensor::new(&[[1e4f32, -1e4, 0.]], &dev)?;
    let l = sampled_softmax(&big, &[vec![1]])?
        .unwrap()
        .to_scalar::<f32>()?;
    assert!(l.is_finite() && (l - 2e4).abs() < 1.0, "{l}");
    assert!(sampled_softmax(&s, &[vec![9], vec![]]).is_err());
    Ok(())
}

// ---- a small synthetic ranking problem: entities like one of 4 colours, items have a
// colour; an entity's label set is two items of its colour. Only the contexts carry it.

fn row(table: &str, key: String, values: Vec<(&str, S, Value)>) -> RawRow {
    RawRow::new(table, key, None, 0, vec![], values)
}

fn entity_sg(i: usize) -> Subgraph {
    Subgraph {
        anchor: T0,
        seed: 0,
        rows: vec![
            row(
                "public.users",
                i.to_string(),
                vec![
                    ("likes", S::Categorical, Value::Text(format!("c{}", i % 4))),
                    ("age", S::Numerical, Value::Num((i % 7) as f64)),
                ],
            ),
            child("public.visits", i),
        ],
    }
}

/// A row referencing the seed (so that every attention type has pairs).
fn child(table: &str, i: usize) -> RawRow {
    let mut r = row(
        table,
        format!("v{i}"),
        vec![
            ("n", S::Numerical, Value::Num((i % 3) as f64)),
            ("at", S::Timestamp, Value::Time(T0 - (i as i64 % 9) * DAY)),
            ("ok", S::Boolean, Value::Bool(i.is_multiple_of(2))),
            ("note", S::Text, Value::Null),
        ],
    );
    r.hop = 1;
    r.parents = vec![0];
    r
}

fn item_sg(j: usize) -> Subgraph {
    Subgraph {
        anchor: T0,
        seed: 0,
        rows: vec![
            row(
                "public.items",
                j.to_string(),
                vec![
                    ("colour", S::Categorical, Value::Text(format!("c{}", j % 4))),
                    ("price", S::Numerical, Value::Num(j as f64)),
                ],
            ),
            child("public.sales", j),
        ],
    }
}

fn small() -> (ModelConfig, RankConfig) {
    let mut m = ModelConfig::small();
    m.d_model = 32;
    m.heads = 2;
    m.blocks = 1;
    let mut r = cfg();
    r.repr_dim = 16;
    r.hidden = 16;
    r.shared_negatives = 8;
    r.item_max_tokens = 16;
    m.full_attention = true;
    (m, r)
}

fn synthetic(n_entities: usize, n_items: usize) -> (Encoder, RankData) {
    let esg: Vec<Subgraph> = (0..n_entities).map(entity_sg).collect();
    let isg: Vec<Subgraph> = (0..n_items).map(item_sg).collect();
    let mut all = esg.clone();
    all.extend(isg.clone());
    let enc = Encoder::fit(
        EncoderConfig {
            max_tokens: 64,
            n_buckets: 256,
        },
        &all,
    );
    let mut d = RankData {
        entities: esg.iter().map(|s| enc.encode(s)).collect(),
        items: isg.iter().map(|s| enc.encode(s)).collect(),
        item_feats: vec![[0.0; N_ITEM_FEATS]; n_items],
        shared: vec![(0..n_items).collect()],
        ..Default::default()
    };
    for i in 0..n_entities {
        let colour = i % 4;
        let same: Vec<usize> = (0..n_items).filter(|j| j % 4 == colour).collect();
        let positives = same;
        let ex = RankExample {
            group: 0,
            entity: i,
            candidates: if i % 5 == 0 {
                (0..n_items).collect()
            } else {
                positives.clone()
            },
            positives: positives.clone(),
            n_relevant: positives.len(),
            ent_feats: vec![],
        };
        if i % 5 == 0 {
            d.val.push(ex);
        } else {
            d.train.push(ex);
        }
    }
    (enc, d)
}

#[test]
fn every_ranking_parameter_gets_a_gradient() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let (m, r) = small();
    let (enc, d) = synthetic(8, 8);
    let dims = ModelDims {
        n_columns: enc.n_columns(),
        n_buckets: 256,
        n_out: 1,
    };
    let vm = VarMap::new();
    let model = RankModel::new(&m, &dims, &r, &vm, &dev)?;
    let er: Vec<_> = d.entities.iter().take(4).collect();
    let ir: Vec<_> = d.items.iter().collect();
    let e = model.entity_repr(&RankBatch::new(&er, &m, 256, &dev)?, None)?;
    let v = model.item_repr(&RankBatch::new(&ir, &m, 256, &dev)?, None)?;
    let feats: Vec<f32> = (0..4 * 8 * N_FEATS).map(|x| (x % 5) as f32 * 0.1).collect();
    let ft = Tensor::from_vec(feats, (32, N_FEATS), &dev)?;
    let s = model.score_matrix(&e, &v, &ft)?;
    assert_eq!(s.dims(), &[4, 8]);
    let loss = sampled_softmax(&s, &[vec![0, 4], vec![1], vec![2, 6], vec![3]])?.unwrap();
    let grads = loss.backward()?;
    for (name, var) in sorted_vars(&vm) {
        if unused_parameter(&name) {
            continue;
        }
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let x = g.abs()?.sum_all()?.to_scalar::<f32>()?;
        assert!(x > 0.0 && x.is_finite(), "zero gradient for {name}");
    }
    Ok(())
}

#[test]
fn the_towers_learn_what_only_contexts_carry_and_survive_a_round_trip() {
    let (m, r) = small();
    let (enc, d) = synthetic(200, 24);
    let tc = RankTrainConfig {
        max_epochs: 12,
        lr: 5e-3,
        patience: 12,
        batch_examples: 16,
        ..Default::default()
    };
    let mut last = None;
    let model = train(&tc, &r, &m, &enc, &d, &mut |p| {
        if p.epoch_end {
            last = p.val_metric;
        }
        true
    })
    .unwrap();
    let best = model
        .history
        .iter()
        .filter_map(|h| h.val_metric)
        .fold(0.0, f64::max);
    // random ranking of 24 items with 2 relevant: MAP@3 ≈ 0.1; the colour makes it ~1
    assert!(best > 0.5, "validation MAP@3 {best} (last {last:?})");

    // scores after a round trip through bytes are the same
    let bytes = model.to_bytes().unwrap();
    let back = super::train::TrainedRanker::from_bytes(&bytes).unwrap();
    let e = model.entity_embeddings(&[&d.entities[0]]).unwrap();
    let e2 = back.entity_embeddings(&[&d.entities[0]]).unwrap();
    let it: Vec<_> = d.items.iter().collect();
    let v = model.item_embeddings(&it).unwrap();
    let v2 = back.item_embeddings(&it).unwrap();
    let f = vec![[0.1; N_FEATS]; it.len()];
    let vs: Vec<&[f32]> = v.iter().map(|x| x.as_slice()).collect();
    let vs2: Vec<&[f32]> = v2.iter().map(|x| x.as_slice()).collect();
    let a = model.score(&e[0], &vs, &f).unwrap();
    let b = back.score(&e2[0], &vs2, &f).unwrap();
    assert_eq!(a, b);
    // one entity's scores equal the matching row of a batched score matrix
    let all_e = model
        .entity_embeddings(&[&d.entities[1], &d.entities[0]])
        .unwrap();
    let a2 = model.score(&all_e[1], &vs, &f).unwrap();
    for (x, y) in a.iter().zip(&a2) {
        assert!((x - y).abs() < 1e-4, "{x} {y}");
    }
    assert!(super::train::TrainedRanker::from_bytes(b"junk").is_err());
}
