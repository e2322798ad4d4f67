//! Gathering: executes the engine's sampler plan through SPI, as the calling user — one
//! statement per (hop, edge, direction) for a whole batch of seeds — and feeds the rows to
//! the engine's assembler.
//!
//! Statements are prepared once per backend and kept (see `plans.rs`): every batch of a
//! training and every later prediction reuses them.

use std::cell::{Cell, RefCell};

use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::{PgOid, PgXactCallbackEvent};
use rdl_engine::encode::Value;
use rdl_engine::pipeline::gather::FetchStats;
use rdl_engine::pipeline::{Gathered, Result};
use rdl_engine::sampler::{
    copyable, walk, Copies, Direction, FetchedRow, OutKind, Plan, Request, Step, TableCopy,
    TablePlan, Use,
};

use crate::error::spi;
use crate::pgtime;

/// Gathers the context of every `(key, anchor µs)` seed of `entity_table`.
/// Refuses (53200) a statement whose rows would hold more than the call's whole memory
/// budget, while they are read.
pub fn gather(plan: &Plan, entity_table: &str, seeds: &[(String, i64)]) -> Result<Gathered> {
    let copying = TRACE.with(|t| t.borrow().is_none());
    if copying {
        COPIES.with(|c| c.borrow_mut().enter(crate::statement::key()));
    }
    let w = walk(plan, entity_table, seeds, |step, reqs| {
        pgrx::check_for_interrupts!();
        let tp = &plan.tables[step.table()];
        // Seeds' keys are the caller's spelling, not PostgreSQL's: never from a copy.
        let Step::Hop(edge, dir, hop) = step else {
            return fetch(&plan.seed_sql(step.table()), reqs, tp, false);
        };
        let (sql, counts) = (|| plan.step_sql(edge, dir, hop), plan.counts_at(dir, hop));
        let (columns, limit) = match dir {
            Direction::ToParent => (&edge.parent_columns, usize::MAX),
            Direction::ToChildren => (&edge.child_columns, plan.config.fanout as usize),
        };
        if !copying || !copyable(tp, columns) {
            return fetch(&sql(), reqs, tp, counts);
        }
        let slot = plan.copy_sql(&tp.table);
        if from_copy(tp, &slot) {
            let lookup = |c: &RefCell<Copies>| {
                let mut c = c.borrow_mut();
                c.lookup((&slot, tp), columns, reqs, limit, counts)
            };
            return Ok(COPIES.with(lookup));
        }
        let t0 = std::time::Instant::now();
        let rows = fetch(&sql(), reqs, tp, counts)?;
        let secs = t0.elapsed().as_secs_f64();
        COPIES.with(|c| c.borrow_mut().spent(&slot, secs));
        Ok(rows)
    })?;
    // The statements bound time already; the assembler's own check must never fire.
    assert_eq!(
        w.dropped_future, 0,
        "rdl: a row newer than its anchor reached the sampler"
    );
    Ok(Gathered {
        contexts: w.contexts,
        via: w.via,
        found: w.found,
    })
}

