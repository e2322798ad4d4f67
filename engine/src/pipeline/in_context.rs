//! Answering a task that has no trained model, in context (DESIGN §6b): the pretrained
//! model ([`crate::icl`]) reads labelled examples of the task known at the answer's time
//! and the entity's context, and answers. No training; the labels come from the task's
//! own label statement, run as the caller, over its training and validation anchors.
//!
//! **Time.** An example is an (entity, anchor) whose label window closed at or before the
//! answer's time `as_of`; its context is gathered at its own anchor. Nothing later than
//! `as_of` reaches the answer.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::error::{Error, Result};
use super::gather::{check_fits, hide, Hidden};
use super::one::One;
use super::source::{Label, Source, Split};
use crate::encode::Subgraph;
use crate::icl::model::IclModel;
use crate::icl::{draw, Episode, IclTask};
use crate::pql::{TaskSpec, TaskType};
use crate::sampler::Plan;

/// A labelled row known to a task: (entity, anchor, label).
pub type Known = (String, i64, f64);

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

/// Anchors newer than the splits an answer's examples may come from, at most.
pub const RECENT_ANCHORS: usize = 8;

/// Every labelled (entity, anchor, label) known to an answer at `as_of`: the task's
/// training and validation splits, and up to [`RECENT_ANCHORS`] anchors newer than them
/// whose windows closed by `as_of`, labelled now by the task's label statement — the
/// outcomes a user asking at `as_of` already has (a task's splits may end years earlier).
/// Nothing here is later than `as_of`: [`closed_by`] checks again.
pub fn known(src: &mut dyn Source, spec: &TaskSpec, as_of: i64) -> Result<Vec<Known>> {
    let mut rows = Vec::new();
    for split in [Split::Train, Split::Val] {
        rows.extend(src.labels(split)?);
    }
    let newest = rows.iter().map(|r| r.anchor).max();
    let recent = recent_anchors(spec, as_of, newest);
    if !recent.is_empty() {
        rows.extend(src.labels_at(&recent)?);
    }
    Ok(rows
        .into_iter()
        .filter_map(|r| match r.label {
            Label::Value(y) => Some((r.entity, r.anchor, y)),
            _ => None,
        })
        .collect())
}

/// The newest anchors after the splits' `newest` whose windows close by `as_of`, newest
/// first (at most [`RECENT_ANCHORS`]): one window length apart on a grid from `newest`
/// (from the Unix epoch when the splits hold none), so that answers at nearby times share
/// them and their labels, kept per transaction.
pub fn recent_anchors(spec: &TaskSpec, as_of: i64, newest: Option<i64>) -> Vec<i64> {
    use crate::base::time::add;
    let Some(w) = spec.window else {
        return Vec::new();
    };
    let origin = newest.unwrap_or(0);
    let step = (w.end - w.start).max(1);
    let at = |j: i64| add(origin, j.saturating_mul(step), w.unit);
    let closed = |j: i64| add(at(j), w.end, w.unit) <= as_of;
    // Jump near the last closed grid point in whole steps, then walk to it exactly: the
    // jump is off by a few steps at most (months of unequal length).
    let span = (at(1) - origin).max(1);
    let mut j = ((add(as_of, -w.end, w.unit) - origin) / span).max(1);
    while j > 1 && !closed(j) {
        j -= 1;
    }
    while closed(j + 1) {
        j += 1;
    }
    (0..RECENT_ANCHORS as i64)
        .map(|k| j - k)
        .take_while(|&i| i >= 1 && closed(i))
        .map(at)
        .collect()
}

/// The examples for an answer at `as_of` ([`draw`] over the anchors whose windows closed
/// by then, seeded by `as_of`: the same question gets the same answer) and the positive
/// rate of the rows drawn from.
pub fn examples(
    spec: &TaskSpec,
    kind: IclTask,
    known: &[Known],
    as_of: i64,
    n: usize,
) -> (Vec<(String, i64, f64)>, f64) {
    let by_anchor = closed_by(spec, known, as_of);
    let groups: Vec<(i64, &[(String, f64)])> = by_anchor
        .iter()
        .rev()
        .map(|(a, r)| (*a, r.as_slice()))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(as_of as u64);
    draw(&groups, n, kind, &mut rng)
}

/// The labelled rows of `known` whose windows closed by `as_of`, by anchor (none for a
/// task without a window).
fn closed_by(spec: &TaskSpec, known: &[Known], as_of: i64) -> BTreeMap<i64, Vec<(String, f64)>> {
    let mut by_anchor: BTreeMap<i64, Vec<(String, f64)>> = BTreeMap::new();
    let Some(w) = spec.window else {
        return by_anchor;
    };
    for (e, a, y) in known {
        if crate::base::time::add(*a, w.end, w.unit) <= as_of {
            by_anchor.entry(*a).or_default().push((e.clone(), *y));
        }
    }
    by_anchor
}

