//! Generator tests: determinism, keys, time consistency, tasks that compile and have
//! usable labels, and the range of shapes across seeds.

use std::collections::{HashMap, HashSet};

use super::db::{Cell, Database, Key};
use super::write::{schema_sql, tasks_json, write_csv};
use super::*;
use crate::pql::{compile, TaskType};

fn tiny() -> DbConfig {
    DbConfig {
        scale: Scale::Tiny,
        ..DbConfig::default()
    }
}

fn with(complexity: f64) -> DbConfig {
    DbConfig {
        complexity: Some(complexity),
        ..tiny()
    }
}

/// Everything written for a database, as one byte string.
fn bytes(db: &Database) -> Vec<u8> {
    let mut out = schema_sql(db).into_bytes();
    for t in &db.tables {
        write_csv(db, t, &mut out).unwrap();
    }
    out.extend(serde_json::to_vec(&tasks_json(db)).unwrap());
    out
}

#[test]
fn dbgen_same_seed_same_bytes() {
    for seed in [3, 1001] {
        let a = generate(seed, &with(0.9));
        let b = generate(seed, &with(0.9));
        assert_eq!(bytes(&a), bytes(&b), "seed {seed}");
    }
    let c = generate(4, &with(0.9));
    assert_ne!(bytes(&generate(3, &with(0.9))), bytes(&c));
}

fn key_of(db: &Database, t: &str, cols: &[String], r: usize) -> Option<Vec<Key>> {
    let t = db.table(t).unwrap();
    cols.iter()
        .map(|c| t.col(c).unwrap().data[r].key())
        .collect()
}

/// Primary keys are unique and not NULL; every non-NULL foreign key has its parent.
fn check_keys(db: &Database) {
    let mut pks: HashMap<&str, HashSet<Vec<Key>>> = HashMap::new();
    for t in &db.tables {
        assert!(!t.primary_key.is_empty(), "{} has a primary key", t.name);
        let mut seen = HashSet::new();
        for r in 0..t.rows() {
            let k = key_of(db, &t.name, &t.primary_key, r).expect("PK not NULL");
            assert!(
                seen.insert(k),
                "duplicate key in {} (seed {})",
                t.name,
                db.seed
            );
        }
        pks.insert(&t.name, seen);
    }
    for fk in &db.foreign_keys {
        let parent = db.table(&fk.ref_table).unwrap();
        assert_eq!(
            parent.primary_key, fk.ref_columns,
            "{} references a PK",
            fk.name
        );
        let child = db.table(&fk.table).unwrap();
        for r in 0..child.rows() {
            if let Some(k) = key_of(db, &fk.table, &fk.columns, r) {
                assert!(
                    pks[fk.ref_table.as_str()].contains(&k),
                    "{} row {r} (seed {})",
                    fk.name,
                    db.seed
                );
            }
        }
    }
}

/// A row never refers to a timed parent that appears after it.
fn check_times(db: &Database) {
    for fk in &db.foreign_keys {
        let (child, parent) = (
            db.table(&fk.table).unwrap(),
            db.table(&fk.ref_table).unwrap(),
        );
        let (Some(ct), Some(pt)) = (child.times(), parent.times()) else {
            continue;
        };
        let idx: HashMap<Vec<Key>, usize> = (0..parent.rows())
            .map(|r| (key_of(db, &parent.name, &parent.primary_key, r).unwrap(), r))
            .collect();
        for (r, &t) in ct.iter().enumerate() {
            if let Some(k) = key_of(db, &child.name, &fk.columns, r) {
                let p = idx[&k];
                assert!(
                    t >= pt[p],
                    "{}: row {r} before its parent (seed {})",
                    fk.name,
                    db.seed
                );
            }
        }
    }
    for t in &db.tables {
        for x in t.times().unwrap_or_default() {
            assert!(
                x >= db.start - DAY && x < db.end,
                "{} time outside the period",
                t.name
            );
        }
    }
}

#[test]
fn dbgen_keys_times_and_detected_time_columns() {
    for seed in [1, 2, 5, 8, 1000, 1003] {
        let db = generate(seed, &tiny());
        check_keys(&db);
        check_times(&db);
        let g = db.schema_graph();
        for (t, gt) in db.tables.iter().zip(&g.tables) {
            assert_eq!(
                t.time_column, gt.time_column,
                "time column of {} (seed {seed})",
                t.name
            );
        }
    }
}

