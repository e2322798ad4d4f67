//! Every recipe end to end on data generated in memory, without PostgreSQL: train,
//! evaluate, predict, explain, recommend — in seconds.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use super::options::TrainOptions;
use super::recommend::{self, ItemIndex};
use super::servable::Servable;
use super::source::{Event, Gathered, Here, Label, Labeled, Source, Split};
use super::tabular::{self, TrainJob};
use super::{explain, one, ranking, Result};
use crate::encode::{RawRow, Subgraph, Value};
use crate::pql::{compile, TaskSpec};
use crate::sampler::Plan;
use crate::schema::{SchemaGraph, SemanticType as S};
use crate::testutil::{col, fk, table};
use crate::train::synth::{churn_dataset, ANCHOR};

const DAY: i64 = 86_400_000_000;

/// Contexts by (table, key, anchor), labels by split, an interaction log.
#[derive(Default)]
struct Memory {
    contexts: HashMap<(String, String, i64), Subgraph>,
    labels: HashMap<Split, Vec<Labeled>>,
    log: Vec<(String, String, i64)>,
    gathered: usize,
    /// Every seed gathered, in order.
    asked: Vec<(String, i64)>,
    events: Vec<String>,
    /// Each gather call takes this long (a slow database).
    delay: std::time::Duration,
    /// The anchors `labels_at` was asked for (each labels entities "r0" and "r1").
    labels_asked: Vec<i64>,
}

impl Source for Memory {
    fn labels(&mut self, split: Split) -> Result<Vec<Labeled>> {
        Ok(self.labels.get(&split).cloned().unwrap_or_default())
    }

    fn labels_at(&mut self, anchors: &[i64]) -> Result<Vec<Labeled>> {
        self.labels_asked.extend(anchors);
        Ok((anchors.iter())
            .flat_map(|&anchor| {
                (0..2).map(move |i| Labeled {
                    entity: format!("r{i}"),
                    anchor,
                    label: Label::Value(i as f64),
                })
            })
            .collect())
    }

    fn gather(&mut self, _plan: &Plan, table: &str, seeds: &[(String, i64)]) -> Result<Gathered> {
        std::thread::sleep(self.delay);
        let mut g = Gathered::default();
        for (k, a) in seeds {
            self.gathered += 1;
            self.asked.push((k.clone(), *a));
            match self.contexts.get(&(table.to_string(), k.clone(), *a)) {
                Some(sg) => {
                    g.via.push(vec![None; sg.rows.len()]);
                    g.contexts.push(sg.clone());
                    g.found.push(true);
                }
                None => {
                    g.contexts.push(Subgraph {
                        anchor: *a,
                        rows: Vec::new(),
                        seed: 0,
                    });
                    g.via.push(Vec::new());
                    g.found.push(false);
                }
            }
        }
        Ok(g)
    }

    fn interactions(
        &mut self,
        upto: i64,
        entity: Option<&str>,
    ) -> Result<Vec<(String, String, i64)>> {
        Ok(self
            .log
            .iter()
            .filter(|(e, _, at)| *at <= upto && entity.is_none_or(|x| x == e))
            .cloned()
            .collect())
    }

    fn memory_limit(&self) -> usize {
        1 << 30
    }

    fn report(&mut self, event: Event<'_>) -> Result<()> {
        match event {
            Event::Phase(p) => self.events.push(format!("phase {p}")),
            Event::Notice(n) => self.events.push(n),
            Event::Epoch(_, entry) => self.events.push(entry.to_string()),
            Event::Step(_) | Event::Poll => {}
        }
        Ok(())
    }
}