thread_local! {
    static COPIES: RefCell<Copies> = RefCell::new(Copies::default());
    /// The transaction whose end drops the copies (callbacks registered once per one).
    static CLEARED_AT: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Whether this statement's copy of `tp`'s table, read by `slot` ([`Plan::copy_sql`]),
/// answers a lookup: held, or read now because the statement's lookups of it have cost
/// what reading it would (see `rdl_engine::sampler::copy`).
fn from_copy(tp: &TablePlan, slot: &str) -> bool {
    let table = &tp.table;
    let room =
        || (crate::guc::max_memory_bytes() / 4).saturating_sub(COPIES.with(|c| c.borrow().held()));
    let mut next = COPIES.with(|c| c.borrow_mut().plan(slot));
    if next == Use::Ask {
        // Row-level security may depend on settings a statement can change; a collation
        // that is not deterministic makes equal keys of different text.
        let bytes = crate::sql::query_one::<i64>(
            "SELECT pg_catalog.pg_relation_size(c.oid) FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.text::pg_catalog.regclass AND (c.relkind OPERATOR(pg_catalog.=) 'r' OR c.relkind OPERATOR(pg_catalog.=) 'p') AND NOT c.relrowsecurity AND NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_collation o ON o.oid OPERATOR(pg_catalog.=) a.attcollation WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND NOT o.collisdeterministic)",
            &[table.to_string().into()],
        );
        let bytes = bytes.map(|b| b.max(0) as usize);
        let room = room();
        COPIES.with(|c| c.borrow_mut().sized(slot, bytes, room));
        next = COPIES.with(|c| c.borrow_mut().plan(slot));
    }
    match next {
        Use::Copy => return true,
        Use::Sql | Use::Ask => return false,
        Use::Build => {}
    }
    let t0 = std::time::Instant::now();
    let copy = read(slot, &[], Vec::new(), tp, false, room(), false).ok();
    let copy = copy.map(|rows| TableCopy::new(tp, rows));
    if let Some(c) = &copy {
        pgrx::debug1!(
            "rdl: {table} read whole for this statement's lookups ({} MB) in {:.0} ms",
            c.bytes() >> 20,
            t0.elapsed().as_secs_f64() * 1e3
        );
    }
    let held = copy.is_some();
    COPIES.with(|c| c.borrow_mut().hold(slot, copy));
    // SAFETY: MyProc is this backend's own PGPROC.
    let lxid = unsafe { (*pg_sys::MyProc).lxid };
    if held && CLEARED_AT.with(|c| c.replace(Some(lxid))) != Some(lxid) {
        for event in [PgXactCallbackEvent::Commit, PgXactCallbackEvent::Abort] {
            pgrx::register_xact_callback(event, || COPIES.with(|c| c.borrow_mut().clear()));
        }
    }
    held
}

/// Rows fetched from a statement's portal at a time: what PostgreSQL holds of a result.
const FETCH_ROWS: i64 = 4096;

/// Runs one statement over `tp` for `reqs`; `counts`: its rows end with `rdl_n`.
fn fetch(sql: &str, reqs: &[Request], tp: &TablePlan, counts: bool) -> Result<Vec<FetchedRow>> {
    if reqs.is_empty() {
        return Ok(Vec::new());
    }
    let ords: Vec<i32> = (0..reqs.len() as i32).collect();
    let anchors: Vec<TimestampWithTimeZone> =
        reqs.iter().map(|r| pgtime::to_pg(r.anchor)).collect();
    let mut args: Vec<DatumWithOid> = vec![ords.into(), anchors.into()];
    for c in 0..reqs[0].keys.len() {
        let col: Vec<String> = reqs.iter().map(|r| r.keys[c].clone()).collect();
        args.push(col.into());
    }
    let n_keys = reqs[0].keys.len();
    TRACE.with(|t| {
        if let Some(v) = t.borrow_mut().as_mut() {
            v.push(rdl_engine::sampler::inline_statement(sql, reqs));
        }
    });
    let mut types = vec![
        PgOid::from(pg_sys::INT4ARRAYOID),
        PgOid::from(pg_sys::TIMESTAMPTZARRAYOID),
    ];
    types.extend(std::iter::repeat_n(
        PgOid::from(pg_sys::TEXTARRAYOID),
        n_keys,
    ));
    // What one statement's rows may hold: counted as they are converted, so a result too
    // large is refused while it is read, never after it was all held.
    let limit = crate::guc::max_memory_bytes();
    let generic = reqs.len() <= GENERIC_PLAN_SEEDS;
    read(sql, &types, args, tp, counts, limit, generic).map_err(|bytes| {
        rdl_engine::pipeline::Error::over_memory(
            format!(
                "the rows of {} gathered for {} context{}",
                tp.table,
                reqs.iter().map(|r| r.ctx).max().map_or(0, |m| m + 1),
                if reqs.len() == 1 { "" } else { "s" }
            ),
            rdl_engine::memory::Exceeded { need: bytes, limit },
            "Use smaller contexts (training options max_rows, fanout, depth) or fewer entities at once.",
        )
    })
}

/// Lookups of at most this many seeds (one entity's) run the statement's generic plan.
const GENERIC_PLAN_SEEDS: usize = 8;

/// Runs `sql` (parameters `args` of `types`) over `tp` and decodes its rows, refusing
/// (with the bytes read so far) once they hold more than `limit`; `generic`: with the
/// statement's generic plan.
fn read(
    sql: &str,
    types: &[PgOid],
    args: Vec<DatumWithOid>,
    tp: &TablePlan,
    counts: bool,
    limit: usize,
    generic: bool,
) -> std::result::Result<Vec<FetchedRow>, usize> {
    crate::sql::connect(|client| {
        let stmt = crate::plans::kept(client, sql, types);
        let t0 = std::time::Instant::now();
        let (mut out, mut bytes, mut exec) = (Vec::new(), 0usize, std::time::Duration::ZERO);
        let open = || spi(client.try_open_cursor(&*stmt, &args));
        let mut cursor = crate::plans::generic(generic, open);
        loop {
            let f0 = std::time::Instant::now();
            let table = spi(cursor.fetch(FETCH_ROWS));
            exec += f0.elapsed();
            if table.is_empty() {
                break;
            }
            // SAFETY: `fetch` just filled SPI_tuptable, valid until the next fetch.
            unsafe { decode(tp, counts, &mut out, &mut bytes) };
            if bytes > limit {
                return Err(bytes);
            }
        }
        record(out.len(), t0, t0 + exec);
        Ok(out)
    })
}

/// Converts the rows of `SPI_tuptable` (a statement over `tp`, with a trailing count of
/// children when `counts`) and appends them to `out`, adding their size to `bytes`.
///
/// # Safety
/// `SPI_tuptable` must hold the result just fetched from a statement over `tp`.
unsafe fn decode(tp: &TablePlan, counts: bool, out: &mut Vec<FetchedRow>, bytes: &mut usize) {
    let ns = tp.structural.len();
    // SAFETY: every datum is read by the type its column was checked to have.
    unsafe {
        let tt = pg_sys::SPI_tuptable;
        if tt.is_null() {
            return;
        }
        let desc = (*tt).tupdesc;
        let natts = (*desc).natts as usize;
        let want = tp.columns_out(counts);
        let type_ok = |k: Option<OutKind>, oid: pg_sys::Oid| match k {
            None => oid == pg_sys::INT4OID,
            Some(OutKind::Text) => oid == pg_sys::TEXTOID,
            Some(OutKind::Float) => oid == pg_sys::FLOAT8OID,
            Some(OutKind::Micros) => oid == pg_sys::INT8OID,
            Some(OutKind::Bool) => oid == pg_sys::BOOLOID,
            Some(OutKind::Timestamp) => {
                oid == pg_sys::TIMESTAMPTZOID || oid == pg_sys::TIMESTAMPOID
            }
            Some(OutKind::Date) => oid == pg_sys::DATEOID,
        };
        let types_match = natts == want.len()
            && (0..natts).all(|i| type_ok(want[i], (*(*desc).attrs.as_ptr().add(i)).atttypid));
        if !types_match {
            crate::error::RdlError::new(
                "XX000",
                format!(
                    "rdl: sampler statement returned unexpected column types for {}",
                    tp.table
                ),
            )
            .raise()
        }
        let mut vals = vec![pg_sys::Datum::from(0usize); natts];
        let mut nulls = vec![false; natts];
        let text = |d: pg_sys::Datum| -> String {
            <&str as FromDatum>::from_polymorphic_datum(d, false, pg_sys::TEXTOID)
                .unwrap_or_default()
                .to_string()
        };
        out.reserve((*tt).numvals as usize);
        for i in 0..(*tt).numvals as usize {
            let tup = *(*tt).vals.add(i);
            pg_sys::heap_deform_tuple(tup, desc, vals.as_mut_ptr(), nulls.as_mut_ptr());
            if nulls[0] {
                continue;
            }
            let get = |n: usize| (!nulls[n]).then(|| vals[n]);
            let ord = vals[0].value() as i32;
            if ord < 0 {
                continue;
            }
            let key = get(1).map(text).unwrap_or_default();
            let time = get(2).map(|d| match tp.time_out() {
                Some(OutKind::Timestamp) => pg_timestamp(d).unwrap_or(i64::MIN),
                Some(OutKind::Date) => pg_date(d).unwrap_or(i64::MIN),
                _ => d.value() as i64,
            });
            let structural: Vec<Option<String>> = (0..ns).map(|k| get(3 + k).map(text)).collect();
            let values: Vec<Value> = tp
                .values
                .iter()
                .enumerate()
                .map(|(k, v)| match get(3 + ns + k) {
                    None => Value::Null,
                    Some(d) => match v.out {
                        OutKind::Text => Value::Text(text(d)),
                        OutKind::Float => {
                            let x = f64::from_bits(d.value() as u64);
                            if x.is_finite() {
                                Value::Num(x)
                            } else {
                                Value::Null
                            }
                        }
                        OutKind::Micros => Value::Time(d.value() as i64),
                        OutKind::Timestamp => pg_timestamp(d).map_or(Value::Null, Value::Time),
                        OutKind::Date => pg_date(d).map_or(Value::Null, Value::Time),
                        OutKind::Bool => Value::Bool(d.value() != 0),
                    },
                })
                .collect();
            let row = FetchedRow {
                ord: ord as usize,
                key,
                time,
                structural,
                values,
                children: counts.then(|| get(natts - 1).map_or(0, |d| d.value() as i64)),
            };
            *bytes += row.size();
            out.push(row);
        }
    }
}

/// A `timestamp`/`timestamptz` datum as µs since the Unix epoch; `None` for ±infinity.
fn pg_timestamp(d: pg_sys::Datum) -> Option<i64> {
    let v = d.value() as i64;
    (v != i64::MIN && v != i64::MAX).then(|| pgtime::from_pg_raw(v))
}

/// A `date` datum as µs since the Unix epoch (its midnight, UTC); `None` for ±infinity.
fn pg_date(d: pg_sys::Datum) -> Option<i64> {
    let v = d.value() as i32;
    (v != i32::MIN && v != i32::MAX).then(|| pgtime::from_pg_raw(v as i64 * 86_400_000_000))
}

/// Adds one statement to the statistics: `rows` returned, executed between `t0` and `t1`,
/// converted from `t1` until now.
fn record(rows: usize, t0: std::time::Instant, t1: std::time::Instant) {
    STATS.with(|st| {
        let mut v = st.get();
        v.statements += 1;
        v.rows += rows;
        v.exec_s += (t1 - t0).as_secs_f64();
        v.convert_s += t1.elapsed().as_secs_f64();
        st.set(v);
    });
}

thread_local! {
    static STATS: Cell<FetchStats> = const { Cell::new(FetchStats { statements: 0, rows: 0, exec_s: 0.0, convert_s: 0.0 }) };
}

thread_local! {
    static TRACE: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Runs `f` recording every statement the sampler executes, parameters inlined.
pub fn traced<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    TRACE.with(|t| *t.borrow_mut() = Some(Vec::new()));
    let out = f();
    let stmts = TRACE.with(|t| t.borrow_mut().take()).unwrap_or_default();
    (out, stmts)
}

/// The statistics since the last call, reset.
pub fn take_stats() -> FetchStats {
    STATS.with(|s| s.replace(FetchStats::default()))
}
