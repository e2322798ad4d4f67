//! Trainings on the worker's device (`rdl.train_on_worker`): each runs on a thread of its
//! own while the main thread keeps serving predictions. The thread reports progress into
//! the request's [`proto::TrainArea`] and stops when the backend asks (or leaves); the main
//! thread sends the trained model back in a segment it creates, kept until the backend
//! acknowledges it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use pgrx::pg_sys;
use rdl_engine::device::Device;
use rdl_engine::serve::panic_message;
use rdl_engine::train::{train_on, Progress};

use super::request::{with_signals_blocked, Taken};
use super::shmem::Shared;
use rdl_engine::serve::protocol::{self as proto, Header};

pub struct Trainings {
    pub running: Vec<Training>,
    device: Device,
    generation: u64,
}

type TrainResult = Result<Vec<u8>, (u32, String)>;

/// A training running on its own thread (the main thread keeps serving predictions). Its
/// request segment stays attached until the thread has ended and the backend has the
/// result.
pub struct Training {
    taken: Taken,
    thread: Option<std::thread::JoinHandle<TrainResult>>,
    /// The result segment, once answered, kept until the backend acknowledges it.
    result: Option<*mut pg_sys::dsm_segment>,
}

impl Training {
    fn area(&self) -> &proto::TrainArea {
        let off = self.taken.header().area_off as usize;
        unsafe { &*self.taken.base.add(off).cast::<proto::TrainArea>() }
    }
}

/// The training thread's view of its request: the progress area and the header's flags.
/// The main thread keeps the segment mapped until the thread is joined.
struct Remote {
    area: *const proto::TrainArea,
    hdr: *const Header,
}

// SAFETY: the pointers stay valid while the thread runs (see `Training`); only atomics are
// accessed through them.
unsafe impl Send for Remote {}

impl Remote {
    fn report(&self, p: &Progress) -> bool {
        let (area, hdr) = unsafe { (&*self.area, &*self.hdr) };
        area.record(p);
        !area.cancelled() && hdr.backend_gone.load(Ordering::Acquire) == 0
    }
}

