//! `rdl_explain` of an answer given in context: which rows and columns of the entity's
//! context the pretrained model's answer rests on, by occlusion. Each row the model reads
//! is left out of the context (and each column emptied) and the answer read again with
//! the same examples; a row's share is the size of the change, its effect the direction.
//! Occlusion, not attention rollout, because the answer is also a comparison with the
//! examples: what matters is how the answer moves, and the model can say that directly.
//! All variants are read in one episode — queries never see each other — so an
//! explanation costs one answer's examples and a few dozen query contexts.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use super::error::Result;
use super::explain::{described, Shares};
use super::in_context::{asked, kind, shipped, tell};
use super::source::Source;
use crate::encode::{Subgraph, Value as Cell};
use crate::icl::fit_episode_encoder;
use crate::pql::TaskSpec;
use crate::sampler::Plan;

/// The rows of `sg` that `keep` says, in their order (references to the others dropped),
/// and where each row of `sg` went.
fn keeping(sg: &Subgraph, keep: impl Fn(usize) -> bool) -> (Subgraph, Vec<Option<usize>>) {
    let mut to = vec![None; sg.rows.len()];
    let mut n = 0;
    for (i, t) in to.iter_mut().enumerate() {
        if keep(i) {
            *t = Some(n);
            n += 1;
        }
    }
    let rows = (sg.rows.iter().enumerate())
        .filter(|&(i, _)| to[i].is_some())
        .map(|(_, row)| {
            let mut row = row.clone();
            row.parents = row.parents.iter().filter_map(|&p| to[p]).collect();
            row
        })
        .collect();
    let seed = to[sg.seed].unwrap_or(0);
    let anchor = sg.anchor;
    (Subgraph { anchor, rows, seed }, to)
}

/// `sg` without row `r` (references to it dropped, the later rows' indices moved up).
fn without_row(sg: &Subgraph, r: usize) -> Subgraph {
    keeping(sg, |i| i != r).0
}

/// `sg` with every cell of column `name` (`table.column`) emptied.
fn without_column(sg: &Subgraph, name: &str) -> Subgraph {
    let mut out = sg.clone();
    for row in &mut out.rows {
        for (c, _, v) in &mut row.values {
            if format!("{}.{c}", row.table) == name {
                *v = Cell::Null;
            }
        }
    }
    out
}

/// Shares of `changes` (absolute values, summing to 1; all 0 when nothing changed).
fn normalised(changes: &[f64]) -> Vec<f64> {
    let total: f64 = changes.iter().map(|d| d.abs()).sum();
    changes
        .iter()
        .map(|d| if total > 0.0 { d.abs() / total } else { 0.0 })
        .collect()
}

/// The explanation of `key`'s in-context answer at `anchor` (what-if changes of
/// `assuming` applied): the answer, the shares of tables, columns and the `top_k`
/// strongest rows with their effects, and a sentence.
#[allow(clippy::too_many_arguments)]
pub fn explain(
    src: &mut dyn Source,
    task: &str,
    spec: &TaskSpec,
    plan: &Plan,
    at: (&str, i64),
    assuming: Option<&serde_json::Value>,
    top_k: usize,
) -> Result<Value> {
    kind(task, spec)?;
    let model = shipped()?;
    let (one, _, ex) = asked(src, task, spec, plan, at, assuming)?;
    let sg = &one.context;
    // Only the rows the model reads can move the answer.
    let enc = fit_episode_encoder(&model.cfg, std::slice::from_ref(sg), 0);
    let rows: Vec<usize> = (enc.kept_rows(sg).0.into_iter())
        .filter(|&r| r != sg.seed)
        .collect();
    let mut columns: Vec<String> = Vec::new();
    for &r in rows.iter().chain([&sg.seed]) {
        for (c, _, _) in &sg.rows[r].values {
            let name = format!("{}.{c}", sg.rows[r].table);
            if !columns.contains(&name) {
                columns.push(name);
            }
        }
    }
    // Occluded from the rows read alone: leaving one out must not let an unread one in.
    let (read, to) = keeping(sg, |i| i == sg.seed || rows.contains(&i));
    let mut queries = vec![sg.clone()];
    queries.extend(
        rows.iter()
            .filter_map(|&r| to[r])
            .map(|r| without_row(&read, r)),
    );
    queries.extend(columns.iter().map(|c| without_column(&read, c)));
    let answers: Vec<f64> = ex.answer(model, queries)?.iter().map(|a| a.value).collect();
    let p = answers[0];
    let row_changes: Vec<f64> = answers[1..=rows.len()].iter().map(|a| p - a).collect();
    let col_changes: Vec<f64> = answers[1 + rows.len()..].iter().map(|a| p - a).collect();

    let mut s = Shares {
        rows: vec![(0.0, 0.0); sg.rows.len()],
        columns: BTreeMap::new(),
        cells: HashMap::new(),
    };
    for ((&r, share), &d) in rows.iter().zip(normalised(&row_changes)).zip(&row_changes) {
        s.rows[r] = (share, d);
    }
    for (c, share) in columns.iter().zip(normalised(&col_changes)) {
        s.columns.insert(c.clone(), share);
    }
    for &r in &rows {
        for (v, (c, _, _)) in sg.rows[r].values.iter().enumerate() {
            let name = format!("{}.{c}", sg.rows[r].table);
            if let Some(&share) = s.columns.get(&name) {
                s.cells.insert((r, v), share);
            }
        }
    }
    let mut out = described(spec.task_type, &[], &[p], &one, &s, top_k);
    out["task"] = json!(task);
    out["in_context"] = json!(true);
    out["examples"] = json!(ex.len());
    out["method"] = json!(
        "occlusion: each row the pretrained model reads left out of the context (and each column emptied) and the answer read again with the same examples; share = the size of the change over the total, effect = its direction"
    );
    if let Some(o) = out["sentence"].as_str() {
        let n = ex.len();
        out["sentence"] = json!(format!(
            "No trained model: answered in context from {n} labelled examples. {o}"
        ));
    }
    tell(src, task, ex.len())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::RawRow;
    use crate::schema::SemanticType;
    use std::sync::Arc;

    fn row(table: &str, parents: Vec<usize>, x: f64) -> RawRow {
        RawRow {
            table: Arc::from(table),
            key: format!("{x}"),
            time: None,
            hop: (!parents.is_empty()) as u8,
            parents,
            values: vec![(Arc::from("x"), SemanticType::Numerical, Cell::Num(x))],
        }
    }

    #[test]
    fn occluded_contexts_keep_their_links() {
        // rows: 0 a child of the seed 1, 2 a child of 0 and of the seed.
        let sg = Subgraph {
            anchor: 0,
            rows: vec![
                row("t", vec![1], 1.0),
                row("s", vec![], 2.0),
                row("u", vec![0, 1], 3.0),
            ],
            seed: 1,
        };
        let g = without_row(&sg, 0);
        assert_eq!(g.seed, 0);
        assert_eq!(g.rows.len(), 2);
        assert_eq!(g.rows[1].parents, vec![0]); // the seed, moved up; row 0 gone
        let c = without_column(&sg, "u.x");
        assert_eq!(c.rows[2].values[0].2, Cell::Null);
        assert_eq!(c.rows[0].values[0].2, Cell::Num(1.0));
        assert_eq!(normalised(&[1.0, -3.0]), vec![0.25, 0.75]);
        assert_eq!(normalised(&[0.0, 0.0]), vec![0.0, 0.0]);
    }
}