/// What an in-context answer rests on.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The probability of the positive class (binary) or the value (regression).
    pub value: f64,
    pub examples: usize,
}

/// The labelled examples an answer at one time reads: their contexts (gathered at their
/// own anchors), labels and the positive rate of the rows they were drawn from.
pub struct Examples {
    kind: IclTask,
    contexts: Vec<Subgraph>,
    y: Vec<f64>,
    rate: f64,
}

impl Examples {
    /// The examples for an answer at `as_of` drawn from `known`, gathered; 55000 when
    /// fewer than two exist.
    pub fn gather(
        src: &mut dyn Source,
        task: &str,
        spec: &TaskSpec,
        plan: &Plan,
        known: &[Known],
        as_of: i64,
    ) -> Result<Examples> {
        let kind = kind(task, spec)?;
        let (ex, rate) = examples(spec, kind, known, as_of, EXAMPLES);
        if ex.len() < 2 {
            return Err(Error::no_model(task).detail(format!(
                "No labelled examples whose window closed by the answer's time were found ({} known).",
                known.len()
            )));
        }
        let (contexts, y) = labelled_contexts(src, spec, plan, &ex)?;
        Ok(Examples {
            kind,
            contexts,
            y,
            rate,
        })
    }

    /// How many examples an answer rests on.
    pub fn len(&self) -> usize {
        self.contexts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.contexts.is_empty()
    }

    /// The answers for `queries` (contexts at the examples' time), read a piece at a time:
    /// queries attend to the examples only, so the pieces do not change the answers.
    pub fn answer(&self, model: &IclModel, queries: Vec<Subgraph>) -> Result<Vec<Answer>> {
        let mut out = Vec::with_capacity(queries.len());
        let mut queries = queries.into_iter().peekable();
        while queries.peek().is_some() {
            let piece: Vec<Subgraph> = queries.by_ref().take(QUERY_PIECE).collect();
            let n_q = piece.len();
            let mut ctxs = self.contexts.clone();
            ctxs.extend(piece);
            let mut y = self.y.clone();
            y.resize(ctxs.len(), 0.0);
            let ep =
                Episode::to_answer(&model.cfg, self.kind, &ctxs, self.len(), &y).at_rate(self.rate);
            let raw = read_and_answer(model, &ep)
                .map_err(|e| Error::new("XX000", format!("rdl: {e}")))?;
            out.extend(raw.into_iter().take(n_q).map(|o| Answer {
                value: ep.value(o),
                examples: self.len(),
            }));
        }
        Ok(out)
    }
}

/// The contexts of labelled (entity, anchor, label) rows, each at its anchor, with their
/// labels; rows whose entity does not exist then are left out.
fn labelled_contexts(
    src: &mut dyn Source,
    spec: &TaskSpec,
    plan: &Plan,
    rows: &[(String, i64, f64)],
) -> Result<(Vec<Subgraph>, Vec<f64>)> {
    let seeds: Vec<(String, i64)> = rows.iter().map(|e| (e.0.clone(), e.1)).collect();
    let mut g = src.gather(plan, &spec.entity.table, &seeds)?;
    let hidden: Option<Hidden> = super::tabular::hidden(spec);
    hide(&mut g.contexts, hidden.as_ref());
    check_fits(&seeds, &g.contexts, src.memory_limit())?;
    let (mut contexts, mut y) = (Vec::new(), Vec::new());
    for ((c, found), e) in g.contexts.into_iter().zip(g.found).zip(rows) {
        if found {
            contexts.push(c);
            y.push(e.2);
        }
    }
    Ok((contexts, y))
}

/// Queries read with the examples at once, at most.
const QUERY_PIECE: usize = 256;

/// Tasks this process has said so of (one NOTICE per task and backend).
static TOLD: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Says, the first time this process answers `task` in context, what answered it.
pub(super) fn tell(src: &mut dyn Source, task: &str, examples: usize) -> Result<()> {
    let first = TOLD.lock().map(|mut t| {
        let new = !t.iter().any(|x| x == task);
        if new && t.len() < 1024 {
            t.push(task.to_string());
        }
        new
    });
    let quoted = task.replace('\'', "''");
    let (what, train) = match crate::pql::is_query(task) {
        true => (
            "query",
            "rdl_create_task(name, query) then CALL rdl_train(name)".to_string(),
        ),
        false => ("task", format!("CALL rdl_train('{quoted}')")),
    };
    if first.unwrap_or(false) {
        src.report(super::source::Event::Notice(format!(
            "{what} \"{task}\" has no trained model: answered in context by rdl's pretrained model from {examples} labelled examples known at the time asked ({train} trains one)"
        )))?;
    }
    Ok(())
}

