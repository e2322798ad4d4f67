//! The background worker: owns the compute device and the model cache, and answers
//! backends' requests, merging concurrent ones into forward passes.
//!
//! It has no database connection (it cannot read every database): backends gather and
//! encode contexts as the calling user — privileges, RLS and their snapshot apply — and
//! send the encoded batch; a model the worker does not hold is shipped once by the first
//! backend that needs it. Models are keyed by (database, `rdl.models.id`, fingerprint):
//! the fingerprint tells two models apart that share an id across a re-created extension.
//!
//! Threads: the main thread alone talks to PostgreSQL (requests, segments, settings, the
//! model cache). Forward passes run on the compute threads of [`super::pool`], trainings
//! on threads of their own ([`super::training`]); all are created with every signal
//! blocked, so PostgreSQL's signal handlers only ever run on the main thread, and all are
//! stopped before the process exits (a thread must not outlive the segments it writes to).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use pgrx::pg_sys;
use rdl_engine::device::{self, DeviceSpec};
use rdl_engine::serve::wire;
use rdl_engine::serve::{panic_message, Lru};
use rdl_engine::train::TrainedModel;

use super::pool::{self, Job, Pool};
use super::request::{with_signals_blocked, Key, Taken};
use super::shmem::{self, put_str, ListedModel, Shared};
use super::training::Trainings;
use crate::guc;
use rdl_engine::serve::protocol::{self as proto, Header};

extern "C-unwind" {
    // PostgreSQL's own handlers, called directly (not through pgrx's wrappers, which
    // check the calling thread): they only set a flag and the process latch.
    fn SignalHandlerForConfigReload(signal: std::ffi::c_int);
    fn SignalHandlerForShutdownRequest(signal: std::ffi::c_int);
}

struct Cached {
    model: Arc<TrainedModel>,
    version: i32,
    last_used_us: i64,
}

struct Worker {
    cache: Lru<Key, Cached>,
    device: device::Device,
    generation: u64,
    pool: Pool,
    trainings: Trainings,
}

/// The running worker's state, for the exit callback (which runs on the main thread,
/// inside `proc_exit`, while `rdl_worker_main`'s frame — which owns it — is alive).
static mut WORKER: *mut Worker = std::ptr::null_mut();

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
    guc::apply();
    // candle's kernels share rayon's pool: size it from rdl.threads now (a first forward
    // pass on one thread would size it to one for good).
    with_signals_blocked(rdl_engine::threads::init_pool);
    let generation = sh.generation.fetch_add(1, Ordering::AcqRel) + 1;
    let n_threads = rdl_engine::threads::configured();
    let pool = pool::start(n_threads, generation, unsafe { pg_sys::MyLatch });
    let mut state = Worker {
        cache: Lru::new(cache_limit()),
        device: opened.device.clone(),
        generation,
        trainings: Trainings::new(opened.device, generation),
        pool,
    };
    unsafe {
        WORKER = &raw mut state;
        pg_sys::before_shmem_exit(Some(on_exit), pg_sys::Datum::from(0));
    }
    apply_settings(sh, &mut state);
    sh.write_listing(|s| {
        put_str(&s.device, &opened.name);
        put_str(&s.device_note, note.as_deref().unwrap_or(""));
    });
    sh.threads
        .store(state.pool.threads() as u32, Ordering::Relaxed);
    sh.started_at_us.store(shmem::now_us(), Ordering::Relaxed);
    sh.in_progress.store(0, Ordering::Relaxed);
    sh.worker_procno
        .store(unsafe { (*pg_sys::MyProc).pgprocno }, Ordering::Release);
    sh.worker_pid
        .store(unsafe { pg_sys::MyProcPid }, Ordering::Release);
    publish(sh, &state);
    pgrx::log!(
        "rdl worker started: device {}, {} compute threads, model cache {} MB, max batch {}",
        opened.name,
        state.pool.threads(),
        guc::MODEL_CACHE_MB.get(),
        guc::MAX_BATCH.get()
    );

    loop {
        unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
        if unsafe { pg_sys::ShutdownRequestPending } != 0 {
            // Exit code 1: the postmaster restarts the worker (unless it is shutting down).
            // The exit callback stops the threads first.
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
        state.trainings.poll(sh);
        let done = state.pool.take_done();
        let had_done = !done.is_empty();
        for j in done {
            j.taken.detach();
        }
        let (trains, predicts): (Vec<Taken>, Vec<Taken>) = take_requests(sh)
            .into_iter()
            .partition(|t| t.header().kind == proto::KIND_TRAIN);
        for t in trains {
            state.trainings.start(sh, t);
        }
        if !predicts.is_empty() {
            state.dispatch(sh, predicts);
        } else if had_done {
            publish(sh, &state); // uses of the cached models
        } else {
            // While trainings run, look at them 10 times a second.
            let timeout = if state.trainings.is_empty() {
                10_000
            } else {
                100
            };
            unsafe {
                pg_sys::WaitLatch(
                    pg_sys::MyLatch,
                    (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH)
                        as i32,
                    timeout,
                    pg_sys::PG_WAIT_EXTENSION,
                );
            }
        }
    }
}

