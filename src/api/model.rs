//! `rdl_activate`: roll a task back (or forward) to one of its model versions. Model rows
//! themselves: `models.rs`.

use pgrx::prelude::*;

/// Makes `version` the active model of `task` (roll back to an earlier one). Owner only.
#[pg_extern]
fn rdl_activate(task: &str, version: i32) -> bool {
    crate::tasks::load_to_modify(task);
    crate::models::activate(task, version);
    true
}
