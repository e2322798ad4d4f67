//! The worker's request protocol. One request: a dynamic shared memory segment the
//! backend creates, sized for the whole exchange — header, optional model bytes, the encoded contexts, and room for the outputs.
//!
//! Why one segment per request rather than `shm_mq` queues: a backend knows the size of
//! everything it sends *and* of the answer (contexts × outputs) before it sends, so a
//! segment sized once holds the request and the answer with each byte copied once; the
//! single-threaded worker never has to keep partial-message state for many queues (it reads
//! a complete request, answers in place, sets the backend's latch); and the segment's
//! lifetime is the request's — a backend that is cancelled detaches (its resource owner
//! does it) and nothing is left to drain. A request larger than `rdl.max_batch` contexts
//! is split by the backend into several segments, so no segment grows with the caller's
//! batch. The cost, one `dsm_create` per request (tens of µs), is small next to a forward
//! pass (milliseconds).
//!
//! Layout: [`Header`] at offset 0, then the model's bytes (only when the worker asked for
//! them), the contexts ([`rdl_engine::serve::wire`]), and `n_ctx × n_out` little-endian `f32`
//! outputs, each section 8-byte aligned. The backend writes everything but `status`,
//! `served_by`, `err` and the outputs before posting; the worker writes those, then
//! `status` (release), then sets the backend's latch.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::wire;
use crate::encode::{EncodedContext, Encoder};
use crate::model::ModelConfig;
use crate::train::{Progress, TrainConfig, TrainError, TrainedModel};

pub const MAGIC: u64 = 0x3172_6b72_6f77_6c64; // "dlworkr1"
pub const KIND_PREDICT: u32 = 1;
/// A training on the worker's device. The segment holds the configuration (JSON), the
/// training and validation contexts and a [`TrainArea`] where the worker reports progress;
/// the trained model, whose size is known only at the end, comes back in a segment the
/// worker creates (`TrainArea::result_handle`), kept until the backend acknowledges it.
pub const KIND_TRAIN: u32 = 2;

pub const PENDING: u32 = 0;
pub const DONE: u32 = 1;
pub const NEED_MODEL: u32 = 2;
pub const FAILED: u32 = 3;

pub const ERR_LEN: usize = 1024;

#[repr(C)]
pub struct Header {
    pub magic: u64,
    pub status: AtomicU32,
    /// Set (by an `on_dsm_detach` callback) when the backend detaches: it will not read
    /// the answer.
    pub backend_gone: AtomicU32,
    pub backend_pid: i32,
    pub backend_procno: i32,
    pub seq: u32,
    pub kind: u32,
    pub db_oid: u32,
    pub version: i32,
    pub model_id: i64,
    pub fingerprint: u64,
    pub n_ctx: u32,
    pub n_out: u32,
    /// Testing aid (`rdl.debug_worker_delay`), ms.
    pub delay_ms: u32,
    pub err_len: u32,
    pub model_off: u64,
    pub model_len: u64,
    pub payload_off: u64,
    pub payload_len: u64,
    pub out_off: u64,
    pub out_len: u64,
    /// Generation of the worker that answered.
    pub served_by: u64,
    /// Training requests: the JSON configuration, the validation contexts (the training
    /// contexts are the payload) and the progress area.
    pub config_off: u64,
    pub config_len: u64,
    pub val_off: u64,
    pub val_len: u64,
    pub area_off: u64,
    /// What failed (training): one of the `ERR_*` codes.
    pub err_kind: u32,
    pub err: [u8; ERR_LEN],
}

pub const ERR_OTHER: u32 = 0;
pub const ERR_CANCELLED: u32 = 1;
pub const ERR_NO_DATA: u32 = 2;
pub const ERR_BAD_LABEL: u32 = 3;
/// The worker already runs `rdl.worker_max_trainings` trainings: the backend trains
/// in-process instead.
pub const ERR_BUSY: u32 = 4;

/// The largest trained model a worker may hand back (the backend refuses to copy more:
/// the length comes from another process).
pub const MAX_RESULT_LEN: u64 = 1 << 30;

/// Epoch reports a training keeps (a longer training overwrites the oldest; the backend
/// reads them as they come, 10 times a second).
pub const MAX_EPOCH_RECORDS: usize = 256;

/// One epoch's report; floats as bits.
#[repr(C)]
pub struct EpochRecord {
    pub epoch: AtomicU64,
    pub loss: AtomicU64,
    /// NaN when there is no validation metric.
    pub val_metric: AtomicU64,
    pub elapsed_s: AtomicU64,
}

