//! The worker's forward passes, run on the compute threads of the engine's
//! [`rdl_engine::serve::pool`]: each pass answers a batch of requests for one model,
//! writing the outputs into their segments and waking their backends; the main thread
//! then detaches the segments.
//!
//! Compute threads touch only memory (outputs, atomics) and `SetLatch`, PostgreSQL's
//! async-signal-safe latch call, through its raw symbol (pgrx's wrappers refuse threads).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rdl_engine::serve::panic_message;
use rdl_engine::serve::pool::{Hooks, Work};
use rdl_engine::serve::protocol as proto;
use rdl_engine::train::TrainedModel;

use super::request::{raw_set_latch, with_signals_blocked, Key, Taken};
use super::shmem;

/// A decoded request and the model to answer it with.
pub struct Job {
    pub taken: Taken,
    pub model: Arc<TrainedModel>,
}

// SAFETY: a Job's raw pointers are into a DSM segment the main thread keeps mapped until
// the job comes back through `take_done`; a TrainedModel is only read by the forward pass.
unsafe impl Send for Job {}

impl Work for Job {
    type Key = Key;
    fn key(&self) -> Key {
        self.taken.key
    }
    fn contexts(&self) -> usize {
        self.taken.ctxs.len()
    }
    fn delay_ms(&self) -> u32 {
        self.taken.header().delay_ms
    }
}

pub type Pool = rdl_engine::serve::pool::Pool<Job>;

/// Starts `n` compute threads with every signal blocked (PostgreSQL's handlers stay on the
/// main thread), waking `worker_latch` when answers are ready.
pub fn start(n: usize, generation: u64, worker_latch: *mut pgrx::pg_sys::Latch) -> Pool {
    let latch = worker_latch as usize;
    let hooks = Hooks {
        compute: Box::new(move |batch| compute(generation, batch)),
        done: Box::new(move || unsafe { raw_set_latch(latch as *mut pgrx::pg_sys::Latch) }),
        queued: Box::new(|n| {
            if let Some(sh) = shmem::get() {
                sh.waiting.store(n as u32, Ordering::Relaxed);
            }
        }),
    };
    with_signals_blocked(|| Pool::start(n, hooks))
}

/// One forward pass over the requests of `batch` (all for one model).
fn compute(generation: u64, batch: Vec<Job>) -> Vec<Job> {
    let Some(sh) = shmem::get() else {
        return batch;
    };
    let Some(model) = batch.first().map(|j| j.model.clone()) else {
        return Vec::new();
    };
    // A backend that left (cancelled, timed out) needs no answer.
    let (mut live, mut out): (Vec<Job>, Vec<Job>) = batch
        .into_iter()
        .partition(|j| j.taken.header().backend_gone.load(Ordering::Acquire) == 0);
    for _ in &out {
        sh.abandoned.fetch_add(1, Ordering::Relaxed);
        sh.in_progress.fetch_sub(1, Ordering::Relaxed);
    }
    if live.is_empty() {
        return out;
    }
    let mut all = Vec::new();
    let mut sizes = Vec::with_capacity(live.len());
    for j in &mut live {
        sizes.push(j.taken.ctxs.len());
        all.append(&mut j.taken.ctxs);
    }
    let n_out = model.head.n_out().max(1);
    let result = catch_unwind(AssertUnwindSafe(|| model.predict(&all)));
    let outputs = match result {
        Ok(Ok(v)) if v.len() == all.len() * n_out => Ok(v),
        Ok(Ok(v)) => Err(format!("{} outputs for {} contexts", v.len(), all.len())),
        Ok(Err(e)) => Err(e.to_string()),
        Err(p) => Err(format!("panic in the model: {}", panic_message(p))),
    };
    match outputs {
        Ok(v) => {
            let mut at = 0;
            for (j, &n) in live.iter_mut().zip(&sizes) {
                let t = &mut j.taken;
                let h = t.header();
                if h.n_out as usize != n_out {
                    t.fail(sh, "the model's output count changed");
                } else {
                    let dst = unsafe { t.base.add(h.out_off as usize) };
                    for (k, x) in v[at..at + n * n_out].iter().enumerate() {
                        let b = x.to_le_bytes();
                        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), dst.add(k * 4), 4) };
                    }
                    t.answer(proto::DONE);
                }
                at += n * n_out;
            }
            // Counted before any backend is woken: one that reads rdl_status() right
            // after its answer sees its request.
            sh.passes.fetch_add(1, Ordering::Relaxed);
            sh.requests.fetch_add(live.len() as u64, Ordering::Relaxed);
            sh.contexts.fetch_add(all.len() as u64, Ordering::Relaxed);
        }
        Err(e) => {
            for j in &mut live {
                j.taken.fail(sh, &e);
            }
        }
    }
    for j in live {
        j.taken.release(sh, generation);
        sh.in_progress.fetch_sub(1, Ordering::Relaxed);
        out.push(j);
    }
    out
}
