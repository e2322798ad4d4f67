//! A task's examples: the labelled (entity, anchor) pairs of its splits, the classes of a
//! multiclass task, and the gathering of their contexts in batches.

use rdl_engine::encode::Subgraph;
use rdl_engine::memory;
use rdl_engine::pql::{Target, TaskType};
use rdl_engine::sampler::Plan;
use rdl_engine::train;

use crate::api::task::{split_rows, Task};
use crate::error::RdlError;
use crate::pgtime;

/// Seeds gathered per batch of SPI statements: bounds memory and statement size.
pub const GATHER_BATCH: usize = 256;

/// Classes a multiclass model distinguishes at most; rarer ones share the class
/// [`OTHER_CLASS`].
pub const MAX_CLASSES: usize = 100;
/// The class of every label outside a multiclass model's vocabulary.
pub const OTHER_CLASS: &str = "(other)";

/// `(entity key, anchor µs, label)`: the label is 0/1, the value, or the class index.
pub type Example = (String, i64, f32);

/// The engine's task for a stored task (`classes`: a multiclass model's vocabulary).
pub fn engine_task(t: &Task, name: &str, classes: &[String]) -> train::Task {
    match t.spec.task_type {
        TaskType::BinaryClassification => train::Task::Binary,
        TaskType::Regression => train::Task::Regression,
        TaskType::MulticlassClassification => train::Task::Multiclass {
            classes: classes.len(),
        },
        TaskType::Ranking => RdlError::new(
            "0A000",
            format!("training ranking tasks is not built yet (task \"{name}\")"),
        )
        .hint("Binary classification, regression and multiclass tasks can be trained today.")
        .raise(),
    }
}

/// The column of the seed row that must stay hidden from the model (a static target).
pub fn hidden_column(t: &Task) -> Option<String> {
    match &t.spec.target {
        Target::Static(c) => Some(c.column.clone()),
        _ => None,
    }
}

/// The class vocabulary of a multiclass task from its training labels: the most frequent
/// first (ties by name), at most [`MAX_CLASSES`] − 1 of them plus [`OTHER_CLASS`] when
/// there are more.
pub fn fit_classes(labels: &[String]) -> Vec<String> {
    let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for l in labels {
        *counts.entry(l.as_str()).or_default() += 1;
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

/// The index of class `label` in `classes`: its own, else [`OTHER_CLASS`]'s, else `None`
/// (a class never seen in training, when there was no need for an "other" class).
pub fn class_index(classes: &[String], label: &str) -> Option<usize> {
    classes
        .iter()
        .position(|c| c == label)
        .or_else(|| classes.iter().position(|c| c == OTHER_CLASS))
}

/// The multiclass labels of a split, as text.
pub fn class_labels(name: &str, t: &Task, split: &str) -> Vec<String> {
    split_rows(name, t, split)
        .into_iter()
        .filter_map(|(_, _, _, text)| text)
        .collect()
}

/// The labelled examples of a split. Multiclass labels become indices into `classes`;
/// examples of a class the model does not know are left out (the count is returned).
pub fn labeled(name: &str, t: &Task, split: &str, classes: &[String]) -> (Vec<Example>, usize) {
    let multiclass = t.spec.task_type == TaskType::MulticlassClassification;
    let mut unknown = 0;
    let rows = split_rows(name, t, split)
        .into_iter()
        .filter_map(|(e, a, l, text)| {
            let y = if multiclass {
                let i = class_index(classes, text.as_deref()?);
                if i.is_none() {
                    unknown += 1;
                }
                i? as f32
            } else {
                l? as f32
            };
            Some((e, pgtime::from_pg(a), y))
        })
        .collect();
    (rows, unknown)
}

/// `(entity key, anchor µs)` of every example of a split, labelled or not.
pub fn split_seeds(name: &str, t: &Task, split: &str) -> Vec<(String, i64)> {
    split_rows(name, t, split)
        .into_iter()
        .map(|(e, a, _, _)| (e, pgtime::from_pg(a)))
        .collect()
}

pub fn seeds_of(rows: &[Example]) -> Vec<(String, i64)> {
    rows.iter().map(|r| (r.0.clone(), r.1)).collect()
}

/// Gathers contexts batch by batch and hands each batch's subgraphs to `each`, with the
/// index of its first seed and whether each seed's entity was found.
pub fn gather_all(
    plan: &Plan,
    t: &Task,
    seeds: &[(String, i64)],
    mut each: impl FnMut(usize, Vec<Subgraph>, Vec<bool>),
) {
    let hide = hidden_column(t);
    let limit = crate::guc::max_memory_bytes();
    // A piece's subgraphs take at most a quarter of rdl.max_memory_mb (callers hold what
    // they encoded too). Until the size of a context is measured, a row is taken to be
    // large (2 kB: several texts of 200 characters, the most the sampler reads of one).
    let (mut start, mut each_bytes) = (0, plan.config.max_rows.max(1) * 2048);
    while start < seeds.len() {
        pgrx::check_for_interrupts!();
        let n = memory::chunk_len(limit / 4, each_bytes, GATHER_BATCH).min(seeds.len() - start);
        let piece = &seeds[start..start + n];
        let g = crate::sampler::gather(plan, &t.spec.entity.table, piece, hide.as_deref());
        let sizes = check_fits(piece, &g.contexts);
        each_bytes = sizes.iter().sum::<usize>().div_ceil(n.max(1));
        each(start, g.contexts, g.found);
        start += n;
    }
}

/// The sizes of gathered contexts; 53200 naming the entity when one alone is larger than
/// rdl.max_memory_mb.
pub fn check_fits(seeds: &[(String, i64)], contexts: &[Subgraph]) -> Vec<usize> {
    let limit = crate::guc::max_memory_bytes();
    let sizes: Vec<usize> = contexts.iter().map(memory::subgraph_bytes).collect();
    if let Some(i) = (0..sizes.len()).find(|&i| sizes[i] > limit) {
        crate::error::over_memory(
            format!(
                "the context of entity {} at {}",
                seeds[i].0,
                rdl_engine::base::time::format_timestamp(seeds[i].1)
            ),
            memory::Exceeded {
                need: sizes[i],
                limit,
            },
            "Train the task with smaller contexts (options max_rows, fanout, depth).",
        )
        .raise()
    }
    sizes
}

/// A seeded sample of at most `max` examples (Fisher–Yates over splitmix64), repeatable.
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
