//! Statements prepared once per backend and kept (`SPI_keepplan`), keyed by their text.
//!
//! Safe across roles and DDL: the plan cache re-checks privileges at each execution,
//! replans when the role, the search path or a table it reads changes, and applies
//! row-level security for the current user.

use std::cell::RefCell;
use std::rc::Rc;

use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::PgOid;
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

/// Runs `f` — with `on`, under its statement's generic plan (built once, kept): PostgreSQL
/// re-plans a statement with array parameters at every call, for a few seeds a sixth of one
/// `rdl_predict`. Set as a function's SET clause sets it: GUC state stays consistent.
pub fn generic<T>(on: bool, f: impl FnOnce() -> T) -> T {
    if !on {
        return f();
    }
    crate::sql::with_setting(c"plan_cache_mode", c"force_generic_plan", f)
}
