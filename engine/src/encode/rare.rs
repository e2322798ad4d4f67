//! Which categorical values recur enough to be worth an embedding of their own.
//!
//! A text value seen with only one or two entities in training (a username, an e-mail, a
//! free-text memo, a serial number) cannot teach anything that carries over to another
//! entity; its hashed embedding only lets the model memorise those entities' labels, and
//! on small training sets it does so within a few epochs. Such values are encoded as
//! their column's "rare value" bucket instead: the model still sees that the cell holds an
//! uncommon value. Recurrence is counted in distinct seed entities, not rows: a dimension
//! row's name ("Ferrari") is one row but appears in the contexts of many entities.
//!
//! Values are counted by their hash bucket, not one by one: the counter then holds at most
//! `n_buckets` entries per column whatever the data. A column with more distinct values
//! than buckets shares each bucket among many entities anyway and keeps them all.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Distinct seed entities a value must appear with to keep its own bucket.
pub const MIN_ENTITIES: usize = 3;

/// Counts, per `(column, bucket)`, the distinct seed entities it appears with (up to
/// [`MIN_ENTITIES`]: that is all the decision needs, and it bounds the memory).
#[derive(Default)]
pub struct RecurrenceCounter {
    seen: HashMap<(u32, u32), Vec<u64>>,
    names: BTreeMap<String, u32>,
}

impl RecurrenceCounter {
    /// Records that `bucket` of column `name` appeared in a context of the entity whose
    /// key hashes to `entity`.
    pub fn add(&mut self, name: &str, bucket: u32, entity: u64, min_entities: usize) {
        let n = self.names.len() as u32;
        let id = *self.names.entry(name.to_string()).or_insert(n);
        let v = self.seen.entry((id, bucket)).or_default();
        if v.len() < min_entities && !v.contains(&entity) {
            v.push(entity);
        }
    }

    /// Per categorical column, the buckets seen with at least `min_entities` entities.
    pub fn frequent(&self, min_entities: usize) -> BTreeMap<String, BTreeSet<u32>> {
        let mut by_id: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); self.names.len()];
        for (&(id, b), v) in &self.seen {
            if v.len() >= min_entities {
                by_id[id as usize].insert(b);
            }
        }
        self.names
            .iter()
            .map(|(name, &id)| (name.clone(), std::mem::take(&mut by_id[id as usize])))
            .collect()
    }
}

/// The rendering whose bucket stands for every rare value of a column.
pub const RARE: &str = "\u{1}rare";

#[cfg(test)]
mod tests {
    use super::super::{Encoder, EncoderConfig, Kind, RawRow, Subgraph, Value};
    use crate::schema::SemanticType as S;

    /// Entity `e`'s context: its own unique username, and a plan shared by all entities.
    fn ctx(e: usize) -> Subgraph {
        let plan = ["basic", "pro"][e % 2];
        Subgraph {
            anchor: 0,
            seed: 0,
            rows: vec![RawRow::new(
                "public.u",
                e.to_string(),
                None,
                0,
                vec![],
                vec![
                    ("username", S::Text, Value::Text(format!("user_{e}"))),
                    ("plan", S::Categorical, Value::Text(plan.into())),
                ],
            )],
        }
    }

    fn buckets(enc: &Encoder, sg: &Subgraph) -> Vec<u32> {
        let e = enc.encode(sg);
        (0..e.n_tokens())
            .filter(|&i| e.kind[i] == Kind::Cat as u8)
            .map(|i| e.bucket[i])
            .collect()
    }

    #[test]
    fn values_of_one_entity_share_the_rare_bucket() {
        // Each entity three times (three anchors): repeats of one entity are not recurrence.
        let train: Vec<Subgraph> = (0..10).flat_map(|e| [ctx(e), ctx(e), ctx(e)]).collect();
        let enc = Encoder::fit(EncoderConfig::default(), &train);
        let (a, b) = (buckets(&enc, &ctx(0)), buckets(&enc, &ctx(1)));
        assert_eq!(a[0], b[0], "unique usernames all take the rare bucket");
        assert_eq!(a[0], buckets(&enc, &ctx(99))[0], "so does an unseen one");
        assert_ne!(
            a[1], b[1],
            "plans recur across entities and keep their buckets"
        );
        assert_ne!(a[0], a[1]);
        // A model stored before `frequent` existed encodes every value as it always did.
        let mut old = enc.clone();
        old.frequent.clear();
        assert_ne!(buckets(&old, &ctx(0))[0], buckets(&old, &ctx(1))[0]);
        assert_eq!(buckets(&old, &ctx(0))[1], a[1]);
    }
}
