use super::*;
use crate::encode::EncoderConfig;
use crate::metrics;
use std::time::Instant;

fn dataset(n_train: usize, n_val: usize) -> (Encoder, Vec<EncodedContext>, Vec<EncodedContext>) {
    let data = synth::churn_dataset(n_train + n_val, 4, 60, 42);
    let (tr, va) = data.split_at(n_train);
    let sgs: Vec<_> = tr.iter().map(|(s, _)| s.clone()).collect();
    let enc = Encoder::fit(
        EncoderConfig {
            max_tokens: 64,
            n_buckets: 256,
        },
        &sgs,
    );
    let e = |d: &[(crate::encode::Subgraph, f32)]| -> Vec<EncodedContext> {
        d.iter().map(|(s, y)| enc.encode_labeled(s, *y)).collect()
    };
    let (a, b) = (e(tr), e(va));
    (enc, a, b)
}

fn small_cfg() -> ModelConfig {
    let mut m = ModelConfig::small();
    m.d_model = 32;
    m.heads = 4;
    m
}

fn tcfg() -> TrainConfig {
    let mut t = TrainConfig::new(Head::Binary);
    t.max_epochs = 12;
    t.patience = 4;
    t.batch_contexts = 32;
    t.batch_tokens = 1024;
    t
}

fn val_auroc(m: &TrainedModel, val: &[EncodedContext]) -> f64 {
    let p: Vec<f64> = m.predict(val).unwrap().iter().map(|&x| x as f64).collect();
    let y: Vec<bool> = val.iter().map(|c| c.label == Some(1.0)).collect();
    metrics::auroc(&p, &y).unwrap()
}

