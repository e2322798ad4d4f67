//! Which statement is running: the key of rdl's per-statement memories.

use pgrx::pg_sys;

/// Which statement is running, as far as what rdl learnt in it may be reused: the role,
/// the transaction, the subtransaction, the statement's start, rdl's own writes, and the
/// calling statement's snapshot: its command (a later statement that follows a write has
/// another; writes of the statement itself, which bump the current command after each of
/// rdl's reads, do not count) and which transactions it sees (a later statement of the
/// same message that sees another's commit has another). Within one, rdl's per-statement
/// memories (the sampler's table copies, the task's checked state) are the statement's
/// one consistent view, as PostgreSQL checks a statement's table permissions once, when
/// it starts.
pub fn key() -> Vec<i64> {
    let writes = crate::sql::writes() as i64;
    // SAFETY: plain reads of this backend's transaction and snapshot state; `xip` holds
    // `xcnt` transaction ids.
    unsafe {
        let mut key = vec![
            u32::from(crate::storage::caller()) as i64,
            (*pg_sys::MyProc).lxid as i64,
            pg_sys::GetCurrentSubTransactionId() as i64,
            pg_sys::GetCurrentStatementStartTimestamp(),
            writes,
        ];
        if pg_sys::ActiveSnapshotSet() {
            let s = &*pg_sys::GetActiveSnapshot();
            key.extend([
                s.curcid as i64,
                s.xmin.into_inner() as i64,
                s.xmax.into_inner() as i64,
            ]);
            // On a standby the running transactions are kept in `subxip`.
            let (xip, n) = match s.takenDuringRecovery {
                true => (s.subxip, s.subxcnt.max(0) as usize),
                false => (s.xip, s.xcnt as usize),
            };
            if !xip.is_null() {
                key.extend(
                    std::slice::from_raw_parts(xip, n)
                        .iter()
                        .map(|x| x.into_inner() as i64),
                );
            }
        } else {
            key.push(pg_sys::GetCurrentCommandId(false) as i64);
        }
        key
    }
}
