//! Gathering contexts for many seeds in pieces that fit the call's memory budget, and
//! hiding a static target from them.

use super::error::{Error, Result};
use super::source::{Event, Gathered, Source};
use crate::base::time::format_timestamp;
use crate::encode::Subgraph;
use crate::memory;
use crate::sampler::Plan;
use std::time::Instant;

/// Seeds gathered per piece at most: bounds memory and statement size.
pub const GATHER_BATCH: usize = 256;

/// A column no context may show: the target of a task whose target is a static column
/// of the entity table. Hidden on every row of that table — the seed's, and those of
/// other entities reached through the graph (a test entity's label among them).
#[derive(Debug, Clone, PartialEq)]
pub struct Hidden {
    pub table: String,
    pub column: String,
}

/// Removes the hidden column from every row of its table.
pub fn hide(contexts: &mut [Subgraph], hidden: Option<&Hidden>) {
    let Some(h) = hidden else { return };
    for c in contexts {
        for r in c.rows.iter_mut().filter(|r| *r.table == *h.table) {
            r.values.retain(|(name, _, _)| **name != *h.column);
        }
    }
}

/// Tells the user which indexes would speed gathering up: one NOTICE listing a
/// `CREATE INDEX` per foreign key whose child columns no index leads with. Gathering is
/// correct and reasonably fast without them (one scan per step); rdl never creates one.
pub fn advise_indexes(src: &mut dyn Source, task: &str, plan: &Plan) -> Result<()> {
    let advice = plan.index_advice();
    if advice.is_empty() {
        return Ok(());
    }
    src.report(Event::Notice(format!(
        "rdl_train {task}: {} foreign key{} without an index; gathering reads {} with one scan per step. These indexes would let each lookup read only the rows it keeps: {}",
        advice.len(),
        if advice.len() == 1 { "" } else { "s" },
        if advice.len() == 1 { "its table" } else { "their tables" },
        advice.join(" ")
    )))
}

/// Gathers the contexts of `seeds` (rows of `table`) piece by piece and hands each piece
/// to `each` with the index of its first seed. A piece's contexts take at most an eighth
/// of the memory budget (callers hold what they encoded too, and two pieces may be alive
/// at once: see [`overlapped`]); until a context's size is
/// measured a row is taken to be large (2 kB: several texts of 200 characters, the most
/// the sampler reads of one).
pub fn gather_all(
    src: &mut dyn Source,
    plan: &Plan,
    table: &str,
    seeds: &[(String, i64)],
    hidden: Option<&Hidden>,
    each: &mut dyn FnMut(&mut dyn Source, usize, Gathered) -> Result<()>,
) -> Result<()> {
    let limit = src.memory_limit();
    let (mut start, mut each_bytes) = (0, plan.config.max_rows.max(1) * 2048);
    while start < seeds.len() {
        src.report(Event::Poll)?;
        let n = memory::chunk_len(limit / 8, each_bytes, GATHER_BATCH).min(seeds.len() - start);
        let piece = &seeds[start..start + n];
        let mut g = src.gather(plan, table, piece)?;
        hide(&mut g.contexts, hidden);
        let sizes = check_fits(piece, &g.contexts, limit)?;
        each_bytes = sizes.iter().sum::<usize>().div_ceil(n.max(1));
        each(src, start, g)?;
        start += n;
    }
    Ok(())
}