#[test]
fn learns_two_hop_label_only_with_neighbor_attention() {
    let (enc, tr, va) = dataset(800, 300);
    let t0 = Instant::now();
    let mut steps = 0;
    let m = train(&tcfg(), &small_cfg(), &enc, &tr, &va, &mut |p| {
        if p.epoch_end {
            eprintln!(
                "epoch {} loss {:.4} val {:?} {:.1}s",
                p.epoch, p.loss, p.val_metric, p.elapsed_s
            );
        }
        steps += 1;
        true
    })
    .unwrap();
    let auc = val_auroc(&m, &va);
    eprintln!(
        "with neighbor attention: AUROC {auc:.4} in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    assert!(steps > 0);
    assert!(auc >= 0.95, "AUROC {auc}");

    // the same model without a path from the customer to its orders
    let mut cfg = small_cfg();
    cfg.neighbor_attention = false;
    cfg.full_attention = false;
    let mut t = tcfg();
    t.max_epochs = 4;
    let m2 = train(&t, &cfg, &enc, &tr, &va, &mut |_| true).unwrap();
    let auc2 = val_auroc(&m2, &va);
    eprintln!("without: AUROC {auc2:.4}");
    assert!(auc2 < 0.65, "AUROC without neighbor attention {auc2}");

    // save → load gives identical predictions
    let bytes = m.to_bytes().unwrap();
    let back = TrainedModel::from_bytes(&bytes).unwrap();
    assert_eq!(back.encoder, m.encoder);
    assert_eq!(back.calibration, m.calibration);
    assert_eq!(m.predict(&va).unwrap(), back.predict(&va).unwrap());
    assert!(TrainedModel::from_bytes(&bytes[..bytes.len() / 2]).is_err());
}

#[test]
fn cancel_is_a_distinct_error() {
    let (enc, tr, va) = dataset(40, 10);
    let mut n = 0;
    let r = train(&tcfg(), &small_cfg(), &enc, &tr, &va, &mut |_| {
        n += 1;
        n < 2
    });
    assert!(matches!(r, Err(TrainError::Cancelled)));
    assert_eq!(n, 2);
}

/// Fine-tuning from the pretrained reader refuses an encoder that does not read the task
/// as the reader does (another bucket count), before any step.
#[test]
fn fine_tuning_refuses_an_encoder_of_its_own() {
    let (enc, tr, va) = dataset(40, 10);
    let cfg = TrainConfig {
        pretrained: true,
        ..tcfg()
    };
    let r = train(&cfg, &ModelConfig::small(), &enc, &tr, &va, &mut |_| true);
    match r {
        Err(TrainError::Other(m)) => assert!(m.contains("1024 buckets"), "{m}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("trained"),
    }
}

/// Validation scoring polls too: a cancel that arrives after an epoch's last step, while
/// the validation split is scored (many batches), stops the training there.
#[test]
fn cancel_is_heard_while_validation_is_scored() {
    let (enc, tr, va) = dataset(64, 600);
    let mut cfg = tcfg();
    cfg.max_epochs = 1;
    cfg.batch_tokens = 64; // validation then takes many batches of 256 tokens
    let steps = make_batches(&tr, &(0..tr.len()).collect::<Vec<_>>(), 64, 32).len();
    let (mut calls, mut epoch_end_seen) = (0, false);
    let r = train(&cfg, &small_cfg(), &enc, &tr, &va, &mut |p| {
        calls += 1;
        epoch_end_seen |= p.epoch_end;
        // The first report past the last step is a poll from validation scoring.
        calls <= steps
    });
    assert!(matches!(r, Err(TrainError::Cancelled)), "{:?}", r.err());
    assert_eq!(calls, steps + 1);
    assert!(!epoch_end_seen, "cancelled before the epoch's report");
}

#[test]
fn training_is_deterministic_and_budgeted() {
    let (enc, tr, va) = dataset(60, 20);
    let mut t = tcfg();
    t.max_epochs = 2;
    let a = train(&t, &small_cfg(), &enc, &tr, &va, &mut |_| true).unwrap();
    let b = train(&t, &small_cfg(), &enc, &tr, &va, &mut |_| true).unwrap();
    assert_eq!(a.predict(&va).unwrap(), b.predict(&va).unwrap());
    t.max_epochs = 1000;
    t.patience = 1000;
    t.time_budget_s = Some(0.5);
    let s = Instant::now();
    train(&t, &small_cfg(), &enc, &tr, &va, &mut |_| true).unwrap();
    assert!(s.elapsed().as_secs_f64() < 5.0);
}

#[test]
fn fingerprint_and_batching_invariance() {
    // What rdl's worker relies on: a model shipped as bytes keeps its identity, another
    // training run does not share it, and a context's prediction does not depend on the
    // other contexts of its forward pass (the worker merges many backends' requests).
    let (enc, tr, va) = dataset(60, 24);
    let mut t = tcfg();
    t.max_epochs = 1;
    let a = train(&t, &small_cfg(), &enc, &tr, &va, &mut |_| true).unwrap();
    t.seed = 99;
    let b = train(&t, &small_cfg(), &enc, &tr, &va, &mut |_| true).unwrap();
    let back =
        TrainedModel::from_bytes_on(&a.to_bytes().unwrap(), &candle_core::Device::Cpu).unwrap();
    assert_eq!(back.fingerprint(), a.fingerprint());
    assert_ne!(a.fingerprint(), b.fingerprint());
    let all = a.predict(&va).unwrap();
    for (i, c) in va.iter().enumerate() {
        let one = a.predict(std::slice::from_ref(c)).unwrap();
        assert!(
            (one[0] - all[i]).abs() < 1e-5,
            "context {i}: {} vs {}",
            one[0],
            all[i]
        );
    }
    let mut rev = va.clone();
    rev.reverse();
    let back_rev = back.predict(&rev).unwrap();
    for i in 0..va.len() {
        assert!((back_rev[va.len() - 1 - i] - all[i]).abs() < 1e-5);
    }
}

#[test]
fn regression_and_multiclass_train_and_round_trip() {
    let (enc, mut tr, mut va) = dataset(80, 30);
    // regression: quantity-free target in odd units; multiclass: 3 classes
    for (i, c) in tr.iter_mut().chain(va.iter_mut()).enumerate() {
        c.label = Some(1000.0 + 50.0 * c.label.unwrap() + (i % 3) as f32);
    }
    let mut t = TrainConfig::new(Head::Regression);
    t.max_epochs = 2;
    let m = train(&t, &small_cfg(), &enc, &tr, &va, &mut |_| true).unwrap();
    let (centre, _) = m.target_norm.unwrap();
    assert!((centre - 1000.0).abs() < 60.0);
    assert_eq!(m.calibration.residual_quantiles.len(), 50);
    let iv = m.predict_interval(&va, 0.95).unwrap().unwrap();
    assert!(iv.iter().all(|(lo, hi)| lo <= hi));
    let back = TrainedModel::from_bytes(&m.to_bytes().unwrap()).unwrap();
    assert_eq!(m.predict(&va).unwrap(), back.predict(&va).unwrap());

    for c in tr.iter_mut().chain(va.iter_mut()) {
        c.label = Some((c.label.unwrap() as usize % 3) as f32);
    }
    let mut t = TrainConfig::new(Head::Multiclass { classes: 3 });
    t.max_epochs = 2;
    let m = train(&t, &small_cfg(), &enc, &tr, &va, &mut |_| true).unwrap();
    let p = m.predict(&va).unwrap();
    assert_eq!(p.len(), va.len() * 3);
    for ch in p.chunks(3) {
        assert!((ch.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
    tr[0].label = Some(7.0);
    assert!(matches!(
        train(&t, &small_cfg(), &enc, &tr, &va, &mut |_| true),
        Err(TrainError::BadLabel(_))
    ));
}

/// A heavy-tailed target whose conditional median and mean differ: 70% of churners spend 0
/// and 30% spend 1000 (median 0, mean 300); the others 500 or 5000 (median 500, mean
/// 1850). MAE is minimised by the medians, and the model must predict them, not the means.
#[test]
fn regression_predicts_the_median_of_a_heavy_tail() {
    let (enc, mut tr, mut va) = dataset(800, 300);
    for (i, c) in tr.iter_mut().chain(va.iter_mut()).enumerate() {
        let tail = (i * 7919) % 10 < 3;
        c.label = Some(match (c.label == Some(1.0), tail) {
            (true, false) => 0.0,
            (true, true) => 1000.0,
            (false, false) => 500.0,
            (false, true) => 5000.0,
        });
    }
    let mut t = tcfg();
    t.head = Head::Regression;
    let m = train(&t, &small_cfg(), &enc, &tr, &va, &mut |_| true).unwrap();
    let p = m.predict(&va).unwrap();
    let ys: Vec<f32> = va.iter().map(|c| c.label.unwrap()).collect();
    let mean_of = |churner: bool| {
        let v: Vec<f64> = p
            .iter()
            .zip(&ys)
            .filter(|(_, &y)| (y == 0.0 || y == 1000.0) == churner)
            .map(|(&p, _)| p as f64)
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let (churners, others) = (mean_of(true), mean_of(false));
    let mae = p
        .iter()
        .zip(&ys)
        .map(|(p, y)| (p - y).abs() as f64)
        .sum::<f64>()
        / ys.len() as f64;
    let constant = ys.iter().map(|y| (500.0 - y).abs() as f64).sum::<f64>() / ys.len() as f64;
    assert!(churners < 150.0, "churners' mean prediction {churners}");
    assert!(
        (300.0..900.0).contains(&others),
        "others' mean prediction {others}"
    );
    eprintln!("churners {churners:.1} others {others:.1} MAE {mae:.1} constant {constant:.1}");
    assert!(
        mae < 0.95 * constant,
        "MAE {mae} vs {constant} predicting 500 for every entity"
    );
}

#[test]
fn schedule_warms_up_and_decays() {
    let mut c = TrainConfig::new(Head::Binary);
    c.lr = 1.0;
    c.warmup_steps = 10;
    let lr_at = |c: &TrainConfig, s, t| super::fit::lr_at(&c.fit_config(), s, t);
    assert!((lr_at(&c, 0, 110) - 0.1).abs() < 1e-12);
    assert!((lr_at(&c, 9, 110) - 1.0).abs() < 1e-12);
    assert!((lr_at(&c, 60, 110) - 0.525).abs() < 1e-12);
    assert!((lr_at(&c, 110, 110) - 0.05).abs() < 1e-12);
    c.schedule = Schedule::Linear;
    assert!((lr_at(&c, 60, 110) - 0.5).abs() < 1e-12);
}

#[test]
fn trains_without_validation_data() {
    let (enc, tr, _) = dataset(40, 0);
    let mut t = tcfg();
    t.max_epochs = 2;
    let m = train(&t, &small_cfg(), &enc, &tr, &[], &mut |_| true).unwrap();
    assert_eq!(m.history.len(), 2);
    assert!(m.history.iter().all(|e| e.val_metric.is_none()));
    assert_eq!(m.calibration, Calibration::default());
    assert!(m
        .predict(&tr)
        .unwrap()
        .iter()
        .all(|p| (0.0..=1.0).contains(p)));
    assert!(matches!(
        train(&t, &small_cfg(), &enc, &[], &[], &mut |_| true),
        Err(TrainError::NoTrainingData)
    ));
}

/// Members differ (their own initialisation and shuffling), the model's raw outputs are
/// their average, the bytes round-trip every member, and a single network's bytes carry
/// no ensemble fields; a budget too short for a second run leaves one network.
#[test]
fn an_ensemble_averages_its_members_and_round_trips() {
    let (enc, tr, va) = dataset(300, 120);
    let mut cfg = tcfg();
    cfg.max_epochs = 3;
    let mut epochs = Vec::new();
    let cfg2 = TrainConfig {
        members: 2,
        ..cfg.clone()
    };
    let m = train(&cfg2, &small_cfg(), &enc, &tr, &va, &mut |p| {
        if p.epoch_end {
            epochs.push(p.epoch);
        }
        true
    })
    .unwrap();
    assert_eq!(m.n_members(), 2);
    assert_eq!(
        epochs,
        [0, 1, 2, 0, 1, 2],
        "each network's epochs are reported"
    );
    assert_eq!(m.member_history.len(), 1);
    let raw = m.raw(&va).unwrap();
    let each: Vec<Vec<Vec<f32>>> = m
        .members
        .iter()
        .map(|mm| {
            predict::raw_outputs(
                &mm.model,
                mm.fast.as_ref(),
                &va,
                4096,
                &m.device,
                &mut || true,
            )
            .unwrap()
        })
        .collect();
    assert_ne!(each[0], each[1], "the members are different networks");
    for (i, r) in raw.iter().enumerate() {
        let mean = (each[0][i][0] + each[1][i][0]) / 2.0;
        assert!((r[0] - mean).abs() < 1e-5, "{} vs {mean}", r[0]);
    }
    // The first member is the single model trained alone with the same settings.
    let single = train(&cfg, &small_cfg(), &enc, &tr, &va, &mut |_| true).unwrap();
    assert_eq!(single.n_members(), 1);
    assert_eq!(single.raw(&va).unwrap(), each[0]);
    assert_ne!(single.fingerprint(), m.fingerprint());

    let bytes = m.to_bytes().unwrap();
    let back = TrainedModel::from_bytes(&bytes).unwrap();
    assert_eq!(back.n_members(), 2);
    assert_eq!(back.member_history, m.member_history);
    assert_eq!(back.predict(&va).unwrap(), m.predict(&va).unwrap());
    assert_eq!(back.fingerprint(), m.fingerprint());
    let one = single.to_bytes().unwrap();
    let meta = stored_meta(&one, "1").unwrap();
    assert!(!meta.contains_key("members") && !meta.contains_key("member_history"));
    // Bytes claiming more members than they hold are refused, not read short.
    let mut meta2 = stored_meta(&bytes, "1").unwrap();
    meta2.insert("members".into(), "3".into());
    let forged = store_bytes(
        &m.members[0].varmap,
        "1",
        &meta2
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(TrainedModel::from_bytes(&forged).is_err());

    // A budget the first run uses up leaves no room for a second.
    let tight = TrainConfig {
        members: 3,
        max_epochs: 1000,
        patience: 1000,
        time_budget_s: Some(1.0),
        ..cfg
    };
    let t = train(&tight, &small_cfg(), &enc, &tr, &va, &mut |_| true).unwrap();
    assert_eq!(t.n_members(), 1);
}
