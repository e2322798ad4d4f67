//! Recommendations from a ranking task (`LIST_DISTINCT(fact.fk, s, e, unit) RANK TOP k`):
//! `rdl_recommend` and `rdl_recommend_prepare` (computed by `pipeline::recommend`; see
//! `pipeline::ranking` for what is read when).
//!
//! **Caching.** Each backend keeps at most [`MAX_INDEXES`] item indexes keyed by (role,
//! model id, item-side time): the interaction log up to that time, the item statistics,
//! and the item embeddings computed so far (lazily, for the candidates asked for;
//! `rdl_recommend_prepare` computes them for the whole pool at once). A new model version
//! or a new day makes a new index; the first call of the day pays for reading the log and
//! for embedding its candidates. An index holds rows one role read (row-level security
//! applied): another role never gets it. Ranking runs in this backend, not on the
//! background worker: scoring is a few hundred dot products per entity.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{AnyElement, JsonB};
use rdl_engine::pipeline::recommend::{self, ItemIndex};
use rdl_engine::pipeline::{args, Needs, Source};
use rdl_engine::serve::Lru;

use crate::api::context::anchor_of;
use crate::entity;
use crate::error::raise;
use crate::models::Loaded;
use crate::source::SpiSource;
use crate::tasks::applies;

/// Item indexes kept per backend.
pub const MAX_INDEXES: usize = 4;

/// `(role, model id, model row version, item-side time)`: the row version tells a model
/// from another with the same id in a re-created extension.
type IndexKey = (pg_sys::Oid, i64, Option<String>, i64);

thread_local! {
    /// Each index counts 1: past [`MAX_INDEXES`], the least recently used goes.
    static INDEXES: RefCell<Lru<IndexKey, Rc<RefCell<ItemIndex>>>> =
        RefCell::new(Lru::new(MAX_INDEXES));
}

/// The item index of a model at item-side time `ti`, for the calling role: from the cache
/// or built (the log up to `ti` and the statistics; no embeddings yet).
pub fn index_for(src: &mut dyn Source, l: &Loaded, ti: i64) -> Rc<RefCell<ItemIndex>> {
    let key = (crate::storage::caller(), l.servable.id, l.tag.clone(), ti);
    if let Some(idx) = INDEXES.with(|c| c.borrow_mut().get(&key).cloned()) {
        return idx;
    }
    let idx = Rc::new(RefCell::new(
        ItemIndex::build(src, &l.servable, ti).unwrap_or_else(|e| raise(e)),
    ));
    INDEXES.with(|c| c.borrow_mut().insert(key, idx.clone(), 1));
    idx
}

/// The top `k` items for one entity as of `as_of` (default: now): `(item_id, score, rank)`.
/// `exclude_owned` leaves out the items the entity already had (up to `as_of`). NULL id:
/// no rows.
#[pg_extern]
#[allow(clippy::type_complexity)]
fn rdl_recommend(
    task: Option<&str>,
    entity_id: Option<AnyElement>,
    k: default!(i32, 10),
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
    exclude_owned: default!(bool, false),
) -> TableIterator<'static, (name!(item_id, String), name!(score, f64), name!(rank, i32))> {
    let task = crate::error::not_null(task, "task");
    let k = args::top_items(k).unwrap_or_else(|e| raise(e));
    let Some(id) = entity_id else {
        // Still an error for an unknown task or a task of another kind.
        applies(
            &crate::tasks::load(task),
            task,
            "rdl_recommend",
            Needs::Ranking,
        );
        return TableIterator::new(Vec::new());
    };
    let (spec, l) =
        crate::models::active(task, |t| applies(t, task, "rdl_recommend", Needs::Ranking));
    let key = entity::key_text(&id, &spec.entity.key_type, task);
    let anchor = anchor_of(as_of);
    let mut src = SpiSource::new(task, &spec);
    let ti = recommend::index_time(&l.servable, anchor).unwrap_or_else(|e| raise(e));
    let idx = index_for(&mut src, &l, ti);
    let mut idx = idx.borrow_mut();
    let rows = recommend::recommend(
        &mut src,
        &l.servable,
        &spec,
        &mut idx,
        (&key, anchor),
        k,
        exclude_owned,
    )
    .unwrap_or_else(|e| raise(e));
    TableIterator::new(rows)
}

/// Builds the item index of the active model as of `as_of` (default: now) and embeds every
/// item of its pool, so that later `rdl_recommend` calls of the day only score. Returns
/// the item-side time, the pool size, how many items were embedded, and the seconds taken.
#[pg_extern]
fn rdl_recommend_prepare(
    task: Option<&str>,
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> JsonB {
    let task = crate::error::not_null(task, "task");
    let t0 = Instant::now();
    let (spec, l) = crate::models::active(task, |t| {
        applies(t, task, "rdl_recommend_prepare", Needs::Ranking)
    });
    let mut src = SpiSource::new(task, &spec);
    let ti = recommend::index_time(&l.servable, anchor_of(as_of)).unwrap_or_else(|e| raise(e));
    let idx = index_for(&mut src, &l, ti);
    let mut idx = idx.borrow_mut();
    let log_s = t0.elapsed().as_secs_f64();
    let pool = idx
        .prepare(&mut src, &l.servable)
        .unwrap_or_else(|e| raise(e));
    JsonB(idx.prepared(pool, log_s, t0.elapsed().as_secs_f64()))
}
