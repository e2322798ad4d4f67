//! Training runs: the `rdl.runs` row another session reads while `rdl_train` works.
//!
//! A top-level `CALL rdl_train(...)` is non-atomic, so the procedure commits its progress
//! (autonomous of the model it is building): the run row is committed when training starts
//! and after every epoch, and the model version is written and activated in the last
//! transaction only. Inside a transaction block (`BEGIN; CALL ...`) the call is atomic: it
//! commits nothing, holds the task's lock throughout, and its run row appears (or vanishes)
//! with the caller's transaction.
//!
//! Liveness: a running run holds a session-level advisory lock keyed by its id, released
//! when the run ends — also when its transaction aborts (error, cancel), through an abort
//! callback. The `rdl_runs` view reports a `running` row whose lock is gone as `aborted`, so
//! a backend that died mid-run never looks alive. A cancel noticed between training steps is
//! recorded as `cancelled` before the error is raised.

use std::cell::Cell;

use pgrx::prelude::*;
use pgrx::{register_xact_callback, JsonB, PgXactCallbackEvent};

use crate::error::RdlError;
use crate::sql::{execute, query_one};
use crate::storage::as_owner;

/// First key of the advisory locks of runs ('rdl\0'); the second is the run id.
pub const RUN_LOCK_CLASS: i32 = 0x7264_6c00;

thread_local! {
    /// The run whose session lock this backend holds, if any.
    static HELD: Cell<Option<i32>> = const { Cell::new(None) };
}

/// The pid of a live run of task `$1`: marked running and its backend still holding the
/// run's session lock (the same rule as the `rdl_runs` view, written out: rdl's own
/// statements never read a view through the search path).
const RUNNING_SQL: &str = "
SELECT r.pid FROM rdl.runs r
WHERE r.task OPERATOR(pg_catalog.=) $1 AND r.status OPERATOR(pg_catalog.=) 'running'
  AND EXISTS (
    SELECT 1 FROM pg_catalog.pg_locks l
    WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory' AND l.granted
      AND l.pid OPERATOR(pg_catalog.=) r.pid
      AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d
                         WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
      AND l.classid OPERATOR(pg_catalog.=) 1919183872::pg_catalog.oid
      AND l.objid OPERATOR(pg_catalog.=) r.id::pg_catalog.oid
      AND l.objsubid OPERATOR(pg_catalog.=) 2)
LIMIT 1";

pub struct Run {
    pub id: i64,
    /// Whether this call may commit (a top-level CALL outside a transaction block).
    nonatomic: bool,
    task: String,
}

/// Whether the procedure was called where it may commit (`CallContext.atomic == false`).
pub fn call_is_nonatomic(fcinfo: pg_sys::FunctionCallInfo) -> bool {
    // SAFETY: fcinfo is the live call's; context is a Node or null.
    unsafe {
        let ctx = (*fcinfo).context;
        if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_CallContext {
            return false;
        }
        let cc = ctx as *mut pg_sys::CallContext;
        !(*cc).atomic && !pg_sys::IsSubTransaction()
    }
}

/// Locks the task's row until the end of the transaction, as rdl's owner. A row lock
/// rather than an advisory lock on a key anyone could compute: taking a conflicting lock on
/// a row of `rdl.tasks` needs UPDATE on it, which no ordinary role has, so no other role
/// can stall a training by holding the lock first.
fn task_lock(task: &str) {
    as_owner(|| {
        execute(
            "SELECT 1 FROM rdl.tasks t WHERE t.name OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE",
            &[task.into()],
        )
    });
}

impl Run {
    /// Registers a run of `task`. Errors with 55006 when another session is training it.
    pub fn start(task: &str, options: serde_json::Value, nonatomic: bool) -> Run {
        // Serialises the check below with other starters; in atomic mode it is held to the
        // end, so a second atomic call simply waits.
        task_lock(task);
        let busy = as_owner(|| query_one::<i32>(RUNNING_SQL, &[task.into()]));
        if let Some(pid) = busy {
            RdlError::new(
                "55006",
                format!("task \"{task}\" is being trained by another session (pid {pid})"),
            )
            .hint(format!(
                "Wait for it to finish (SELECT * FROM rdl_runs WHERE task = '{}'), or cancel it with SELECT pg_cancel_backend({pid}).",
                task.replace('\'', "''")
            ))
            .raise()
        }
        let caller = crate::storage::caller();
        let id = as_owner(|| {
            crate::sql::write_one::<i64>(
                "INSERT INTO rdl.runs (task, options, started_by)
                 VALUES ($1, $2, (SELECT r.rolname FROM pg_catalog.pg_roles r
                                  WHERE r.oid OPERATOR(pg_catalog.=) $3))
                 RETURNING id",
                &[task.into(), JsonB(options).into(), caller.into()],
            )
        })
        .unwrap_or_default();
        let run = Run {
            id,
            nonatomic,
            task: task.to_string(),
        };
        if nonatomic {
            execute(
                "SELECT pg_catalog.pg_advisory_lock($1, $2)",
                &[RUN_LOCK_CLASS.into(), (id as i32).into()],
            );
            HELD.with(|h| h.set(Some(id as i32)));
            run.commit();
        }
        run
    }

