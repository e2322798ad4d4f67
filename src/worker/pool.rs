//! The worker's compute threads. The main thread (the only one that calls PostgreSQL)
//! takes requests, loads models and queues decoded requests here; each compute thread
//! takes the oldest queued request plus every later one for the same model that fits
//! `rdl.max_batch`, runs one forward pass, writes the outputs into the requests' segments
//! and wakes their backends, then hands the segments back to the main thread to detach.
//!
//! Batching adapts to load: an idle thread takes a lone request at once (no added
//! latency); while every thread is busy, requests accumulate and the next free thread
//! merges them. Several threads use several cores, as concurrent backends would — one
//! thread would serialise every forward pass of the server.
//!
//! Compute threads touch only memory (outputs, atomics) and `SetLatch`, PostgreSQL's
//! async-signal-safe latch call, through its raw symbol (pgrx's wrappers refuse threads).

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdl_engine::serve::next_batch;
use rdl_engine::train::TrainedModel;

use super::request::{panic_message, raw_set_latch, with_signals_blocked, Taken};
use super::shmem;
use rdl_engine::serve::protocol as proto;

/// A decoded request and the model to answer it with.
pub struct Job {
    pub taken: Taken,
    pub model: Arc<TrainedModel>,
}

struct Queue {
    pending: VecDeque<Job>,
    /// Answered requests, for the main thread to detach.
    done: Vec<Taken>,
    /// Testing aid (`rdl.debug_worker_delay`): nothing is computed before this instant.
    hold_until: Option<Instant>,
    shutdown: bool,
}

struct Inner {
    q: Mutex<Queue>,
    cv: Condvar,
    max_batch: AtomicUsize,
    /// The main thread's latch, set when `done` grows.
    worker_latch: usize,
    generation: u64,
}

pub struct Pool {
    inner: Arc<Inner>,
    handles: Vec<JoinHandle<()>>,
}

// SAFETY: a Job's raw pointers are into a DSM segment the main thread keeps mapped until
// the job comes back through `done`; a TrainedModel is only read by the forward pass.
unsafe impl Send for Job {}

impl Pool {
    /// Starts `n` threads (with every signal blocked, so PostgreSQL's handlers stay on the
    /// main thread).
    pub fn start(n: usize, generation: u64, worker_latch: *mut pgrx::pg_sys::Latch) -> Pool {
        let inner = Arc::new(Inner {
            q: Mutex::new(Queue {
                pending: VecDeque::new(),
                done: Vec::new(),
                hold_until: None,
                shutdown: false,
            }),
            cv: Condvar::new(),
            max_batch: AtomicUsize::new(256),
            worker_latch: worker_latch as usize,
            generation,
        });
        let handles = with_signals_blocked(|| {
            (0..n.max(1))
                .filter_map(|i| {
                    let inner = inner.clone();
                    std::thread::Builder::new()
                        .name(format!("rdl compute {i}"))
                        .spawn(move || run(&inner))
                        .ok()
                })
                .collect()
        });
        Pool { inner, handles }
    }

    pub fn threads(&self) -> usize {
        self.handles.len()
    }

    pub fn set_max_batch(&self, n: usize) {
        self.inner.max_batch.store(n.max(1), Ordering::Relaxed);
    }

    /// Queues requests (and holds the queue as long as one of them asks).
    pub fn submit(&self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        let mut q = self.inner.q.lock().unwrap_or_else(|e| e.into_inner());
        for j in jobs {
            let delay = j.taken.header().delay_ms;
            if delay > 0 {
                let until = Instant::now() + Duration::from_millis(delay.min(60_000) as u64);
                q.hold_until = Some(q.hold_until.map_or(until, |h| h.max(until)));
            }
            q.pending.push_back(j);
        }
        if let Some(sh) = shmem::get() {
            sh.waiting.store(q.pending.len() as u32, Ordering::Relaxed);
        }
        drop(q);
        self.inner.cv.notify_all();
    }

    /// Requests answered since the last call.
    pub fn take_done(&self) -> Vec<Taken> {
        let mut q = self.inner.q.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut q.done)
    }

    /// Stops the threads after their current pass and waits for them; queued requests
    /// are dropped (their backends see the worker gone and compute in-process).
    pub fn stop(&mut self) {
        {
            let mut q = self.inner.q.lock().unwrap_or_else(|e| e.into_inner());
            q.shutdown = true;
        }
        self.inner.cv.notify_all();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn run(inner: &Inner) {
    loop {
        let batch = {
            let mut q = inner.q.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if q.shutdown {
                    return;
                }
                if let Some(until) = q.hold_until {
                    let now = Instant::now();
                    if now < until {
                        q = inner
                            .cv
                            .wait_timeout(q, until - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                        continue;
                    }
                    q.hold_until = None;
                }
                if !q.pending.is_empty() {
                    break;
                }
                q = inner.cv.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            let sizes: Vec<_> = q
                .pending
                .iter()
                .map(|j| (j.taken.key, j.taken.ctxs.len()))
                .collect();
            let pick = next_batch(&sizes, inner.max_batch.load(Ordering::Relaxed));
            let mut batch = Vec::with_capacity(pick.len());
            for &i in pick.iter().rev() {
                if let Some(j) = q.pending.remove(i) {
                    batch.push(j);
                }
            }
            batch.reverse();
            if let Some(sh) = shmem::get() {
                sh.waiting.store(q.pending.len() as u32, Ordering::Relaxed);
            }
            batch
        };
        let answered = compute(inner, batch);
        let mut q = inner.q.lock().unwrap_or_else(|e| e.into_inner());
        q.done.extend(answered);
        drop(q);
        unsafe { raw_set_latch(inner.worker_latch as *mut pgrx::pg_sys::Latch) };
    }
}

/// One forward pass over the requests of `batch` (all for one model).
fn compute(inner: &Inner, batch: Vec<Job>) -> Vec<Taken> {
    let Some(sh) = shmem::get() else {
        return batch.into_iter().map(|j| j.taken).collect();
    };
    let Some(model) = batch.first().map(|j| j.model.clone()) else {
        return Vec::new();
    };
    // A backend that left (cancelled, timed out) needs no answer.
    let (mut live, gone): (Vec<Job>, Vec<Job>) = batch
        .into_iter()
        .partition(|j| j.taken.header().backend_gone.load(Ordering::Acquire) == 0);
    let mut out: Vec<Taken> = gone
        .into_iter()
        .map(|j| {
            sh.abandoned.fetch_add(1, Ordering::Relaxed);
            sh.in_progress.fetch_sub(1, Ordering::Relaxed);
            j.taken
        })
        .collect();
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
        j.taken.release(sh, inner.generation);
        sh.in_progress.fetch_sub(1, Ordering::Relaxed);
        out.push(j.taken);
    }
    out
}
