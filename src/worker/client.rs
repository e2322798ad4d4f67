//! The backend's side: send encoded contexts to the worker and wait for its outputs.

use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use pgrx::pg_sys;
use rdl_engine::encode::EncodedContext;
use rdl_engine::{serve, wire};

use super::proto::{self, Header};
use super::shmem::{self, Shared};
use crate::api::model::{train_err, Loaded};
use crate::error::RdlError;
use crate::guc;

enum Answer {
    Outputs(Vec<f32>),
    NeedModel,
    Failed(String),
}

struct Request<'a> {
    model_id: i64,
    version: i32,
    fingerprint: u64,
    n_ctx: usize,
    n_out: usize,
    payload: &'a [u8],
}

/// The model's calibrated outputs per context, computed by the background worker; `None`
/// when there is no worker to ask (not preloaded, not running, `rdl.use_worker` off) or it
/// went away while this backend waited — the caller then computes in-process.
pub fn predict(l: &Loaded, ctxs: &[EncodedContext]) -> Option<Vec<Vec<f64>>> {
    if ctxs.is_empty() || !guc::USE_WORKER.get() {
        return None;
    }
    let sh = shmem::get()?;
    sh.live_worker()?;
    let procno = unsafe { (*pg_sys::MyProc).pgprocno };
    if procno < 0 || procno as usize >= sh.slots().len() {
        return None;
    }
    let n_out = l.model.task.n_out().max(1);
    let fingerprint = l.model.fingerprint();
    let max_batch = guc::MAX_BATCH.get().max(1) as usize;
    let mut model_bytes: Option<Vec<u8>> = None;
    let mut out = Vec::with_capacity(ctxs.len());
    // A request larger than rdl.max_batch is sent in pieces.
    for r in serve::chunks(ctxs.len(), max_batch) {
        let payload = wire::encode_batch(&ctxs[r.clone()]);
        let req = Request {
            model_id: l.id,
            version: l.version,
            fingerprint,
            n_ctx: r.len(),
            n_out,
            payload: &payload,
        };
        let mut answer = roundtrip(sh, procno, &req, model_bytes.as_deref())?;
        if let Answer::NeedModel = answer {
            // The worker has not loaded this model (first use, evicted, or restarted):
            // ship it once, with the same request.
            let bytes = model_bytes
                .get_or_insert_with(|| l.model.to_bytes().unwrap_or_else(|e| train_err(e).raise()));
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
fn roundtrip(sh: &Shared, procno: i32, req: &Request, model: Option<&[u8]>) -> Option<Answer> {
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
        let h = &mut *hdr;
        h.magic = proto::MAGIC;
        h.backend_pid = pg_sys::MyProcPid;
        h.backend_procno = procno;
        h.seq = seq;
        h.kind = proto::KIND_PREDICT;
        h.db_oid = pg_sys::MyDatabaseId.to_u32();
        h.version = req.version;
        h.model_id = req.model_id;
        h.fingerprint = req.fingerprint;
        h.n_ctx = req.n_ctx as u32;
        h.n_out = req.n_out as u32;
        h.delay_ms = guc::DEBUG_WORKER_DELAY_MS.get().max(0) as u32;
        h.model_off = lay.model_off as u64;
        h.model_len = model_len as u64;
        h.payload_off = lay.payload_off as u64;
        h.payload_len = req.payload.len() as u64;
        h.out_off = lay.out_off as u64;
        h.out_len = out_len as u64;
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
    let handle = unsafe { pg_sys::dsm_segment_handle(seg) };
    let word = ((seq as u64) << 32) | handle as u64;
    let generation = sh.generation.load(Ordering::Acquire);
    let slot = &sh.slots()[procno as usize];
    slot.store(word, Ordering::Release);
    sh.wake_worker();

    let timeout_ms = guc::WORKER_TIMEOUT_MS.get().max(0) as u128;
    let t0 = Instant::now();
    let h = unsafe { &*hdr };
    let status = loop {
        unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
        let st = h.status();
        if st != proto::PENDING {
            break Some(st);
        }
        if sh.generation.load(Ordering::Acquire) != generation || sh.live_worker().is_none() {
            // The worker exited or was restarted: this request is lost (a new worker may
            // still have taken it; its answer would go unread). Compute in-process.
            let _ = slot.compare_exchange(word, 0, Ordering::AcqRel, Ordering::Relaxed);
            break None;
        }
        let waited = t0.elapsed().as_millis();
        if timeout_ms > 0 && waited >= timeout_ms {
            let _ = slot.compare_exchange(word, 0, Ordering::AcqRel, Ordering::Relaxed);
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
        unsafe {
            pg_sys::WaitLatch(
                pg_sys::MyLatch,
                (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                wait.max(1) as std::ffi::c_long,
                pg_sys::PG_WAIT_EXTENSION,
            );
        }
        // Cancel, statement_timeout, termination: an ERROR here aborts the transaction,
        // whose resource owner detaches the segment; the worker sees the backend gone.
        pgrx::check_for_interrupts!();
    };
    let answer = status.map(|st| match st {
        proto::DONE => {
            let mut v = vec![0f32; req.n_ctx * req.n_out];
            unsafe {
                ptr::copy_nonoverlapping(
                    base.add(lay.out_off),
                    v.as_mut_ptr().cast::<u8>(),
                    out_len,
                );
            }
            // Outputs are little-endian f32: the same as the native order here, made
            // explicit for the day it is not.
            for x in &mut v {
                *x = f32::from_bits(u32::from_le(x.to_bits()));
            }
            Answer::Outputs(v)
        }
        proto::NEED_MODEL => Answer::NeedModel,
        _ => Answer::Failed(h.error()),
    });
    unsafe { pg_sys::dsm_detach(seg) };
    answer
}
