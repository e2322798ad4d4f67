//! `rdl_context`: the rows the model sees for one entity at one time.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{AnyElement, JsonB};
use rdl_engine::anchors::format_timestamp;
use rdl_engine::encode::Value;
use rdl_engine::sampler::{Plan, SamplerConfig};
use serde_json::{json, Map};

use crate::api::task::load_task;
use crate::catalog;
use crate::entity;
use crate::error::RdlError;

/// The anchor for a prediction: `as_of`, or the current time.
pub fn anchor_of(as_of: Option<TimestampWithTimeZone>) -> i64 {
    match as_of {
        Some(ts) => crate::pgtime::from_pg(ts),
        // now() is the transaction's start time: read it directly, not through SPI, since
        // every rdl_predict call lands here.
        None => {
            crate::pgtime::from_pg_raw(unsafe { pg_sys::GetCurrentTransactionStartTimestamp() })
        }
    }
}

/// The context subgraph gathered for `entity_id` as of `as_of` (default: now): every row
/// with its table, key, time, hop, the foreign key it was reached through, its parents in
/// the context and its values. A row newer than `as_of` is never among them.
#[pg_extern]
fn rdl_context(
    task: &str,
    entity_id: Option<AnyElement>,
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> Option<JsonB> {
    let t = load_task(task);
    let id = entity_id?;
    let key = entity::key_text(&id, &t.spec.entity.key_type, task);
    let anchor = anchor_of(as_of);
    let graph = catalog::read_graph(None);
    let plan = Plan::new(&graph, SamplerConfig::default());
    if !plan.tables.contains_key(&t.spec.entity.table) {
        RdlError::new(
            "42501",
            format!("permission denied for table {}", t.spec.entity.table),
        )
        .hint("rdl reads tables as the calling user; ask the owner to GRANT SELECT.")
        .raise()
    }
    // A static target stays hidden on the seed row, exactly as in training.
    let hide = crate::api::model::hidden_column(&t);
    let g = crate::sampler::gather(
        &plan,
        &t.spec.entity.table,
        &[(key.clone(), anchor)],
        hide.as_deref(),
    );
    if !g.found[0] {
        RdlError::new(
            "42704",
            format!(
                "entity {key} does not exist in {} as of {}",
                t.spec.entity.table,
                format_timestamp(anchor)
            ),
        )
        .hint("Check the id, or pass an as_of time at which the entity existed.")
        .raise()
    }
    let ctx = &g.contexts[0];
    let mut by_table = Map::new();
    let rows: Vec<serde_json::Value> = ctx
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let n = by_table.entry(r.table.clone()).or_insert(json!(0));
            *n = json!(n.as_i64().unwrap_or(0) + 1);
            let mut values = Map::new();
            for (name, _, v) in &r.values {
                values.insert(
                    name.clone(),
                    match v {
                        Value::Null => serde_json::Value::Null,
                        Value::Num(x) => json!(x),
                        Value::Bool(b) => json!(b),
                        Value::Text(s) => json!(s),
                        Value::Time(t) => json!(format_timestamp(*t)),
                    },
                );
            }
            json!({
                "table": r.table,
                "key": r.key,
                "time": r.time.map(format_timestamp),
                "hop": r.hop,
                "via": g.via[0][i],
                "parents": r.parents,
                "values": values,
            })
        })
        .collect();
    Some(JsonB(json!({
        "task": task,
        "entity": key,
        "as_of": format_timestamp(anchor),
        "row_count": rows.len(),
        "rows_by_table": by_table,
        "rows": rows,
    })))
}
