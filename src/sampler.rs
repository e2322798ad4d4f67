//! Executes the engine's sampler plan through SPI, as the calling user: one statement per
//! (hop, edge, direction) for a whole batch of seeds.

use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::prelude::*;
use rdl_engine::encode::{Subgraph, Value};
use rdl_engine::sampler::{Assembler, Direction, FetchedRow, OutKind, Plan, Request, TablePlan};

use crate::error::spi;
use crate::pgtime;

/// The contexts of a batch of seeds.
pub struct Gathered {
    pub contexts: Vec<Subgraph>,
    /// Via which foreign key each row of each context was reached.
    pub via: Vec<Vec<Option<String>>>,
    /// Whether each seed's entity row was found (visible at its anchor).
    pub found: Vec<bool>,
}

/// Gathers the context of every `(entity key, anchor µs)` seed of `entity_table`.
/// `hide` names a column of the seed row the model must not see (a static target).
pub fn gather(
    plan: &Plan,
    entity_table: &str,
    seeds: &[(String, i64)],
    hide: Option<&str>,
) -> Gathered {
    let anchors: Vec<i64> = seeds.iter().map(|s| s.1).collect();
    let mut asm = Assembler::new(plan, &anchors);
    let keys: Vec<Vec<String>> = seeds.iter().map(|s| vec![s.0.clone()]).collect();
    let reqs = asm.seed_requests(&keys);
    let rows = fetch(
        &plan.seed_sql(entity_table),
        &reqs,
        &plan.tables[entity_table],
    );
    asm.accept_seeds(entity_table, rows);
    let found: Vec<bool> = (0..seeds.len()).map(|i| asm.has_seed(i)).collect();
    while asm.next_hop() {
        let frontier = asm.take_frontier();
        for edge in &plan.edges {
            for dir in [Direction::ToParent, Direction::ToChildren] {
                let reqs = asm.requests(&frontier, edge, dir);
                if reqs.is_empty() {
                    continue;
                }
                pgrx::check_for_interrupts!();
                let table = match dir {
                    Direction::ToParent => &edge.parent,
                    Direction::ToChildren => &edge.child,
                };
                let rows = fetch(&plan.step_sql(edge, dir), &reqs, &plan.tables[table]);
                asm.accept_step(edge, dir, &reqs, rows);
            }
        }
    }
    // The statements bound time already; the assembler's own check must never fire.
    assert_eq!(
        asm.dropped_future, 0,
        "rdl: a row newer than its anchor reached the sampler"
    );
    let via = std::mem::take(&mut asm.via);
    let mut contexts = std::mem::take(&mut asm.contexts);
    if let Some(col) = hide {
        for c in contexts.iter_mut() {
            if let Some(seed) = c.rows.get_mut(c.seed) {
                seed.values.retain(|(name, _, _)| name != col);
            }
        }
    }
    Gathered {
        contexts,
        via,
        found,
    }
}

fn fetch(sql: &str, reqs: &[Request], tp: &TablePlan) -> Vec<FetchedRow> {
    if reqs.is_empty() {
        return Vec::new();
    }
    let ords: Vec<i32> = (0..reqs.len() as i32).collect();
    let anchors: Vec<TimestampWithTimeZone> =
        reqs.iter().map(|r| pgtime::to_pg(r.anchor)).collect();
    let mut args: Vec<DatumWithOid> = vec![ords.into(), anchors.into()];
    for c in 0..reqs[0].keys.len() {
        let col: Vec<String> = reqs.iter().map(|r| r.keys[c].clone()).collect();
        args.push(col.into());
    }
    let ns = tp.structural.len();
    Spi::connect(|client| {
        let table = spi(client.select(sql, None, &args));
        let mut out = Vec::with_capacity(table.len());
        for row in table {
            let ord = spi(row.get::<i32>(1)).unwrap_or(-1);
            if ord < 0 {
                continue;
            }
            let key: String = spi(row.get(2)).unwrap_or_default();
            let time: Option<i64> = spi(row.get(3));
            let structural = (0..ns).map(|i| spi(row.get::<String>(4 + i))).collect();
            let values = tp
                .values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let n = 4 + ns + i;
                    match v.out {
                        OutKind::Text => spi(row.get::<String>(n)).map(Value::Text),
                        OutKind::Float => spi(row.get::<f64>(n))
                            .filter(|x| x.is_finite())
                            .map(Value::Num),
                        OutKind::Micros => spi(row.get::<i64>(n)).map(Value::Time),
                        OutKind::Bool => spi(row.get::<bool>(n)).map(Value::Bool),
                    }
                    .unwrap_or(Value::Null)
                })
                .collect();
            out.push(FetchedRow {
                ord: ord as usize,
                key,
                time,
                structural,
                values,
            });
        }
        out
    })
}
