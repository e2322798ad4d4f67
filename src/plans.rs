//! Statements prepared once per backend and kept (`SPI_keepplan`), keyed by their text.
//!
//! Safe across roles and DDL: the plan cache re-checks privileges at each execution,
//! replans when the role, the search path or a table it reads changes, and applies
//! row-level security for the current user.

use std::cell::RefCell;
use std::rc::Rc;

use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::{pg_sys, PgOid};
use rdl_engine::base::capped::Capped;

use crate::error::spi;

/// Kept statements at most; beyond it the cache starts over (plans are cheap to rebuild,
/// memory held by thousands of stale task plans is not).
const MAX_KEPT_PLANS: usize = 512;

thread_local! {
    static PLANS: RefCell<Capped<String, Rc<OwnedPreparedStatement>>> =
        RefCell::new(Capped::new(MAX_KEPT_PLANS));
}

/// The kept prepared statement for `sql` with parameters of `types`, prepared on first use.
pub fn kept(client: &SpiClient<'_>, sql: &str, types: &[PgOid]) -> Rc<OwnedPreparedStatement> {
    if let Some(p) = PLANS.with(|m| m.borrow().get(sql).cloned()) {
        return p;
    }
    let stmt = Rc::new(spi(client.prepare(sql, types)).keep());
    PLANS.with(|m| m.borrow_mut().insert(sql.to_string(), stmt.clone()));
    stmt
}

/// Runs `f` — with `on`, the plan cache told to use a statement's generic plan, built once
/// and kept, not a plan for each call's values. PostgreSQL re-plans a statement with array
/// parameters every time (a custom plan knows their length, so it always looks cheaper):
/// for a lookup of a few seeds, a sixth of one `rdl_predict`. Large batches keep custom plans.
pub fn generic<T>(on: bool, f: impl FnOnce() -> T) -> T {
    struct Restore(i32);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: the backend's own GUC variable, put back on return and on unwinding (a
            // PostgreSQL error in `f`); only the plan cache reads it meanwhile.
            unsafe { (&raw mut pg_sys::plan_cache_mode).write(self.0) }
        }
    }
    if !on {
        return f();
    }
    let generic = pg_sys::PlanCacheMode::PLAN_CACHE_MODE_FORCE_GENERIC_PLAN as i32;
    // SAFETY: as above; backends are single-threaded.
    let _restore = Restore(unsafe { (&raw mut pg_sys::plan_cache_mode).replace(generic) });
    f()
}
