//! One entity's context at one time, as a model sees it, with what-if changes applied:
//! what single predictions, explanations and recommendations start from.

use super::error::{Error, Result};
use super::gather::{check_fits, hide, Hidden};
use super::source::Source;
use crate::base::time::format_timestamp;
use crate::encode::Subgraph;
use crate::sampler::Plan;
use crate::whatif;

pub struct One {
    pub key: String,
    /// µs since the Unix epoch.
    pub anchor: i64,
    pub context: Subgraph,
    /// Via which foreign key each row was reached (`None` for the seed, and for rows a
    /// what-if added).
    pub via: Vec<Option<String>>,
}

impl From<whatif::WhatIfError> for Error {
    fn from(e: whatif::WhatIfError) -> Error {
        let r = Error::new(e.sqlstate, format!("assuming: {}", e.message));
        match e.hint {
            Some(h) => r.hint(h),
            None => r,
        }
    }
}

/// Gathers `key`'s context in `table` at `anchor`; 42704 naming the entity when it does
/// not exist then. `assuming` (what-if changes, see [`whatif`]) is applied after the
/// hidden column is removed, so a what-if can never reveal it.
pub fn gather_one(
    src: &mut dyn Source,
    plan: &Plan,
    table: &str,
    (key, anchor): (&str, i64),
    hidden: Option<&Hidden>,
    assuming: Option<&serde_json::Value>,
) -> Result<One> {
    let seed = [(key.to_string(), anchor)];
    let mut g = src.gather(plan, table, &seed)?;
    hide(&mut g.contexts, hidden);
    check_fits(&seed, &g.contexts, src.memory_limit())?;
    if g.found.first() != Some(&true) {
        return Err(Error::new(
            "42704",
            format!(
                "entity {key} does not exist in {table} as of {}",
                format_timestamp(anchor)
            ),
        )
        .hint("Check the id, or pass an as_of time at which the entity existed."));
    }
    let mut context = g.contexts.swap_remove(0);
    let mut via = g.via.swap_remove(0);
    if let Some(a) = assuming {
        let changes = whatif::parse(a, plan)?;
        whatif::apply(&mut context, &changes, plan, table)?;
        // Rows added or removed: "via" is only known for the rows the sampler gathered.
        via.resize(context.rows.len(), None);
    }
    Ok(One {
        key: key.to_string(),
        anchor,
        context,
        via,
    })
}
