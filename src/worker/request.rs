//! A request as the worker holds it, whichever thread works on it: taken from its slot,
//! its segment attached, answered and released to its backend; and the helpers the
//! worker's threads share (signals, latches; panics' messages: `rdl_engine::serve`).

use std::sync::atomic::Ordering;

use pgrx::pg_sys;
use rdl_engine::encode::EncodedContext;

use super::shmem::{self, Shared};
use rdl_engine::serve::protocol::{self as proto, Header};

extern "C-unwind" {
    // Async-signal-safe, so callable from any thread; pgrx's wrapper is not.
    #[link_name = "SetLatch"]
    fn SetLatchRaw(latch: *mut pg_sys::Latch);
}

/// Sets a latch from any thread.
///
/// # Safety
/// `latch` must point to a latch in shared memory or to this process's own latch.
pub unsafe fn raw_set_latch(latch: *mut pg_sys::Latch) {
    unsafe { SetLatchRaw(latch) }
}

/// Which model a request is for: models are keyed by (database, `rdl.models.id`,
/// fingerprint) — the fingerprint tells two models apart that share an id across a
/// re-created extension.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Key {
    pub db: u32,
    pub model_id: i64,
    pub fingerprint: u64,
}

/// A request taken from its slot, its segment attached.
pub struct Taken {
    pub seg: *mut pg_sys::dsm_segment,
    pub hdr: *mut Header,
    pub base: *mut u8,
    pub key: Key,
    pub ctxs: Vec<EncodedContext>,
    /// The answer, released (status stored, backend woken) once the work for it is done
    /// and counted — so a backend that reads `rdl_status()` right after its answer sees
    /// its request counted.
    pub status: Option<u32>,
}

// SAFETY: the segment stays mapped (by the main thread) until the request comes back to it.
unsafe impl Send for Taken {}

impl Taken {
    pub fn header(&self) -> &Header {
        unsafe { &*self.hdr }
    }

    pub fn answer(&mut self, status: u32) {
        self.status = Some(status);
    }

    pub fn fail(&mut self, sh: &Shared, msg: &str) {
        unsafe { (*self.hdr).set_error(msg) };
        sh.errors.fetch_add(1, Ordering::Relaxed);
        self.answer(proto::FAILED);
    }

    /// Stores the answer's status and wakes the backend (any thread).
    pub fn release(&self, sh: &Shared, generation: u64) {
        let Some(status) = self.status else { return };
        let h = unsafe { &mut *self.hdr };
        h.served_by = generation;
        h.status.store(status, Ordering::Release);
        if h.backend_gone.load(Ordering::Acquire) != 0 {
            sh.abandoned.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { latch_of(h.backend_procno).map(|l| raw_set_latch(l)) };
    }

    pub fn detach(self) {
        unsafe { pg_sys::dsm_detach(self.seg) };
    }
}

/// The latch of the process with PGPROC number `procno` (PGPROCs live in shared memory
/// for the life of the server; waking a process that has since been replaced is only a
/// spurious wakeup, which latch users tolerate).
unsafe fn latch_of(procno: i32) -> Option<*mut pg_sys::Latch> {
    let n = shmem::get()?.slots().len();
    if procno < 0 || procno as usize >= n {
        return None;
    }
    unsafe {
        let procs = (*pg_sys::ProcGlobal).allProcs;
        Some(&raw mut (*procs.add(procno as usize)).procLatch)
    }
}

/// Runs `f` with every signal blocked on this thread, so threads it creates (ours,
/// candle's, rayon's) never receive signals meant for PostgreSQL's handlers.
pub fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        let r = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        r
    }
}