/// customers ← orders → products, as `train::synth` builds contexts of.
fn shop() -> SchemaGraph {
    let ts = "timestamp with time zone";
    let mut g = SchemaGraph {
        tables: vec![
            table(
                "customers",
                vec![
                    col("customer_id", "integer", S::Key),
                    col("age", "double precision", S::Numerical),
                    col("segment", "text", S::Categorical),
                ],
                None,
            ),
            table(
                "orders",
                vec![
                    col("order_id", "text", S::Key),
                    col("customer_id", "integer", S::Key),
                    col("product_id", "integer", S::Key),
                    col("ordered_at", ts, S::Timestamp),
                    col("quantity", "double precision", S::Numerical),
                ],
                Some("ordered_at"),
            ),
            table(
                "products",
                vec![
                    col("product_id", "integer", S::Key),
                    col("price", "double precision", S::Numerical),
                    col("category", "text", S::Categorical),
                    col("discontinued", "boolean", S::Boolean),
                ],
                None,
            ),
        ],
        foreign_keys: vec![
            fk("orders", "customer_id", "customers", "customer_id"),
            fk("orders", "product_id", "products", "product_id"),
        ],
        ..SchemaGraph::default()
    };
    g.finish();
    g
}

fn spec(q: &str) -> TaskSpec {
    let opts = crate::anchors::AnchorOptions::default();
    compile(q, &shop(), &opts).unwrap()
}

fn split_of(i: usize) -> Split {
    match i % 10 {
        0 | 1 => Split::Val,
        2 | 3 => Split::Test,
        _ => Split::Train,
    }
}

/// The churn contexts, labelled by `label` (of a context and its synthetic 0/1 label).
fn memory(n: usize, label: impl Fn(&Subgraph, f32) -> Label) -> Memory {
    let mut m = Memory::default();
    for (i, (sg, y)) in churn_dataset(n, 4, 60, 7).into_iter().enumerate() {
        let key = sg.rows[0].key.clone();
        m.labels.entry(split_of(i)).or_default().push(Labeled {
            entity: key.clone(),
            anchor: ANCHOR,
            label: label(&sg, y),
        });
        m.contexts
            .insert(("public.customers".into(), key, ANCHOR), sg);
    }
    m
}

/// The first notice that says `part`.
fn notice<'a>(m: &'a Memory, part: &str) -> &'a str {
    m.events
        .iter()
        .find(|e| e.contains(part))
        .expect("a notice")
}

fn opts() -> TrainOptions {
    TrainOptions {
        size: "tiny".into(),
        epochs: 10,
        patience: 10,
        lr: Some(5e-3),
        batch_size: 32,
        time_budget_s: 120.0,
        ..TrainOptions::default()
    }
}

fn train(m: &mut Memory, spec: &TaskSpec) -> Servable {
    let graph = shop();
    let job = TrainJob {
        task: "t",
        spec,
        graph: &graph,
        opts: opts(),
        started: Instant::now(),
    };
    let t = tabular::train(m, &Here, &job).unwrap();
    let config = serde_json::to_value(&t.stored).unwrap();
    Servable::load("t", spec, (1, 1), &t.weights, config, &graph).unwrap()
}

#[test]
fn gathering_stops_within_the_time_budget_with_a_sample_of_every_period() {
    let spec = spec("PREDICT COUNT(orders.*, 0, 30, days) > 0 FOR EACH customers.customer_id");
    let mut m = memory(8000, |_, y| Label::Value(y as f64));
    let n_train = m.labels[&Split::Train].len();
    assert!(n_train > 2 * 2048, "{n_train}");
    // Spread the anchors over time, in order, as label queries return them.
    let mut train = m.labels.remove(&Split::Train).unwrap();
    for (i, l) in train.iter_mut().enumerate() {
        let sg = m
            .contexts
            .remove(&("public.customers".into(), l.entity.clone(), l.anchor))
            .unwrap();
        l.anchor = ANCHOR + i as i64 * DAY;
        m.contexts
            .insert(("public.customers".into(), l.entity.clone(), l.anchor), sg);
    }
    m.labels.insert(Split::Train, train);
    m.delay = std::time::Duration::from_millis(250);
    let graph = shop();
    let job = TrainJob {
        task: "t",
        spec: &spec,
        graph: &graph,
        opts: TrainOptions {
            epochs: 1,
            time_budget_s: 1.0,
            ..opts()
        },
        started: Instant::now(),
    };
    let t = tabular::train(&mut m, &Here, &job).unwrap();
    let stopped = notice(&m, "gathering stopped");
    assert!(
        stopped.contains(&format!("of {n_train} training contexts")),
        "{stopped}"
    );
    let kept = t.stored.train_examples;
    assert!(kept >= 2048 / 2 && kept < n_train, "{kept} of {n_train}");
}

