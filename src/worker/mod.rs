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
    let show = |db: u32, id: i64| {
        visible
            .as_ref()
            .is_none_or(|v| db == this_db && v.contains(&id))
    };
    let mut out = sh.status(pid, &show, &database_name);
    let started = pid.and_then(|_| iso_time(sh.started_at_us.load(Ordering::Relaxed)));
    let mode = match pid.is_some() && client::wanted(sh, use_worker) {
        true => "worker",
        false => "in-process",
    };
    let train_on_worker = crate::guc::TRAIN_ON_WORKER.get();
    for (k, v) in [
        ("preloaded", json!(true)),
        ("mode", json!(mode)),
        ("worker_started_at", json!(started)),
        ("device_setting", json!(crate::guc::device_setting())),
        (
            "use_worker",
            json!(format!("{use_worker:?}").to_lowercase()),
        ),
        (
            "train_on_worker",
            json!(format!("{train_on_worker:?}").to_lowercase()),
        ),
    ] {
        out.insert(k.into(), v);
    }
    JsonB(serde_json::Value::Object(out))
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
