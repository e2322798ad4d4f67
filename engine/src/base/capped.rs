//! A map that starts over when full: the per-backend caches of things that are cheap to
//! rebuild (parsed task specs, loaded models, kept plans, ad-hoc queries), where a bound on
//! what a backend holds matters more than which entries survive.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

pub struct Capped<K, V> {
    map: HashMap<K, V>,
    cap: usize,
}

impl<K: Hash + Eq, V> Capped<K, V> {
    /// An empty map that holds at most `cap` entries.
    pub fn new(cap: usize) -> Self {
        Capped {
            map: HashMap::new(),
            cap,
        }
    }

    pub fn get<Q: Hash + Eq + ?Sized>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.map.get(k)
    }

    /// Inserts (or replaces) an entry, emptying the map first when it is full.
    pub fn insert(&mut self, k: K, v: V) {
        if self.map.len() >= self.cap {
            self.map.clear();
        }
        self.map.insert(k, v);
    }

    /// Keeps only the entries `keep` says to.
    pub fn retain(&mut self, keep: impl FnMut(&K, &mut V) -> bool) {
        self.map.retain(keep);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_map_starts_over() {
        let mut m: Capped<String, u32> = Capped::new(2);
        m.insert("a".into(), 1);
        m.insert("b".into(), 2);
        assert_eq!((m.len(), m.get("a"), m.get("b")), (2, Some(&1), Some(&2)));
        // Full: the third entry empties it first, even a replacement.
        m.insert("c".into(), 3);
        assert_eq!((m.len(), m.get("a"), m.get("c")), (1, None, Some(&3)));
        m.insert("c".into(), 4);
        assert_eq!(m.get("c"), Some(&4));
        m.insert("d".into(), 5);
        m.retain(|k, _| k != "c");
        assert_eq!((m.len(), m.get("d")), (1, Some(&5)));
        assert!(!m.is_empty());
    }
}
