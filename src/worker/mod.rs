//! rdl's background worker: with `shared_preload_libraries = 'rdl'`, one process owns the
//! compute device (one CUDA context for the whole server, not one per backend) and a cache
//! of loaded models, and scores the contexts every backend gathers.
//!
//! - `shmem`: fixed shared memory — the worker's identity, counters, cache listing, and
//!   one request slot per backend.
//! - `rdl_engine::serve::protocol`: a request — one DSM segment holding the request and
//!   its answer (why not `shm_mq`: see there).
//! - `client`: the backend's side ([`predict`]), waiting interruptibly on its latch.
//! - `server`: the worker's main loop (requests, model cache, settings).
//! - `request`: a request taken by the worker, and the helpers its threads share.
//! - `pool`: its compute threads, merging concurrent requests into forward passes.
//! - `training`: trainings on the worker's device (`rdl.train_on_worker`).
//!
//! Without preloading nothing here runs: [`predict`] answers `None` and the caller computes
//! in-process on the CPU. Nothing touches threads or devices in the postmaster: `_PG_init`
//! only installs shared-memory hooks and registers the worker.

mod client;
mod pool;
mod request;
mod server;
mod shmem;
mod training;

use std::sync::atomic::Ordering;
use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::prelude::*;
use pgrx::JsonB;
use rdl_engine::encode::{EncodedContext, Encoder};
use rdl_engine::model::ModelConfig;
use rdl_engine::pipeline::Offload;
use rdl_engine::train::{Progress, TrainConfig, TrainError, TrainedModel};
use serde_json::json;

use shmem::Process;

/// Registers the worker and its shared memory; `_PG_init` calls it only while
/// `shared_preload_libraries` is being processed (in the postmaster).
pub fn register() {
    shmem::install_hooks();
    BackgroundWorkerBuilder::new("rdl worker")
        .set_type("rdl worker")
        .set_library("rdl")
        .set_function("rdl_worker_main")
        .enable_shmem_access(None)
        // No database is needed: it can start with the postmaster, on a standby too.
        .set_start_time(BgWorkerStartTime::PostmasterStart)
        // Restarted a second after it exits (an ERROR, pg_terminate_backend); after a
        // crash the postmaster restarts it with the rest of the server.
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
}

/// The background worker as the engine sees it: where training and scoring may run
/// instead of this backend. Each method answers `None` (compute here) when no worker
/// serves this session (not preloaded, not running, `rdl.use_worker` off), or, for
/// training, when `rdl.train_on_worker` keeps it here.
pub struct Worker;

impl Offload for Worker {
    fn train(
        &self,
        cfg: &TrainConfig,
        model_cfg: &ModelConfig,
        encoder: &Encoder,
        train: &[EncodedContext],
        val: &[EncodedContext],
        on_step: &mut dyn FnMut(&Progress) -> bool,
    ) -> Option<Result<TrainedModel, TrainError>> {
        client::train(cfg, model_cfg, encoder, train, val, on_step)
    }

    fn score(
        &self,
        model_id: i64,
        version: i32,
        model: &TrainedModel,
        ctxs: &[EncodedContext],
    ) -> Option<rdl_engine::pipeline::Result<Vec<Vec<f64>>>> {
        client::predict(model_id, version, model, ctxs).map(Ok)
    }
}

