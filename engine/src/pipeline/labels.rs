//! A task's labelled examples as a model uses them: numeric labels, and for a multiclass
//! task the class vocabulary and each label's index in it; seeded samples of a split.

use std::collections::HashMap;

use super::error::Result;
use super::source::{Label, Labeled, Source, Split};

/// Classes a multiclass model distinguishes at most; rarer ones share [`OTHER_CLASS`].
pub const MAX_CLASSES: usize = 100;
/// The class of every label outside a multiclass model's vocabulary.
pub const OTHER_CLASS: &str = "(other)";

/// One labelled example as the model is trained on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub entity: String,
    /// µs since the Unix epoch.
    pub anchor: i64,
    /// 0/1, the value, or the class index.
    pub y: f32,
}

impl Example {
    pub fn seed(&self) -> (String, i64) {
        (self.entity.clone(), self.anchor)
    }
}

pub fn seeds(examples: &[Example]) -> Vec<(String, i64)> {
    examples.iter().map(Example::seed).collect()
}

/// The class vocabulary from training labels: the most frequent first (ties by name), at
/// most [`MAX_CLASSES`] − 1 of them plus [`OTHER_CLASS`] when there are more.
pub fn fit_classes<'a>(labels: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for l in labels {
        *counts.entry(l).or_default() += 1;
    }
    let mut v: Vec<(&str, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    if v.len() <= MAX_CLASSES {
        return v.into_iter().map(|(c, _)| c.to_string()).collect();
    }
    let mut out: Vec<String> = v[..MAX_CLASSES - 1]
        .iter()
        .map(|(c, _)| c.to_string())
        .collect();
    out.push(OTHER_CLASS.to_string());
    out
}

/// The index of class `label`: its own, else [`OTHER_CLASS`]'s, else `None` (a class
/// never seen in training, when there was no need for an "other" class).
pub fn class_index(classes: &[String], label: &str) -> Option<usize> {
    classes
        .iter()
        .position(|c| c == label)
        .or_else(|| classes.iter().position(|c| c == OTHER_CLASS))
}

/// The classes of labelled rows.
pub fn class_labels(rows: &[Labeled]) -> impl Iterator<Item = &str> {
    rows.iter().filter_map(|r| match &r.label {
        Label::Class(c) => Some(c.as_str()),
        _ => None,
    })
}

/// Labelled rows as examples. With `classes` (multiclass), labels become class indices
/// and rows of a class the model does not know are left out (their count is returned).
/// Rows without a label are left out.
pub fn examples(rows: Vec<Labeled>, classes: Option<&[String]>) -> (Vec<Example>, usize) {
    let mut unknown = 0;
    let out = rows
        .into_iter()
        .filter_map(|r| {
            let y = match (&r.label, classes) {
                (Label::Class(c), Some(classes)) => match class_index(classes, c) {
                    Some(i) => i as f32,
                    None => {
                        unknown += 1;
                        return None;
                    }
                },
                (Label::Value(v), None) => *v as f32,
                _ => return None,
            };
            Some(Example {
                entity: r.entity,
                anchor: r.anchor,
                y,
            })
        })
        .collect();
    (out, unknown)
}

/// The examples of a split (see [`examples`]).
pub fn split_examples(
    src: &mut dyn Source,
    split: Split,
    classes: Option<&[String]>,
) -> Result<(Vec<Example>, usize)> {
    Ok(examples(src.labels(split)?, classes))
}

/// A seeded sample of at most `max` items (Fisher–Yates over splitmix64), repeatable.
pub fn sample<T>(mut v: Vec<T>, max: usize, seed: u64) -> Vec<T> {
    if v.len() <= max {
        return v;
    }
    let mut s = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..v.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v.truncate(max);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_vocabulary_and_unknowns() {
        let labels = ["b", "a", "b", "c", "b", "a"];
        assert_eq!(fit_classes(labels), vec!["b", "a", "c"]);
        let many: Vec<String> = (0..150).map(|i| format!("c{i:03}")).collect();
        let v = fit_classes(many.iter().map(String::as_str));
        assert_eq!(v.len(), MAX_CLASSES);
        assert_eq!(v.last().map(String::as_str), Some(OTHER_CLASS));
        assert_eq!(class_index(&v, "c149"), Some(MAX_CLASSES - 1));
        let rows = vec![
            Labeled {
                entity: "1".into(),
                anchor: 0,
                label: Label::Class("a".into()),
            },
            Labeled {
                entity: "2".into(),
                anchor: 0,
                label: Label::Class("z".into()),
            },
            Labeled {
                entity: "3".into(),
                anchor: 0,
                label: Label::Missing,
            },
        ];
        let classes = vec!["b".to_string(), "a".to_string()];
        let (ex, unknown) = examples(rows, Some(&classes));
        assert_eq!((ex.len(), unknown, ex[0].y), (1, 1, 1.0));
    }

    #[test]
    fn samples_are_repeatable() {
        let v: Vec<u32> = (0..100).collect();
        let a = sample(v.clone(), 10, 7);
        assert_eq!(a, sample(v.clone(), 10, 7));
        assert_ne!(a, sample(v.clone(), 10, 8));
        assert_eq!(sample(v.clone(), 1000, 7), v);
    }
}
