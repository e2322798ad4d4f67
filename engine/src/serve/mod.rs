//! The PostgreSQL-free parts of rdl's background worker: its byte-bounded LRU cache of
//! models and the plan that merges concurrent requests into forward passes (here), the
//! layout of its shared memory (`shared`), its request protocol (`protocol`) and the
//! codec of the encoded contexts requests carry (`wire`).

pub mod pool;
pub mod protocol;
pub mod shared;
pub mod wire;

use std::collections::HashMap;
use std::hash::Hash;

/// An LRU cache bounded by the sum of its entries' sizes. The entry just inserted or used
/// is never evicted, so one model larger than the whole budget still serves (alone).
pub struct Lru<K, V> {
    entries: HashMap<K, Entry<V>>,
    tick: u64,
    used: usize,
    limit: usize,
}

pub struct Entry<V> {
    pub value: V,
    pub size: usize,
    /// Tick of the last use (larger is more recent).
    pub last_used: u64,
    pub hits: u64,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    pub fn new(limit: usize) -> Self {
        Lru {
            entries: HashMap::new(),
            tick: 0,
            used: 0,
            limit,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sum of the entries' sizes.
    pub fn used(&self) -> usize {
        self.used
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn contains(&self, k: &K) -> bool {
        self.entries.contains_key(k)
    }

    /// The value, marked as just used.
    pub fn get(&mut self, k: &K) -> Option<&V> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(k).map(|e| {
            e.last_used = tick;
            e.hits += 1;
            &e.value
        })
    }

    /// The value, mutable, marked as just used.
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(k).map(|e| {
            e.last_used = tick;
            e.hits += 1;
            &mut e.value
        })
    }

    /// Inserts (or replaces) an entry and evicts the least recently used others until the
    /// sizes fit the limit. Returns the evicted keys.
    pub fn insert(&mut self, k: K, v: V, size: usize) -> Vec<K> {
        self.tick += 1;
        if let Some(old) = self.entries.remove(&k) {
            self.used -= old.size;
        }
        self.entries.insert(
            k.clone(),
            Entry {
                value: v,
                size,
                last_used: self.tick,
                hits: 0,
            },
        );
        self.used += size;
        self.evict(Some(&k))
    }

    /// Changes the limit, evicting what no longer fits (keeping the most recent entry).
    pub fn set_limit(&mut self, limit: usize) -> Vec<K> {
        self.limit = limit;
        let newest = self
            .entries
            .iter()
            .max_by_key(|(_, e)| e.last_used)
            .map(|(k, _)| k.clone());
        self.evict(newest.as_ref())
    }

    fn evict(&mut self, keep: Option<&K>) -> Vec<K> {
        let mut out = Vec::new();
        while self.used > self.limit {
            let victim = self
                .entries
                .iter()
                .filter(|(k, _)| Some(*k) != keep)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            let Some(v) = victim else { break };
            if let Some(e) = self.entries.remove(&v) {
                self.used -= e.size;
            }
            out.push(v);
        }
        out
    }

    /// Every entry, most recently used first.
    pub fn entries(&self) -> Vec<(&K, &Entry<V>)> {
        let mut v: Vec<_> = self.entries.iter().collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.1.last_used));
        v
    }
}

/// The requests of the next forward pass, as indices into `reqs` (`(model key, contexts)`
/// in arrival order): the oldest request, then the later ones for the same model, in
/// order, while the contexts total at most `max_batch` (the oldest always goes, however
/// large). Requests for other models wait for a later pass.
pub fn next_batch<K: Eq>(reqs: &[(K, usize)], max_batch: usize) -> Vec<usize> {
    let Some((key, first)) = reqs.first() else {
        return Vec::new();
    };
    let mut out = vec![0];
    let mut total = *first;
    for (i, (k, n)) in reqs.iter().enumerate().skip(1) {
        if k == key && total + n <= max_batch.max(1) {
            out.push(i);
            total += n;
        }
    }
    out
}

