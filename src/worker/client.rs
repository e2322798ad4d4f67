//! The backend's side: send encoded contexts to the worker and wait for its outputs.

use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use pgrx::pg_sys;
use rdl_engine::encode::{EncodedContext, Encoder};
use rdl_engine::model::ModelConfig;
use rdl_engine::serve::{self, wire};
use rdl_engine::train::{Progress, TrainConfig, TrainError, TrainedModel};

use super::shmem::{self, Process, Shared};
use crate::error::RdlError;
use crate::guc;
use rdl_engine::serve::protocol::{self as proto, Header, Prediction};

enum Answer {
    Outputs(Vec<f32>),
    NeedModel,
    Failed(String),
}

/// The model's calibrated outputs per context, computed by the background worker; `None`
/// when there is no worker to ask (not preloaded, not running, `rdl.use_worker` off) or it
/// went away while this backend waited — the caller then computes in-process.
pub fn predict(
    model_id: i64,
    version: i32,
    model: &TrainedModel,
    ctxs: &[EncodedContext],
) -> Option<Vec<Vec<f64>>> {
    if ctxs.is_empty() {
        return None;
    }
    let sh = shmem::get()?;
    sh.live_worker()?;
    if !wanted(sh, guc::USE_WORKER.get()) {
        return None;
    }
    let procno = my_slot(sh)?;
    let n_out = model.head.n_out().max(1);
    let fingerprint = model.fingerprint();
    let max_batch = guc::MAX_BATCH.get().max(1) as usize;
    let mut model_bytes: Option<Vec<u8>> = None;
    let mut out = Vec::with_capacity(ctxs.len());
    // A request larger than rdl.max_batch is sent in pieces.
    for r in serve::chunks(ctxs.len(), max_batch) {
        let payload = wire::encode_batch(&ctxs[r.clone()]);
        let req = Prediction {
            model_id,
            version,
            fingerprint,
            n_ctx: r.len(),
            n_out,
            payload: &payload,
        };
        let mut answer = roundtrip(sh, procno, &req, model_bytes.as_deref())?;
        if let Answer::NeedModel = answer {
            // The worker has not loaded this model (first use, evicted, or restarted):
            // ship it once, with the same request.
            let bytes = model_bytes.get_or_insert_with(|| {
                model
                    .to_bytes()
                    .unwrap_or_else(|e| crate::error::raise(rdl_engine::pipeline::Error::from(e)))
            });
            answer = roundtrip(sh, procno, &req, Some(bytes))?;
        }
        match answer {
            Answer::Outputs(v) => out.extend(
                v.chunks(n_out)
                    .map(|c| c.iter().map(|&x| x as f64).collect::<Vec<f64>>()),
            ),
            Answer::NeedModel => RdlError::new(
                "XX000",
                "rdl's background worker did not load the model it was sent",
            )
            .hint("See the server log; SET rdl.use_worker = off computes in this backend.")
            .raise(),
            Answer::Failed(msg) => RdlError::new("XX000", format!("rdl worker: {msg}"))
                .hint("See the server log; SET rdl.use_worker = off computes in this backend.")
                .raise(),
        }
    }
    Some(out)
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn next_seq() -> u32 {
    loop {
        let s = SEQ.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        if s != 0 {
            return s;
        }
    }
}

/// Runs when this backend detaches the segment — after its answer, or when an error or
/// cancel aborts the transaction (the resource owner detaches) — so the worker knows
/// nobody will read the answer.
unsafe extern "C-unwind" fn mark_gone(_seg: *mut pg_sys::dsm_segment, arg: pg_sys::Datum) {
    let h = arg.value() as *const Header;
    unsafe { (*h).backend_gone.store(1, Ordering::Release) };
}

/// Posts one request and waits for its answer; `None` when the worker went away.
fn roundtrip(sh: &Shared, procno: i32, req: &Prediction, model: Option<&[u8]>) -> Option<Answer> {
    let model_len = model.map_or(0, <[u8]>::len);
    let out_len = req.n_ctx * req.n_out * 4;
    let lay = proto::layout(model_len, req.payload.len(), out_len);
    // SAFETY: plain PostgreSQL calls on the main thread; the segment belongs to the
    // current resource owner, so an ERROR (cancel included) detaches it.
    let seg =
        unsafe { pg_sys::dsm_create(lay.total, pg_sys::DSM_CREATE_NULL_IF_MAXSEGMENTS as i32) };
    if seg.is_null() {
        return None; // out of segment slots: compute in-process
    }
    let base = unsafe { pg_sys::dsm_segment_address(seg).cast::<u8>() };
    let hdr = base.cast::<Header>();
    let seq = next_seq();
    unsafe {
        ptr::write_bytes(base, 0, std::mem::size_of::<Header>());
        let (from, db) = ((pg_sys::MyProcPid, procno), pg_sys::MyDatabaseId.to_u32());
        (*hdr).begin(proto::KIND_PREDICT, seq, from, db);
        (*hdr).describe_prediction(req, &lay, model_len);
        (*hdr).delay_ms = guc::DEBUG_WORKER_DELAY_MS.get().max(0) as u32;
        if let Some(m) = model {
            ptr::copy_nonoverlapping(m.as_ptr(), base.add(lay.model_off), m.len());
        }
        ptr::copy_nonoverlapping(
            req.payload.as_ptr(),
            base.add(lay.payload_off),
            req.payload.len(),
        );
        pg_sys::on_dsm_detach(seg, Some(mark_gone), pg_sys::Datum::from(hdr as usize));
    }
    let posted = Posted::post(sh, procno, seq, seg);

    let timeout_ms = guc::WORKER_TIMEOUT_MS.get().max(0) as u128;
    let t0 = Instant::now();
    let h = unsafe { &*hdr };
    let status = loop {
        unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
        let st = h.status();
        if st != proto::PENDING {
            break Some(st);
        }
        if posted.worker_gone(sh) {
            // The worker exited or was restarted: this request is lost (a new worker may
            // still have taken it; its answer would go unread). Compute in-process.
            break None;
        }
        let waited = t0.elapsed().as_millis();
        if timeout_ms > 0 && waited >= timeout_ms {
            posted.withdraw(sh);
            unsafe { pg_sys::dsm_detach(seg) };
            RdlError::new(
                "57014",
                format!(
                    "rdl's background worker did not answer within rdl.worker_timeout ({timeout_ms} ms)"
                ),
            )
            .hint("The worker is overloaded or stuck: see rdl_status(). SET rdl.use_worker = off computes in this backend.")
            .raise()
        }
        let mut wait = 100u128;
        if timeout_ms > 0 {
            wait = wait.min(timeout_ms - waited);
        }
        wait_latch(wait.max(1) as std::ffi::c_long);
        // Cancel, statement_timeout, termination: an ERROR here aborts the transaction,
        // whose resource owner detaches the segment; the worker sees the backend gone.
        pgrx::check_for_interrupts!();
    };
    // The answer's header comes back from another process: it must still describe the
    // request this backend posted before anything is read through it.
    let answer = status.map(|st| match st {
        proto::DONE if !h.answers(req, &lay) => {
            Answer::Failed("the worker's answer does not match the request".into())
        }
        // SAFETY: the worker wrote `out_len` bytes of outputs there.
        proto::DONE => Answer::Outputs(wire::outputs_le(unsafe {
            std::slice::from_raw_parts(base.add(lay.out_off), out_len)
        })),
        proto::NEED_MODEL => Answer::NeedModel,
        _ => Answer::Failed(h.error()),
    });
    unsafe { pg_sys::dsm_detach(seg) };
    answer
}

/// Whether this session sends work to the worker, as `choice` says for its device.
pub fn wanted(sh: &Shared, choice: guc::WorkerChoice) -> bool {
    choice.wants(|| {
        sh.read_listing(|s| shmem::get_str(&s.device))
            .starts_with("cuda")
    })
}

/// Trains on the background worker's device, relaying its progress to `on_step` (on this
/// thread, between waits: NOTICEs, `rdl.runs` rows and cancel checks happen here). `None`
/// when training stays in this backend (no worker, or `rdl.train_on_worker` says so).
pub fn train(
    cfg: &TrainConfig,
    model_cfg: &ModelConfig,
    encoder: &Encoder,
    train: &[EncodedContext],
    val: &[EncodedContext],
    on_step: &mut dyn FnMut(&Progress) -> bool,
) -> Option<Result<TrainedModel, TrainError>> {
    let sh = shmem::get()?;
    sh.live_worker()?;
    if !wanted(sh, guc::TRAIN_ON_WORKER.get()) {
        return None;
    }
    let procno = my_slot(sh)?;
    let [config, train_b, val_b] = proto::encode_training((cfg, model_cfg, encoder), train, val)?;
    let lay = proto::train_layout(config.len(), train_b.len(), val_b.len());
    let seg =
        unsafe { pg_sys::dsm_create(lay.total, pg_sys::DSM_CREATE_NULL_IF_MAXSEGMENTS as i32) };
    if seg.is_null() {
        return None;
    }
    // rdl_train commits its progress rows between steps (in on_step): the segment must not
    // belong to the transaction's resource owner, which would unmap it at the first
    // commit. Pinned to the session instead, and detached by the guard on every path —
    // an ERROR (cancel) unwinds through it.
    unsafe { pg_sys::dsm_pin_mapping(seg) };
    let _detach = DetachOnDrop(seg);
    let device = sh.read_listing(|s| shmem::get_str(&s.device));
    pgrx::notice!(
        "rdl_train: training on the background worker ({device}), {} MB sent",
        lay.total / (1024 * 1024)
    );
    let base = unsafe { pg_sys::dsm_segment_address(seg).cast::<u8>() };
    let hdr = base.cast::<Header>();
    let seq = next_seq();
    unsafe {
        ptr::write_bytes(base, 0, std::mem::size_of::<Header>());
        ptr::write_bytes(
            base.add(lay.area_off),
            0,
            std::mem::size_of::<proto::TrainArea>(),
        );
        let h = &mut *hdr;
        h.begin(
            proto::KIND_TRAIN,
            seq,
            (pg_sys::MyProcPid, procno),
            pg_sys::MyDatabaseId.to_u32(),
        );
        h.describe_training(
            &lay,
            train.len(),
            [config.len(), train_b.len(), val_b.len()],
        );
        for (off, b) in [
            (lay.config_off, &config),
            (lay.train_off, &train_b),
            (lay.val_off, &val_b),
        ] {
            ptr::copy_nonoverlapping(b.as_ptr(), base.add(off), b.len());
        }
        pg_sys::on_dsm_detach(seg, Some(mark_gone), pg_sys::Datum::from(hdr as usize));
    }
    drop((config, train_b, val_b));
    let area = unsafe { &*base.add(lay.area_off).cast::<proto::TrainArea>() };
    let posted = Posted::post(sh, procno, seq, seg);

    let h = unsafe { &*hdr };
    let mut seen = proto::Relayed::default();
    let status = loop {
        unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
        // A pending cancel goes through on_step too (as a repeat of the last step report),
        // so the caller can record it (rdl_train marks its run cancelled) before raising.
        let interrupt = unsafe {
            pg_sys::InterruptPending != 0
                && (pg_sys::QueryCancelPending != 0 || pg_sys::ProcDiePending != 0)
        };
        area.relay(&mut seen, interrupt, on_step);
        // Raised here, after on_step had its chance (an ERROR detaches the segment; the
        // worker sees the backend gone and stops the training).
        pgrx::check_for_interrupts!();
        let st = h.status();
        if st != proto::PENDING && area.drained(&seen) {
            break st;
        }
        if posted.worker_gone(sh) {
            RdlError::new(
                "57P01",
                "rdl's background worker exited during the training",
            )
            .hint("Retry; SET rdl.train_on_worker = off trains in this backend.")
            .raise()
        }
        wait_latch(100);
    };
    if status == proto::FAILED && h.err_kind == proto::ERR_BUSY {
        pgrx::notice!("rdl_train: the background worker is busy with other trainings; training in this backend");
        return None;
    }
    Some(if status == proto::DONE {
        trained_model(sh, area)
    } else {
        Err(h.train_error())
    })
}

/// The model the worker trained, read from the segment it published, then acknowledged
/// so that the worker frees it.
fn trained_model(sh: &Shared, area: &proto::TrainArea) -> Result<TrainedModel, TrainError> {
    let len = area.result_len.load(Ordering::Acquire);
    let rh = area.result_handle.load(Ordering::Acquire);
    let rseg = unsafe { pg_sys::dsm_attach(rh as pg_sys::dsm_handle) };
    if rseg.is_null() {
        return Err(TrainError::Other(
            "the trained model's segment is gone".into(),
        ));
    }
    // The length comes from another process: checked against the segment it names.
    if len > proto::MAX_RESULT_LEN || len as usize > unsafe { pg_sys::dsm_segment_map_length(rseg) }
    {
        unsafe { pg_sys::dsm_detach(rseg) };
        return Err(TrainError::Other(format!(
            "the worker announced a model of {len} bytes that its segment does not hold"
        )));
    }
    let len = len as usize;
    let mut bytes = vec![0u8; len];
    unsafe {
        let src = pg_sys::dsm_segment_address(rseg).cast::<u8>();
        ptr::copy_nonoverlapping(src, bytes.as_mut_ptr(), len);
        pg_sys::dsm_detach(rseg);
    }
    area.ack.store(1, Ordering::Release);
    sh.wake_worker();
    TrainedModel::from_bytes(&bytes)
}

/// This backend's request slot in the worker's table, if it has one.
fn my_slot(sh: &Shared) -> Option<i32> {
    let procno = unsafe { (*pg_sys::MyProc).pgprocno };
    (procno >= 0 && (procno as usize) < sh.slots().len()).then_some(procno)
}

/// A request posted in this backend's slot: the word the worker takes, and the worker
/// generation it was posted to.
struct Posted<'a> {
    slot: &'a std::sync::atomic::AtomicU64,
    word: u64,
    generation: u64,
}