#[test]
fn binary_trains_evaluates_predicts_and_explains() {
    let spec = spec("PREDICT COUNT(orders.*, 0, 30, days) > 0 FOR EACH customers.customer_id");
    let mut m = memory(600, |_, y| Label::Value(y as f64));
    let s = train(&mut m, &spec);
    assert!(
        m.events.iter().any(|e| e.contains("selection_auroc")),
        "{:?}",
        m.events
    );
    let test = tabular::evaluate(&mut m, &Here, &s, &spec, Split::Test).unwrap();
    let auroc = test["auroc"].as_f64().unwrap();
    assert!(auroc > 0.85, "test AUROC {auroc}: {test}");
    // An entity that does not exist at the anchor gets no prediction.
    let p = tabular::predict_seeds(
        &mut m,
        &Here,
        &s,
        &spec,
        &[("0".into(), ANCHOR), ("nobody".into(), ANCHOR)],
    )
    .unwrap();
    assert!(p[0].as_ref().is_some_and(|v| (0.0..=1.0).contains(&v[0])) && p[1].is_none());
    // More seeds than one piece: the outputs are those of calls of one piece each, in the
    // seeds' order.
    let mut many: Vec<(String, i64)> = m
        .contexts
        .keys()
        .map(|(_, k, _)| (k.clone(), ANCHOR))
        .collect();
    many.insert(300, ("nobody".into(), ANCHOR));
    let all = tabular::predict_seeds(&mut m, &Here, &s, &spec, &many).unwrap();
    let pieces: Vec<Option<Vec<f64>>> = many
        .chunks(100)
        .flat_map(|c| tabular::predict_seeds(&mut m, &Here, &s, &spec, c).unwrap())
        .collect();
    assert_eq!((all.len(), pieces.len()), (601, 601));
    for (i, (a, b)) in all.iter().zip(&pieces).enumerate() {
        match (a, b) {
            (Some(a), Some(b)) => assert!((a[0] - b[0]).abs() < 1e-5, "seed {i}: {a:?} {b:?}"),
            _ => assert!(
                a.is_none() && b.is_none() && i == 300,
                "seed {i}: {a:?} {b:?}"
            ),
        }
    }
    let one = one::gather_one(
        &mut m,
        &s.plan,
        "public.customers",
        ("0", ANCHOR),
        None,
        None,
    )
    .unwrap();
    let e = explain::explain_one(&s, spec.task_type, &one, 3).unwrap();
    assert!(
        e["sentence"].as_str().unwrap().starts_with("Probability"),
        "{e}"
    );
    assert_eq!(e["top_rows"].as_array().unwrap().len(), 3);
    let imp = explain::importance(&mut m, &s, &spec, 40).unwrap();
    // The label is whether the most recent order's product is discontinued.
    let top: Vec<&str> = imp.iter().take(2).map(|(_, c, _)| c.as_str()).collect();
    assert!(top.contains(&"discontinued"), "{imp:?}");
}

