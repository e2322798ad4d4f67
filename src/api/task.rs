//! Tasks: a name for a compiled predictive query and its anchors. `rdl_create_task`,
//! `rdl_drop_task`, `rdl_grant_task`, `rdl_revoke_task`, `rdl_set_task_owner`,
//! `rdl_task_table`, `rdl_labels` (and the `rdl_tasks` view, created with the extension's
//! storage). Task rows themselves: `tasks.rs`.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::JsonB;
use rdl_engine::pipeline::report::task_created;
use rdl_engine::pipeline::{args, Split};
use rdl_engine::pql;

use crate::catalog;
use crate::error::{raise, RdlError};
use crate::pgtime;
use crate::sql::{execute, query_one};
use crate::tasks;

/// Compiles `query` against the schema graph, derives the anchors of each split from the
/// data's time range, and stores the task. Returns the compiled spec.
#[pg_extern]
fn rdl_create_task(
    name: Option<&str>,
    query: Option<&str>,
    options: default!(Option<JsonB>, "'{}'"),
) -> JsonB {
    let name = crate::error::not_null(name, "name");
    let query = crate::error::not_null(query, "query");
    args::task_name(name).unwrap_or_else(|e| raise(e));
    let exists = crate::storage::as_owner(|| {
        query_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM rdl.tasks t WHERE t.name OPERATOR(pg_catalog.=) $1)",
            &[name.into()],
        )
    });
    if exists == Some(true) {
        RdlError::new("42710", format!("task \"{name}\" already exists"))
            .hint(format!(
                "Choose another name, or drop it first with SELECT rdl_drop_task('{}').",
                name.replace('\'', "''")
            ))
            .raise()
    }
    let options_json = options.map(|j| j.0).unwrap_or(serde_json::Value::Null);
    let opts = pql::AnchorOptions::from_json(&options_json).unwrap_or_else(|e| raise(e));
    let graph = catalog::read_graph(None);
    let spec = pql::compile(query, &graph, &opts).unwrap_or_else(|e| raise(e));

    let (min_t, max_t) = catalog::data_range(&graph);
    let splits = spec.splits(min_t, max_t).unwrap_or_else(|e| raise(e));

    let spec_json = serde_json::to_value(&spec).expect("TaskSpec serialises");
    let caller = crate::storage::caller();
    crate::storage::as_owner(|| {
        execute(
            "INSERT INTO rdl.tasks (name, query, options, spec, data_min, data_max,
                                train_anchors, val_anchors, test_anchors, owner)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::pg_catalog.oid::pg_catalog.regrole)",
            &[
                name.into(),
                query.into(),
                JsonB(options_json).into(),
                JsonB(spec_json.clone()).into(),
                pgtime::to_pg(min_t).into(),
                pgtime::to_pg(max_t).into(),
                pgtime::to_pg_all(&splits.train).into(),
                pgtime::to_pg_all(&splits.val).into(),
                pgtime::to_pg_all(&splits.test).into(),
                caller.into(),
            ],
        )
    });

    JsonB(task_created(spec_json, name, &splits))
}

/// Drops a task with its models, runs and grants (its owner only).
#[pg_extern]
fn rdl_drop_task(name: &str) -> bool {
    tasks::load_to_modify(name);
    crate::storage::as_owner(|| {
        execute(
            "DELETE FROM rdl.tasks t WHERE t.name OPERATOR(pg_catalog.=) $1",
            &[name.into()],
        )
    });
    tasks::forget(name);
    true
}

/// Lets `role` (a role name, or `public`) use task `name`: predict, explain, evaluate and
/// inspect it. Only the owner may grant; the grantee still needs SELECT on every table the
/// model reads.
#[pg_extern]
fn rdl_grant_task(name: &str, role: &str) -> bool {
    tasks::load_to_modify(name);
    let grantee = role_oid(role);
    let caller = crate::storage::caller();
    crate::storage::as_owner(|| {
        execute(
            "INSERT INTO rdl.task_grants (task, grantee, granted_by)
             VALUES ($1, $2::pg_catalog.int8::pg_catalog.oid::pg_catalog.regrole,
                     $3::pg_catalog.oid::pg_catalog.regrole)
             ON CONFLICT DO NOTHING",
            &[name.into(), grantee.into(), caller.into()],
        )
    });
    true
}

