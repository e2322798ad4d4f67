//! The worker's fixed shared memory: who the worker is, its counters, a published listing
//! of its cache, and one request slot per PGPROC.
//!
//! Only atomics live here, so any process may read while the worker writes without locks:
//! counters are single atomics; the listing and device name are written under a sequence
//! counter (odd while being written) and readers retry until they see a stable even value.
//!
//! A slot holds `seq << 32 | dsm_handle` of the request its backend posted, or 0. The
//! backend posts with one store, the worker takes with one swap, so a request is taken at
//! most once and a stale one (of a backend that was cancelled) is simply overwritten.

use std::sync::atomic::{fence, AtomicI32, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};

use pgrx::pg_sys;

/// Cache entries the listing shows at most (`cached_models` of `rdl_status()`).
pub const MAX_LISTED: usize = 64;
const NAME_LEN: usize = 32;
const NOTE_LEN: usize = 256;

#[repr(C)]
pub struct Listed {
    pub db_oid: AtomicU32,
    pub version: AtomicI32,
    pub model_id: AtomicI64,
    pub bytes: AtomicU64,
    pub hits: AtomicU64,
    /// Unix time of the last use, µs.
    pub last_used_us: AtomicI64,
}

#[repr(C)]
pub struct Shared {
    /// The running worker's pid, 0 when none.
    pub worker_pid: AtomicI32,
    pub worker_procno: AtomicI32,
    /// Worker starts since the server (re)initialised shared memory.
    pub generation: AtomicU64,
    pub started_at_us: AtomicI64,
    pub threads: AtomicU32,
    pub max_batch: AtomicU32,
    /// Requests answered with predictions, forward passes, contexts scored.
    pub requests: AtomicU64,
    pub passes: AtomicU64,
    pub contexts: AtomicU64,
    /// Requests whose backend was gone (cancelled, timed out) before the answer.
    pub abandoned: AtomicU64,
    pub errors: AtomicU64,
    pub need_model: AtomicU64,
    pub loads: AtomicU64,
    pub evictions: AtomicU64,
    /// Requests taken and not yet answered, and of those, waiting for a compute thread.
    pub in_progress: AtomicU32,
    pub waiting: AtomicU32,
    /// Trainings started on the worker, and running now.
    pub trainings: AtomicU64,
    pub trainings_running: AtomicU32,
    pub seq: AtomicU64,
    pub cache_bytes: AtomicU64,
    pub cache_limit: AtomicU64,
    pub n_cached: AtomicU32,
    pub n_listed: AtomicU32,
    pub listed: [Listed; MAX_LISTED],
    pub device: [AtomicU8; NAME_LEN],
    pub device_note: [AtomicU8; NOTE_LEN],
    pub n_slots: AtomicU32,
    // followed by `n_slots` AtomicU64 request slots
}

static mut SHARED: *mut Shared = std::ptr::null_mut();
static mut PREV_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;
static mut PREV_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;

const NAME: &std::ffi::CStr = c"rdl worker";

fn n_slots() -> usize {
    // Every backend and background worker has a PGPROC number below MaxBackends.
    unsafe { pg_sys::MaxBackends.max(1) as usize }
}

fn size(slots: usize) -> usize {
    std::mem::size_of::<Shared>() + slots * std::mem::size_of::<AtomicU64>()
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

impl Shared {
    pub fn slots(&self) -> &[AtomicU64] {
        let n = self.n_slots.load(Ordering::Relaxed) as usize;
        unsafe {
            let first = (self as *const Shared).add(1).cast::<AtomicU64>();
            std::slice::from_raw_parts(first, n)
        }
    }

    /// The running worker's pid, if any (checked against the process table: a worker that
    /// was killed does not get to clear it).
    pub fn live_worker(&self) -> Option<i32> {
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
    pub fn wake_worker(&self) {
        let procno = self.worker_procno.load(Ordering::Acquire);
        if self.worker_pid.load(Ordering::Acquire) != 0 && procno >= 0 {
            unsafe { set_latch_of(procno) };
        }
    }

    /// Requests posted and not yet computed: in their slots, or waiting in the worker
    /// for a compute thread.
    pub fn queued(&self) -> usize {
        let posted = self
            .slots()
            .iter()
            .filter(|s| s.load(Ordering::Relaxed) != 0)
            .count();
        posted + self.waiting.load(Ordering::Relaxed) as usize
    }

    /// Runs `write` as the listing's writer (the worker only).
    pub fn write_listing(&self, write: impl FnOnce(&Shared)) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        write(self);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// Reads the listing consistently (retrying while the worker writes it).
    pub fn read_listing<T>(&self, read: impl Fn(&Shared) -> T) -> T {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            if !s1.is_multiple_of(2) {
                std::hint::spin_loop();
                continue;
            }
            let v = read(self);
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                return v;
            }
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

pub fn put_str(dst: &[AtomicU8], s: &str) {
    let b = s.as_bytes();
    let n = b.len().min(dst.len() - 1);
    for (i, d) in dst.iter().enumerate() {
        d.store(if i < n { b[i] } else { 0 }, Ordering::Relaxed);
    }
}

pub fn get_str(src: &[AtomicU8]) -> String {
    let b: Vec<u8> = src
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .take_while(|&c| c != 0)
        .collect();
    String::from_utf8_lossy(&b).into_owned()
}

/// Unix time, µs.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
