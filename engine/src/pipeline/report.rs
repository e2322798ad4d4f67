//! Metrics as rdl reports them: binary (AUROC, average precision, accuracy, F1, log-loss,
//! ECE), regression (MAE, RMSE, R²), multiclass (accuracy, macro F1, log-loss, top-3
//! accuracy next to the same figures for always predicting the training prior), with the
//! number of examples; interval coverage of regression models.

use serde_json::{json, Map, Value};

use crate::metrics;
use crate::train::{Head, TrainedModel};

/// `rdl_predict_batch`'s rows: per key its prediction — the most likely class's
/// probability and the class for a multiclass task — or NULLs where it does not exist.
pub fn batch_rows(
    multiclass: bool,
    keys: Vec<String>,
    preds: Vec<Option<Vec<f64>>>,
    classes: &[String],
) -> Vec<(String, Option<f64>, Option<String>)> {
    keys.into_iter()
        .zip(preds)
        .map(|(k, p)| match p {
            None => (k, None, None),
            Some(p) if multiclass => {
                let i = argmax(&p);
                (k, Some(p[i]), classes.get(i).cloned())
            }
            Some(p) => (k, p.first().copied(), None),
        })
        .collect()
}

/// `rdl_predict_proba`'s answer: `{"class": probability, ...}` for the classes of
/// probabilities `p`, most likely first (an output without a class is left out).
pub fn class_probabilities(classes: &[String], p: &[f64]) -> Value {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let m: Map<_, _> = (order.into_iter())
        .filter_map(|i| Some((classes.get(i)?.clone(), json!(p[i]))))
        .collect();
    Value::Object(m)
}

pub fn argmax(r: &[f64]) -> usize {
    r.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

/// Metrics of predictions `preds` (calibrated outputs per example) against labels `ys`;
/// `n_rows` examples were asked for (the others had no context).
pub fn metrics_json(
    head: Head,
    preds: &[Vec<f64>],
    ys: &[f64],
    n_rows: usize,
    classes: &[String],
    prior: &[f64],
) -> Value {
    let base = json!({
        "examples": ys.len(),
        "examples_without_context": n_rows.saturating_sub(ys.len()),
    });
    let mut m = match head {
        Head::Binary => {
            let p: Vec<f64> = preds.iter().map(|r| r[0]).collect();
            let labels: Vec<bool> = ys.iter().map(|&y| y > 0.5).collect();
            let hard: Vec<bool> = p.iter().map(|&p| p >= 0.5).collect();
            json!({
                "positive_rate": ys.iter().sum::<f64>() / ys.len().max(1) as f64,
                "auroc": metrics::auroc(&p, &labels),
                "average_precision": metrics::average_precision(&p, &labels),
                "accuracy": metrics::accuracy(&hard, &labels),
                "f1": metrics::f1(&hard, &labels),
                "log_loss": metrics::log_loss(&p, &labels),
                "ece": metrics::ece10(&p, &labels),
            })
        }
        Head::Regression => {
            let p: Vec<f64> = preds.iter().map(|r| r[0]).collect();
            json!({
                "mae": metrics::mae(&p, ys),
                "rmse": metrics::rmse(&p, ys),
                "r2": metrics::r2(&p, ys),
            })
        }
        Head::Multiclass { classes: n } => multiclass(preds, ys, n, classes, prior),
    };
    if let (Some(m), Some(b)) = (m.as_object_mut(), base.as_object()) {
        for (k, v) in b {
            m.insert(k.clone(), v.clone());
        }
    }
    m
}

fn multiclass(
    preds: &[Vec<f64>],
    ys: &[f64],
    n: usize,
    classes: &[String],
    prior: &[f64],
) -> Value {
    let truth: Vec<usize> = ys.iter().map(|&y| y as usize).collect();
    let hard: Vec<usize> = preds.iter().map(|r| argmax(r)).collect();
    let top3 = |r: &[f64], y: usize| r.iter().filter(|&&q| q > r[y]).count() < 3;
    let share = |hits: usize| hits as f64 / truth.len().max(1) as f64;
    let model_top3 = (0..truth.len())
        .filter(|&i| top3(&preds[i], truth[i]))
        .count();
    let mut m = json!({
        "classes": n,
        "accuracy": metrics::accuracy(&hard, &truth),
        "macro_f1": metrics::macro_f1(&hard, &truth, n),
        "top3_accuracy": share(model_top3),
        "log_loss": metrics::log_loss_multiclass(preds, &truth),
    });
    if prior.len() == n {
        let priors = vec![prior.to_vec(); truth.len()];
        let majority = argmax(prior);
        m["baseline"] = json!({
            "majority_class": classes.get(majority),
            "accuracy": share(truth.iter().filter(|&&y| y == majority).count()),
            "top3_accuracy": share(truth.iter().filter(|&&y| top3(prior, y)).count()),
            "log_loss": metrics::log_loss_multiclass(&priors, &truth),
        });
    }
    m
}

/// How often the model's split-conformal intervals hold the truth, at 80, 90 and 95%.
pub fn interval_coverage(model: &TrainedModel, preds: &[Vec<f64>], ys: &[f64]) -> Value {
    let mut cov = Map::new();
    for level in [0.8, 0.9, 0.95] {
        if let Some(q) = model.calibration.quantile(level) {
            let hit = preds
                .iter()
                .zip(ys)
                .filter(|(p, y)| (p[0] - **y).abs() <= q)
                .count();
            cov.insert(
                format!("{level}"),
                json!(hit as f64 / ys.len().max(1) as f64),
            );
        }
    }
    Value::Object(cov)
}

/// What `rdl_create_task` returns: the compiled spec without its SQL (stored with the
/// task; the caller wants the meaning), the task's name and its anchors per split.
pub fn task_created(mut spec_json: Value, name: &str, splits: &crate::anchors::Splits) -> Value {
    if let Some(o) = spec_json.as_object_mut() {
        o.remove("sql");
        o.remove("sql_at");
        o.insert("name".into(), name.into());
        let fmt = crate::base::time::format_timestamp;
        o.insert(
            "anchors".into(),
            json!({
                "val_cutoff": fmt(splits.val_cutoff),
                "test_cutoff": fmt(splits.test_cutoff),
                "train": anchor_summary(&splits.train),
                "val": anchor_summary(&splits.val),
                "test": anchor_summary(&splits.test),
            }),
        );
    }
    spec_json
}

/// How many anchors a split has, and its first and last.
pub fn anchor_summary(a: &[i64]) -> serde_json::Value {
    let fmt = crate::base::time::format_timestamp;
    let (first, last) = (
        a.iter().min().map(|&t| fmt(t)),
        a.iter().max().map(|&t| fmt(t)),
    );
    serde_json::json!({ "count": a.len(), "first": first, "last": last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_probabilities_name_each_class() {
        let classes = ["a".to_string(), "b".to_string()];
        let v = class_probabilities(&classes, &[0.25, 0.5, 0.25]);
        assert_eq!(v, json!({"a": 0.25, "b": 0.5}));
        assert_eq!(class_probabilities(&[], &[]), json!({}));
    }
}
