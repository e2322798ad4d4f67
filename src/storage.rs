//! rdl's own tables (`rdl.tasks`, `rdl.models`, `rdl.runs`, `rdl.task_grants`,
//! `rdl.time_columns`) are written only by rdl's functions, on behalf of the role that owns
//! them (the one that ran `CREATE EXTENSION`). Ordinary roles may read what row-level
//! security and column privileges show them, but not write: a model cannot be swapped or a
//! task altered behind its owner's back.
//!
//! The switch is the one PostgreSQL makes for maintenance commands (`VACUUM`, `REFRESH
//! MATERIALIZED VIEW`): `SetUserIdAndSecContext(owner, SECURITY_LOCAL_USERID_CHANGE |
//! SECURITY_RESTRICTED_OPERATION)` with `search_path` locked to `pg_catalog, pg_temp`
//! (see `sql.rs`), around statements on rdl's tables only — never around a statement that
//! reads user data, which always runs as the calling user. Inside, every name is
//! schema-qualified as well, so nothing the caller can create (functions, operators,
//! types, temporary views) is ever resolved while the owner's rights are held; the
//! restricted context also refuses temporary objects, `SET ROLE` and the like. The
//! previous identity is restored when the closure returns or unwinds (and by PostgreSQL
//! itself on transaction or subtransaction abort).
//!
//! The access rule (see README, "Who may use a task"): a task belongs to the role that
//! created it. Its owner (and members of the owner role, and superusers) may train it,
//! activate versions, grant and drop it; roles it is granted to (`rdl_grant_task`) may use
//! it — predict, explain, evaluate, inspect contexts — and every use also requires SELECT
//! on every table the model reads.

use std::cell::Cell;

use pgrx::pg_sys;

use crate::error::RdlError;

thread_local! {
    /// (oid of rdl.tasks, its owner): re-read when the extension is re-created.
    static OWNER: Cell<(pg_sys::Oid, pg_sys::Oid)> =
        const { Cell::new((pg_sys::InvalidOid, pg_sys::InvalidOid)) };
}

/// The role the calling user is (outside any [`as_owner`] section).
pub fn caller() -> pg_sys::Oid {
    // SAFETY: plain read of the backend's current user id.
    unsafe { pg_sys::GetUserId() }
}

/// The owner of rdl's tables.
fn owner() -> pg_sys::Oid {
    // SAFETY: syscache lookups by name; no allocation is kept.
    let tasks = unsafe {
        let ns = pg_sys::get_namespace_oid(c"rdl".as_ptr(), true);
        if ns == pg_sys::InvalidOid {
            pg_sys::InvalidOid
        } else {
            pg_sys::get_relname_relid(c"tasks".as_ptr(), ns)
        }
    };
    if tasks == pg_sys::InvalidOid {
        RdlError::new("55000", "rdl's storage schema is missing")
            .hint("Re-create the extension: DROP EXTENSION rdl CASCADE; CREATE EXTENSION rdl;")
            .raise()
    }
    let (cached_rel, cached_owner) = OWNER.with(|o| o.get());
    if cached_rel == tasks {
        return cached_owner;
    }
    let owner = crate::sql::query_one::<pg_sys::Oid>(
        "SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1",
        &[tasks.into()],
    )
    .unwrap_or(pg_sys::InvalidOid);
    OWNER.with(|o| o.set((tasks, owner)));
    owner
}

/// Restores the previous user and security context when dropped (also while unwinding).
struct Restore(pg_sys::Oid, i32);

impl Drop for Restore {
    fn drop(&mut self) {
        // SAFETY: restores exactly what GetUserIdAndSecContext returned.
        unsafe { pg_sys::SetUserIdAndSecContext(self.0, self.1) }
    }
}

/// Runs `f` (statements on rdl's own tables) as the owner of rdl's tables, in a restricted
/// security context, with the search path locked.
pub fn as_owner<T>(f: impl FnOnce() -> T) -> T {
    let owner = owner();
    crate::sql::locked(|| {
        let (mut uid, mut ctx) = (pg_sys::InvalidOid, 0i32);
        // SAFETY: the standard save/switch/restore of the current user id.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut uid, &mut ctx);
        }
        let _restore = Restore(uid, ctx);
        let flags = pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION;
        unsafe {
            pg_sys::SetUserIdAndSecContext(owner, ctx | flags as i32);
        }
        f()
    })
}
