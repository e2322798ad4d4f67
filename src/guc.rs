//! rdl's settings (GUCs), defined when the library loads.

use std::ffi::CString;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

/// `rdl.threads`: compute threads for training and batch scoring; 0 = one per core.
pub static THREADS: GucSetting<i32> = GucSetting::<i32>::new(0);

/// `rdl.device`: the background worker's compute device (`auto`, `cpu`, `cuda`, `cuda:N`).
pub static DEVICE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"auto"));

/// `rdl.model_cache_mb`: the background worker's model cache budget, MB.
pub static MODEL_CACHE_MB: GucSetting<i32> = GucSetting::<i32>::new(1024);

/// `rdl.max_batch`: contexts per request a backend sends, and per forward pass the worker
/// merges from concurrent requests.
pub static MAX_BATCH: GucSetting<i32> = GucSetting::<i32>::new(256);

/// `rdl.worker_timeout`: how long a backend waits for the worker's answer, ms (0: no limit).
pub static WORKER_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(60_000);

/// Whether work goes to the running worker (`rdl.use_worker`, `rdl.train_on_worker`): `auto`
/// when its device is a GPU (on a CPU its one thread pool is slower than every backend
/// computing itself), `on` always, `off` never; `true`/`false` as when it was a bool.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum WorkerChoice {
    #[name = c"auto"]
    Auto,
    #[name = c"on"]
    On,
    #[name = c"off"]
    Off,
    #[name = c"true"]
    #[hidden = true]
    True,
    #[name = c"false"]
    #[hidden = true]
    False,
}

impl WorkerChoice {
    /// Whether to use the worker; `gpu` (whether its device is one) is asked only by `auto`.
    pub fn wants(self, gpu: impl FnOnce() -> bool) -> bool {
        matches!(self, WorkerChoice::On | WorkerChoice::True)
            || (self == WorkerChoice::Auto && gpu())
    }
}

/// `rdl.use_worker`: where this session's predictions are computed when the worker runs.
pub static USE_WORKER: GucSetting<WorkerChoice> =
    GucSetting::<WorkerChoice>::new(WorkerChoice::Auto);

/// `rdl.train_on_worker`: where `rdl_train` trains when the worker runs.
pub static TRAIN_ON_WORKER: GucSetting<WorkerChoice> =
    GucSetting::<WorkerChoice>::new(WorkerChoice::Auto);

/// `rdl.in_context`: whether `rdl_predict` answers a task with no trained model in context.
pub static IN_CONTEXT: GucSetting<bool> = GucSetting::<bool>::new(false);

/// `rdl.max_memory_mb`: what one call may hold in gathered and encoded contexts, MB.
pub static MAX_MEMORY_MB: GucSetting<i32> = GucSetting::<i32>::new(2048);

/// `rdl.max_memory_ceiling_mb` (superuser): how high an ordinary role may set
/// `rdl.max_memory_mb`. Rust aborts the process when an allocation fails, and an abort of
/// one backend restarts the whole cluster: what a call may hold is the server's decision.
pub static MAX_MEMORY_CEILING_MB: GucSetting<i32> = GucSetting::<i32>::new(4096);

/// `rdl.worker_max_trainings`: trainings the background worker runs at once.
pub static WORKER_MAX_TRAININGS: GucSetting<i32> = GucSetting::<i32>::new(1);

/// `rdl.debug_worker_delay`: a testing aid — the worker holds each of this session's
/// requests this long before computing (superuser only, not shown). 0: off.
pub static DEBUG_WORKER_DELAY_MS: GucSetting<i32> = GucSetting::<i32>::new(0);

pub fn init() {
    GucRegistry::define_int_guc(
        c"rdl.threads",
        c"Threads rdl's model computations use (0: one per CPU core).",
        c"Training and large batches of predictions use this many threads; predictions of a few entities use one, which is faster for them.",
        &THREADS,
        0,
        1024,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"rdl.device",
        c"Compute device of rdl's background worker: auto, cpu, cuda or cuda:N.",
        c"Used when rdl is in shared_preload_libraries; auto picks the first GPU when rdl was built with CUDA and one is present, else the CPU. Backends computing in-process always use the CPU.",
        &DEVICE,
        // PostgreSQL refuses (FATAL) a PGC_POSTMASTER variable defined after startup, i.e.
        // when rdl is loaded by a backend rather than preloaded; there it is informational.
        if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
            GucContext::Postmaster
        } else {
            GucContext::Suset
        },
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rdl.model_cache_mb",
        c"Memory rdl's background worker keeps loaded models in (least recently used evicted).",
        c"The most recently used model stays loaded even when it alone is larger.",
        &MODEL_CACHE_MB,
        1,
        1 << 20,
        GucContext::Sighup,
        GucFlags::UNIT_MB,
    );
    GucRegistry::define_int_guc(
        c"rdl.max_batch",
        c"Contexts per forward pass of rdl's background worker.",
        c"A backend splits a larger request into pieces of this many contexts; the worker merges concurrent requests for one model up to this many contexts into one forward pass.",
        &MAX_BATCH,
        1,
        4096,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rdl.worker_timeout",
        c"How long a backend waits for rdl's background worker to answer (0: no limit).",
        c"After it, the prediction fails with an error; cancel and statement_timeout interrupt the wait too.",
        &WORKER_TIMEOUT_MS,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_enum_guc(
        c"rdl.use_worker",
        c"Where this session's predictions are computed when rdl's background worker runs: auto, on, off.",
        c"auto: on the worker when its device is a GPU, else in this backend on the CPU (faster there: the worker's one pool of threads would serve every backend); on: always on the worker; off: always in this backend.",
        &USE_WORKER,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"rdl.train_on_worker",
        c"Where rdl_train trains when the background worker runs: auto, on, off.",
        c"auto: on the worker's device when it is a GPU, else in the calling backend on the CPU; on: always on the worker; off: always in the backend.",
        &TRAIN_ON_WORKER,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"rdl.in_context",
        c"Whether rdl_predict answers a task that has no trained model from rdl's pretrained in-context model.",
        c"Off: such a task raises 55000 until it is trained. The zero-shot answers are not yet as accurate as a trained model (see the README).",
        &IN_CONTEXT,
        GucContext::Userset,
        GucFlags::default(),
    );
    init_memory();
}