impl<'a> Posted<'a> {
    fn post(sh: &'a Shared, procno: i32, seq: u32, seg: *mut pg_sys::dsm_segment) -> Self {
        let handle = unsafe { pg_sys::dsm_segment_handle(seg) };
        let word = ((seq as u64) << 32) | handle as u64;
        let generation = sh.generation.load(Ordering::Acquire);
        let slot = &sh.slots()[procno as usize];
        slot.store(word, Ordering::Release);
        sh.wake_worker();
        Posted {
            slot,
            word,
            generation,
        }
    }

    /// Takes the request back if the worker has not taken it yet.
    fn withdraw(&self, _sh: &Shared) {
        let _ = self
            .slot
            .compare_exchange(self.word, 0, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// The worker that was asked exited or was restarted (the request is withdrawn).
    fn worker_gone(&self, sh: &Shared) -> bool {
        let gone =
            sh.generation.load(Ordering::Acquire) != self.generation || sh.live_worker().is_none();
        if gone {
            self.withdraw(sh);
        }
        gone
    }
}

/// Sleeps until the latch is set or `ms` pass; the postmaster's death ends the process.
fn wait_latch(ms: std::ffi::c_long) {
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            ms,
            pg_sys::PG_WAIT_EXTENSION,
        );
    }
}

/// Detaches a session-pinned segment when dropped (also while an ERROR unwinds).
struct DetachOnDrop(*mut pg_sys::dsm_segment);

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        unsafe { pg_sys::dsm_detach(self.0) };
    }
}