#[test]
fn fine_tuning_starts_from_the_pretrained_reader_and_learns_the_task() {
    let spec = spec("PREDICT COUNT(orders.*, 0, 30, days) > 0 FOR EACH customers.customer_id");
    let mut m = memory(600, |_, y| Label::Value(y as f64));
    let graph = shop();
    let job = |epochs, lr| TrainJob {
        task: "t",
        spec: &spec,
        graph: &graph,
        opts: TrainOptions {
            size: "small".into(),
            init: super::options::Init::Pretrained,
            epochs,
            lr: Some(lr),
            ..opts()
        },
        started: Instant::now(),
    };
    // With a learning rate of ~0 the stored reader is the shipped one, the head excepted.
    let t = tabular::train(&mut m, &Here, &job(1, 1e-12)).unwrap();
    let model = crate::train::TrainedModel::from_bytes(&t.weights).unwrap();
    assert_eq!(model.dims.n_columns, crate::icl::READER_COLUMNS);
    let (ours, theirs) = (model.tensors(), crate::icl::shipped::tensors());
    for name in ["emb.column", "block0.attn0.q.weight", "final.norm.weight"] {
        let d = (&ours[name] - &theirs[name])
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-5, "{name} moved {d} from the pretrained weights");
    }
    // Columns are dealt to the reader's slots in name order, as in-context answers are.
    let mut ids: Vec<u32> = model.encoder.columns.values().copied().collect();
    ids.sort();
    assert!(
        ids.iter()
            .all(|&i| (2..crate::icl::READER_COLUMNS as u32).contains(&i)),
        "{ids:?}"
    );
    // Fine-tuned, it learns the task.
    let t = tabular::train(&mut m, &Here, &job(10, 1e-3)).unwrap();
    let config = serde_json::to_value(&t.stored).unwrap();
    let s = Servable::load("t", &spec, (1, 1), &t.weights, config, &graph).unwrap();
    let test = tabular::evaluate(&mut m, &Here, &s, &spec, Split::Test).unwrap();
    let auroc = test["auroc"].as_f64().unwrap();
    assert!(auroc > 0.85, "test AUROC {auroc}: {test}");
}

#[test]
fn regression_reports_interval_coverage() {
    let spec = spec("PREDICT SUM(orders.quantity, 0, 30, days) FOR EACH customers.customer_id");
    // The price of the most recent order's product.
    let price = |sg: &Subgraph, _| {
        let o = sg
            .rows
            .iter()
            .find(|r| &*r.table == "public.orders")
            .unwrap();
        let p = &sg.rows[o.parents[1]];
        match p.values[0].2 {
            Value::Num(x) => Label::Value(x),
            _ => Label::Missing,
        }
    };
    let mut m = memory(600, price);
    let s = train(&mut m, &spec);
    let test = tabular::evaluate(&mut m, &Here, &s, &spec, Split::Test).unwrap();
    let r2 = test["r2"].as_f64().unwrap();
    assert!(r2 > 0.5, "test R² {r2}: {test}");
    let cov = test["interval_coverage"]["0.9"].as_f64().unwrap();
    assert!((0.75..=1.0).contains(&cov), "{test}");
}

