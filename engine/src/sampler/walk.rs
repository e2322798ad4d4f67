//! The walk of one batch of seeds, hop by hop: the same for every way of running its
//! statements — SPI in the extension, a generated database in memory (`dbgen::gather`) —
//! so both build the same contexts from the same rows.

use super::{Assembler, Direction, Edge, FetchedRow, Plan, Request};
use crate::encode::Subgraph;

/// One statement of a walk.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    /// The seed rows of the entity table.
    Seeds(&'a str),
    /// Along an edge, in a direction, at a hop (1 and up).
    Hop(&'a Edge, Direction, u8),
}

impl Step<'_> {
    /// The table the statement reads.
    pub fn table(&self) -> &str {
        match self {
            Step::Seeds(t) => t,
            Step::Hop(e, Direction::ToParent, _) => &e.parent,
            Step::Hop(e, Direction::ToChildren, _) => &e.child,
        }
    }
}

/// What a walk gathered, one context per seed.
#[derive(Debug, Clone, Default)]
pub struct Walked {
    pub contexts: Vec<Subgraph>,
    /// Via which foreign key each row of each context was reached.
    pub via: Vec<Vec<Option<String>>>,
    /// Whether each seed's row was found (visible at its anchor).
    pub found: Vec<bool>,
    /// Rows newer than their anchor that a statement returned (and the assembler dropped):
    /// always 0 when the statements bound time as they must.
    pub dropped_future: usize,
}

/// Gathers the context of every `(key, anchor µs)` seed of `entity_table`; `fetch` runs
/// one statement for its requests (rows carry the request's index as `ord`).
pub fn walk<E>(
    plan: &Plan,
    entity_table: &str,
    seeds: &[(String, i64)],
    mut fetch: impl FnMut(Step<'_>, &[Request]) -> Result<Vec<FetchedRow>, E>,
) -> Result<Walked, E> {
    let anchors: Vec<i64> = seeds.iter().map(|s| s.1).collect();
    let mut asm = Assembler::new(plan, &anchors);
    let keys: Vec<Vec<String>> = seeds.iter().map(|s| vec![s.0.clone()]).collect();
    let reqs = asm.seed_requests(&keys);
    let rows = fetch(Step::Seeds(entity_table), &reqs)?;
    asm.accept_seeds(entity_table, rows);
    let found = (0..seeds.len()).map(|i| asm.has_seed(i)).collect();
    while asm.next_hop() {
        let frontier = asm.take_frontier();
        for edge in &plan.edges {
            for dir in [Direction::ToParent, Direction::ToChildren] {
                let reqs = asm.requests(&frontier, edge, dir);
                if reqs.is_empty() {
                    continue;
                }
                let mut rows = fetch(Step::Hop(edge, dir, asm.hop()), &reqs)?;
                // In request order whatever the plan (a hash join returns a parent lookup's
                // rows in the table's order): a context's rows must not depend on it. Stable,
                // so each request's children stay newest first.
                rows.sort_by_key(|r| r.ord);
                asm.accept_step(edge, dir, &reqs, rows);
            }
        }
    }
    Ok(Walked {
        found,
        dropped_future: asm.dropped_future,
        via: std::mem::take(&mut asm.via),
        contexts: std::mem::take(&mut asm.contexts),
    })
}