/// Where a training on the worker reports to its backend.
#[repr(C)]
pub struct TrainArea {
    /// Step reports so far; the latest one's figures follow.
    pub steps: AtomicU64,
    pub epoch: AtomicU64,
    pub step: AtomicU64,
    pub total_steps: AtomicU64,
    pub lr: AtomicU64,
    pub loss: AtomicU64,
    pub elapsed_s: AtomicU64,
    /// Epoch records written (each is complete before this count includes it).
    pub n_epochs: AtomicU64,
    pub epochs: [EpochRecord; MAX_EPOCH_RECORDS],
    /// Set by the backend: stop training.
    pub cancel: AtomicU32,
    /// Set by the backend once it has copied the result.
    pub ack: AtomicU32,
    pub result_handle: AtomicU32,
    pub result_len: AtomicU64,
}

pub const fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// Offsets of the sections for a request of these sizes, and the segment's total size.
/// A prediction request: which model, how many contexts and outputs, the encoded batch.
pub struct Prediction<'a> {
    pub model_id: i64,
    pub version: i32,
    pub fingerprint: u64,
    pub n_ctx: usize,
    pub n_out: usize,
    pub payload: &'a [u8],
}

pub struct Layout {
    pub model_off: usize,
    pub payload_off: usize,
    pub out_off: usize,
    pub total: usize,
}

pub fn layout(model_len: usize, payload_len: usize, out_len: usize) -> Layout {
    let model_off = align8(std::mem::size_of::<Header>());
    let payload_off = align8(model_off + model_len);
    let out_off = align8(payload_off + payload_len);
    Layout {
        model_off,
        payload_off,
        out_off,
        total: out_off + out_len,
    }
}

impl Header {
    /// Fills what every request says of itself: what it is, which post of which backend
    /// (pid, PGPROC number) of which database (the rest of a zeroed header is the kind's
    /// to fill).
    pub fn begin(&mut self, kind: u32, seq: u32, (pid, procno): (i32, i32), db_oid: u32) {
        self.magic = MAGIC;
        self.backend_pid = pid;
        self.db_oid = db_oid;
        self.backend_procno = procno;
        self.seq = seq;
        self.kind = kind;
    }

    /// Fills a prediction request's header (after [`Header::begin`]): what to score, and
    /// where each part lies in a segment laid out by [`layout`].
    pub fn describe_prediction(&mut self, req: &Prediction, lay: &Layout, model_len: usize) {
        self.version = req.version;
        self.model_id = req.model_id;
        self.fingerprint = req.fingerprint;
        self.n_ctx = req.n_ctx as u32;
        self.n_out = req.n_out as u32;
        self.model_off = lay.model_off as u64;
        self.model_len = model_len as u64;
        self.payload_off = lay.payload_off as u64;
        self.payload_len = req.payload.len() as u64;
        self.out_off = lay.out_off as u64;
        self.out_len = req.n_ctx as u64 * req.n_out as u64 * 4;
    }

    /// Fills a training request's header (after [`Header::begin`]): `n_ctx` training
    /// contexts, and where each section (of these lengths) lies in a segment laid out by
    /// [`train_layout`].
    pub fn describe_training(&mut self, lay: &TrainLayout, n_ctx: usize, lens: [usize; 3]) {
        let [config_len, train_len, val_len] = lens;
        self.n_ctx = n_ctx as u32;
        self.config_off = lay.config_off as u64;
        self.config_len = config_len as u64;
        self.payload_off = lay.train_off as u64;
        self.payload_len = train_len as u64;
        self.val_off = lay.val_off as u64;
        self.val_len = val_len as u64;
        self.area_off = lay.area_off as u64;
    }

    /// Whether an answered header still describes the prediction request `req` posted in
    /// a segment laid out by `lay`: it comes back from another process, and is checked
    /// before anything is read through it.
    pub fn answers(&self, req: &Prediction, lay: &Layout) -> bool {
        self.n_ctx as usize == req.n_ctx
            && self.n_out as usize == req.n_out
            && self.out_off == lay.out_off as u64
            && self.out_len == (req.n_ctx * req.n_out * 4) as u64
            && self.magic == MAGIC
    }