    /// Records progress (and commits it, when allowed).
    pub fn progress(&self, phase: &str, epoch: usize, entry: Option<serde_json::Value>) {
        as_owner(|| {
            execute(
                "UPDATE rdl.runs SET phase = $2, epoch = $3, updated_at = pg_catalog.clock_timestamp(),
                    history = CASE WHEN $4::pg_catalog.jsonb IS NULL THEN history
                                   ELSE history OPERATOR(pg_catalog.||) $4 END
                 WHERE id OPERATOR(pg_catalog.=) $1",
                &[
                    self.id.into(),
                    phase.into(),
                    (epoch as i32).into(),
                    entry.map(JsonB).into(),
                ],
            )
        });
        if self.nonatomic {
            self.commit();
        }
    }

    /// Raises a pending cancel or termination, recording the run as cancelled first.
    pub fn poll(&self) {
        // SAFETY: plain reads of the interrupt flags set by signal handlers.
        let pending = unsafe {
            pg_sys::InterruptPending != 0
                && (pg_sys::QueryCancelPending != 0 || pg_sys::ProcDiePending != 0)
        };
        if pending && self.nonatomic {
            // Hold interrupts so the bookkeeping itself is not what gets cancelled.
            unsafe { pg_sys::InterruptHoldoffCount += 1 };
            as_owner(|| {
                execute(
                    "UPDATE rdl.runs SET status = 'cancelled', finished_at = pg_catalog.clock_timestamp(),
                        updated_at = pg_catalog.clock_timestamp(), message = 'cancelled'
                     WHERE id OPERATOR(pg_catalog.=) $1",
                    &[self.id.into()],
                )
            });
            self.commit();
            unsafe { pg_sys::InterruptHoldoffCount -= 1 };
        }
        pgrx::check_for_interrupts!();
    }

    /// Records the run as failed with the error's message, then raises it.
    pub fn fail(&self, e: RdlError) -> ! {
        if self.nonatomic {
            as_owner(|| {
                execute(
                    "UPDATE rdl.runs SET status = 'failed', finished_at = pg_catalog.clock_timestamp(),
                        updated_at = pg_catalog.clock_timestamp(), message = $2
                     WHERE id OPERATOR(pg_catalog.=) $1",
                    &[self.id.into(), e.0.message.clone().into()],
                )
            });
            self.commit();
            release_run_lock();
        }
        e.raise()
    }

    /// Takes the task's lock for the final transaction: the model switch is serialised with
    /// every other training of the task.
    pub fn lock_for_finish(&self) {
        task_lock(&self.task);
    }

    /// Marks the run finished with the model version it produced; the caller's transaction
    /// (the procedure's last) commits it together with the model.
    pub fn finish(&self, version: i32, metrics: serde_json::Value) {
        as_owner(|| {
            execute(
                "UPDATE rdl.runs SET status = 'finished', phase = 'done', model_version = $2,
                    metrics = $3, finished_at = pg_catalog.clock_timestamp(),
                    updated_at = pg_catalog.clock_timestamp()
                 WHERE id OPERATOR(pg_catalog.=) $1",
                &[self.id.into(), version.into(), JsonB(metrics).into()],
            )
        });
        // Released when this last transaction commits (or aborts), not before: until then
        // the run must still look alive to other sessions.
        if self.nonatomic {
            register_xact_callback(PgXactCallbackEvent::Commit, release_run_lock);
        }
    }

    fn commit(&self) {
        // SAFETY: only reached when the CALL is non-atomic and not in a subtransaction; the
        // procedure runs in the CALL portal's memory, which survives commits.
        unsafe {
            pg_sys::SPI_connect_ext(pg_sys::SPI_OPT_NONATOMIC as i32);
            pg_sys::SPI_commit();
            #[cfg(feature = "pg13")]
            pg_sys::SPI_start_transaction();
            pg_sys::SPI_finish();
            // Queries after a commit need a snapshot, as PL/pgSQL does after COMMIT.
            pg_sys::EnsurePortalSnapshotExists();
        }
        // pgrx's callbacks are per transaction: arm the release for the new one.
        if HELD.with(|h| h.get()).is_some() {
            register_xact_callback(PgXactCallbackEvent::Abort, release_run_lock);
        }
    }
}

/// Releases the run's session lock, if this backend holds one.
fn release_run_lock() {
    let Some(id) = HELD.with(|h| h.take()) else {
        return;
    };
    // Direct lock-manager call: it is safe in an abort callback, unlike running SQL.
    // SAFETY: the tag is the one pg_advisory_lock(int4, int4) builds (SET_LOCKTAG_INT32).
    unsafe {
        let tag = pg_sys::LOCKTAG {
            locktag_field1: pg_sys::MyDatabaseId.to_u32(),
            locktag_field2: RUN_LOCK_CLASS as u32,
            locktag_field3: id as u32,
            locktag_field4: 2,
            locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
            locktag_lockmethodid: 2, // USER_LOCKMETHOD
        };
        pg_sys::LockRelease(&tag, pg_sys::ExclusiveLock as i32, true);
    }
}
