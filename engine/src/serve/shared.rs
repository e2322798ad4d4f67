//! The worker's fixed shared memory: who the worker is, its counters, a published listing
//! of its cache, and one request slot per PGPROC. Only atomics live here, so any process
//! may read while the worker writes without locks: counters are single atomics; the
//! listing and device name are written under a sequence counter (odd while being
//! written) and readers retry until they see a stable even value. (Placing it in
//! PostgreSQL's shared memory is the extension's part.)

use std::sync::atomic::{fence, AtomicI32, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Cache entries the listing shows at most (`cached_models` of `rdl_status()`).
pub const MAX_LISTED: usize = 64;
const NAME_LEN: usize = 32;
const NOTE_LEN: usize = 256;

#[repr(C)]
pub struct Listed {
    pub db_oid: AtomicU32,
    pub version: AtomicI32,
    pub model_id: AtomicI64,
    pub bytes: AtomicU64,
    pub hits: AtomicU64,
    /// Unix time of the last use, µs.
    pub last_used_us: AtomicI64,
}

/// One cached model, as the worker publishes it.
pub struct ListedModel {
    pub db_oid: u32,
    pub model_id: i64,
    pub version: i32,
    pub bytes: u64,
    pub hits: u64,
    /// Unix time of the last use, µs.
    pub last_used_us: i64,
}

#[repr(C)]
pub struct Shared {
    /// The running worker's pid, 0 when none.
    pub worker_pid: AtomicI32,
    pub worker_procno: AtomicI32,
    /// Worker starts since the server (re)initialised shared memory.
    pub generation: AtomicU64,
    pub started_at_us: AtomicI64,
    pub threads: AtomicU32,
    pub max_batch: AtomicU32,
    /// Requests answered with predictions, forward passes, contexts scored.
    pub requests: AtomicU64,
    pub passes: AtomicU64,
    pub contexts: AtomicU64,
    /// Requests whose backend was gone (cancelled, timed out) before the answer.
    pub abandoned: AtomicU64,
    pub errors: AtomicU64,
    pub need_model: AtomicU64,
    pub loads: AtomicU64,
    pub evictions: AtomicU64,
    /// Requests taken and not yet answered, and of those, waiting for a compute thread.
    pub in_progress: AtomicU32,
    pub waiting: AtomicU32,
    /// Trainings started on the worker, and running now.
    pub trainings: AtomicU64,
    pub trainings_running: AtomicU32,
    pub seq: AtomicU64,
    pub cache_bytes: AtomicU64,
    pub cache_limit: AtomicU64,
    pub n_cached: AtomicU32,
    pub n_listed: AtomicU32,
    pub listed: [Listed; MAX_LISTED],
    pub device: [AtomicU8; NAME_LEN],
    pub device_note: [AtomicU8; NOTE_LEN],
    pub n_slots: AtomicU32,
    // followed by `n_slots` AtomicU64 request slots
}

/// Bytes the struct and `slots` request slots take.
pub fn size(slots: usize) -> usize {
    std::mem::size_of::<Shared>() + slots * std::mem::size_of::<AtomicU64>()
}

impl Shared {
    pub fn slots(&self) -> &[AtomicU64] {
        let n = self.n_slots.load(Ordering::Relaxed) as usize;
        unsafe {
            let first = (self as *const Shared).add(1).cast::<AtomicU64>();
            std::slice::from_raw_parts(first, n)
        }
    }

    /// Requests posted and not yet computed: in their slots, or waiting in the worker
    /// for a compute thread.
    pub fn queued(&self) -> usize {
        let posted = self
            .slots()
            .iter()
            .filter(|s| s.load(Ordering::Relaxed) != 0)
            .count();
        posted + self.waiting.load(Ordering::Relaxed) as usize
    }

    /// Runs `write` as the listing's writer (the worker only).
    pub fn write_listing(&self, write: impl FnOnce(&Shared)) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        write(self);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// Publishes the worker's model cache (the worker only): the bytes it holds and may
    /// hold, how many models it holds, and the first [`MAX_LISTED`] of `models`.
    pub fn publish_cache(
        &self,
        (used, limit): (usize, usize),
        n_cached: usize,
        models: impl Iterator<Item = ListedModel>,
    ) {
        self.write_listing(|s| {
            s.cache_bytes.store(used as u64, Ordering::Relaxed);
            s.cache_limit.store(limit as u64, Ordering::Relaxed);
            s.n_cached.store(n_cached as u32, Ordering::Relaxed);
            let mut n = 0;
            for (slot, m) in s.listed.iter().zip(models) {
                slot.db_oid.store(m.db_oid, Ordering::Relaxed);
                slot.model_id.store(m.model_id, Ordering::Relaxed);
                slot.version.store(m.version, Ordering::Relaxed);
                slot.bytes.store(m.bytes, Ordering::Relaxed);
                slot.hits.store(m.hits, Ordering::Relaxed);
                slot.last_used_us.store(m.last_used_us, Ordering::Relaxed);
                n += 1;
            }
            s.n_listed.store(n, Ordering::Relaxed);
        });
    }

    /// Reads the listing consistently (retrying while the worker writes it).
    pub fn read_listing<T>(&self, read: impl Fn(&Shared) -> T) -> T {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            if !s1.is_multiple_of(2) {
                std::hint::spin_loop();
                continue;
            }
            let v = read(self);
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                return v;
            }
        }
    }
}