    /// Whether the sections the header names fit a segment of `len` bytes and agree with
    /// its counts (the worker checks before reading anything else).
    pub fn valid(&self, len: usize) -> bool {
        let fits = |off: u64, n: u64| off.checked_add(n).is_some_and(|end| end <= len as u64);
        if self.magic != MAGIC {
            return false;
        }
        if self.kind == KIND_TRAIN {
            return fits(self.config_off, self.config_len)
                && fits(self.payload_off, self.payload_len)
                && fits(self.val_off, self.val_len)
                && fits(self.area_off, std::mem::size_of::<TrainArea>() as u64)
                && self.area_off.is_multiple_of(8);
        }
        self.kind == KIND_PREDICT
            && self.n_out >= 1
            && fits(self.model_off, self.model_len)
            && fits(self.payload_off, self.payload_len)
            && fits(self.out_off, self.out_len)
            && self.out_off.is_multiple_of(4)
            && self.out_len == self.n_ctx as u64 * self.n_out as u64 * 4
    }

    pub fn set_error(&mut self, msg: &str) {
        let b = msg.as_bytes();
        let n = b.len().min(ERR_LEN);
        self.err[..n].copy_from_slice(&b[..n]);
        self.err_len = n as u32;
    }

    pub fn error(&self) -> String {
        String::from_utf8_lossy(&self.err[..(self.err_len as usize).min(ERR_LEN)]).into_owned()
    }

    pub fn status(&self) -> u32 {
        self.status.load(Ordering::Acquire)
    }
}

/// Offsets of a training request's sections and its total size.
pub struct TrainLayout {
    pub config_off: usize,
    pub train_off: usize,
    pub val_off: usize,
    pub area_off: usize,
    pub total: usize,
}

pub fn train_layout(config_len: usize, train_len: usize, val_len: usize) -> TrainLayout {
    let config_off = align8(std::mem::size_of::<Header>());
    let train_off = align8(config_off + config_len);
    let val_off = align8(train_off + train_len);
    let area_off = align8(val_off + val_len);
    TrainLayout {
        config_off,
        train_off,
        val_off,
        area_off,
        total: area_off + std::mem::size_of::<TrainArea>(),
    }
}

/// What a training request carries: the configurations, the encoder and the contexts.
pub struct TrainRequest {
    pub cfg: TrainConfig,
    pub model_cfg: ModelConfig,
    pub encoder: Encoder,
    pub train: Vec<EncodedContext>,
    pub val: Vec<EncodedContext>,
}

/// A training request's sections, as the backend writes them: the configurations and the
/// encoder (JSON), the training and the validation contexts ([`wire`]). `None` when the
/// configuration does not serialise.
pub fn encode_training(
    (cfg, model_cfg, encoder): (&TrainConfig, &ModelConfig, &Encoder),
    train: &[EncodedContext],
    val: &[EncodedContext],
) -> Option<[Vec<u8>; 3]> {
    let config = serde_json::to_vec(&(cfg, model_cfg, encoder)).ok()?;
    Some([config, wire::encode_batch(train), wire::encode_batch(val)])
}

/// The worker's side of [`encode_training`]: the request, or what is wrong with it.
pub fn decode_training(config: &[u8], train: &[u8], val: &[u8]) -> Result<TrainRequest, String> {
    let (cfg, model_cfg, encoder) = serde_json::from_slice(config).map_err(|e| e.to_string())?;
    Ok(TrainRequest {
        cfg,
        model_cfg,
        encoder,
        train: wire::decode_batch(train).map_err(|e| e.to_string())?,
        val: wire::decode_batch(val).map_err(|e| e.to_string())?,
    })
}

/// What a training on the worker hands back: the trained model's bytes, or its error's
/// kind (`ERR_*`) and message, which the backend reads back with [`Header::train_error`].
pub fn train_outcome(r: Result<TrainedModel, TrainError>) -> Result<Vec<u8>, (u32, String)> {
    match r {
        Ok(m) => m.to_bytes().map_err(|e| (ERR_OTHER, e.to_string())),
        Err(TrainError::Cancelled) => Err((ERR_CANCELLED, "training cancelled".into())),
        Err(TrainError::NoTrainingData) => Err((ERR_NO_DATA, "no training contexts".into())),
        Err(TrainError::BadLabel(s)) => Err((ERR_BAD_LABEL, s)),
        Err(e) => Err((ERR_OTHER, e.to_string())),
    }
}

fn f64_of(a: &AtomicU64) -> f64 {
    f64::from_bits(a.load(Ordering::Relaxed))
}

