//! Predictive queries in place of a task name ([`rdl_engine::pipeline::adhoc`]), compiled
//! as the caller, kept per session, role and search path, answered in context only.

use std::cell::RefCell;
use std::rc::Rc;

use crate::error::{raise, RdlError};
use rdl_engine::pipeline::adhoc::{AdHoc, Queries};

thread_local! {
    static QUERIES: RefCell<Queries> = Default::default();
}

/// The ad-hoc query `text`, compiled once per session; `None` when `text` is a task name.
/// 55000 when `rdl.in_context` is off (nothing else can answer it).
pub fn get(text: &str) -> Option<Rc<AdHoc>> {
    if !rdl_engine::pql::is_query(text) {
        return None;
    }
    if !crate::guc::IN_CONTEXT.get() {
        RdlError::new("55000", "an ad-hoc predictive query has no trained model")
            .hint("Ad-hoc queries are answered in context: SET rdl.in_context = on; or create a task with rdl_create_task(name, query) and train it.")
            .raise()
    }
    let key = (crate::storage::caller(), crate::sql::caller_path(), text);
    let key = format!("{key:?}");
    let compile = || {
        let graph = crate::catalog::read_graph(None);
        // The tables it reads first: no data range hides a table the caller may not read.
        let depth = rdl_engine::sampler::SamplerConfig::default().depth;
        AdHoc::compile(text, &graph, |spec| {
            crate::catalog::check_linked_readable(&spec.entity.table, depth, text);
            crate::catalog::data_range(&graph)
        })
    };
    let a = QUERIES.with(|q| q.borrow_mut().get_or(key, compile));
    Some(a.unwrap_or_else(|e| raise(e)))
}