#[test]
fn multiclass_hides_its_target_everywhere_and_beats_the_prior() {
    let spec = spec("PREDICT customers.segment FOR EACH customers.customer_id");
    // Whether the most recent order's product is discontinued, as a class; the hidden
    // column (segment) is planted equal to the label on the seed *and* on a copy of the
    // seed row elsewhere in the context: a model that saw either would be perfect.
    // One label in five flipped: the context allows about 80% accuracy, the hidden
    // column 100%.
    let class = |y: bool| if y { "gone" } else { "sold" }.to_string();
    let category = move |sg: &Subgraph, y: f32| {
        let flip = crate::base::hash::fnv1a(sg.rows[0].key.as_bytes()).is_multiple_of(5);
        Label::Class(class((y > 0.5) != flip))
    };
    let mut m = memory(600, category);
    let labels: HashMap<String, Label> = m
        .labels
        .values()
        .flatten()
        .map(|l| (l.entity.clone(), l.label.clone()))
        .collect();
    for (i, sg) in m.contexts.values_mut().enumerate() {
        let Label::Class(c) = &labels[&sg.rows[0].key] else {
            panic!()
        };
        sg.rows[0].values[2].2 = Value::Text(c.clone());
        let mut twin: RawRow = sg.rows[0].clone();
        twin.key = format!("twin{i}");
        twin.hop = 2;
        sg.rows.push(twin);
    }
    let s = train(&mut m, &spec);
    let one = one::gather_one(
        &mut m,
        &s.plan,
        "public.customers",
        ("5", ANCHOR),
        tabular::hidden(&spec).as_ref(),
        None,
    )
    .unwrap();
    for r in one
        .context
        .rows
        .iter()
        .filter(|r| &*r.table == "public.customers")
    {
        assert!(
            r.values.iter().all(|v| &*v.0 != "segment"),
            "segment visible in {r:?}"
        );
    }
    let test = tabular::evaluate(&mut m, &Here, &s, &spec, Split::Test).unwrap();
    let (acc, base) = (
        test["accuracy"].as_f64().unwrap(),
        test["baseline"]["accuracy"].as_f64().unwrap(),
    );
    assert!(
        acc > base + 0.15 && acc < 0.99,
        "accuracy {acc} vs prior {base}: {test}"
    );
}

// ---- ranking: users like one of 4 colours, items have a colour; users buy items of
// their colour. Only the contexts (a user's `likes`, an item's `colour`) and the history
// carry it.

fn urow(table: &str, key: String, values: Vec<(&str, S, Value)>) -> RawRow {
    RawRow {
        table: table.into(),
        key,
        time: None,
        hop: 0,
        parents: vec![],
        values: values
            .into_iter()
            .map(|(c, s, v)| (c.into(), s, v))
            .collect(),
    }
}

fn rank_memory(users: usize) -> Memory {
    let mut m = Memory::default();
    let items = 24usize;
    // Anchors every 20 days; a day's item side is its start.
    let anchors: Vec<i64> = (0..6).map(|k| ANCHOR + k * 20 * DAY).collect();
    for &a in &anchors {
        let day = a.div_euclid(DAY) * DAY;
        for j in 0..items {
            let sg = Subgraph {
                anchor: day,
                seed: 0,
                rows: vec![urow(
                    "public.products",
                    j.to_string(),
                    vec![(
                        "category",
                        S::Categorical,
                        Value::Text(format!("c{}", j % 4)),
                    )],
                )],
            };
            m.contexts
                .insert(("public.products".into(), j.to_string(), day), sg);
        }
        for u in 0..users {
            let sg = Subgraph {
                anchor: a,
                seed: 0,
                rows: vec![urow(
                    "public.customers",
                    u.to_string(),
                    vec![(
                        "segment",
                        S::Categorical,
                        Value::Text(format!("c{}", u % 4)),
                    )],
                )],
            };
            m.contexts
                .insert(("public.customers".into(), u.to_string(), a), sg);
        }
    }
    // Each user buys 2 items of its colour per 20 days, from the first anchor - 60 days.
    let mut t = ANCHOR - 60 * DAY;
    let mut n = 0usize;
    while t < anchors[5] + 20 * DAY {
        for u in 0..users {
            for b in 0..2 {
                let j = (u % 4) + 4 * ((n + u + b * 3) % (items / 4));
                m.log.push((
                    u.to_string(),
                    j.to_string(),
                    t + (u as i64) * 1000 + b as i64,
                ));
            }
        }
        n += 1;
        t += 10 * DAY;
    }
    m.log.sort_by_key(|e| e.2);
    let mut by_user: Vec<Vec<(String, i64)>> = vec![Vec::new(); users];
    for (e, i, at) in &m.log {
        by_user[e.parse::<usize>().unwrap()].push((i.clone(), *at));
    }
    for (k, &a) in anchors.iter().enumerate() {
        let split = match k {
            4 => Split::Val,
            5 => Split::Test,
            _ => Split::Train,
        };
        for (u, bought) in by_user.iter().enumerate() {
            let mut items: Vec<String> = bought
                .iter()
                .filter(|(_, at)| *at > a && *at <= a + 20 * DAY)
                .map(|(i, _)| i.clone())
                .collect();
            items.sort();
            items.dedup();
            m.labels.entry(split).or_default().push(Labeled {
                entity: u.to_string(),
                anchor: a,
                label: Label::Items(items),
            });
        }
    }
    m
}