/// What a backend has relayed of a training's reports so far.
#[derive(Debug, Default, Clone, Copy)]
pub struct Relayed {
    epochs: u64,
    steps: u64,
}

impl TrainArea {
    /// The worker's side, on the training's thread: records a report (an epoch's in the
    /// ring of records, a step's as the latest).
    pub fn record(&self, p: &Progress) {
        let bits = |x: f64| x.to_bits();
        if p.epoch_end {
            let n = self.n_epochs.load(Ordering::Relaxed);
            let r = &self.epochs[n as usize % MAX_EPOCH_RECORDS];
            r.epoch.store(p.epoch as u64, Ordering::Relaxed);
            r.loss.store(bits(p.loss), Ordering::Relaxed);
            r.val_metric
                .store(bits(p.val_metric.unwrap_or(f64::NAN)), Ordering::Relaxed);
            r.elapsed_s.store(bits(p.elapsed_s), Ordering::Relaxed);
            self.n_epochs.store(n + 1, Ordering::Release);
        } else {
            self.epoch.store(p.epoch as u64, Ordering::Relaxed);
            self.step.store(p.step as u64, Ordering::Relaxed);
            self.total_steps
                .store(p.total_steps as u64, Ordering::Relaxed);
            self.lr.store(bits(p.lr), Ordering::Relaxed);
            self.loss.store(bits(p.loss), Ordering::Relaxed);
            self.elapsed_s.store(bits(p.elapsed_s), Ordering::Relaxed);
            self.steps.fetch_add(1, Ordering::Release);
        }
    }

    /// The backend's side: hands every epoch report not relayed yet, in order, then the
    /// latest step's (repeated when `interrupt` is pending, so that the caller hears the
    /// cancel there) to `on_step`; a `false` from it asks the worker to stop.
    pub fn relay(
        &self,
        seen: &mut Relayed,
        interrupt: bool,
        on_step: &mut dyn FnMut(&Progress) -> bool,
    ) {
        let n = self.n_epochs.load(Ordering::Acquire);
        // A reader too slow for the ring skips what was overwritten.
        seen.epochs = seen.epochs.max(n.saturating_sub(MAX_EPOCH_RECORDS as u64));
        while seen.epochs < n {
            let r = &self.epochs[seen.epochs as usize % MAX_EPOCH_RECORDS];
            let val = f64_of(&r.val_metric);
            let p = Progress {
                epoch: r.epoch.load(Ordering::Relaxed) as usize,
                step: self.step.load(Ordering::Relaxed) as usize,
                total_steps: self.total_steps.load(Ordering::Relaxed) as usize,
                lr: f64_of(&self.lr),
                loss: f64_of(&r.loss),
                epoch_end: true,
                val_metric: (!val.is_nan()).then_some(val),
                elapsed_s: f64_of(&r.elapsed_s),
            };
            if !on_step(&p) {
                self.cancel.store(1, Ordering::Release);
            }
            seen.epochs += 1;
        }
        let s = self.steps.load(Ordering::Acquire);
        if s != seen.steps || interrupt {
            seen.steps = s;
            let p = Progress {
                epoch: self.epoch.load(Ordering::Relaxed) as usize,
                step: self.step.load(Ordering::Relaxed) as usize,
                total_steps: self.total_steps.load(Ordering::Relaxed) as usize,
                lr: f64_of(&self.lr),
                loss: f64_of(&self.loss),
                epoch_end: false,
                val_metric: None,
                elapsed_s: f64_of(&self.elapsed_s),
            };
            if !on_step(&p) {
                self.cancel.store(1, Ordering::Release);
            }
        }
    }

    /// Whether every epoch report the worker wrote was relayed.
    pub fn drained(&self, seen: &Relayed) -> bool {
        self.n_epochs.load(Ordering::Acquire) == seen.epochs
    }

    /// Whether the backend asked to stop.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire) != 0
    }
}

