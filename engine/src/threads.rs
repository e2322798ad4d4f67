//! How many threads candle's CPU kernels use.
//!
//! candle asks for its thread count at every matrix multiplication: it reads
//! `RAYON_NUM_THREADS` and, when that is unset, parses `/proc/cpuinfo` — on every call.
//! rayon sizes its pool from the same variable once. So the count is set through it: a
//! control (the extension's `rdl.threads`) and a speed-up. Small forward passes (one
//! entity) run faster on one thread than with the hand-offs between two, so inference
//! picks per batch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// Configured threads; 0 = one per core.
static CONFIGURED: AtomicUsize = AtomicUsize::new(0);

/// The cores this process may use, as first seen.
static CORES: OnceLock<usize> = OnceLock::new();
/// The count last written to `RAYON_NUM_THREADS` (0: none yet); the lock keeps it and the
/// variable in step when several threads switch (the worker's compute and training).
static LAST_SET: Mutex<usize> = Mutex::new(0);

/// Below this many tokens a forward pass runs on one thread.
pub const SMALL_BATCH_TOKENS: usize = 4096;

/// Sets the thread count for training and large batches (0 = one per core).
pub fn configure(n: usize) {
    CONFIGURED.store(n, Ordering::Relaxed);
}

/// The configured thread count, resolved (at least 1).
pub fn configured() -> usize {
    match CONFIGURED.load(Ordering::Relaxed) {
        // Asked once: the standard library reads the cgroup files at every call.
        0 => *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        n => n,
    }
}

/// Makes the next kernels use `n` threads (at most the configured count).
pub fn use_threads(n: usize) {
    let n = n.clamp(1, configured());
    // Remembered, so the environment (behind a lock, scanned) is written only when the
    // count changes and never read here.
    let mut last = LAST_SET.lock().unwrap_or_else(|e| e.into_inner());
    if *last != n {
        // Only threads of this process that hold the lock write the variable; candle's and
        // rayon's workers never do, and a backend's PostgreSQL code runs on one thread.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        *last = n;
    }
}

/// Creates rayon's global pool — candle's CPU kernels run on it — with the configured
/// thread count, unless it exists already (then `false`). rayon sizes the pool once, from
/// `RAYON_NUM_THREADS` at its first use: without this, a process whose first forward pass
/// ran on one thread keeps a one-thread pool for good.
pub fn init_pool() -> bool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(configured())
        .build_global()
        .is_ok()
}

/// Threads for a forward pass over `tokens` tokens.
pub fn for_tokens(tokens: usize) -> usize {
    if tokens < SMALL_BATCH_TOKENS {
        1
    } else {
        configured()
    }
}
