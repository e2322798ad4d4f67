//! Evaluation metrics: classification, regression and ranking.
//!
//! All functions are pure and take plain slices. Functions that are undefined on their
//! input (AUROC with a single class, R² of a constant target, empty input) return `None`
//! rather than a made-up number.

use std::cmp::Ordering;

const EPS: f64 = 1e-15;

/// Ranks (1-based) of `scores`, ties sharing their average rank.
fn average_ranks(scores: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].partial_cmp(&scores[b]).unwrap_or(Ordering::Equal));
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        // positions i..=j (0-based) share ranks i+1..=j+1
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    ranks
}

/// Area under the ROC curve (Mann–Whitney U; ties count one half).
/// `None` when either class is absent.
pub fn auroc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len());
    let n_pos = labels.iter().filter(|&&l| l).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let ranks = average_ranks(scores);
    let sum_pos: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, &l)| l)
        .map(|(r, _)| r)
        .sum();
    let u = sum_pos - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos as f64 * n_neg as f64))
}

/// Average precision: Σ (Rₙ − Rₙ₋₁) Pₙ over decreasing score thresholds, tied scores
/// forming one threshold (as scikit-learn). `None` without positives.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len());
    let n_pos = labels.iter().filter(|&&l| l).count();
    if n_pos == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap_or(Ordering::Equal));
    let (mut tp, mut fp, mut prev_recall, mut ap) = (0usize, 0usize, 0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let s = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == s {
            if labels[idx[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        let recall = tp as f64 / n_pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    Some(ap)
}

/// Fraction of equal entries. `None` on empty input.
pub fn accuracy<T: PartialEq>(pred: &[T], truth: &[T]) -> Option<f64> {
    assert_eq!(pred.len(), truth.len());
    if pred.is_empty() {
        return None;
    }
    let ok = pred.iter().zip(truth).filter(|(p, t)| p == t).count();
    Some(ok as f64 / pred.len() as f64)
}

/// Binary F1 of the positive class (0 when there are no true or predicted positives).
pub fn f1(pred: &[bool], truth: &[bool]) -> f64 {
    assert_eq!(pred.len(), truth.len());
    let mut tp = 0usize;
    let mut fp = 0usize;
    let mut fneg = 0usize;
    for (&p, &t) in pred.iter().zip(truth) {
        match (p, t) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fneg += 1,
            _ => {}
        }
    }
    if tp == 0 {
        return 0.0;
    }
    2.0 * tp as f64 / (2 * tp + fp + fneg) as f64
}

/// Macro-averaged F1 over classes `0..n_classes`.
pub fn macro_f1(pred: &[usize], truth: &[usize], n_classes: usize) -> f64 {
    if n_classes == 0 {
        return 0.0;
    }
    let total: f64 = (0..n_classes)
        .map(|c| {
            let p: Vec<bool> = pred.iter().map(|&x| x == c).collect();
            let t: Vec<bool> = truth.iter().map(|&x| x == c).collect();
            f1(&p, &t)
        })
        .sum();
    total / n_classes as f64
}

/// Mean binary cross-entropy of probabilities (clipped to [1e-15, 1 − 1e-15]).
pub fn log_loss(probs: &[f64], labels: &[bool]) -> Option<f64> {
    assert_eq!(probs.len(), labels.len());
    if probs.is_empty() {
        return None;
    }
    let s: f64 = probs
        .iter()
        .zip(labels)
        .map(|(&p, &y)| {
            let p = p.clamp(EPS, 1.0 - EPS);
            if y {
                -p.ln()
            } else {
                -(1.0 - p).ln()
            }
        })
        .sum();
    Some(s / probs.len() as f64)
}

/// Mean multiclass cross-entropy; `probs[i]` is the distribution for example `i`.
pub fn log_loss_multiclass(probs: &[Vec<f64>], truth: &[usize]) -> Option<f64> {
    assert_eq!(probs.len(), truth.len());
    if probs.is_empty() {
        return None;
    }
    let s: f64 = probs
        .iter()
        .zip(truth)
        .map(|(p, &t)| -p[t].clamp(EPS, 1.0).ln())
        .sum();
    Some(s / probs.len() as f64)
}

/// Expected calibration error with `bins` equal-width bins on [0, 1]:
/// Σ_b (n_b / n) |mean label_b − mean prob_b|. The last bin includes 1.0.
pub fn ece(probs: &[f64], labels: &[bool], bins: usize) -> Option<f64> {
    assert_eq!(probs.len(), labels.len());
    if probs.is_empty() || bins == 0 {
        return None;
    }
    let mut cnt = vec![0usize; bins];
    let mut sp = vec![0.0; bins];
    let mut sy = vec![0.0; bins];
    for (&p, &y) in probs.iter().zip(labels) {
        let b = ((p.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        cnt[b] += 1;
        sp[b] += p;
        sy[b] += if y { 1.0 } else { 0.0 };
    }
    let n = probs.len() as f64;
    Some(
        (0..bins)
            .filter(|&b| cnt[b] > 0)
            .map(|b| (sy[b] - sp[b]).abs() / n)
            .sum(),
    )
}

/// ECE with the conventional 10 bins.
pub fn ece10(probs: &[f64], labels: &[bool]) -> Option<f64> {
    ece(probs, labels, 10)
}

pub fn mae(pred: &[f64], truth: &[f64]) -> Option<f64> {
    assert_eq!(pred.len(), truth.len());
    if pred.is_empty() {
        return None;
    }
    Some(
        pred.iter()
            .zip(truth)
            .map(|(p, t)| (p - t).abs())
            .sum::<f64>()
            / pred.len() as f64,
    )
}

pub fn rmse(pred: &[f64], truth: &[f64]) -> Option<f64> {
    assert_eq!(pred.len(), truth.len());
    if pred.is_empty() {
        return None;
    }
    let mse = pred
        .iter()
        .zip(truth)
        .map(|(p, t)| (p - t).powi(2))
        .sum::<f64>()
        / pred.len() as f64;
    Some(mse.sqrt())
}

/// Coefficient of determination 1 − SS_res / SS_tot. `None` for a constant target.
pub fn r2(pred: &[f64], truth: &[f64]) -> Option<f64> {
    assert_eq!(pred.len(), truth.len());
    if pred.is_empty() {
        return None;
    }
    let mean = truth.iter().sum::<f64>() / truth.len() as f64;
    let ss_tot: f64 = truth.iter().map(|t| (t - mean).powi(2)).sum();
    if ss_tot == 0.0 {
        return None;
    }
    let ss_res: f64 = pred.iter().zip(truth).map(|(p, t)| (p - t).powi(2)).sum();
    Some(1.0 - ss_res / ss_tot)
}

/// Mean over queries with at least one relevant item of
/// AP@k = (1 / min(k, |relevant|)) Σ_{i ≤ k} P@i · rel(i).
pub fn map_at_k<T: PartialEq>(ranked: &[Vec<T>], relevant: &[Vec<T>], k: usize) -> Option<f64> {
    assert_eq!(ranked.len(), relevant.len());
    let mut total = 0.0;
    let mut n = 0usize;
    for (r, rel) in ranked.iter().zip(relevant) {
        if rel.is_empty() {
            continue;
        }
        n += 1;
        let mut hits = 0usize;
        let mut s = 0.0;
        for (i, item) in r.iter().take(k).enumerate() {
            if rel.contains(item) && !r[..i].contains(item) {
                hits += 1;
                s += hits as f64 / (i + 1) as f64;
            }
        }
        total += s / k.min(rel.len()) as f64;
    }
    (n > 0).then(|| total / n as f64)
}

/// Mean over queries with at least one relevant item of |top-k ∩ relevant| / |relevant|.
pub fn recall_at_k<T: PartialEq>(ranked: &[Vec<T>], relevant: &[Vec<T>], k: usize) -> Option<f64> {
    assert_eq!(ranked.len(), relevant.len());
    let mut total = 0.0;
    let mut n = 0usize;
    for (r, rel) in ranked.iter().zip(relevant) {
        if rel.is_empty() {
            continue;
        }
        n += 1;
        let top = &r[..k.min(r.len())];
        let hits = rel.iter().filter(|x| top.contains(x)).count();
        total += hits as f64 / rel.len() as f64;
    }
    (n > 0).then(|| total / n as f64)
}

/// Mean over queries with at least one relevant item of binary-relevance NDCG@k
/// (gain 1 / log2(i + 2) at 0-based position i).
pub fn ndcg_at_k<T: PartialEq>(ranked: &[Vec<T>], relevant: &[Vec<T>], k: usize) -> Option<f64> {
    assert_eq!(ranked.len(), relevant.len());
    let mut total = 0.0;
    let mut n = 0usize;
    for (r, rel) in ranked.iter().zip(relevant) {
        if rel.is_empty() {
            continue;
        }
        n += 1;
        let dcg: f64 = r
            .iter()
            .take(k)
            .enumerate()
            .filter(|(i, x)| rel.contains(x) && !r[..*i].contains(x))
            .map(|(i, _)| 1.0 / ((i + 2) as f64).log2())
            .sum();
        let idcg: f64 = (0..k.min(rel.len()))
            .map(|i| 1.0 / ((i + 2) as f64).log2())
            .sum();
        total += dcg / idcg;
    }
    (n > 0).then(|| total / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn auroc_hand_computed() {
        // pos scores 0.8, 0.4; neg 0.6, 0.2 → pairs: (0.8>0.6)(0.8>0.2)(0.4<0.6)(0.4>0.2) = 3/4
        close(
            auroc(&[0.8, 0.6, 0.4, 0.2], &[true, false, true, false]).unwrap(),
            0.75,
        );
        // a tie between a positive and a negative counts one half: (1 + 0.5) / 2
        close(
            auroc(&[0.5, 0.5, 0.1], &[true, false, false]).unwrap(),
            0.75,
        );
        close(auroc(&[1.0, 1.0], &[true, false]).unwrap(), 0.5);
        assert_eq!(auroc(&[0.1, 0.2], &[true, true]), None);
    }

    #[test]
    fn average_precision_hand_computed() {
        // ranking: 0.9(+) 0.8(-) 0.7(+) 0.1(-): AP = 0.5*1 + 0.5*(2/3)
        close(
            average_precision(&[0.9, 0.8, 0.7, 0.1], &[true, false, true, false]).unwrap(),
            0.5 + 1.0 / 3.0,
        );
        // all tied: one threshold, precision 0.5, recall 1
        close(average_precision(&[0.3, 0.3], &[true, false]).unwrap(), 0.5);
        assert_eq!(average_precision(&[0.3], &[false]), None);
    }

    #[test]
    fn accuracy_and_f1() {
        close(accuracy(&[1, 2, 3, 4], &[1, 2, 0, 0]).unwrap(), 0.5);
        // tp=2 fp=1 fn=1 → 4/6
        close(
            f1(
                &[true, true, true, false, false],
                &[true, true, false, true, false],
            ),
            2.0 / 3.0,
        );
        close(f1(&[false], &[false]), 0.0);
        // class 0: tp1 fp0 fn1 → 2/3; class 1: tp1 fp1 fn0 → 2/3
        close(macro_f1(&[0, 1, 1], &[0, 1, 0], 2), 2.0 / 3.0);
    }

    #[test]
    fn log_loss_hand_computed() {
        let v = log_loss(&[0.8, 0.3], &[true, false]).unwrap();
        close(v, -(0.8f64.ln() + 0.7f64.ln()) / 2.0);
        assert!(log_loss(&[0.0], &[true]).unwrap().is_finite());
        let v =
            log_loss_multiclass(&[vec![0.2, 0.7, 0.1], vec![0.5, 0.25, 0.25]], &[1, 0]).unwrap();
        close(v, -(0.7f64.ln() + 0.5f64.ln()) / 2.0);
    }

    #[test]
    fn ece_hand_computed() {
        // bin [0.1,0.2): probs 0.15,0.15 labels 0,1 → |1 − 0.3| / 4 ; bin [0.9,1]: 0.95,1.0 labels 1,1 → |2 − 1.95| / 4
        let v = ece10(&[0.15, 0.15, 0.95, 1.0], &[false, true, true, true]).unwrap();
        close(v, 0.7 / 4.0 + 0.05 / 4.0);
        close(ece10(&[0.5, 0.5], &[true, false]).unwrap(), 0.0);
    }

    #[test]
    fn regression_metrics() {
        let p = [1.0, 2.0, 3.0];
        let t = [1.0, 3.0, 5.0];
        close(mae(&p, &t).unwrap(), 1.0);
        close(rmse(&p, &t).unwrap(), (5.0f64 / 3.0).sqrt());
        // mean t = 3, ss_tot = 4+0+4 = 8, ss_res = 0+1+4 = 5
        close(r2(&p, &t).unwrap(), 1.0 - 5.0 / 8.0);
        assert_eq!(r2(&p, &[2.0, 2.0, 2.0]), None);
    }

    #[test]
    fn ranking_metrics() {
        let ranked = vec![vec![1, 2, 3, 4], vec![5, 6, 7]];
        let relevant = vec![vec![2, 4], vec![9]];
        // q1 @3: hit at position 2 → P=1/2; AP = (1/2)/min(3,2) = 0.25; q2: 0
        close(map_at_k(&ranked, &relevant, 3).unwrap(), 0.125);
        // q1 @4: hits at 2 and 4 → (1/2 + 2/4)/2 = 0.5
        close(map_at_k(&ranked[..1], &relevant[..1], 4).unwrap(), 0.5);
        close(recall_at_k(&ranked, &relevant, 3).unwrap(), 0.25);
        // q1 @3: dcg = 1/log2(3); idcg = 1 + 1/log2(3)
        let l3 = 3f64.log2();
        close(
            ndcg_at_k(&ranked[..1], &relevant[..1], 3).unwrap(),
            (1.0 / l3) / (1.0 + 1.0 / l3),
        );
        close(ndcg_at_k(&[vec![7]], &[vec![7]], 5).unwrap(), 1.0);
        assert_eq!(recall_at_k::<i32>(&[vec![]], &[vec![]], 3), None);
    }
}