impl Header {
    /// A failed training's error, from its kind and message.
    pub fn train_error(&self) -> TrainError {
        let msg = self.error();
        match self.err_kind {
            ERR_CANCELLED => TrainError::Cancelled,
            ERR_NO_DATA => TrainError::NoTrainingData,
            ERR_BAD_LABEL => TrainError::BadLabel(msg),
            _ => TrainError::Other(format!("rdl worker: {msg}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area() -> Box<TrainArea> {
        // SAFETY: every field is an atomic or an array of atomics: all-zero is valid.
        unsafe { Box::new(std::mem::zeroed()) }
    }

    fn progress(epoch: usize, end: bool) -> Progress {
        Progress {
            epoch,
            step: epoch * 10,
            total_steps: 100,
            lr: 0.1,
            loss: 1.0 / (epoch + 1) as f64,
            epoch_end: end,
            val_metric: end.then_some(0.5 + epoch as f64 / 100.0),
            elapsed_s: epoch as f64,
        }
    }

    #[test]
    fn every_epoch_is_relayed_once_in_order_and_a_refusal_stops() {
        let a = area();
        let mut seen = Relayed::default();
        for e in 0..3 {
            a.record(&progress(e, false));
            a.record(&progress(e, true));
        }
        let mut got = Vec::new();
        a.relay(&mut seen, false, &mut |p| {
            got.push((p.epoch, p.epoch_end, p.val_metric));
            true
        });
        assert_eq!(got.len(), 4, "three epochs and the latest step: {got:?}");
        assert_eq!(got[2], (2, true, Some(0.52)));
        assert!(a.drained(&seen) && !a.cancelled());
        // Nothing new: nothing relayed, unless a cancel is pending (the step repeats).
        let mut n = 0;
        a.relay(&mut seen, false, &mut |_| {
            n += 1;
            true
        });
        assert_eq!(n, 0);
        a.relay(&mut seen, true, &mut |_| false);
        assert!(a.cancelled());
    }

    fn header() -> Box<Header> {
        // SAFETY: integers, atomics and bytes: all-zero is valid.
        unsafe { Box::new(std::mem::zeroed()) }
    }

    #[test]
    fn training_failures_come_back_as_they_left() {
        let mut h = header();
        let sent = [
            TrainError::Cancelled,
            TrainError::NoTrainingData,
            TrainError::BadLabel("NaN label".into()),
            TrainError::Format("short".into()),
        ];
        let mut got = Vec::new();
        for e in sent {
            let (kind, msg) = train_outcome(Err(e)).unwrap_err();
            (h.err_kind, h.err_len) = (kind, 0);
            h.set_error(&msg);
            got.push(h.train_error().to_string());
        }
        assert_eq!(
            got,
            [
                "training cancelled",
                "no training contexts",
                "bad label: NaN label",
                "rdl worker: bad model bytes: short"
            ]
        );
    }

    #[test]
    fn training_requests_round_trip_and_are_described() {
        let cfg = TrainConfig::new(crate::train::Head::Binary);
        let model_cfg = ModelConfig::small();
        let encoder = Encoder::fit(Default::default(), &[]);
        let [c, t, v] = encode_training((&cfg, &model_cfg, &encoder), &[], &[]).unwrap();
        let r = decode_training(&c, &t, &v).unwrap();
        assert!(r.cfg == cfg && r.model_cfg == model_cfg && r.encoder == encoder);
        assert!(r.train.is_empty() && r.val.is_empty());
        assert!(decode_training(b"{}", &t, &v).is_err());
        assert!(decode_training(&c, &t, b"\x05").is_err());
        let lay = train_layout(c.len(), t.len(), v.len());
        let mut h = header();
        h.begin(KIND_TRAIN, 7, (1, 2), 3);
        h.describe_training(&lay, 0, [c.len(), t.len(), v.len()]);
        assert!(h.valid(lay.total) && !h.valid(lay.total - 1));
    }

    #[test]
    fn an_answer_must_describe_its_request() {
        let payload = [0u8; 24];
        let req = Prediction {
            model_id: 1,
            version: 2,
            fingerprint: 3,
            n_ctx: 2,
            n_out: 3,
            payload: &payload,
        };
        let lay = layout(0, payload.len(), 2 * 3 * 4);
        let mut h = header();
        h.begin(KIND_PREDICT, 1, (1, 2), 3);
        h.describe_prediction(&req, &lay, 0);
        assert!(h.valid(lay.total) && h.answers(&req, &lay));
        h.n_out = 1;
        assert!(!h.answers(&req, &lay));
    }

    #[test]
    fn a_slow_reader_skips_what_the_ring_overwrote() {
        let a = area();
        let mut seen = Relayed::default();
        for e in 0..(MAX_EPOCH_RECORDS + 5) {
            a.record(&progress(e, true));
        }
        let mut first = None;
        a.relay(&mut seen, false, &mut |p| {
            if p.epoch_end {
                first.get_or_insert(p.epoch);
            }
            true
        });
        assert_eq!(first, Some(5));
    }
}