/// Runs `gather` here and hands what it yields to `consume` on a second thread when more
/// than one is configured: PostgreSQL runs the next statement on this thread while the
/// last piece is encoded on the other. A piece is handed over only when the other thread
/// is ready for it, so at most two are alive at once. `consume`'s first error stops the
/// gathering at the next hand-over and is the error returned.
pub fn overlapped<T: Send, R>(
    gather: impl FnOnce(&mut dyn FnMut(T) -> Result<()>) -> Result<R>,
    mut consume: impl FnMut(T) -> Result<()> + Send,
) -> Result<R> {
    if crate::threads::configured() < 2 {
        return gather(&mut consume);
    }
    std::thread::scope(|s| {
        // Inside the scope: a panic here (a PostgreSQL error) drops the sender while
        // unwinding, which ends the other thread's loop, so the scope can join it.
        let (tx, rx) = std::sync::mpsc::sync_channel::<T>(0);
        let worker = s.spawn(move || rx.into_iter().try_for_each(&mut consume));
        let out = gather(&mut |t| {
            tx.send(t)
                .map_err(|_| Error::new("XX000", "rdl: the encoding thread stopped"))
        });
        drop(tx);
        match worker.join() {
            Ok(done) => done.and(out),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The share of the time budget that gathering training contexts may take: on a database
/// too slow to gather them all, training goes on with those gathered.
pub const GATHER_SHARE: f64 = 0.4;
/// Seeds gathered between two looks at the clock when gathering is cut short.
const STRIDED_PIECE: usize = 2048;

/// What [`gather_strided`] hands each piece to: the seeds' positions and their contexts.
pub type EachPiece<'a> = dyn FnMut(&mut dyn Source, &[usize], Gathered) -> Result<()> + 'a;

/// Like [`gather_all`], but with `until` (the start and the seconds since it) gathered in
/// strided pieces (every n-th seed) with a look at the clock between pieces: past the
/// deadline it stops, so what was gathered is a sample of every period, not the oldest
/// anchors. `each` gets the positions in `seeds` of the piece it is handed. Returns how
/// many seeds were gathered when it stopped early.
pub fn gather_strided(
    src: &mut dyn Source,
    plan: &Plan,
    table: &str,
    seeds: &[(String, i64)],
    hidden: Option<&Hidden>,
    until: Option<(Instant, f64)>,
    each: &mut EachPiece<'_>,
) -> Result<Option<usize>> {
    let pieces = match until {
        Some(_) => seeds.len().div_ceil(STRIDED_PIECE).max(1),
        None => 1,
    };
    let mut done = 0;
    for p in 0..pieces {
        if let Some((started, secs)) = until {
            if p > 0 && started.elapsed().as_secs_f64() > secs {
                return Ok(Some(done));
            }
        }
        let idx: Vec<usize> = (p..seeds.len()).step_by(pieces).collect();
        let piece: Vec<(String, i64)> = idx.iter().map(|&i| seeds[i].clone()).collect();
        gather_all(src, plan, table, &piece, hidden, &mut |src, start, g| {
            each(src, &idx[start..start + g.contexts.len()], g)
        })?;
        done += idx.len();
    }
    Ok(None)
}

/// The sizes of gathered contexts; 53200 naming the entity when one alone is larger than
/// the whole budget.
pub fn check_fits(
    seeds: &[(String, i64)],
    contexts: &[Subgraph],
    limit: usize,
) -> Result<Vec<usize>> {
    let sizes: Vec<usize> = contexts.iter().map(memory::subgraph_bytes).collect();
    if let Some(i) = (0..sizes.len()).find(|&i| sizes[i] > limit) {
        return Err(Error::over_memory(
            format!(
                "the context of entity {} at {}",
                seeds[i].0,
                format_timestamp(seeds[i].1)
            ),
            memory::Exceeded {
                need: sizes[i],
                limit,
            },
            "Train the task with smaller contexts (options max_rows, fanout, depth).",
        ));
    }
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::{RawRow, Value};
    use crate::schema::SemanticType;

    #[test]
    fn the_hidden_column_is_gone_from_every_row_of_its_table() {
        let row = |table: &str, nat: &str| RawRow {
            table: table.into(),
            key: String::new(),
            time: None,
            hop: 0,
            parents: Vec::new(),
            values: vec![
                (
                    "nationality".into(),
                    SemanticType::Categorical,
                    Value::Text(nat.into()),
                ),
                (
                    "code".into(),
                    SemanticType::Categorical,
                    Value::Text("X".into()),
                ),
            ],
        };
        let mut c = vec![Subgraph {
            anchor: 0,
            seed: 0,
            rows: vec![row("d", "GB"), row("r", "GB"), row("d", "DE")],
        }];
        let h = Hidden {
            table: "d".into(),
            column: "nationality".into(),
        };
        hide(&mut c, Some(&h));
        let names = |r: &RawRow| r.values.iter().map(|v| v.0.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&c[0].rows[0]), vec!["code"]);
        assert_eq!(names(&c[0].rows[2]), vec!["code"]);
        assert_eq!(names(&c[0].rows[1]), vec!["nationality", "code"]);
    }
}

/// Where the sampler's time goes, accumulated by a [`Source`] (per backend) between reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchStats {
    pub statements: usize,
    /// Rows the statements returned (before the assembler's dedup and caps).
    pub rows: usize,
    /// Seconds PostgreSQL spent executing the statements (plan, scan, SPI tuple table).
    pub exec_s: f64,
    /// Seconds spent converting the returned datums into Rust values.
    pub convert_s: f64,
}

/// Gathers the contexts of `seeds` and reports the sampler's size and speed (contexts,
/// rows and cells, seconds, rates); `take_stats` returns what the statements cost since
/// its last call (called before and after).
pub fn measure(
    src: &mut dyn Source,
    plan: &Plan,
    table: &str,
    seeds: &[(String, i64)],
    hidden: Option<&Hidden>,
    take_stats: &mut dyn FnMut() -> FetchStats,
) -> Result<serde_json::Value> {
    take_stats();
    let t0 = std::time::Instant::now();
    let (mut contexts, mut rows, mut cells, mut max_rows) = (0usize, 0usize, 0usize, 0usize);
    gather_all(src, plan, table, seeds, hidden, &mut |_, _, g| {
        for (c, _) in g.contexts.iter().zip(g.found).filter(|(_, f)| *f) {
            contexts += 1;
            rows += c.rows.len();
            max_rows = max_rows.max(c.rows.len());
            cells += c.rows.iter().map(|r| r.values.len()).sum::<usize>();
        }
        Ok(())
    })?;
    let secs = t0.elapsed().as_secs_f64().max(1e-9);
    let st = take_stats();
    Ok(serde_json::json!({
        "seeds": seeds.len(),
        "contexts": contexts,
        "rows": rows,
        "cells": cells,
        "mean_rows_per_context": rows as f64 / contexts.max(1) as f64,
        "max_rows_per_context": max_rows,
        "depth": plan.config.depth,
        "fanout": plan.config.fanout,
        "seconds": secs,
        "contexts_per_s": contexts as f64 / secs,
        "rows_per_s": rows as f64 / secs,
        // The same statements' rows at PostgreSQL's own execution rate: what the sampler
        // would reach if converting and assembling were free.
        "statements": st.statements,
        "rows_fetched": st.rows,
        "sql_seconds": st.exec_s,
        "convert_seconds": st.convert_s,
        "assemble_seconds": (secs - st.exec_s - st.convert_s).max(0.0),
        "sql_rows_per_s": st.rows as f64 / st.exec_s.max(1e-9),
    }))
}