/// The memory settings and the rest.
fn init_memory() {
    // Defined before rdl.max_memory_mb, whose check reads it.
    GucRegistry::define_int_guc(
        c"rdl.max_memory_ceiling_mb",
        c"The highest rdl.max_memory_mb a role that is not a superuser may set.",
        c"An allocation that fails aborts the backend, which restarts the whole cluster: the server decides what one call may hold.",
        &MAX_MEMORY_CEILING_MB,
        1,
        1 << 20,
        GucContext::Suset,
        GucFlags::UNIT_MB,
    );
    // SAFETY: the check hook is pg_guard'ed and only reads settings.
    unsafe {
        GucRegistry::define_int_guc_with_hooks(
            c"rdl.max_memory_mb",
            c"Memory one rdl call may hold in contexts (gathered rows, encoded tokens).",
            c"Training that would need more is refused before it gathers, with a hint; predictions and evaluations gather in pieces small enough to fit. Like work_mem, it bounds one call of one session; roles that are not superusers may set it up to rdl.max_memory_ceiling_mb.",
            &MAX_MEMORY_MB,
            1,
            1 << 20,
            GucContext::Userset,
            GucFlags::UNIT_MB,
            Some(check_max_memory),
            None,
            None,
        );
    }
    GucRegistry::define_int_guc(
        c"rdl.worker_max_trainings",
        c"Trainings rdl's background worker runs at once.",
        c"A training asked of the worker beyond this runs in the calling backend instead. Each holds its contexts in the worker's memory.",
        &WORKER_MAX_TRAININGS,
        0,
        64,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"rdl.debug_worker_delay",
        c"Testing aid: the worker holds this session's requests this long.",
        c"For tests of cancellation and timeouts only.",
        &DEBUG_WORKER_DELAY_MS,
        0,
        60_000,
        GucContext::Suset,
        GucFlags::UNIT_MS | GucFlags::NO_SHOW_ALL,
    );
}

/// Hands the settings to the engine; called at the start of every computation.
pub fn apply() {
    rdl_engine::threads::configure(THREADS.get().max(0) as usize);
}

/// `rdl.device` as set.
pub fn device_setting() -> String {
    DEVICE
        .get()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|| "auto".into())
}

/// Refuses an `rdl.max_memory_mb` above the ceiling unless a superuser (or the server's
/// own configuration) sets it.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_max_memory(
    newval: *mut std::ffi::c_int,
    _extra: *mut *mut std::ffi::c_void,
    source: pgrx::pg_sys::GucSource::Type,
) -> bool {
    use pgrx::pg_sys;
    // SAFETY: PostgreSQL passes a valid pointer to the proposed value.
    let v = unsafe { *newval };
    let ceiling = MAX_MEMORY_CEILING_MB.get();
    if v <= ceiling || source <= pg_sys::GucSource::PGC_S_ARGV || unsafe { pg_sys::superuser() } {
        return true;
    }
    let detail = format!(
        "rdl.max_memory_ceiling_mb is {ceiling} MB; only a superuser may set rdl.max_memory_mb above it."
    );
    // SAFETY: the message strings are palloc'd in the current context, as GUC_check_errdetail does.
    unsafe {
        pg_sys::GUC_check_errcode(pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE as i32);
        let c = std::ffi::CString::new(detail).unwrap_or_default();
        pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(c.as_ptr());
    }
    false
}

/// `rdl.max_memory_mb` in bytes; never above the ceiling for a role that is not a
/// superuser (a ceiling lowered after a session set its value still holds).
pub fn max_memory_bytes() -> usize {
    let mut mb = MAX_MEMORY_MB.get().max(1);
    let ceiling = MAX_MEMORY_CEILING_MB.get().max(1);
    if mb > ceiling && !unsafe { pgrx::pg_sys::superuser() } {
        mb = ceiling;
    }
    (mb as usize) << 20
}
