//! Every statement rdl runs goes through here, and runs with `search_path` locked to
//! `pg_catalog, pg_temp` (the setting PostgreSQL itself uses for maintenance commands).
//!
//! Why: a name that is not schema-qualified resolves through the caller's `search_path`,
//! and a schema another role can write to (or the caller's temporary schema, which comes
//! first for relations) could hold a function, operator, type or view of that role's
//! choosing — code that would then run with the rights of whoever runs the statement
//! (CVE-2018-1058). rdl qualifies every name it writes (`pg_catalog.unnest`,
//! `OPERATOR(pg_catalog.=)`, `rdl.runs`, `::pg_catalog.text`); the lock makes a missed one
//! harmless. Functions are never looked up in `pg_temp` unless named with it, and relations
//! there come last.
//!
//! The lock is a GUC nest level, like a function's `SET` clause: it is undone when the
//! closure returns or unwinds, and by PostgreSQL on abort. It never spans a commit (a
//! procedure's `COMMIT` ends every nest level), so [`locked`] sections are kept short.
//!
//! Names the *user* gives (a table in `rdl_set_time_column`, the tables of a predictive
//! query) resolve through the caller's own path, which is the point: see
//! [`caller_path`].

use std::ffi::CStr;

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::spi::SpiClient;
use pgrx::{FromDatum, IntoDatum, Spi};

use crate::error::spi;

/// Restores the GUCs of a nest level when dropped (also while unwinding).
struct Lock(i32);

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: pops exactly the nest level this guard pushed (LIFO with other guards).
        unsafe { pg_sys::AtEOXact_GUC(true, self.0) }
    }
}

/// Sets `name` to `value` until the guard drops: a GUC nest level, as fmgr makes for a
/// function's `SET` clause.
fn set(name: &CStr, value: &CStr) -> Lock {
    // SAFETY: the same calls fmgr makes for a function with `SET name = value`.
    unsafe {
        let level = pg_sys::NewGUCNestLevel();
        let guard = Lock(level);
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        guard
    }
}

/// Runs `f` with the setting `name` = `value`, undone when it returns or unwinds.
pub fn with_setting<T>(name: &CStr, value: &CStr, f: impl FnOnce() -> T) -> T {
    let _set = set(name, value);
    f()
}

/// Runs `f` with `search_path = pg_catalog, pg_temp`.
pub fn locked<T>(f: impl FnOnce() -> T) -> T {
    with_setting(c"search_path", c"pg_catalog, pg_temp", f)
}

/// [`Spi::connect`] with the path locked.
pub fn connect<T>(f: impl FnOnce(&SpiClient<'_>) -> T) -> T {
    locked(|| Spi::connect(f))
}

/// [`Spi::connect_mut`] with the path locked (statements that write).
pub fn connect_mut<T>(f: impl FnOnce(&mut SpiClient<'_>) -> T) -> T {
    WRITES.with(|w| w.set(w.get() + 1));
    locked(|| Spi::connect_mut(f))
}

/// Runs a statement for its effect.
pub fn execute(sql: &str, args: &[DatumWithOid<'_>]) {
    WRITES.with(|w| w.set(w.get() + 1));
    locked(|| spi(Spi::run_with_args(sql, args)))
}

/// The first column of the first row of a query that only reads, or `None` when there is
/// no row or it is NULL. (pgrx's `Spi::get_one` treats "no row" as an error.) Read-only on
/// purpose: pgrx's `update` assigns a transaction id, which a read must not take (it
/// fails on a hot standby and in a parallel worker, and burns ids).
pub fn query_one<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid<'_>]) -> Option<T> {
    connect(|client| first_of(spi(client.select(sql, Some(1), args))))
}

/// [`query_one`] for a statement that writes (`INSERT ... RETURNING`).
pub fn write_one<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid<'_>]) -> Option<T> {
    connect_mut(|client| first_of(spi(client.update(sql, Some(1), args))))
}

fn first_of<T: FromDatum + IntoDatum>(table: pgrx::spi::SpiTupleTable<'_>) -> Option<T> {
    if table.is_empty() {
        None
    } else {
        spi(table.first().get_one::<T>())
    }
}

/// The first two columns of the first row of a query that only reads (`None`s when there
/// is no row).
pub fn query_two<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> (Option<A>, Option<B>) {
    connect(|client| {
        let table = spi(client.select(sql, Some(1), args));
        if table.is_empty() {
            (None, None)
        } else {
            spi(table.first().get_two::<A, B>())
        }
    })
}

/// The namespaces the caller's `search_path` searches, in order (implicit ones included:
/// `pg_temp` and `pg_catalog` where PostgreSQL puts them). Read from the backend's
/// state, not through SQL, so it is the caller's own path even inside a [`locked`]
/// section's caller.
pub fn caller_path() -> Vec<pg_sys::Oid> {
    // SAFETY: fetch_search_path returns a freshly palloc'd list of namespace OIDs.
    unsafe {
        let list = pg_sys::fetch_search_path(true);
        let mut out = Vec::new();
        if !list.is_null() {
            for i in 0..(*list).length {
                out.push(pg_sys::list_nth_oid(list, i));
            }
            pg_sys::list_free(list);
        }
        out
    }
}

thread_local! {
    /// rdl's own writes in this backend (to its tables): one ends a statement's memories.
    static WRITES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many writes rdl has made in this backend: each ends a statement's memories.
pub fn writes() -> u64 {
    WRITES.with(|w| w.get())
}