/// The shipped pretrained model; XX000 when it does not load.
pub(super) fn shipped() -> Result<&'static IclModel> {
    crate::icl::shipped::get().map_err(|e| {
        Error::new(
            "XX000",
            format!("rdl: the shipped in-context model does not load: {e}"),
        )
    })
}

/// One entity's answer at `anchor` (what-if changes of `assuming` applied) from the
/// shipped model, with a NOTICE the first time a task is answered so.
pub fn predict(
    src: &mut dyn Source,
    task: &str,
    spec: &TaskSpec,
    plan: &Plan,
    at: (&str, i64),
    assuming: Option<&serde_json::Value>,
) -> Result<Answer> {
    Ok(answer_one(src, task, spec, plan, at, assuming)?.0)
}

/// What an answer for one entity reads: its context at `anchor` (what-if changes of
/// `assuming` applied), every labelled row known to the task, and the examples drawn
/// from them for that time.
pub(super) fn asked(
    src: &mut dyn Source,
    task: &str,
    spec: &TaskSpec,
    plan: &Plan,
    (key, anchor): (&str, i64),
    assuming: Option<&serde_json::Value>,
) -> Result<(One, Vec<Known>, Examples)> {
    kind(task, spec)?;
    let hidden = super::tabular::hidden(spec);
    let table = &spec.entity.table;
    let one = super::one::gather_one(src, plan, table, (key, anchor), hidden.as_ref(), assuming)?;
    let known = known(src, spec, anchor)?;
    let ex = Examples::gather(src, task, spec, plan, &known, anchor)?;
    Ok((one, known, ex))
}

/// [`predict`], with the labelled rows it drew its examples from.
fn answer_one(
    src: &mut dyn Source,
    task: &str,
    spec: &TaskSpec,
    plan: &Plan,
    at: (&str, i64),
    assuming: Option<&serde_json::Value>,
) -> Result<(Answer, Vec<Known>)> {
    let model = shipped()?;
    let (one, known, ex) = asked(src, task, spec, plan, at, assuming)?;
    let a = ex
        .answer(model, vec![one.context])?
        .into_iter()
        .next()
        .ok_or_else(|| Error::new("XX000", "rdl: no answer"))?;
    tell(src, task, a.examples)?;
    Ok((a, known))
}

/// Answers for many entities at `as_of` (`None` for a key that does not exist then), read
/// with one draw of examples, piece by piece.
pub fn predict_batch(
    src: &mut dyn Source,
    task: &str,
    spec: &TaskSpec,
    plan: &Plan,
    keys: &[String],
    as_of: i64,
) -> Result<Vec<Option<f64>>> {
    kind(task, spec)?;
    let model = shipped()?;
    let known = known(src, spec, as_of)?;
    let ex = Examples::gather(src, task, spec, plan, &known, as_of)?;
    let seeds: Vec<(String, i64)> = keys.iter().map(|k| (k.clone(), as_of)).collect();
    let hidden = super::tabular::hidden(spec);
    let mut out = vec![None; keys.len()];
    super::gather::gather_all(
        src,
        plan,
        &spec.entity.table,
        &seeds,
        hidden.as_ref(),
        &mut |_, start, g| {
            let at: Vec<usize> = (0..g.found.len()).filter(|&i| g.found[i]).collect();
            let qs: Vec<Subgraph> = (g.contexts.into_iter().zip(g.found))
                .filter_map(|(c, f)| f.then_some(c))
                .collect();
            for (i, a) in at.into_iter().zip(ex.answer(model, qs)?) {
                out[start + i] = Some(a.value);
            }
            Ok(())
        },
    )?;
    tell(src, task, ex.len())?;
    Ok(out)
}

/// The model's raw outputs for an episode's queries.
fn read_and_answer(model: &IclModel, ep: &Episode) -> candle_core::Result<Vec<f32>> {
    let dev = candle_core::Device::Cpu;
    let (_, r) = model.read_episode(ep, &dev)?;
    model.answer_episode(ep, &r, &dev)?.to_vec1::<f32>()
}

/// Held-out entities an accuracy estimate scores, at most.
const HELD_OUT: usize = 200;
/// Fewest held-out entities an estimate rests on.
const MIN_HELD_OUT: usize = 20;
/// Anchors an estimate is asked at, at most (newest first).
const ESTIMATE_ANCHORS: usize = 8;