impl Trainings {
    pub fn new(device: Device, generation: u64) -> Trainings {
        Trainings {
            running: Vec::new(),
            device,
            generation,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Asks every training to stop and waits for their threads (before the process
    /// exits: a thread must not outlive the segments it writes to).
    pub fn stop(&mut self) {
        for tr in &mut self.running {
            tr.area().cancel.store(1, Ordering::Release);
        }
        for tr in &mut self.running {
            if let Some(t) = tr.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Decodes a training request and starts it on a thread of its own — unless
    /// `rdl.worker_max_trainings` run already (each holds its contexts in this process's
    /// memory): then the backend is told to train in-process.
    pub fn start(&mut self, sh: &Shared, mut t: Taken) {
        let running = self.running.iter().filter(|t| t.result.is_none()).count();
        if running >= crate::guc::WORKER_MAX_TRAININGS.get().max(0) as usize {
            unsafe { (*t.hdr).err_kind = proto::ERR_BUSY };
            t.fail(
                sh,
                "the worker runs as many trainings as rdl.worker_max_trainings allows",
            );
            t.release(sh, self.generation);
            unsafe { pg_sys::dsm_detach(t.seg) };
            return;
        }
        let h = t.header();
        let slice = |off: u64, len: u64| unsafe {
            std::slice::from_raw_parts(t.base.add(off as usize), len as usize)
        };
        let decoded = proto::decode_training(
            slice(h.config_off, h.config_len),
            slice(h.payload_off, h.payload_len),
            slice(h.val_off, h.val_len),
        );
        let req = match decoded {
            Ok(req) => req,
            Err(e) => {
                t.fail(sh, &format!("bad training request: {e}"));
                t.release(sh, self.generation);
                unsafe { pg_sys::dsm_detach(t.seg) };
                return;
            }
        };
        let remote = Remote {
            area: unsafe { t.base.add(h.area_off as usize).cast::<proto::TrainArea>() },
            hdr: t.hdr,
        };
        let dev = self.device.clone();
        let spawned = with_signals_blocked(|| {
            std::thread::Builder::new()
                .name("rdl train".into())
                .spawn(move || -> TrainResult {
                    let r = remote;
                    let mut on_step = |p: &Progress| r.report(p);
                    let res = catch_unwind(AssertUnwindSafe(|| {
                        let (cfg, model_cfg, enc) = (&req.cfg, &req.model_cfg, &req.encoder);
                        train_on(
                            &dev,
                            cfg,
                            model_cfg,
                            enc,
                            &req.train,
                            &req.val,
                            &mut on_step,
                        )
                    }));
                    match res {
                        Ok(r) => proto::train_outcome(r),
                        Err(p) => Err((proto::ERR_OTHER, format!("panic: {}", panic_message(p)))),
                    }
                })
        });
        match spawned {
            Ok(thread) => {
                sh.trainings.fetch_add(1, Ordering::Relaxed);
                self.running.push(Training {
                    taken: t,
                    thread: Some(thread),
                    result: None,
                });
                sh.trainings_running
                    .store(self.running.len() as u32, Ordering::Relaxed);
            }
            Err(e) => {
                t.fail(sh, &format!("cannot start a training thread: {e}"));
                t.release(sh, self.generation);
                unsafe { pg_sys::dsm_detach(t.seg) };
            }
        }
    }

    /// Answers finished trainings and lets go of those whose backend has the result.
    pub fn poll(&mut self, sh: &Shared) {
        if self.running.is_empty() {
            return;
        }
        let g = self.generation;
        let mut keep = Vec::new();
        for mut tr in std::mem::take(&mut self.running) {
            let gone = tr.taken.header().backend_gone.load(Ordering::Acquire) != 0;
            if let Some(rseg) = tr.result {
                if tr.area().ack.load(Ordering::Acquire) != 0 || gone {
                    unsafe {
                        pg_sys::dsm_detach(rseg);
                        pg_sys::dsm_detach(tr.taken.seg);
                    }
                } else {
                    keep.push(tr);
                }
                continue;
            }
            if !tr.thread.as_ref().is_some_and(|t| t.is_finished()) {
                keep.push(tr);
                continue;
            }
            let result = match tr.thread.take().map(|t| t.join()) {
                Some(Ok(r)) => r,
                Some(Err(p)) => Err((proto::ERR_OTHER, panic_message(p))),
                None => Err((proto::ERR_OTHER, "no training thread".into())),
            };
            let bytes = match result {
                Ok(b) => b,
                Err((kind, msg)) => {
                    unsafe {
                        (*tr.taken.hdr).err_kind = kind;
                        (*tr.taken.hdr).set_error(&msg);
                    }
                    if kind != proto::ERR_CANCELLED {
                        sh.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    tr.taken.answer(proto::FAILED);
                    tr.taken.release(sh, g);
                    unsafe { pg_sys::dsm_detach(tr.taken.seg) };
                    continue;
                }
            };
            let rseg = unsafe {
                pg_sys::dsm_create(
                    bytes.len().max(1),
                    pg_sys::DSM_CREATE_NULL_IF_MAXSEGMENTS as i32,
                )
            };
            if rseg.is_null() {
                tr.taken
                    .fail(sh, "no dynamic shared memory segment for the trained model");
                tr.taken.release(sh, g);
                unsafe { pg_sys::dsm_detach(tr.taken.seg) };
                continue;
            }
            unsafe {
                let dst = pg_sys::dsm_segment_address(rseg).cast::<u8>();
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len());
            }
            let area = tr.area();
            area.result_handle.store(
                unsafe { pg_sys::dsm_segment_handle(rseg) },
                Ordering::Relaxed,
            );
            area.result_len.store(bytes.len() as u64, Ordering::Release);
            tr.taken.answer(proto::DONE);
            tr.taken.release(sh, g);
            tr.result = Some(rseg);
            keep.push(tr);
        }
        self.running = keep;
        let running = self.running.iter().filter(|t| t.result.is_none()).count();
        sh.trainings_running
            .store(running as u32, Ordering::Relaxed);
    }
}