#[test]
fn dbgen_tasks_compile_and_have_usable_labels() {
    let mut kinds = HashSet::new();
    for seed in [1, 2, 3, 1000, 1001, 1002] {
        let db = generate(seed, &tiny());
        let g = db.schema_graph();
        assert!(db.tasks.len() >= 3, "seed {seed}: {} tasks", db.tasks.len());
        for t in &db.tasks {
            let spec = compile(&t.query, &g, &t.options)
                .unwrap_or_else(|e| panic!("{}: {}", t.query, e.message));
            assert_eq!(spec.task_type, t.task_type);
            kinds.insert(format!("{:?}", t.task_type));
            for s in [&t.train, &t.val, &t.test] {
                assert!(s.rows >= 20 && s.distinct >= 2, "{} {:?}", t.query, s);
                if t.task_type == TaskType::BinaryClassification {
                    assert!(s.mean > 0.0 && s.mean < 1.0, "{} {:?}", t.query, s);
                }
            }
            // Cutoffs lie inside the data.
            if let Some(v) = &t.options.val_cutoff {
                let v = crate::base::time::parse_timestamp(v).unwrap();
                assert!(v > db.start && v < db.end, "{}", t.name);
            }
        }
    }
    for k in [
        "BinaryClassification",
        "Regression",
        "MulticlassClassification",
        "Ranking",
    ] {
        assert!(kinds.contains(k), "no {k} task among the seeds");
    }
}