#[test]
fn ranking_trains_beats_popularity_and_recommends() {
    let spec = spec(
        "PREDICT LIST_DISTINCT(orders.product_id, 0, 20, days) RANK TOP 4 FOR EACH customers.customer_id",
    );
    let mut m = rank_memory(80);
    let graph = shop();
    let mut o = opts();
    o.max_train = 400;
    let job = TrainJob {
        task: "r",
        spec: &spec,
        graph: &graph,
        opts: o,
        started: Instant::now(),
    };
    let t = ranking::train(&mut m, &job).unwrap();
    assert!(t.stored.ranking.is_some());
    let config = serde_json::to_value(&t.stored).unwrap();
    let s = Servable::load("r", &spec, (2, 1), &t.weights, config, &graph).unwrap();
    let mut cache: HashMap<i64, Rc<RefCell<ItemIndex>>> = HashMap::new();
    let sref = &s;
    let mut index = |src: &mut dyn Source, ti: i64| -> Result<Rc<RefCell<ItemIndex>>> {
        if let Some(i) = cache.get(&ti) {
            return Ok(i.clone());
        }
        let i = Rc::new(RefCell::new(ItemIndex::build(src, sref, ti)?));
        cache.insert(ti, i.clone());
        Ok(i)
    };
    let e = recommend::evaluate(&mut m, &s, &spec, Split::Test, &mut index).unwrap();
    let (map, pop) = (
        e["map_at_k"].as_f64().unwrap(),
        e["baselines"]["popularity"]["map_at_k"].as_f64().unwrap(),
    );
    assert!(map > pop + 0.1, "MAP@4 {map} vs popularity {pop}: {e}");
    let anchor = ANCHOR + 100 * DAY;
    let ti = recommend::index_time(&s, anchor).unwrap();
    let idx = index(&mut m, ti).unwrap();
    let top = recommend::recommend(
        &mut m,
        &s,
        &spec,
        &mut idx.borrow_mut(),
        ("1", anchor),
        4,
        false,
    )
    .unwrap();
    assert_eq!(top.len(), 4);
    // User 1 likes colour 1: its items are those ≡ 1 (mod 4).
    let own = top
        .iter()
        .filter(|(k, _, _)| k.parse::<usize>().unwrap() % 4 == 1)
        .count();
    assert!(own >= 3, "{top:?}");
}

#[test]
fn ranking_gathers_within_the_time_budget_with_a_sample_of_every_period() {
    let spec = spec(
        "PREDICT LIST_DISTINCT(orders.product_id, 0, 20, days) RANK TOP 4 FOR EACH customers.customer_id",
    );
    let mut m = rank_memory(1200);
    let n_train = m.labels[&Split::Train].len();
    assert!(n_train > 2 * 2048, "{n_train}");
    m.delay = std::time::Duration::from_millis(100);
    let graph = shop();
    let mut o = opts();
    (o.max_train, o.epochs, o.time_budget_s) = (n_train, 1, 1.0);
    let job = TrainJob {
        task: "r",
        spec: &spec,
        graph: &graph,
        opts: o,
        started: Instant::now(),
    };
    let t = ranking::train(&mut m, &job).unwrap();
    let stopped = notice(&m, "gathering stopped");
    assert!(
        stopped.contains(&format!("of {n_train} training examples")),
        "{stopped}"
    );
    let kept = t.stored.train_examples;
    assert!(kept > 0 && kept < n_train / 2, "{kept} of {n_train}");
}