unsafe extern "C-unwind" fn on_exit(_code: std::ffi::c_int, _arg: pg_sys::Datum) {
    if let Some(sh) = shmem::get() {
        sh.worker_pid.store(0, Ordering::Release);
    }
    unsafe {
        if let Some(w) = WORKER.as_mut() {
            w.pool.stop();
            w.trainings.stop();
        }
        WORKER = std::ptr::null_mut();
    }
    if let Some(sh) = shmem::get() {
        sh.in_progress.store(0, Ordering::Relaxed);
        sh.waiting.store(0, Ordering::Relaxed);
        sh.trainings_running.store(0, Ordering::Relaxed);
    }
}

fn cache_limit() -> usize {
    guc::MODEL_CACHE_MB.get().max(1) as usize * 1024 * 1024
}

fn apply_settings(sh: &Shared, w: &mut Worker) {
    guc::apply();
    let evicted = w.cache.set_limit(cache_limit());
    sh.evictions
        .fetch_add(evicted.len() as u64, Ordering::Relaxed);
    let max_batch = guc::MAX_BATCH.get().max(1) as usize;
    w.pool.set_max_batch(max_batch);
    sh.max_batch.store(max_batch as u32, Ordering::Relaxed);
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
        if h.backend_gone.load(Ordering::Acquire) != 0 {
            sh.abandoned.fetch_add(1, Ordering::Relaxed);
            unsafe { pg_sys::dsm_detach(seg) };
            continue;
        }
        out.push(Taken {
            seg,
            hdr,
            base,
            key: Key {
                db: h.db_oid,
                model_id: h.model_id,
                fingerprint: h.fingerprint,
            },
            ctxs: Vec::new(),
            status: None,
        });
    }
    out
}

impl Worker {
    /// Loads the models that were shipped, asks for those that were not, decodes the
    /// contexts and queues the requests for the compute threads.
    fn dispatch(&mut self, sh: &Shared, taken: Vec<Taken>) {
        let g = self.generation;
        let mut jobs = Vec::new();
        let mut answered = Vec::new();
        for mut t in taken {
            let h = t.header();
            let (model_off, model_len, version) = (h.model_off, h.model_len, h.version);
            if model_len > 0 && !self.cache.contains(&t.key) {
                let bytes = unsafe {
                    std::slice::from_raw_parts(t.base.add(model_off as usize), model_len as usize)
                };
                match self.load(sh, t.key, version, bytes) {
                    Ok(()) => {
                        sh.loads.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        let msg = format!("cannot load model {}: {e}", t.key.model_id);
                        t.fail(sh, &msg);
                        answered.push(t);
                        continue;
                    }
                }
            }
            let now = shmem::now_us();
            let used = self.cache.get_mut(&t.key).map(|c| {
                c.last_used_us = now;
                c.model.clone()
            });
            let Some(model) = used else {
                sh.need_model.fetch_add(1, Ordering::Relaxed);
                t.answer(proto::NEED_MODEL);
                answered.push(t);
                continue;
            };
            let h = t.header();
            let payload = unsafe {
                std::slice::from_raw_parts(
                    t.base.add(h.payload_off as usize),
                    h.payload_len as usize,
                )
            };
            let n_ctx = h.n_ctx as usize;
            match wire::decode_batch(payload) {
                Ok(c) if c.len() == n_ctx => {
                    t.ctxs = c;
                    jobs.push(Job { taken: t, model });
                }
                Ok(c) => {
                    let msg = format!("{} contexts, {} announced", c.len(), n_ctx);
                    t.fail(sh, &msg);
                    answered.push(t);
                }
                Err(e) => {
                    t.fail(sh, &e.to_string());
                    answered.push(t);
                }
            }
        }
        // The listing shows newly loaded models before any answer goes out.
        publish(sh, self);
        for t in answered {
            t.release(sh, g);
            t.detach();
        }
        sh.in_progress
            .fetch_add(jobs.len() as u32, Ordering::Relaxed);
        self.pool.submit(jobs);
    }

    fn load(&mut self, sh: &Shared, key: Key, version: i32, bytes: &[u8]) -> Result<(), String> {
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
        let evicted = self.cache.insert(
            key,
            Cached {
                model: Arc::new(model),
                version,
                last_used_us: shmem::now_us(),
            },
            bytes.len(),
        );
        sh.evictions
            .fetch_add(evicted.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Publishes the cache listing for `rdl_status()`.
fn publish(sh: &Shared, w: &Worker) {
    let entries = w.cache.entries();
    let models = entries.iter().map(|(k, e)| ListedModel {
        db_oid: k.db,
        model_id: k.model_id,
        version: e.value.version,
        bytes: e.size as u64,
        hits: e.hits,
        last_used_us: e.value.last_used_us,
    });
    sh.publish_cache((w.cache.used(), w.cache.limit()), entries.len(), models);
}