/// The message a caught panic carries (`"panic"` when it is neither a `String` nor a
/// `&str`): the worker's threads report their panics as errors.
pub fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// Splits `n` items into consecutive ranges of at most `chunk` (none when `n` is 0).
pub fn chunks(n: usize, chunk: usize) -> Vec<std::ops::Range<usize>> {
    let chunk = chunk.max(1);
    (0..n.div_ceil(chunk))
        .map(|i| i * chunk..((i + 1) * chunk).min(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_least_recent_within_budget() {
        let mut c: Lru<&str, u32> = Lru::new(10);
        assert!(c.insert("a", 1, 4).is_empty());
        assert!(c.insert("b", 2, 4).is_empty());
        assert_eq!(c.get(&"a"), Some(&1)); // a is now more recent than b
        assert_eq!(c.insert("c", 3, 4), vec!["b"]);
        assert!(c.contains(&"a") && c.contains(&"c") && !c.contains(&"b"));
        assert_eq!(c.used(), 8);
        // Replacing an entry re-counts its size.
        assert!(c.insert("a", 9, 6).is_empty());
        assert_eq!((c.used(), c.get(&"a")), (10, Some(&9)));
        // An entry larger than the whole budget stays, alone.
        assert_eq!(c.insert("big", 0, 50), vec!["c", "a"]);
        assert_eq!((c.len(), c.used()), (1, 50));
        assert!(c.get(&"missing").is_none());
        // Shrinking the limit keeps the most recent entry only.
        let mut c: Lru<u8, ()> = Lru::new(100);
        for k in 0..5 {
            c.insert(k, (), 10);
        }
        c.get(&1);
        let mut ev = c.set_limit(25);
        ev.sort();
        assert_eq!(ev, vec![0, 2, 3]);
        let order: Vec<u8> = c.entries().iter().map(|(k, _)| **k).collect();
        assert_eq!(order, vec![1, 4]);
        assert_eq!(c.entries()[0].1.hits, 1);
        *c.get_mut(&4).unwrap() = ();
        assert_eq!(c.entries()[0].0, &4);
    }

    #[test]
    fn batches_merge_per_model_up_to_the_limit() {
        let mut reqs = vec![
            ("m1", 3),
            ("m2", 1),
            ("m1", 4),
            ("m1", 2),
            ("m2", 9),
            ("m1", 1),
        ];
        let mut passes = Vec::new();
        while !reqs.is_empty() {
            let b = next_batch(&reqs, 8);
            passes.push(b.iter().map(|&i| reqs[i]).collect::<Vec<_>>());
            for &i in b.iter().rev() {
                reqs.remove(i);
            }
        }
        assert_eq!(
            passes,
            vec![
                vec![("m1", 3), ("m1", 4), ("m1", 1)], // 8: the 2 would make 9
                vec![("m2", 1)],                       // 1 + 9 > 8
                vec![("m1", 2)],
                vec![("m2", 9)], // larger than the limit: alone
            ]
        );
        assert!(next_batch::<u8>(&[], 4).is_empty());
        assert_eq!(next_batch(&[(1, 5), (1, 5)], 0), vec![0]);
    }

    #[test]
    fn panics_tell_their_message() {
        // Their messages also go to the (captured) test output.
        let caught = |f: fn()| panic_message(std::panic::catch_unwind(f).unwrap_err());
        let got = [
            caught(|| panic!("static")),
            caught(|| panic!("formatted {}", 1)),
            caught(|| std::panic::panic_any(7u8)),
        ];
        assert_eq!(got, ["static", "formatted 1", "panic"]);
    }

    #[test]
    fn chunking() {
        assert!(chunks(0, 4).is_empty());
        assert_eq!(chunks(3, 4), vec![0..3]);
        assert_eq!(chunks(9, 4), vec![0..4, 4..8, 8..9]);
        assert_eq!(chunks(2, 0), vec![0..1, 1..2]);
    }
}
