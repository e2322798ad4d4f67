//! A predictive query written in place of a task name (`rdl_predict('PREDICT ... FOR EACH
//! t.id', id)`): compiled with the default anchor options, its anchors placed in the
//! data's time range as a task's are, and kept per session by the extension's key (role,
//! search path, text). It has no trained model: it is answered in context.

use std::rc::Rc;

use super::error::Result;
use super::source::Split;
use crate::base::capped::Capped;
use crate::pql::{self, AnchorOptions, TaskSpec};
use crate::schema::SchemaGraph;

/// A compiled ad-hoc query and the anchors of its training and validation splits.
pub struct AdHoc {
    pub spec: Rc<TaskSpec>,
    train: Vec<i64>,
    val: Vec<i64>,
}

impl AdHoc {
    /// Compiles `text` against `graph`, anchors placed in the data's `(min, max)` times
    /// (`range`, asked once the query compiled).
    pub fn compile(
        text: &str,
        graph: &SchemaGraph,
        range: impl FnOnce(&TaskSpec) -> (i64, i64),
    ) -> Result<AdHoc> {
        let spec = pql::compile(text, graph, &AnchorOptions::default())?;
        let (min_t, max_t) = range(&spec);
        let splits = spec.splits(min_t, max_t)?;
        Ok(AdHoc {
            spec: Rc::new(spec),
            train: splits.train,
            val: splits.val,
        })
    }

    /// The anchors of a split (none for the test split: nothing is evaluated on it).
    pub fn anchors(&self, split: Split) -> &[i64] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &[],
        }
    }
}

/// Compiled ad-hoc queries by key; past [`KEPT`], forgotten all at once.
pub struct Queries(Capped<String, Rc<AdHoc>>);

/// Queries kept at most.
const KEPT: usize = 64;

impl Default for Queries {
    fn default() -> Self {
        Queries(Capped::new(KEPT))
    }
}

impl Queries {
    /// The query under `key`, compiled by `compile` the first time.
    pub fn get_or(
        &mut self,
        key: String,
        compile: impl FnOnce() -> Result<AdHoc>,
    ) -> Result<Rc<AdHoc>> {
        if let Some(a) = self.0.get(&key) {
            return Ok(a.clone());
        }
        let a = Rc::new(compile()?);
        self.0.insert(key, a.clone());
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_told_from_task_names_and_kept_per_key() {
        assert!(pql::is_query(
            "  predict COUNT(orders.*, 0, 30, days) = 0 for each customers.customer_id"
        ));
        for name in [
            "churn",
            "PREDICT",
            "predictions for each",
            "PREDICTION FOR EACH x",
        ] {
            assert!(!pql::is_query(name), "{name}");
        }
        let graph = crate::testutil::drivers_results(("points", "float8"), "timestamp");
        let q = "PREDICT COUNT(results.*, 0, 30, days) = 0 FOR EACH drivers.driver_id";
        let day = 86_400_000_000i64;
        let mut queries = Queries::default();
        let a = queries
            .get_or("k".into(), || AdHoc::compile(q, &graph, |_| (0, 400 * day)))
            .unwrap();
        assert!(!a.anchors(Split::Train).is_empty() && a.anchors(Split::Test).is_empty());
        let b = queries
            .get_or("k".into(), || panic!("compiled again"))
            .unwrap();
        assert!(Rc::ptr_eq(&a, &b));
        let bad = "PREDICT COUNT(nope.*, 0, 30, days) = 0 FOR EACH drivers.driver_id";
        let e = queries
            .get_or("k2".into(), || AdHoc::compile(bad, &graph, |_| (0, day)))
            .err()
            .unwrap();
        assert_eq!(e.sqlstate, "42P01", "{e:?}");
    }
}
