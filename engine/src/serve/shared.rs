//! The worker's fixed shared memory: who the worker is, its counters, a published listing
//! of its cache, and one request slot per PGPROC. Only atomics live here, so any process
//! may read while the worker writes without locks: counters are single atomics; the
//! listing and device name are written under a sequence counter (odd while being
//! written) and readers retry until they see a stable even value. (Placing it in
//! PostgreSQL's shared memory is the extension's part.)

use std::sync::atomic::{fence, AtomicI32, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};

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

/// Bytes the struct and `slots` request slots take.
pub fn size(slots: usize) -> usize {
    std::mem::size_of::<Shared>() + slots * std::mem::size_of::<AtomicU64>()
}

impl Shared {
    pub fn slots(&self) -> &[AtomicU64] {
        let n = self.n_slots.load(Ordering::Relaxed) as usize;
        unsafe {
            let first = (self as *const Shared).add(1).cast::<AtomicU64>();
            std::slice::from_raw_parts(first, n)
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
