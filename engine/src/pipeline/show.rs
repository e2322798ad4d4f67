//! Contexts as users read them (JSON): `rdl_context`'s answer, and the rows an
//! explanation quotes. One rendering, so both show a row the same way.

use serde_json::{json, Map, Value};

use crate::base::time::format_timestamp;
use crate::encode::{RawRow, Subgraph, Value as Cell};

/// A cell: numbers, booleans and text as themselves, times as UTC text.
pub fn cell(v: &Cell) -> Value {
    match v {
        Cell::Null => Value::Null,
        Cell::Num(x) => json!(x),
        Cell::Bool(b) => json!(b),
        Cell::Text(s) => json!(s),
        Cell::Time(t) => json!(format_timestamp(*t)),
    }
}

/// A row: table, key, time, hop, the foreign key it came through, and its values.
pub fn row(r: &RawRow, via: Option<&str>) -> Map<String, Value> {
    let values: Map<String, Value> = r
        .values
        .iter()
        .map(|(name, _, v)| (name.to_string(), cell(v)))
        .collect();
    let mut o = Map::new();
    o.insert("table".into(), json!(r.table));
    o.insert("key".into(), json!(r.key));
    o.insert("time".into(), json!(r.time.map(format_timestamp)));
    o.insert("hop".into(), json!(r.hop));
    o.insert("via".into(), json!(via));
    o.insert("values".into(), Value::Object(values));
    o
}

/// `rdl_context`'s answer: every row of the context (with its parents' positions), and
/// how many each table gave.
pub fn context(
    task: &str,
    key: &str,
    anchor: i64,
    ctx: &Subgraph,
    via: &[Option<String>],
) -> Value {
    let mut by_table = Map::new();
    let rows: Vec<Value> = ctx
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let n = by_table.entry(r.table.to_string()).or_insert(json!(0));
            *n = json!(n.as_i64().unwrap_or(0) + 1);
            let mut o = row(r, via.get(i).cloned().flatten().as_deref());
            o.insert("parents".into(), json!(r.parents));
            Value::Object(o)
        })
        .collect();
    json!({
        "task": task,
        "entity": key,
        "as_of": format_timestamp(anchor),
        "row_count": rows.len(),
        "rows_by_table": by_table,
        "rows": rows,
    })
}