fn database_name(oid: u32) -> Option<String> {
    unsafe {
        let p = pg_sys::get_database_name(pg_sys::Oid::from(oid));
        if p.is_null() {
            None
        } else {
            Some(std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
        }
    }
}

fn iso_time(us: i64) -> Option<serde_json::Value> {
    if us == 0 {
        return None;
    }
    serde_json::to_value(crate::pgtime::to_pg(us)).ok()
}

/// The background worker's state: whether rdl is preloaded, the worker's pid and device,
/// the models it holds, its queue and its counters.
#[pg_extern(volatile, parallel_safe)]
fn rdl_status() -> JsonB {
    let use_worker = crate::guc::USE_WORKER.get();
    let Some(sh) = shmem::get() else {
        return JsonB(json!({
            "preloaded": false,
            "mode": "in-process",
            "worker_pid": null,
            "device": "cpu",
            "hint": "Add rdl to shared_preload_libraries (and restart) to serve predictions from one background worker.",
        }));
    };
    let pid = sh.live_worker();
    let (device, note, listed, cache_bytes, cache_limit, n_cached) = sh.read_listing(|s| {
        let n = (s.n_listed.load(Ordering::Relaxed) as usize).min(shmem::MAX_LISTED);
        let listed: Vec<(u32, i64, i32, u64, u64, i64)> = s.listed[..n]
            .iter()
            .map(|l| {
                (
                    l.db_oid.load(Ordering::Relaxed),
                    l.model_id.load(Ordering::Relaxed),
                    l.version.load(Ordering::Relaxed),
                    l.bytes.load(Ordering::Relaxed),
                    l.hits.load(Ordering::Relaxed),
                    l.last_used_us.load(Ordering::Relaxed),
                )
            })
            .collect();
        (
            shmem::get_str(&s.device),
            shmem::get_str(&s.device_note),
            listed,
            s.cache_bytes.load(Ordering::Relaxed),
            s.cache_limit.load(Ordering::Relaxed),
            s.n_cached.load(Ordering::Relaxed),
        )
    });
    let now = shmem::now_us();
    // The worker serves every database: a role that is not a superuser sees only the
    // models of this database that row-level security lets it see (tasks it may use).
    let visible: Option<std::collections::HashSet<i64>> = if unsafe { pg_sys::superuser() } {
        None
    } else {
        Some(crate::sql::connect(|c| {
            crate::error::spi(c.select("SELECT m.id FROM rdl.models m", None, &[]))
                .filter_map(|r| crate::error::spi(r.get::<i64>(1)))
                .collect()
        }))
    };
    let this_db = unsafe { pg_sys::MyDatabaseId.to_u32() };
    let models: Vec<serde_json::Value> = listed
        .into_iter()
        .filter(|(db, id, ..)| {
            visible
                .as_ref()
                .is_none_or(|v| *db == this_db && v.contains(id))
        })
        .map(|(db, id, version, bytes, hits, last)| {
            json!({
                "database": database_name(db),
                "model_id": id,
                "version": version,
                "bytes": bytes,
                "uses": hits,
                "idle_s": if last > 0 { Some(((now - last).max(0) as f64 / 1e6 * 10.0).round() / 10.0) } else { None },
            })
        })
        .collect();
    let passes = sh.passes.load(Ordering::Relaxed);
    let requests = sh.requests.load(Ordering::Relaxed);
    let contexts = sh.contexts.load(Ordering::Relaxed);
    let mean = |x: u64| {
        if passes == 0 {
            None
        } else {
            Some((x as f64 / passes as f64 * 100.0).round() / 100.0)
        }
    };
    JsonB(json!({
        "preloaded": true,
        "mode": if pid.is_some() && use_worker { "worker" } else { "in-process" },
        "worker_pid": pid,
        "worker_started_at": pid.and_then(|_| iso_time(sh.started_at_us.load(Ordering::Relaxed))),
        "worker_starts": sh.generation.load(Ordering::Relaxed),
        "device": if pid.is_some() { Some(device) } else { None },
        "device_setting": crate::guc::device_setting(),
        "device_note": if note.is_empty() { None } else { Some(note) },
        "threads": sh.threads.load(Ordering::Relaxed),
        "max_batch": sh.max_batch.load(Ordering::Relaxed),
        "cached_models": models,
        "cached_model_count": n_cached,
        "cache_bytes": cache_bytes,
        "cache_limit_bytes": cache_limit,
        "queue_depth": sh.queued(),
        "in_progress": sh.in_progress.load(Ordering::Relaxed)
            .saturating_sub(sh.waiting.load(Ordering::Relaxed)),
        "requests_served": requests,
        "contexts_served": contexts,
        "forward_passes": passes,
        "mean_batch_size": mean(requests),
        "mean_batch_contexts": mean(contexts),
        "models_loaded": sh.loads.load(Ordering::Relaxed),
        "model_requests": sh.need_model.load(Ordering::Relaxed),
        "evictions": sh.evictions.load(Ordering::Relaxed),
        "requests_abandoned": sh.abandoned.load(Ordering::Relaxed),
        "trainings": sh.trainings.load(Ordering::Relaxed),
        "trainings_running": sh.trainings_running.load(Ordering::Relaxed),
        "train_on_worker": match crate::guc::TRAIN_ON_WORKER.get() {
            crate::guc::TrainOnWorker::Auto => "auto",
            crate::guc::TrainOnWorker::On => "on",
            crate::guc::TrainOnWorker::Off => "off",
        },
        "errors": sh.errors.load(Ordering::Relaxed),
    }))
}

/// Restarts the background worker (superuser): it exits, dropping its model cache and
/// releasing the device, and the postmaster starts a fresh one a second later. Returns the
/// pid it signalled, NULL when no worker runs. (`pg_terminate_backend` does not apply: the
/// worker is not a backend.)
#[pg_extern(volatile)]
fn rdl_worker_restart() -> Option<i32> {
    if !unsafe { pg_sys::superuser() } {
        crate::error::RdlError::new("42501", "permission denied to restart rdl's worker")
            .hint("Only a superuser may restart it.")
            .raise()
    }
    let pid = shmem::get()?.live_worker()?;
    // SAFETY: the pid is the worker's (just checked); SIGTERM asks it to exit.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    Some(pid)
}
