//! Answering a task that has no trained model, in context (DESIGN §6b): the pretrained
//! model ([`crate::icl`]) reads labelled examples of the task known at the answer's time
//! and the entity's context, and answers. No training; the labels come from the task's
//! own label statement, run as the caller, over its training and validation anchors.
//!
//! **Time.** An example is an (entity, anchor) whose label window closed at or before the
//! answer's time `as_of`; its context is gathered at its own anchor. Nothing later than
//! `as_of` reaches the answer.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::error::{Error, Result};
use super::gather::{check_fits, hide, Hidden};
use super::source::{Label, Source, Split};
use crate::encode::Subgraph;
use crate::icl::model::IclModel;
use crate::icl::{draw, Episode, IclTask};
use crate::pql::{TaskSpec, TaskType};
use crate::sampler::Plan;

/// Labelled examples drawn per answer.
pub const EXAMPLES: usize = 64;

/// The task kind the in-context model answers, or 55000 saying why it cannot.
pub fn kind(task: &str, spec: &TaskSpec) -> Result<IclTask> {
    let kind =
        match spec.task_type {
            TaskType::BinaryClassification => IclTask::Binary,
            TaskType::Regression => IclTask::Regression,
            _ => return Err(Error::no_model(task).detail(
                "In-context answers cover binary and regression tasks; this one needs training.",
            )),
        };
    if spec.window.is_none() {
        return Err(Error::no_model(task)
            .detail("In-context answers need a target with a time window; this one is static."));
    }
    Ok(kind)
}

/// Every labelled (entity, anchor, label) of the task's training and validation splits.
pub fn known(src: &mut dyn Source) -> Result<Vec<(String, i64, f64)>> {
    let mut out = Vec::new();
    for split in [Split::Train, Split::Val] {
        for r in src.labels(split)? {
            if let Label::Value(y) = r.label {
                out.push((r.entity, r.anchor, y));
            }
        }
    }
    Ok(out)
}

/// The examples for an answer at `as_of` ([`draw`] over the anchors whose windows closed
/// by then, seeded by `as_of`: the same question gets the same answer) and the positive
/// rate of the rows drawn from.
pub fn examples(
    spec: &TaskSpec,
    kind: IclTask,
    known: &[(String, i64, f64)],
    as_of: i64,
    n: usize,
) -> (Vec<(String, i64, f64)>, f64) {
    let Some(w) = spec.window else {
        return (Vec::new(), 0.0);
    };
    let mut by_anchor: std::collections::BTreeMap<i64, Vec<(String, f64)>> = Default::default();
    for (e, a, y) in known {
        if crate::base::time::add(*a, w.end, w.unit) <= as_of {
            by_anchor.entry(*a).or_default().push((e.clone(), *y));
        }
    }
    let groups: Vec<(i64, &[(String, f64)])> = by_anchor
        .iter()
        .rev()
        .map(|(a, r)| (*a, r.as_slice()))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(as_of as u64);
    draw(&groups, n, kind, &mut rng)
}

/// What an in-context answer rests on.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The probability of the positive class (binary) or the value (regression).
    pub value: f64,
    pub examples: usize,
}

/// Answers for `queries` (contexts gathered at `as_of`, what-if changes applied) from
/// examples drawn from `known`.
#[allow(clippy::too_many_arguments)]
pub fn answer(
    src: &mut dyn Source,
    model: &IclModel,
    task: &str,
    spec: &TaskSpec,
    plan: &Plan,
    known: &[(String, i64, f64)],
    as_of: i64,
    queries: Vec<Subgraph>,
) -> Result<Vec<Answer>> {
    let kind = kind(task, spec)?;
    let (ex, rate) = examples(spec, kind, known, as_of, EXAMPLES);
    if ex.len() < 2 {
        return Err(Error::no_model(task).detail(format!(
            "No labelled examples whose window closed by the answer's time were found ({} known).",
            known.len()
        )));
    }
    let seeds: Vec<(String, i64)> = ex.iter().map(|e| (e.0.clone(), e.1)).collect();
    let mut g = src.gather(plan, &spec.entity.table, &seeds)?;
    let hidden: Option<Hidden> = super::tabular::hidden(spec);
    hide(&mut g.contexts, hidden.as_ref());
    check_fits(&seeds, &g.contexts, src.memory_limit())?;
    let (mut ctxs, mut y): (Vec<Subgraph>, Vec<f64>) = (Vec::new(), Vec::new());
    for ((c, found), e) in g.contexts.into_iter().zip(g.found).zip(&ex) {
        if found {
            ctxs.push(c);
            y.push(e.2);
        }
    }
    let n_ex = ctxs.len();
    let n_q = queries.len();
    ctxs.extend(queries);
    y.resize(ctxs.len(), 0.0);
    let ep = Episode::new(&model.cfg, kind, &ctxs, n_ex, &y, 0).at_rate(rate);
    let out = read_and_answer(model, &ep).map_err(|e| Error::new("XX000", format!("rdl: {e}")))?;
    Ok(out
        .into_iter()
        .take(n_q)
        .map(|o| Answer {
            value: ep.value(o),
            examples: n_ex,
        })
        .collect())
}

/// Tasks this process has said so of (one NOTICE per task and backend).
static TOLD: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// One entity's answer at `anchor` (what-if changes of `assuming` applied) from the
/// shipped model, with a NOTICE the first time a task is answered so.
pub fn predict(
    src: &mut dyn Source,
    task: &str,
    spec: &TaskSpec,
    plan: &Plan,
    (key, anchor): (&str, i64),
    assuming: Option<&serde_json::Value>,
) -> Result<Answer> {
    kind(task, spec)?;
    let model = crate::icl::shipped::get().map_err(|e| {
        Error::new(
            "XX000",
            format!("rdl: the shipped in-context model does not load: {e}"),
        )
    })?;
    let hidden = super::tabular::hidden(spec);
    let one = super::one::gather_one(
        src,
        plan,
        &spec.entity.table,
        (key, anchor),
        hidden.as_ref(),
        assuming,
    )?;
    let known = known(src)?;
    let a = answer(
        src,
        model,
        task,
        spec,
        plan,
        &known,
        anchor,
        vec![one.context],
    )?;
    let a = a
        .into_iter()
        .next()
        .ok_or_else(|| Error::new("XX000", "rdl: no answer"))?;
    let first = TOLD.lock().map(|mut t| {
        let new = !t.iter().any(|x| x == task);
        if new && t.len() < 1024 {
            t.push(task.to_string());
        }
        new
    });
    if first.unwrap_or(false) {
        src.report(super::source::Event::Notice(format!(
            "task \"{task}\" has no trained model: answered in context by rdl's pretrained model from {} labelled examples known at the time asked (CALL rdl_train('{}') trains one)",
            a.examples,
            task.replace('\'', "''")
        )))?;
    }
    Ok(a)
}

/// The model's raw outputs for an episode's queries.
fn read_and_answer(model: &IclModel, ep: &Episode) -> candle_core::Result<Vec<f32>> {
    let dev = candle_core::Device::Cpu;
    let (_, r) = model.read_episode(ep, &dev)?;
    model.answer_episode(ep, &r, &dev)?.to_vec1::<f32>()
}
