//! The worker's fixed shared memory (its layout: `rdl_engine::serve::shared`), placed in
//! PostgreSQL's shared memory by the hooks here, and what only a live process can tell of
//! the worker: whether it runs, and waking it.
//!
//! A slot holds `seq << 32 | dsm_handle` of the request its backend posted, or 0. The
//! backend posts with one store, the worker takes with one swap, so a request is taken at
//! most once and a stale one (of a backend that was cancelled) is simply overwritten.

use std::sync::atomic::Ordering;

use pgrx::pg_sys;

pub use rdl_engine::serve::shared::{get_str, now_us, put_str, size, ListedModel, Shared};

static mut SHARED: *mut Shared = std::ptr::null_mut();
static mut PREV_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;
static mut PREV_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;

const NAME: &std::ffi::CStr = c"rdl worker";

fn n_slots() -> usize {
    // Every backend and background worker has a PGPROC number below MaxBackends.
    unsafe { pg_sys::MaxBackends.max(1) as usize }
}

/// Installs the hooks that reserve and initialise the segment (from `_PG_init`, while
/// shared_preload_libraries is processed).
pub fn install_hooks() {
    unsafe {
        PREV_REQUEST_HOOK = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(request_hook);
        PREV_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(startup_hook);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn request_hook() {
    unsafe {
        if let Some(prev) = PREV_REQUEST_HOOK {
            prev();
        }
        pg_sys::RequestAddinShmemSpace(size(n_slots()));
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn startup_hook() {
    unsafe {
        if let Some(prev) = PREV_STARTUP_HOOK {
            prev();
        }
        // AddinShmemInitLock
        let lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let slots = n_slots();
        let mut found = false;
        let p = pg_sys::ShmemInitStruct(NAME.as_ptr(), size(slots), &mut found).cast::<Shared>();
        if !found {
            // All-zero is the initial state of every field.
            std::ptr::write_bytes(p.cast::<u8>(), 0, size(slots));
            (*p).n_slots.store(slots as u32, Ordering::Relaxed);
        }
        SHARED = p;
        pg_sys::LWLockRelease(lock);
    }
}

/// The segment, when rdl was preloaded (else `None`: no worker, everything in-process).
pub fn get() -> Option<&'static Shared> {
    unsafe {
        let p = SHARED;
        if p.is_null() {
            None
        } else {
            Some(&*p)
        }
    }
}

/// What only this process can tell of the worker: whether it lives, and waking it.
pub trait Process {
    fn live_worker(&self) -> Option<i32>;
    fn wake_worker(&self);
}

impl Process for Shared {
    /// The running worker's pid, if any (checked against the process table: a worker that
    /// was killed does not get to clear it).
    fn live_worker(&self) -> Option<i32> {
        let pid = self.worker_pid.load(Ordering::Acquire);
        if pid == 0 {
            return None;
        }
        // SAFETY: signal 0 only checks the process exists.
        let r = unsafe { libc::kill(pid, 0) };
        if r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
            Some(pid)
        } else {
            None
        }
    }

    /// Wakes the worker.
    fn wake_worker(&self) {
        let procno = self.worker_procno.load(Ordering::Acquire);
        if self.worker_pid.load(Ordering::Acquire) != 0 && procno >= 0 {
            unsafe { set_latch_of(procno) };
        }
    }
}

/// Sets the latch of the process with PGPROC number `procno`.
///
/// # Safety
/// `procno` must be a valid PGPROC number (PGPROCs live in shared memory for the life of
/// the server; setting the latch of a process that has since been replaced only wakes it
/// spuriously, which latch users must tolerate).
pub unsafe fn set_latch_of(procno: i32) {
    unsafe {
        let procs = (*pg_sys::ProcGlobal).allProcs;
        pg_sys::SetLatch(&raw mut (*procs.add(procno as usize)).procLatch);
    }
}
