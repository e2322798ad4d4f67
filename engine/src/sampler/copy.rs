//! Tables held in memory for one statement. Each context of `SELECT rdl_predict(...) FROM
//! drivers` (one call per row) makes a score of lookups, each a statement — and without an
//! index on a foreign key, or without planner statistics, each a scan of its table. Once a
//! statement's lookups of a table have cost what reading it whole would, the table is read
//! once ([`Plan::copy_sql`], as the calling user) and the statement's later lookups are
//! answered here: the same rows, in the same order, as the statements return.
//!
//! Which statement a copy belongs to is the extension's to say ([`Copies::enter`]: the
//! role, transaction, subtransaction, command and statement start); a new one starts over,
//! so a copy never outlives the snapshot-consistent view of one statement, nor crosses
//! roles.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

#[cfg(doc)]
use super::plan::Plan;
use super::plan::TablePlan;
use super::statements::Request;
use super::{FetchedRow, OutKind, COUNT_CAP};
use crate::base::hash::Fnv;

type Lookup = HashMap<Vec<String>, Vec<u32>, BuildHasherDefault<Fnv>>;

/// One table's rows, newest first then by key descending (the statements' order), and
/// per set of child columns its rows grouped by their text.
pub struct TableCopy {
    rows: Vec<FetchedRow>,
    timed: bool,
    by: HashMap<Vec<String>, Lookup>,
    bytes: usize,
}

impl TableCopy {
    /// `rows` as [`Plan::copy_sql`] returns them (timed rows with a time, none at +infinity).
    pub fn new(tp: &TablePlan, rows: Vec<FetchedRow>) -> TableCopy {
        let bytes = rows.iter().map(FetchedRow::size).sum();
        TableCopy {
            rows,
            timed: tp.time_column.is_some(),
            by: HashMap::new(),
            bytes,
        }
    }

    /// The bytes held, rows and groupings, about.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// For each request, the rows whose `columns` (structural columns of `tp`) equal its
    /// keys and whose time is at or before its anchor: the newest `fanout`, each with the
    /// request's index as `ord` and, with `counts`, how many matched (up to
    /// [`COUNT_CAP`]). Text equality is the key's equality for the types
    /// [`copyable`] admits.
    pub fn rows(
        &mut self,
        tp: &TablePlan,
        columns: &[String],
        reqs: &[Request],
        fanout: usize,
        counts: bool,
    ) -> Vec<FetchedRow> {
        if !self.by.contains_key(columns) {
            let lookup = self.group(tp, columns);
            self.bytes += lookup.values().map(|g| 64 + 4 * g.len()).sum::<usize>();
            self.by.insert(columns.to_vec(), lookup);
        }
        let (rows, timed, lookup) = (&self.rows, self.timed, &self.by[columns]);
        let mut out = Vec::new();
        for (ord, r) in reqs.iter().enumerate() {
            let Some(group) = lookup.get(&r.keys) else {
                continue;
            };
            // Newest first: the rows after the anchor are a prefix.
            let first = match timed {
                true => group.partition_point(|&i| rows[i as usize].time > Some(r.anchor)),
                false => 0,
            };
            let visible = &group[first..];
            let n = (visible.len() as i64).min(COUNT_CAP);
            for &i in visible.iter().take(fanout) {
                let mut row = rows[i as usize].clone();
                row.ord = ord;
                row.children = counts.then_some(n);
                out.push(row);
            }
        }
        out
    }

    /// Row numbers grouped by the text of `columns`, each group in the rows' order; a row
    /// with a NULL among them matches nothing.
    fn group(&self, tp: &TablePlan, columns: &[String]) -> Lookup {
        let at: Vec<usize> = columns
            .iter()
            .map(|c| tp.structural.iter().position(|s| s == c))
            .collect::<Option<_>>()
            .expect("child columns are structural");
        let mut out = Lookup::default();
        for (i, r) in self.rows.iter().enumerate() {
            let key: Option<Vec<String>> = at.iter().map(|&k| r.structural[k].clone()).collect();
            if let Some(k) = key {
                out.entry(k).or_default().push(i as u32);
            }
        }
        out
    }
}

/// Whether lookups on `columns` of `tp` may be answered from a copy: its time (if any)
/// read raw, and columns whose text is their identity (integers, text, uuid; a collation
/// that is not deterministic is the extension's to rule out). Request keys must be text
/// PostgreSQL printed (another row's columns), never a caller's spelling of a key.
pub fn copyable(tp: &TablePlan, columns: &[String]) -> bool {
    let time_ok = matches!(
        tp.time_out(),
        None | Some(OutKind::Timestamp) | Some(OutKind::Date)
    );
    let key_ok = |c: &String| {
        tp.types.get(c).is_some_and(|t| {
            matches!(
                t.as_str(),
                "smallint" | "integer" | "bigint" | "text" | "uuid"
            ) || t.starts_with("character varying")
        })
    };
    time_ok && columns.iter().all(key_ok)
}