/// How well the model answers this question: its score had the question been asked at the
/// newest anchors whose windows closed by `as_of` (each with the examples it would have
/// drawn then, none of them closed later), over those anchors' labelled entities.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// `auroc` (binary) or `mae` (regression, in the label's unit).
    pub metric: &'static str,
    pub value: f64,
    /// Held-out (entity, anchor) answers scored.
    pub entities: usize,
    /// The examples each answer read.
    pub examples: usize,
    /// How many anchors it asked at.
    pub anchors: usize,
    /// The oldest and newest of them (µs since the Unix epoch).
    #[serde(serialize_with = "as_timestamp")]
    pub from: i64,
    #[serde(serialize_with = "as_timestamp")]
    pub to: i64,
}

fn as_timestamp<S: serde::Serializer>(at: &i64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&crate::base::time::format_timestamp(*at))
}

/// The estimate of an answer at `as_of`; `None` when the anchors closed by then hold too
/// few labelled entities (or one class only, for a binary task) with examples before them.
#[allow(clippy::too_many_arguments)]
pub fn estimate(
    src: &mut dyn Source,
    model: &IclModel,
    task: &str,
    spec: &TaskSpec,
    plan: &Plan,
    known: &[Known],
    as_of: i64,
) -> Result<Option<Estimate>> {
    let kind = kind(task, spec)?;
    let by_anchor = closed_by(spec, known, as_of);
    let (mut p, mut ys, mut used, mut examples) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for (&at, rows) in by_anchor.iter().rev().take(ESTIMATE_ANCHORS) {
        if ys.len() >= HELD_OUT {
            break;
        }
        let Ok(ex) = Examples::gather(src, task, spec, plan, known, at) else {
            break; // no examples closed by this anchor, nor by any older one
        };
        let mut rng = ChaCha8Rng::seed_from_u64(at as u64 ^ 0x5eed);
        let held: Vec<(String, i64, f64)> = {
            use rand::seq::IndexedRandom;
            let n = HELD_OUT - ys.len();
            rows.choose_multiple(&mut rng, n)
                .map(|r| (r.0.clone(), at, r.1))
                .collect()
        };
        let (qs, y) = labelled_contexts(src, spec, plan, &held)?;
        p.extend(ex.answer(model, qs)?.iter().map(|a| a.value));
        ys.extend(y);
        used.push(at);
        examples = examples.max(ex.len());
    }
    if ys.len() < MIN_HELD_OUT {
        return Ok(None);
    }
    let value = match kind {
        IclTask::Binary => {
            let labels: Vec<bool> = ys.iter().map(|&y| y > 0.5).collect();
            crate::metrics::auroc(&p, &labels)
        }
        IclTask::Regression => crate::metrics::mae(&p, &ys),
    };
    Ok(value.map(|value| Estimate {
        metric: if kind == IclTask::Binary {
            "auroc"
        } else {
            "mae"
        },
        value,
        entities: ys.len(),
        examples,
        anchors: used.len(),
        from: used.iter().copied().min().unwrap_or(0),
        to: used.iter().copied().max().unwrap_or(0),
    }))
}

/// `rdl_predict_detail` of a task answered in context: the answer, what it rests on, the
/// accuracy estimate and a sentence.
pub fn detail(
    src: &mut dyn Source,
    task: &str,
    spec: &TaskSpec,
    plan: &Plan,
    (key, anchor): (&str, i64),
    assuming: Option<&serde_json::Value>,
) -> Result<serde_json::Value> {
    let (a, known) = answer_one(src, task, spec, plan, (key, anchor), assuming)?;
    let est = estimate(src, shipped()?, task, spec, plan, &known, anchor)?;
    let what = match spec.task_type {
        TaskType::BinaryClassification => format!("a probability of {:.3}", a.value),
        _ => format!("{:.4}", a.value),
    };
    let how = match &est {
        Some(e) => format!(
            " Asked the same way at the {} latest times whose outcomes were known ({} to {}), it scored {} {:.3} on {} answers.",
            e.anchors,
            crate::base::time::format_timestamp(e.from),
            crate::base::time::format_timestamp(e.to),
            if e.metric == "auroc" { "AUROC" } else { "MAE" },
            e.value,
            e.entities
        ),
        None => " No earlier time has enough known outcomes to estimate its accuracy.".into(),
    };
    let mut out = serde_json::json!({
        "task": task,
        "entity": key,
        "as_of": crate::base::time::format_timestamp(anchor),
        "task_type": spec.task_type,
        "prediction": a.value,
        "in_context": true,
        "examples": a.examples,
        "estimate": est,
        "explanation": format!(
            "No trained model: rdl's pretrained model read {} labelled examples known at {} and answered {what}.{how}",
            a.examples,
            crate::base::time::format_timestamp(anchor)
        ),
    });
    if spec.task_type == TaskType::BinaryClassification {
        out["probability"] = serde_json::json!(a.value);
    }
    Ok(out)
}