/// In-context answers from the shipped model: many entities at once get the same numbers
/// as one at a time, and the accuracy estimate reads nothing that was not known at the
/// time it asks at (examples whose windows closed by then, queries at that anchor).
#[test]
fn in_context_batch_matches_one_and_the_estimate_reads_only_its_past() {
    use super::in_context;
    let spec = spec("PREDICT COUNT(orders.*, 0, 30, days) > 0 FOR EACH customers.customer_id");
    let mut m = memory(900, |_, y| Label::Value(y as f64));
    // Anchors every 30 days: the labelled rows of 8 periods.
    let month = 30 * DAY;
    let mut n = 0i64;
    for split in [Split::Train, Split::Val, Split::Test] {
        for l in m.labels.get_mut(&split).unwrap() {
            let sg = m
                .contexts
                .remove(&("public.customers".into(), l.entity.clone(), l.anchor))
                .unwrap();
            l.anchor = ANCHOR + (n % 8) * month;
            n += 1;
            m.contexts
                .insert(("public.customers".into(), l.entity.clone(), l.anchor), sg);
        }
    }
    let plan = Plan::new(&shop(), crate::sampler::SamplerConfig::default());
    let last = ANCHOR + 7 * month;
    let keys: Vec<String> = m
        .contexts
        .keys()
        .filter(|k| k.2 == last)
        .map(|k| k.1.clone())
        .take(12)
        .collect();
    let batch = in_context::predict_batch(&mut m, "t", &spec, &plan, &keys, last).unwrap();
    for (k, b) in keys.iter().zip(&batch) {
        let one = in_context::predict(&mut m, "t", &spec, &plan, (k, last), None).unwrap();
        assert!(
            (one.value - b.unwrap()).abs() < 1e-6,
            "{k}: {} vs {b:?}",
            one.value
        );
    }
    assert!(
        m.events
            .iter()
            .filter(|e| e.contains("answered in context"))
            .count()
            == 1
    );
    let known = in_context::known(&mut m, &spec, last).unwrap();
    let model = crate::icl::shipped::get().unwrap();
    m.asked.clear();
    let e = in_context::estimate(&mut m, model, "t", &spec, &plan, &known, last)
        .unwrap()
        .unwrap();
    assert_eq!(e.metric, "auroc");
    assert!(e.entities >= 20 && e.examples > 10, "{e:?}");
    assert!(e.to + month <= last && e.anchors > 1, "{e:?}");
    for (k, a) in &m.asked {
        let query = (e.from..=e.to).contains(a) && (a - e.from) % month == 0;
        assert!(query || *a + month <= e.to, "{k} at {a} read for {e:?}");
    }
}