/// Heap bytes a copy reads and decodes per second, about (measured on F1's tables, a
/// conservative figure): with the time SQL lookups of a table have taken, it decides when a
/// copy pays — once the lookups have cost what reading the copy would (a ski-rental rule:
/// never more than twice the better choice made in hindsight).
pub const COPY_BYTES_PER_S: f64 = 20e6;

/// SQL lookups of a table a statement makes before a copy is considered: one-off calls
/// never pay for the catalog query, nor for a copy.
pub const LOOKUPS_BEFORE_COPY: u32 = 2;

enum Slot {
    /// Looked up by SQL `n` times, taking `spent` seconds; `bytes`: the table's heap size,
    /// once asked.
    Sql {
        n: u32,
        spent: f64,
        bytes: Option<usize>,
    },
    Held(TableCopy),
    /// Not to be copied in this statement (ineligible, or over the budget).
    Refused,
}

/// What to do for one lookup (see [`Copies::plan`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Use {
    /// Run the statement (then [`Copies::spent`]).
    Sql,
    /// Tell [`Copies::sized`] whether the table may be copied and its heap size.
    Ask,
    /// Read a copy with [`Plan::copy_sql`] and [`Copies::hold`] it (or not).
    Build,
    /// The copy answers: [`Copies::lookup`].
    Copy,
}

/// The copies of one statement, keyed by the statement that reads each.
#[derive(Default)]
pub struct Copies {
    key: Option<Vec<i64>>,
    slots: HashMap<String, Slot>,
    held: usize,
}

impl Copies {
    /// Starts over unless `key` names the statement the copies were read for. Returns
    /// whether it started over.
    pub fn enter(&mut self, key: Vec<i64>) -> bool {
        if self.key.as_ref() == Some(&key) {
            return false;
        }
        *self = Copies {
            key: Some(key),
            ..Copies::default()
        };
        true
    }

    /// Drops every copy (the transaction ended).
    pub fn clear(&mut self) {
        *self = Copies::default();
    }

    /// The bytes held by copies.
    pub fn held(&self) -> usize {
        self.held
    }

    /// How a lookup that [`copyable`] allows should run now; `slot` is the statement that
    /// copies its table ([`Plan::copy_sql`]: a table read with another plan's columns is
    /// another copy).
    pub fn plan(&mut self, slot: &str) -> Use {
        let slot = self.slots.entry(slot.to_string()).or_insert(Slot::Sql {
            n: 0,
            spent: 0.0,
            bytes: None,
        });
        match slot {
            Slot::Held(_) => Use::Copy,
            Slot::Refused => Use::Sql,
            Slot::Sql { n, .. } if *n < LOOKUPS_BEFORE_COPY => Use::Sql,
            Slot::Sql { bytes: None, .. } => Use::Ask,
            Slot::Sql {
                spent,
                bytes: Some(b),
                ..
            } => match *spent * COPY_BYTES_PER_S >= *b as f64 {
                true => Use::Build,
                false => Use::Sql,
            },
        }
    }

    /// Whether `slot`'s table may be copied in this statement (`None`: no) and its heap
    /// size.
    pub fn sized(&mut self, slot: &str, bytes: Option<usize>, room: usize) {
        if let Some(Slot::Sql { bytes: b, .. }) = self.slots.get_mut(slot) {
            match bytes {
                Some(x) if x <= room => *b = Some(x),
                _ => self.hold(slot, None),
            }
        }
    }

    /// Adds an SQL lookup of `slot`'s table that took `secs`.
    pub fn spent(&mut self, slot: &str, secs: f64) {
        if let Some(Slot::Sql { n, spent, .. }) = self.slots.get_mut(slot) {
            *n += 1;
            *spent += secs;
        }
    }

    /// Keeps the copy read for `slot` (`None`: not copyable after all, or over budget).
    pub fn hold(&mut self, slot: &str, copy: Option<TableCopy>) {
        let entry = match copy {
            Some(c) => {
                self.held += c.bytes();
                Slot::Held(c)
            }
            None => Slot::Refused,
        };
        self.slots.insert(slot.to_string(), entry);
    }

    /// The rows of a lookup on `columns` of `tp` for `reqs` (the newest `limit` per
    /// request, counted when `counts`), from the copy held for `slot`.
    pub fn lookup(
        &mut self,
        (slot, tp): (&str, &TablePlan),
        columns: &[String],
        reqs: &[Request],
        limit: usize,
        counts: bool,
    ) -> Vec<FetchedRow> {
        match self.slots.get_mut(slot) {
            Some(Slot::Held(c)) => {
                let before = c.bytes();
                let rows = c.rows(tp, columns, reqs, limit, counts);
                self.held += c.bytes() - before;
                rows
            }
            _ => panic!("rdl: no copy of {} is held", tp.table),
        }
    }
}