impl Shared {
    /// What `rdl_status()` reports from shared memory, `worker_pid` being the live
    /// worker's. `show` says which cached models the caller may see (database oid, model
    /// id); `db_name` names a database.
    pub fn status(
        &self,
        worker_pid: Option<i32>,
        show: &dyn Fn(u32, i64) -> bool,
        db_name: &dyn Fn(u32) -> Option<String>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let now = now_us();
        let (device, note, models, cache_bytes, cache_limit, n_cached) = self.read_listing(|s| {
            let n = (s.n_listed.load(Ordering::Relaxed) as usize).min(MAX_LISTED);
            let models: Vec<_> = s.listed[..n]
                .iter()
                .map(|l| {
                    let ld = |a: &AtomicI64| a.load(Ordering::Relaxed);
                    (
                        l.db_oid.load(Ordering::Relaxed),
                        ld(&l.model_id),
                        l.version.load(Ordering::Relaxed),
                        l.bytes.load(Ordering::Relaxed),
                        l.hits.load(Ordering::Relaxed),
                        ld(&l.last_used_us),
                    )
                })
                .collect();
            (
                get_str(&s.device),
                get_str(&s.device_note),
                models,
                s.cache_bytes.load(Ordering::Relaxed),
                s.cache_limit.load(Ordering::Relaxed),
                s.n_cached.load(Ordering::Relaxed),
            )
        });
        let models: Vec<serde_json::Value> = models
            .into_iter()
            .filter(|(db, id, ..)| show(*db, *id))
            .map(|(db, id, version, bytes, hits, last)| {
                let idle = (last > 0).then(|| ((now - last).max(0) as f64 / 1e5).round() / 10.0);
                serde_json::json!({"database": db_name(db), "model_id": id, "version": version,
                    "bytes": bytes, "uses": hits, "idle_s": idle})
            })
            .collect();
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let passes = ld(&self.passes);
        let mean =
            |x: u64| (passes > 0).then(|| (x as f64 / passes as f64 * 100.0).round() / 100.0);
        let v = serde_json::json!({
            "worker_pid": worker_pid,
            "worker_starts": ld(&self.generation),
            "device": worker_pid.map(|_| device),
            "device_note": (!note.is_empty()).then_some(note),
            "threads": self.threads.load(Ordering::Relaxed),
            "max_batch": self.max_batch.load(Ordering::Relaxed),
            "cached_models": models,
            "cached_model_count": n_cached,
            "cache_bytes": cache_bytes,
            "cache_limit_bytes": cache_limit,
            "queue_depth": self.queued(),
            "in_progress": self.in_progress.load(Ordering::Relaxed)
                .saturating_sub(self.waiting.load(Ordering::Relaxed)),
            "requests_served": ld(&self.requests),
            "contexts_served": ld(&self.contexts),
            "forward_passes": passes,
            "mean_batch_size": mean(ld(&self.requests)),
            "mean_batch_contexts": mean(ld(&self.contexts)),
            "models_loaded": ld(&self.loads),
            "model_requests": ld(&self.need_model),
            "evictions": ld(&self.evictions),
            "requests_abandoned": ld(&self.abandoned),
            "trainings": ld(&self.trainings),
            "trainings_running": self.trainings_running.load(Ordering::Relaxed),
            "errors": ld(&self.errors),
        });
        match v {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("a JSON object literal"),
        }
    }
}

pub fn put_str(dst: &[AtomicU8], s: &str) {
    let b = s.as_bytes();
    let n = b.len().min(dst.len() - 1);
    for (i, d) in dst.iter().enumerate() {
        d.store(if i < n { b[i] } else { 0 }, Ordering::Relaxed);
    }
}

pub fn get_str(src: &[AtomicU8]) -> String {
    let b: Vec<u8> = src
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .take_while(|&c| c != 0)
        .collect();
    String::from_utf8_lossy(&b).into_owned()
}

/// Unix time, µs.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_cache_is_what_status_lists() {
        // SAFETY: atomics only (no request slots): all-zero is the initial state.
        let sh: Box<Shared> = unsafe { Box::new(std::mem::zeroed()) };
        let model = |i: usize| ListedModel {
            db_oid: 1 + (i % 2) as u32,
            model_id: i as i64,
            version: 1,
            bytes: 100,
            hits: i as u64,
            last_used_us: 0,
        };
        sh.publish_cache((7000, 9000), MAX_LISTED + 6, (0..MAX_LISTED + 6).map(model));
        let all = sh.status(Some(1), &|_, _| true, &|db| Some(format!("db{db}")));
        assert_eq!(all["cached_model_count"], MAX_LISTED + 6);
        assert_eq!(
            (
                all["cache_bytes"].as_u64(),
                all["cache_limit_bytes"].as_u64()
            ),
            (Some(7000), Some(9000))
        );
        let listed = all["cached_models"].as_array().unwrap();
        assert_eq!(listed.len(), MAX_LISTED);
        assert_eq!(
            (&listed[3]["database"], &listed[3]["uses"]),
            (&"db2".into(), &3.into())
        );
        let mine = sh.status(None, &|db, _| db == 1, &|_| None);
        assert_eq!(
            mine["cached_models"].as_array().unwrap().len(),
            MAX_LISTED / 2
        );
        // Fewer models later: only those are listed.
        sh.publish_cache((0, 9000), 1, (0..1).map(model));
        let one = sh.status(None, &|_, _| true, &|_| None);
        assert_eq!(one["cached_models"].as_array().unwrap().len(), 1);
    }
}