/// An in-context answer's newest examples come from after the task's splits: the anchors
/// labelled when asked are one window apart, newer than the splits' newest, and every one
/// of them closed by the time asked (the newest exactly then); asked no later than the
/// splits' own windows allow, none is labelled.
#[test]
fn in_context_examples_newer_than_the_splits_are_closed_by_the_time_asked() {
    use super::in_context::{known, recent_anchors, RECENT_ANCHORS};
    let spec = spec("PREDICT COUNT(orders.*, 0, 30, days) > 0 FOR EACH customers.customer_id");
    let mut m = memory(300, |_, y| Label::Value(y as f64));
    let newest = (m.labels[&Split::Train].iter().chain(&m.labels[&Split::Val]))
        .filter(|l| !matches!(l.label, Label::Missing))
        .map(|l| l.anchor)
        .max()
        .unwrap();
    let as_of = newest + 100 * DAY;
    let k = known(&mut m, &spec, as_of).unwrap();
    let asked = m.labels_asked.clone();
    assert_eq!(asked, vec![newest + 60 * DAY, newest + 30 * DAY]);
    for a in &asked {
        assert!(*a + 30 * DAY <= as_of && *a > newest, "{a}");
        assert_eq!(k.iter().filter(|r| r.1 == *a).count(), 2);
    }
    // Years later: the newest closed grid anchors, the first one closing at the time asked.
    let far = newest + 3000 * DAY;
    let r = recent_anchors(&spec, far, Some(newest));
    assert_eq!(r.len(), RECENT_ANCHORS);
    assert_eq!(r[0], far - 30 * DAY);
    assert!(r.windows(2).all(|p| p[0] - p[1] == 30 * DAY));
    assert!(recent_anchors(&spec, newest + 59 * DAY, Some(newest)).is_empty());
    // A window far from its anchor (2-day steps closing 30 days on) and calendar months
    // (unequal lengths): still the newest closed grid points, each closed by the time asked.
    let late =
        self::spec("PREDICT COUNT(orders.*, 28, 30, days) > 0 FOR EACH customers.customer_id");
    let r = recent_anchors(&late, newest + 100 * DAY, Some(newest));
    let want: Vec<i64> = (0..8).map(|k| newest + (70 - 2 * k) * DAY).collect();
    assert_eq!(r, want);
    let monthly =
        self::spec("PREDICT COUNT(orders.*, 0, 1, months) > 0 FOR EACH customers.customer_id");
    let feb = crate::base::time::parse_timestamp("2021-02-01 00:00:00+00").unwrap();
    let asked = crate::base::time::parse_timestamp("2031-01-01 00:00:00+00").unwrap();
    let r = recent_anchors(&monthly, asked, Some(feb));
    let add = |a, n| crate::base::time::add(a, n, crate::base::time::Unit::Months);
    assert_eq!(r.len(), RECENT_ANCHORS);
    assert_eq!(r[0], add(asked, -1));
    assert!(r.windows(2).all(|p| p[1] == add(p[0], -1)));
    assert_eq!(recent_anchors(&spec, as_of, None).len(), RECENT_ANCHORS);
}

/// Labels at anchors outside the splits are kept per anchor: asked again, only the new
/// anchors are computed; past the bound on rows held, the anchors of the request at hand
/// are kept and still answered.
#[test]
fn label_cache_keeps_rows_per_anchor_within_a_bound() {
    use super::source::{LabelCache, MAX_ROWS_HELD};
    let rows = |a: &[i64], n: usize| -> Vec<Labeled> {
        (a.iter())
            .flat_map(|&anchor| {
                (0..n).map(move |i| Labeled {
                    entity: i.to_string(),
                    anchor,
                    label: Label::Value(1.0),
                })
            })
            .collect()
    };
    let mut c = LabelCache::default();
    let mut computed: Vec<Vec<i64>> = Vec::new();
    let mut get = |c: &mut LabelCache, key: &str, a: &[i64], n: usize| {
        c.at_or(key.into(), a, |m| {
            computed.push(m.to_vec());
            rows(m, n)
        })
    };
    assert_eq!(get(&mut c, "k", &[2, 1], 3).len(), 6);
    assert_eq!(get(&mut c, "k", &[3, 2], 3).len(), 6);
    assert_eq!(get(&mut c, "other", &[3], 3).len(), 3);
    let big = MAX_ROWS_HELD / 2 + 1;
    assert_eq!(get(&mut c, "b", &[1], big).len(), big);
    // 2 pushes the rows held past the bound: 1 is forgotten, 2 and this request's 1 stay.
    assert_eq!(get(&mut c, "b", &[2, 1], big).len(), 2 * big);
    assert_eq!(get(&mut c, "b", &[2], big).len(), big);
    // 3 pushes past it again: only 3 stays, so 1 is computed anew.
    assert_eq!(get(&mut c, "b", &[3], 1).len(), 1);
    assert_eq!(get(&mut c, "b", &[1], 1).len(), 1);
    let want: Vec<Vec<i64>> = vec![
        vec![1, 2],
        vec![3],
        vec![3],
        vec![1],
        vec![2],
        vec![3],
        vec![1],
    ];
    assert_eq!(computed, want);
}