/// Hands task `name` to `role`, as `ALTER ... OWNER TO` does: the caller must own the task
/// and be a member of the new owner role (a superuser is both). Used after an upgrade from
/// 0.1.0, whose tasks all go to the extension's owner (see `sql/rdl--0.1.0--0.2.0.sql`).
#[pg_extern]
fn rdl_set_task_owner(name: &str, role: &str) -> bool {
    tasks::load_to_modify(name);
    let new_owner = role_oid(role);
    if new_owner == 0 {
        RdlError::new("22023", "a task's owner must be a role, not PUBLIC")
            .hint("Grant the task to PUBLIC with rdl_grant_task(name, 'public') instead.")
            .raise()
    }
    let member = query_one::<bool>(
        "SELECT pg_catalog.pg_has_role($1::pg_catalog.int8::pg_catalog.oid, 'MEMBER')",
        &[new_owner.into()],
    );
    if member != Some(true) {
        RdlError::new("42501", format!("must be able to SET ROLE \"{role}\""))
            .hint("Only a member of the new owner role (or a superuser) may hand a task to it.")
            .raise()
    }
    crate::storage::as_owner(|| {
        execute(
            "UPDATE rdl.tasks SET owner = $2::pg_catalog.int8::pg_catalog.oid::pg_catalog.regrole
             WHERE name OPERATOR(pg_catalog.=) $1",
            &[name.into(), new_owner.into()],
        )
    });
    true
}

/// Takes back a grant made with [`rdl_grant_task`]. Returns whether there was one.
#[pg_extern]
fn rdl_revoke_task(name: &str, role: &str) -> bool {
    tasks::load_to_modify(name);
    let grantee = role_oid(role);
    crate::storage::as_owner(|| {
        crate::sql::write_one::<bool>(
            "WITH d AS (DELETE FROM rdl.task_grants g
                        WHERE g.task OPERATOR(pg_catalog.=) $1
                          AND g.grantee OPERATOR(pg_catalog.=) $2::pg_catalog.int8::pg_catalog.oid::pg_catalog.regrole
                        RETURNING 1)
             SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 FROM d",
            &[name.into(), grantee.into()],
        )
    })
    .unwrap_or(false)
}

/// The oid of role `role` (0 for `public`), as int8: pgrx passes an invalid `Oid` as NULL.
/// Unknown role: 42704.
fn role_oid(role: &str) -> i64 {
    if role.eq_ignore_ascii_case("public") {
        return 0;
    }
    query_one::<i64>(
        "SELECT r.oid::pg_catalog.int8 FROM pg_catalog.pg_roles r
         WHERE r.rolname OPERATOR(pg_catalog.=) $1",
        &[role.into()],
    )
    .unwrap_or_else(|| {
        RdlError::new("42704", format!("role \"{role}\" does not exist"))
            .hint("Name an existing role, or 'public'.")
            .raise()
    })
}

/// The training table of a split: one row per (entity, anchor) with its label, computed
/// by one set-based statement as the calling user.
#[pg_extern]
fn rdl_task_table(
    name: &str,
    split: default!(&str, "'train'"),
) -> TableIterator<
    'static,
    (
        name!(entity_id, String),
        name!(anchor_time, TimestampWithTimeZone),
        name!(label, Option<f64>),
        name!(label_text, Option<String>),
    ),
> {
    let spec = tasks::load(name);
    let split: Split = split.parse().unwrap_or_else(|e| raise(e));
    let rows = tasks::split_rows(name, &spec, split)
        .into_iter()
        .map(|r| {
            let (l, t) = r.label.columns();
            (r.entity, pgtime::to_pg(r.anchor), l, t)
        })
        .collect::<Vec<_>>();
    TableIterator::new(rows)
}

/// The labels at one anchor time.
#[pg_extern]
fn rdl_labels(
    name: &str,
    anchor: TimestampWithTimeZone,
) -> TableIterator<
    'static,
    (
        name!(entity_id, String),
        name!(label, Option<f64>),
        name!(label_text, Option<String>),
    ),
> {
    let spec = tasks::load(name);
    let rows = tasks::run_labels(&spec, spec.labels_at_sql(), anchor.into());
    TableIterator::new(rows.into_iter().map(|r| {
        let (l, t) = r.label.columns();
        (r.entity, l, t)
    }))
}
