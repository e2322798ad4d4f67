//! The worker's compute threads. The worker's main thread (the only one that may call
//! PostgreSQL) queues decoded requests here; each compute thread takes the oldest queued
//! request plus every later one for the same model that fits `max_batch`
//! ([`super::next_batch`]), runs one forward pass over them (the `compute` function the
//! pool was started with) and hands them back through `take_done`.
//!
//! Batching adapts to load: an idle thread takes a lone request at once (no added
//! latency); while every thread is busy, requests accumulate and the next free thread
//! merges them. Several threads use several cores, as concurrent backends would — one
//! thread would serialise every forward pass of the server.

use std::collections::VecDeque;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::next_batch;

/// A queued request, as the pool needs to see it.
pub trait Work: Send + 'static {
    type Key: Eq + Copy;
    /// The model it is for: only requests with equal keys share a forward pass.
    fn key(&self) -> Self::Key;
    /// How many contexts it carries.
    fn contexts(&self) -> usize;
    /// Testing aid: nothing is computed for this long after it is queued.
    fn delay_ms(&self) -> u32;
}

/// What the pool calls: the forward pass over one batch (all for one model), the answered
/// requests back; `done` once answers are there to take; `queued` with the queue's length
/// whenever it changes.
pub struct Hooks<W: Work> {
    pub compute: Box<dyn Fn(Vec<W>) -> Vec<W> + Send + Sync>,
    pub done: Box<dyn Fn() + Send + Sync>,
    pub queued: Box<dyn Fn(usize) + Send + Sync>,
}

struct Queue<W> {
    pending: VecDeque<W>,
    /// Answered requests, for the main thread to take.
    done: Vec<W>,
    hold_until: Option<Instant>,
    shutdown: bool,
}

struct Inner<W: Work> {
    q: Mutex<Queue<W>>,
    cv: Condvar,
    max_batch: AtomicUsize,
    hooks: Hooks<W>,
}

impl<W: Work> Inner<W> {
    fn lock(&self) -> MutexGuard<'_, Queue<W>> {
        self.q.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct Pool<W: Work> {
    inner: Arc<Inner<W>>,
    handles: Vec<JoinHandle<()>>,
}

impl<W: Work> Pool<W>
where
    W::Key: Hash,
{
    /// Starts `n` threads (at least one). They inherit the caller's signal mask: a caller
    /// inside PostgreSQL starts them with every signal blocked.
    pub fn start(n: usize, hooks: Hooks<W>) -> Pool<W> {
        let inner = Arc::new(Inner {
            q: Mutex::new(Queue {
                pending: VecDeque::new(),
                done: Vec::new(),
                hold_until: None,
                shutdown: false,
            }),
            cv: Condvar::new(),
            max_batch: AtomicUsize::new(256),
            hooks,
        });
        let handles = (0..n.max(1))
            .filter_map(|i| {
                let inner = inner.clone();
                std::thread::Builder::new()
                    .name(format!("rdl compute {i}"))
                    .spawn(move || run(&inner))
                    .ok()
            })
            .collect();
        Pool { inner, handles }
    }

    pub fn threads(&self) -> usize {
        self.handles.len()
    }

    pub fn set_max_batch(&self, n: usize) {
        self.inner.max_batch.store(n.max(1), Ordering::Relaxed);
    }

    /// Queues requests (and holds the queue as long as one of them asks).
    pub fn submit(&self, jobs: Vec<W>) {
        if jobs.is_empty() {
            return;
        }
        let mut q = self.inner.lock();
        for j in jobs {
            let delay = j.delay_ms();
            if delay > 0 {
                let until = Instant::now() + Duration::from_millis(delay.min(60_000) as u64);
                q.hold_until = Some(q.hold_until.map_or(until, |h| h.max(until)));
            }
            q.pending.push_back(j);
        }
        (self.inner.hooks.queued)(q.pending.len());
        drop(q);
        self.inner.cv.notify_all();
    }

    /// Requests answered since the last call.
    pub fn take_done(&self) -> Vec<W> {
        std::mem::take(&mut self.inner.lock().done)
    }

    /// Stops the threads after their current pass and waits for them; queued requests
    /// are dropped.
    pub fn stop(&mut self) {
        self.inner.lock().shutdown = true;
        self.inner.cv.notify_all();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Waits for work (or the end of a hold) and takes the next batch; `None` at shutdown.
fn next<W: Work>(inner: &Inner<W>) -> Option<Vec<W>> {
    let mut q = inner.lock();
    loop {
        if q.shutdown {
            return None;
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
    let sizes: Vec<_> = q.pending.iter().map(|j| (j.key(), j.contexts())).collect();
    let pick = next_batch(&sizes, inner.max_batch.load(Ordering::Relaxed));
    let mut batch: Vec<W> = pick
        .iter()
        .rev()
        .filter_map(|&i| q.pending.remove(i))
        .collect();
    batch.reverse();
    (inner.hooks.queued)(q.pending.len());
    Some(batch)
}

fn run<W: Work>(inner: &Inner<W>) {
    while let Some(batch) = next(inner) {
        let answered = (inner.hooks.compute)(batch);
        inner.lock().done.extend(answered);
        (inner.hooks.done)();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    struct Req(u8, usize);

    impl Work for Req {
        type Key = u8;
        fn key(&self) -> u8 {
            self.0
        }
        fn contexts(&self) -> usize {
            self.1
        }
        fn delay_ms(&self) -> u32 {
            0
        }
    }

    #[test]
    fn every_request_comes_back_in_batches_of_one_model() {
        let passes = Arc::new(AtomicU64::new(0));
        let p2 = passes.clone();
        let mixed = Arc::new(AtomicU64::new(0));
        let m2 = mixed.clone();
        let mut pool = Pool::start(
            2,
            Hooks {
                compute: Box::new(move |b: Vec<Req>| {
                    p2.fetch_add(1, Ordering::Relaxed);
                    if b.iter().any(|r| r.0 != b[0].0)
                        || (b.iter().map(|r| r.1).sum::<usize>() > 8 && b.len() > 1)
                    {
                        m2.fetch_add(1, Ordering::Relaxed);
                    }
                    b
                }),
                done: Box::new(|| {}),
                queued: Box::new(|_| {}),
            },
        );
        pool.set_max_batch(8);
        pool.submit((0..200).map(|i| Req((i % 3) as u8, 1 + i % 5)).collect());
        let mut back = 0;
        let t0 = Instant::now();
        while back < 200 && t0.elapsed() < Duration::from_secs(10) {
            back += pool.take_done().len();
            std::thread::sleep(Duration::from_millis(1));
        }
        pool.stop();
        assert_eq!(back, 200);
        assert_eq!(mixed.load(Ordering::Relaxed), 0);
        assert!(passes.load(Ordering::Relaxed) <= 200);
    }
}