#[test]
fn dbgen_labels_match_a_direct_count() {
    let db = generate(7, &with(0.5));
    let task = db
        .tasks
        .iter()
        .find(|t| t.name.ends_with("-active"))
        .expect("an activity task");
    let spec = compile(&task.query, &db.schema_graph(), &task.options).unwrap();
    let crate::pql::Target::Aggregate(a) = &spec.target else {
        panic!()
    };
    let k: f64 = task
        .query
        .split("> ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let ev = labels::Evaluator::new(&db, &spec).unwrap();
    let rows = ev.split("test").unwrap();
    let orders = db.table(&a.table.replace("public.", "")).unwrap();
    let ekey = &spec.entity.key_column;
    let fk = orders.col(&a.path[0].columns[0]).unwrap();
    let times = orders.times().unwrap();
    let ent = db.table(&spec.entity.table.replace("public.", "")).unwrap();
    let kc = ent.col(ekey).unwrap();
    for r in rows.iter().take(300) {
        let n = (0..orders.rows())
            .filter(|&i| db.text(fk.ty, &fk.data[i]).as_deref() == Some(r.entity.as_str()))
            .filter(|&i| times[i] > r.anchor && times[i] <= r.anchor + a.window.end * DAY)
            .count();
        assert_eq!(r.label, Some(((n as f64) > k) as u8 as f64), "{}", r.entity);
    }
    // Every entity existing at the anchor is labelled (no entity filter on this task).
    let a0 = rows[0].anchor;
    let exist = (0..ent.rows())
        .filter(|&i| ent.times().is_none_or(|t| t[i] <= a0))
        .filter(|&i| !matches!(kc.data[i], Cell::Null))
        .count();
    assert_eq!(rows.iter().filter(|r| r.anchor == a0).count(), exist);
}

#[test]
fn dbgen_shapes_range_across_seeds() {
    let bare = generate(11, &with(0.0));
    assert_eq!(
        bare.tables.len(),
        2,
        "complexity 0 is an entity and its events"
    );
    let full = generate(11, &with(1.0));
    assert!(
        (18..=30).contains(&full.tables.len()),
        "{} tables",
        full.tables.len()
    );
    let (mut composite_fk, mut text_key, mut self_ref, mut wide, mut date_time) =
        (false, false, false, false, false);
    let mut sizes = Vec::new();
    for seed in 0..24 {
        let db = generate(seed, &tiny());
        sizes.push(db.tables.len());
        assert!((2..=30).contains(&db.tables.len()));
        composite_fk |= db.foreign_keys.iter().any(|f| f.columns.len() > 1);
        self_ref |= db.foreign_keys.iter().any(|f| f.table == f.ref_table);
        for t in &db.tables {
            text_key |= t.col(&t.primary_key[0]).unwrap().ty == ColType::Text;
            wide |= t.columns.len() >= 20;
            date_time |= t
                .time_column
                .as_ref()
                .is_some_and(|c| t.col(c).unwrap().ty == ColType::Date);
        }
    }
    assert!(composite_fk && text_key && self_ref && wide && date_time);
    assert!(
        sizes.iter().min().unwrap() <= &5 && sizes.iter().max().unwrap() >= &15,
        "{sizes:?}"
    );
}

#[test]
fn dbgen_scale_sets_rows() {
    let db = generate(
        5,
        &DbConfig {
            scale: Scale::Small,
            complexity: Some(0.5),
            ..DbConfig::default()
        },
    );
    let n = db.total_rows();
    assert!((15_000..60_000).contains(&n), "{n} rows");
}

/// Correlation between an entity's orders in one window and in the next, over the anchors
/// of the `-active` task's training split: the planted signal, scaled by `signal`.
fn past_future_correlation(signal: f64) -> f64 {
    let base = DbConfig {
        scale: Scale::Small,
        ..DbConfig::default()
    };
    let cfg = DbConfig {
        signal,
        complexity: Some(0.3),
        ..base
    };
    let db = generate(21, &cfg);
    let task = db
        .tasks
        .iter()
        .find(|t| t.name.ends_with("-active"))
        .unwrap();
    let count = task.query.split(" > ").next().unwrap().to_string()
        + " FOR EACH"
        + task.query.split("FOR EACH").nth(1).unwrap();
    let spec = compile(&count, &db.schema_graph(), &task.options).unwrap();
    let w = spec.window.unwrap().end * DAY;
    let ev = labels::Evaluator::new(&db, &spec).unwrap();
    let (lo, hi) = db.time_range();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for a in spec.splits(lo, hi).unwrap().train {
        let past: HashMap<String, f64> = ev
            .at(a - w)
            .unwrap()
            .into_iter()
            .map(|r| (r.entity, r.label.unwrap()))
            .collect();
        for r in ev.at(a).unwrap() {
            x.push(past.get(&r.entity).copied().unwrap_or(0.0));
            y.push(r.label.unwrap());
        }
    }
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = x.iter().zip(&y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}

#[test]
fn dbgen_signal_knob_scales_what_the_past_says() {
    let strong = past_future_correlation(1.0);
    let none = past_future_correlation(0.0);
    eprintln!("past/future correlation: signal 1 {strong:.3}, signal 0 {none:.3}");
    assert!(strong > 0.3, "signal 1: correlation {strong}");
    assert!(
        none < strong - 0.1,
        "signal 0: correlation {none} (signal 1: {strong})"
    );
}

/// The pretraining-only tasks: the same database with more tasks, among them binary ones
/// positive for low values, every one compiling with usable labels; the benchmark's own
/// database (what `generate` writes) holds none of them.
#[test]
fn dbgen_pretraining_adds_value_tasks_in_both_directions() {
    let (mut low, mut high) = (0, 0);
    for seed in [1, 2, 3] {
        let bench = generate(seed, &tiny());
        let pre = generate_for_pretraining(seed, &tiny());
        assert_eq!(bytes(&bench), bytes(&generate(seed, &tiny())));
        assert_eq!(
            pre.tasks[..bench.tasks.len()],
            bench.tasks[..],
            "seed {seed}"
        );
        let extra = &pre.tasks[bench.tasks.len()..];
        assert!(!extra.is_empty(), "seed {seed}: no value tasks");
        let g = pre.schema_graph();
        for t in extra {
            let spec = compile(&t.query, &g, &t.options).unwrap();
            assert_eq!(spec.task_type, t.task_type, "{}", t.query);
            for s in [&t.train, &t.val, &t.test] {
                assert!(s.rows >= 20 && s.distinct >= 2, "{} {:?}", t.query, s);
            }
            low += t.query.starts_with("PREDICT MIN(") as usize;
            high += t.query.starts_with("PREDICT MAX(") as usize;
        }
    }
    assert!(low > 0 && high > 0, "low {low}, high {high}");
}
