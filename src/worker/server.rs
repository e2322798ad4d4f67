//! The background worker: owns the compute device and the model cache, and answers
//! backends' requests, merging concurrent ones into forward passes.
//!
//! It has no database connection (it cannot read every database): backends gather and
//! encode contexts as the calling user — privileges, RLS and their snapshot apply — and
//! send the encoded batch; a model the worker does not hold is shipped once by the first
//! backend that needs it. Models are keyed by (database, `rdl.models.id`, fingerprint):
//! the fingerprint tells two models apart that share an id across a re-created extension.
//!
//! Threads: the main thread alone talks to PostgreSQL. candle's compute threads are
//! created during the first forward pass with every signal blocked, so PostgreSQL's
//! signal handlers only ever run on the main thread.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pgrx::pg_sys;
use rdl_engine::device::{self, DeviceSpec};
use rdl_engine::encode::EncodedContext;
use rdl_engine::serve::{plan_batches, Lru};
use rdl_engine::train::TrainedModel;
use rdl_engine::wire;

use super::proto::{self, Header};
use super::shmem::{self, put_str, set_latch_of, Shared, MAX_LISTED};
use crate::guc;

extern "C-unwind" {
    // PostgreSQL's own handlers, called directly (not through pgrx's wrappers, which
    // would check the calling thread): they only set a flag and the process latch.
    fn SignalHandlerForConfigReload(signal: std::ffi::c_int);
    fn SignalHandlerForShutdownRequest(signal: std::ffi::c_int);
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Key {
    db: u32,
    model_id: i64,
    fingerprint: u64,
}

struct Cached {
    model: TrainedModel,
    version: i32,
    last_used_us: i64,
}

struct Taken {
    seg: *mut pg_sys::dsm_segment,
    hdr: *mut Header,
    base: *mut u8,
    key: Key,
    ctxs: Vec<EncodedContext>,
    /// The answer, released (status stored, backend woken) once the whole round is done
    /// and its counters published — so a backend that reads `rdl_status()` right after
    /// its answer sees its request counted.
    status: Option<u32>,
}

impl Taken {
    fn header(&self) -> &Header {
        unsafe { &*self.hdr }
    }

    fn answer(&mut self, status: u32) {
        self.status = Some(status);
    }

    fn fail(&mut self, sh: &Shared, msg: &str) {
        unsafe { (*self.hdr).set_error(msg) };
        sh.errors.fetch_add(1, Ordering::Relaxed);
        self.answer(proto::FAILED);
    }

    /// Stores the answer's status and wakes the backend.
    fn release(&self, sh: &Shared, generation: u64) {
        let Some(status) = self.status else { return };
        let h = unsafe { &mut *self.hdr };
        h.served_by = generation;
        h.status.store(status, Ordering::Release);
        if h.backend_gone.load(Ordering::Acquire) != 0 {
            sh.abandoned.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { set_latch_of(h.backend_procno) };
    }
}

/// The worker's entry point (registered by `super::register`).
#[pgrx::pg_guard]
#[no_mangle]
pub extern "C-unwind" fn rdl_worker_main(_arg: pg_sys::Datum) {
    unsafe {
        pg_sys::pqsignal(pg_sys::SIGHUP as i32, Some(SignalHandlerForConfigReload));
        pg_sys::pqsignal(
            pg_sys::SIGTERM as i32,
            Some(SignalHandlerForShutdownRequest),
        );
        pg_sys::BackgroundWorkerUnblockSignals();
    }
    let Some(sh) = shmem::get() else {
        pgrx::log!("rdl worker: no shared memory (rdl not in shared_preload_libraries?)");
        unsafe { pg_sys::proc_exit(1) };
    };
    let setting = guc::device_setting();
    let (opened, note) = match DeviceSpec::parse(&setting) {
        Ok(spec) => {
            let o = device::open(spec);
            let note = o.note.clone();
            (o, note)
        }
        Err(e) => (
            device::open(DeviceSpec::Cpu),
            Some(format!("{e}; using the CPU")),
        ),
    };
    if let Some(n) = &note {
        pgrx::warning!("rdl worker: {n}");
    }
    let mut state = Worker {
        cache: Lru::new(cache_limit()),
        device: opened.device,
        generation: sh.generation.fetch_add(1, Ordering::AcqRel) + 1,
    };
    apply_settings(sh, &mut state);
    sh.write_listing(|s| {
        put_str(&s.device, &opened.name);
        put_str(&s.device_note, note.as_deref().unwrap_or(""));
    });
    sh.started_at_us.store(shmem::now_us(), Ordering::Relaxed);
    unsafe {
        sh.worker_procno
            .store((*pg_sys::MyProc).pgprocno, Ordering::Release);
        pg_sys::before_shmem_exit(Some(on_exit), pg_sys::Datum::from(0));
    }
    sh.worker_pid
        .store(unsafe { pg_sys::MyProcPid }, Ordering::Release);
    publish(sh, &state);
    pgrx::log!(
        "rdl worker started: device {}, model cache {} MB, max batch {}",
        opened.name,
        guc::MODEL_CACHE_MB.get(),
        guc::MAX_BATCH.get()
    );

    loop {
        unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
        if unsafe { pg_sys::ShutdownRequestPending } != 0 {
            // Exit code 1: the postmaster restarts the worker (unless it is shutting down).
            unsafe { pg_sys::proc_exit(1) };
        }
        if unsafe { pg_sys::ConfigReloadPending } != 0 {
            unsafe {
                pg_sys::ConfigReloadPending = 0;
                pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
            }
            apply_settings(sh, &mut state);
            publish(sh, &state);
        }
        let taken = take_requests(sh);
        if taken.is_empty() {
            unsafe {
                pg_sys::WaitLatch(
                    pg_sys::MyLatch,
                    (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH)
                        as i32,
                    10_000,
                    pg_sys::PG_WAIT_EXTENSION,
                );
            }
            continue;
        }
        state.serve(sh, taken);
    }
}

unsafe extern "C-unwind" fn on_exit(_code: std::ffi::c_int, _arg: pg_sys::Datum) {
    if let Some(sh) = shmem::get() {
        sh.worker_pid.store(0, Ordering::Release);
        sh.in_progress.store(0, Ordering::Relaxed);
    }
}

struct Worker {
    cache: Lru<Key, Cached>,
    device: device::Device,
    generation: u64,
}

fn cache_limit() -> usize {
    guc::MODEL_CACHE_MB.get().max(1) as usize * 1024 * 1024
}

fn apply_settings(sh: &Shared, w: &mut Worker) {
    guc::apply();
    let evicted = w.cache.set_limit(cache_limit());
    sh.evictions
        .fetch_add(evicted.len() as u64, Ordering::Relaxed);
    sh.threads
        .store(rdl_engine::threads::configured() as u32, Ordering::Relaxed);
    sh.max_batch
        .store(guc::MAX_BATCH.get().max(1) as u32, Ordering::Relaxed);
}

/// Attaches to every posted request and validates it; drops what is not ours or whose
/// backend has already gone.
fn take_requests(sh: &Shared) -> Vec<Taken> {
    let mut out = Vec::new();
    for slot in sh.slots() {
        if slot.load(Ordering::Relaxed) == 0 {
            continue;
        }
        let word = slot.swap(0, Ordering::AcqRel);
        if word == 0 {
            continue;
        }
        let (seq, handle) = ((word >> 32) as u32, word as u32);
        // NULL when the segment is gone: its backend was cancelled before we got here.
        let seg = unsafe { pg_sys::dsm_attach(handle as pg_sys::dsm_handle) };
        if seg.is_null() {
            sh.abandoned.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let len = unsafe { pg_sys::dsm_segment_map_length(seg) };
        let base = unsafe { pg_sys::dsm_segment_address(seg).cast::<u8>() };
        let hdr = base.cast::<Header>();
        let ok = len >= std::mem::size_of::<Header>() && {
            let h = unsafe { &*hdr };
            h.seq == seq && h.valid(len)
        };
        if !ok {
            // Not a request of ours (a reused handle): leave it alone.
            unsafe { pg_sys::dsm_detach(seg) };
            continue;
        }
        let h = unsafe { &*hdr };
        let key = Key {
            db: h.db_oid,
            model_id: h.model_id,
            fingerprint: h.fingerprint,
        };
        let t = Taken {
            seg,
            hdr,
            base,
            key,
            ctxs: Vec::new(),
            status: None,
        };
        if h.backend_gone.load(Ordering::Acquire) != 0 {
            sh.abandoned.fetch_add(1, Ordering::Relaxed);
            unsafe { pg_sys::dsm_detach(seg) };
            continue;
        }
        out.push(t);
    }
    sh.in_progress.store(out.len() as u32, Ordering::Relaxed);
    out
}

/// Runs `f` with every signal blocked on this thread, so threads it creates (candle's,
/// rayon's) never receive signals meant for PostgreSQL's handlers.
fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
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

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

impl Worker {
    fn serve(&mut self, sh: &Shared, mut taken: Vec<Taken>) {
        let g = self.generation;
        // Testing aid: hold the requests (rdl.debug_worker_delay), still answering shutdown.
        let delay = taken.iter().map(|t| t.header().delay_ms).max().unwrap_or(0);
        if delay > 0 {
            let until = Instant::now() + Duration::from_millis(delay.min(60_000) as u64);
            while Instant::now() < until && unsafe { pg_sys::ShutdownRequestPending } == 0 {
                unsafe { pg_sys::pg_usleep(10_000) };
            }
        }
        // Decode; load models that were shipped; ask for models that were not.
        let mut ready: Vec<usize> = Vec::new();
        for (i, t) in taken.iter_mut().enumerate() {
            let h = unsafe { &*t.hdr };
            if h.model_len > 0 && !self.cache.contains(&t.key) {
                let bytes = unsafe {
                    std::slice::from_raw_parts(
                        t.base.add(h.model_off as usize),
                        h.model_len as usize,
                    )
                };
                match self.load(t.key, h.version, bytes) {
                    Ok(()) => {
                        sh.loads.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        let msg = format!("cannot load model {}: {e}", h.model_id);
                        t.fail(sh, &msg);
                        continue;
                    }
                }
            }
            if !self.cache.contains(&t.key) {
                sh.need_model.fetch_add(1, Ordering::Relaxed);
                t.answer(proto::NEED_MODEL);
                continue;
            }
            let payload = unsafe {
                std::slice::from_raw_parts(
                    t.base.add(h.payload_off as usize),
                    h.payload_len as usize,
                )
            };
            match wire::decode_batch(payload) {
                Ok(c) if c.len() == h.n_ctx as usize => {
                    t.ctxs = c;
                    ready.push(i);
                }
                Ok(c) => {
                    let msg = format!("{} contexts, {} announced", c.len(), h.n_ctx);
                    t.fail(sh, &msg)
                }
                Err(e) => t.fail(sh, &e.to_string()),
            }
        }
        // Merge requests per model into forward passes of at most rdl.max_batch contexts.
        let reqs: Vec<(Key, usize)> = ready
            .iter()
            .map(|&i| (taken[i].key, taken[i].ctxs.len()))
            .collect();
        let max_batch = guc::MAX_BATCH.get().max(1) as usize;
        for (key, members) in plan_batches(&reqs, max_batch) {
            let members: Vec<usize> = members.iter().map(|&m| ready[m]).collect();
            let mut all = Vec::new();
            let mut sizes = Vec::new();
            for &m in &members {
                sizes.push(taken[m].ctxs.len());
                all.append(&mut taken[m].ctxs);
            }
            let Some(c) = self.cache.get_mut(&key) else {
                continue; // cannot happen: checked above, nothing evicts in between
            };
            c.last_used_us = shmem::now_us();
            let n_out = c.model.task.n_out().max(1);
            let result =
                with_signals_blocked(|| catch_unwind(AssertUnwindSafe(|| c.model.predict(&all))));
            let outputs = match result {
                Ok(Ok(v)) if v.len() == all.len() * n_out => Ok(v),
                Ok(Ok(v)) => Err(format!("{} outputs for {} contexts", v.len(), all.len())),
                Ok(Err(e)) => Err(e.to_string()),
                Err(p) => Err(format!("panic in the model: {}", panic_message(p))),
            };
            match outputs {
                Ok(v) => {
                    let mut at = 0;
                    for (&m, &n) in members.iter().zip(&sizes) {
                        let t = &mut taken[m];
                        let (want, out_off) = (t.header().n_out as usize, t.header().out_off);
                        if want != n_out {
                            t.fail(sh, "the model's output count changed");
                            at += n * n_out;
                            continue;
                        }
                        let dst = unsafe { t.base.add(out_off as usize) };
                        for (j, x) in v[at..at + n * n_out].iter().enumerate() {
                            let b = x.to_le_bytes();
                            unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), dst.add(j * 4), 4) };
                        }
                        at += n * n_out;
                        t.answer(proto::DONE);
                    }
                    sh.passes.fetch_add(1, Ordering::Relaxed);
                    sh.requests
                        .fetch_add(members.len() as u64, Ordering::Relaxed);
                    sh.contexts.fetch_add(all.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    pgrx::log!("rdl worker: forward pass failed: {e}");
                    for &m in &members {
                        taken[m].fail(sh, &e);
                    }
                }
            }
        }
        sh.in_progress.store(0, Ordering::Relaxed);
        publish(sh, self);
        for t in taken {
            t.release(sh, g);
            unsafe { pg_sys::dsm_detach(t.seg) };
        }
    }

    fn load(&mut self, key: Key, version: i32, bytes: &[u8]) -> Result<(), String> {
        let dev = self.device.clone();
        let model = with_signals_blocked(|| {
            catch_unwind(AssertUnwindSafe(|| {
                TrainedModel::from_bytes_on(bytes, &dev)
            }))
        })
        .map_err(panic_message)?
        .map_err(|e| e.to_string())?;
        if model.fingerprint() != key.fingerprint {
            return Err("its bytes are not the model the backend holds".into());
        }
        let size = bytes.len();
        let evicted = self.cache.insert(
            key,
            Cached {
                model,
                version,
                last_used_us: shmem::now_us(),
            },
            size,
        );
        if let Some(sh) = shmem::get() {
            sh.evictions
                .fetch_add(evicted.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Publishes the cache listing for `rdl_status()`.
fn publish(sh: &Shared, w: &Worker) {
    let entries = w.cache.entries();
    sh.write_listing(|s| {
        s.cache_bytes
            .store(w.cache.used() as u64, Ordering::Relaxed);
        s.cache_limit
            .store(w.cache.limit() as u64, Ordering::Relaxed);
        s.n_cached.store(entries.len() as u32, Ordering::Relaxed);
        let n = entries.len().min(MAX_LISTED);
        s.n_listed.store(n as u32, Ordering::Relaxed);
        for (slot, (k, e)) in s.listed.iter().zip(entries.iter().take(n)) {
            slot.db_oid.store(k.db, Ordering::Relaxed);
            slot.model_id.store(k.model_id, Ordering::Relaxed);
            slot.version.store(e.value.version, Ordering::Relaxed);
            slot.bytes.store(e.size as u64, Ordering::Relaxed);
            slot.hits.store(e.hits, Ordering::Relaxed);
            slot.last_used_us
                .store(e.value.last_used_us, Ordering::Relaxed);
        }
    });
}
