//! Tasks: a name for a compiled predictive query and its anchors.
//! `rdl_create_task`, `rdl_drop_task`, `rdl_task_table`, `rdl_labels` (and the `rdl_tasks`
//! view, created with the extension's storage).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{JsonB, PgOid};
use rdl_engine::pql::{self, PqlError, TaskSpec, TaskType};

use crate::catalog;
use crate::error::{spi, RdlError};
use crate::pgtime;
use crate::sql::{execute, query_one, query_two};

impl From<PqlError> for RdlError {
    fn from(e: PqlError) -> Self {
        RdlError {
            sqlstate: e.sqlstate,
            message: e.message,
            detail: e.detail,
            hint: e.hint,
        }
    }
}

/// A stored task, as loaded by the functions that use it.
pub struct Task {
    pub spec: TaskSpec,
}

/// What one round trip tells about a task: its row version, its active model and, for
/// the tables a cached model reads, the first the caller may not read (`missing:` prefix
/// when it no longer exists).
pub struct TaskState {
    pub task: Rc<Task>,
    pub active_model: Option<i64>,
    /// The active model row's version (`xmin:ctid`), with `active_model`.
    pub active_tag: Option<String>,
    /// A fingerprint of the columns of the tables asked about.
    pub columns_tag: Option<String>,
    pub denied_table: Option<String>,
}

/// What a function does with a task (see `storage.rs` for the rule).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Predict, explain, evaluate, inspect: the owner or a grantee.
    Use,
    /// Train, activate, grant, drop: the owner.
    Modify,
}

thread_local! {
    /// Parsed specs by (role, task name), with the row version (`xmin`, `ctid`) they were
    /// read at. Keyed by role: an older spec is compiled again against the caller's view
    /// of the catalog (see [`read_task`]), and a cache never serves one role what was
    /// built for another.
    static TASKS: RefCell<HashMap<(pg_sys::Oid, String), (String, Rc<Task>)>> =
        RefCell::new(HashMap::new());
}

/// A fingerprint of the columns of the tables `$2::text[]`: DDL since a model was loaded
/// makes it check them again.
macro_rules! columns_tag_sql {
    () => {
        "(SELECT pg_catalog.md5(pg_catalog.string_agg(
                    pg_catalog.concat_ws(':', a.attrelid, a.attnum, a.attname, a.atttypid), ','
                    ORDER BY a.attrelid, a.attnum))
          FROM pg_catalog.unnest($2::pg_catalog.text[]) AS x
          JOIN pg_catalog.pg_attribute a
            ON a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(x)
           AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped)"
    };
}

/// [`columns_tag_sql`] alone (`$1` unused, so that the same text serves).
pub const COLUMNS_TAG_SQL: &str =
    concat!("SELECT $1::pg_catalog.text IS NULL, ", columns_tag_sql!());

// Runs as the owner of rdl's tables; `$3` is the caller, whose rights are checked
// explicitly (has_table_privilege / pg_has_role with the role given).
const STATE_SQL: &str = concat!(
    "
SELECT pg_catalog.concat_ws(':', t.xmin, t.ctid),
       (SELECT m.id FROM rdl.models m WHERE m.task OPERATOR(pg_catalog.=) t.name AND m.active),
       (SELECT CASE WHEN pg_catalog.to_regclass(x) IS NULL THEN 'missing:' ELSE '' END
               OPERATOR(pg_catalog.||) x
          FROM pg_catalog.unnest($2::pg_catalog.text[]) AS x
         WHERE pg_catalog.to_regclass(x) IS NULL
            OR NOT pg_catalog.has_table_privilege($3, pg_catalog.to_regclass(x), 'SELECT')
         LIMIT 1),
       pg_catalog.pg_has_role($3, t.owner, 'MEMBER'),
       EXISTS (SELECT 1 FROM rdl.task_grants g
               WHERE g.task OPERATOR(pg_catalog.=) t.name
                 AND (g.grantee::pg_catalog.oid OPERATOR(pg_catalog.=) 0::pg_catalog.oid
                      OR pg_catalog.pg_has_role($3, g.grantee, 'MEMBER'))),
       t.owner::pg_catalog.text,
       -- Model ids start again at 1 in a re-created extension: the row version tells a
       -- cached model from a new one with the same id.
       (SELECT pg_catalog.concat_ws(':', m.xmin, m.ctid) FROM rdl.models m
         WHERE m.task OPERATOR(pg_catalog.=) t.name AND m.active),
       -- The columns of the tables the cached model reads: DDL since it was loaded makes
       -- it check them again.
       ",
    columns_tag_sql!(),
    "
FROM rdl.tasks t WHERE t.name OPERATOR(pg_catalog.=) $1"
);

/// The task `name`, its active model and the readability of `tables`, in one statement,
/// after checking that the caller may `access` it (42501 otherwise); the spec is parsed
/// again only when the task's row changed. Unknown task: 42704.
pub fn task_state(name: &str, tables: &[String], access: Access) -> TaskState {
    let caller = crate::storage::caller();
    let row = crate::storage::as_owner(|| {
        crate::sql::connect(|client| {
            let stmt = crate::plans::kept(
                client,
                STATE_SQL,
                &[
                    PgOid::from(pg_sys::TEXTOID),
                    PgOid::from(pg_sys::TEXTARRAYOID),
                    PgOid::from(pg_sys::OIDOID),
                ],
            );
            let t = spi(client.select(
                &*stmt,
                Some(1),
                &[name.into(), tables.to_vec().into(), caller.into()],
            ));
            if t.is_empty() {
                return None;
            }
            let t = t.first();
            Some((
                spi(t.get::<String>(1)).unwrap_or_default(),
                spi(t.get::<i64>(2)),
                spi(t.get::<String>(3)),
                spi(t.get::<bool>(4)).unwrap_or(false),
                spi(t.get::<bool>(5)).unwrap_or(false),
                spi(t.get::<String>(6)).unwrap_or_default(),
                spi(t.get::<String>(7)),
                spi(t.get::<String>(8)),
            ))
        })
    });
    let Some((tag, active_model, denied_table, is_owner, granted, owner, active_tag, columns_tag)) =
        row
    else {
        RdlError::new("42704", format!("task \"{name}\" does not exist"))
            .hint("Create it with rdl_create_task(name, query); list tasks with SELECT * FROM rdl_tasks.")
            .raise()
    };
    match access {
        Access::Modify if !is_owner => {
            RdlError::new("42501", format!("must be owner of task \"{name}\""))
                .detail(format!("Task \"{name}\" belongs to role {owner}."))
                .hint("Only the task's owner (or a member of its role) may train, activate, grant or drop it.")
                .raise()
        }
        Access::Use if !is_owner && !granted => {
            RdlError::new("42501", format!("permission denied for task \"{name}\""))
                .detail(format!("Task \"{name}\" belongs to role {owner}."))
                .hint(format!(
                    "Ask its owner to run SELECT rdl_grant_task('{}', '<your role>').",
                    name.replace('\'', "''")
                ))
                .raise()
        }
        _ => {}
    }
    let key = (caller, name.to_string());
    let cached = TASKS.with(|c| {
        c.borrow()
            .get(&key)
            .filter(|(t, _)| *t == tag)
            .map(|(_, task)| task.clone())
    });
    let task = cached.unwrap_or_else(|| {
        let task = Rc::new(read_task(name));
        TASKS.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= 1024 {
                c.clear(); // bounded: a backend cycling through many tasks and roles
            }
            c.insert(key, (tag, task.clone()))
        });
        task
    });
    TaskState {
        task,
        active_model,
        active_tag,
        columns_tag,
        denied_table,
    }
}

/// A task the caller may use.
pub fn load_task(name: &str) -> Rc<Task> {
    task_state(name, &[], Access::Use).task
}

/// A task the caller owns.
pub fn load_task_to_modify(name: &str) -> Rc<Task> {
    task_state(name, &[], Access::Modify).task
}

/// The task's spec, its label statements generated anew. A spec stored by an older
/// version is compiled again from its query text against the caller's view of the
/// catalog: nothing an older version stored is run verbatim.
fn read_task(name: &str) -> Task {
    let spec = crate::storage::as_owner(|| {
        query_one::<JsonB>(
            "SELECT t.spec FROM rdl.tasks t WHERE t.name OPERATOR(pg_catalog.=) $1",
            &[name.into()],
        )
    });
    let Some(JsonB(spec)) = spec else {
        RdlError::new("42704", format!("task \"{name}\" does not exist")).raise()
    };
    let unreadable = |e: String| -> ! {
        RdlError::new(
            "XX000",
            format!("task \"{name}\" has an unreadable spec: {e}"),
        )
        .hint("It was created by an incompatible rdl version: drop and re-create the task.")
        .raise()
    };
    match pql::load_stored(spec) {
        Ok(pql::Stored::Current(spec)) => Task { spec: *spec },
        Ok(pql::Stored::Outdated { query, options }) => {
            let graph = catalog::read_graph(None);
            match pql::compile(&query, &graph, &options) {
                Ok(spec) => Task { spec },
                Err(e) => RdlError::from(e)
                    .detail(format!(
                        "Task \"{name}\" was created by an older rdl and is compiled again from its query, which no longer compiles."
                    ))
                    .raise(),
            }
        }
        Err(e) => unreadable(e),
    }
}

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
    if name.trim().is_empty() {
        RdlError::new("22023", "task name must not be empty").raise()
    }
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
    let opts =
        pql::TaskOptions::from_json(&options_json).unwrap_or_else(|e| RdlError::from(e).raise());
    let graph = catalog::read_graph(None);
    let spec = pql::compile(query, &graph, &opts).unwrap_or_else(|e| RdlError::from(e).raise());

    let range_sql = format!(
        "SELECT (extract(epoch FROM r.min_time) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8, \
                (extract(epoch FROM r.max_time) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8 FROM ({}) r",
        pql::time_range_sql(&graph)
    );
    let (min_t, max_t) = query_two::<i64, i64>(&range_sql, &[]);
    let (Some(min_t), Some(max_t)) = (min_t, max_t) else {
        RdlError::new(
            "55000",
            "the database has no timed rows to place anchors in",
        )
        .hint("Load data into a table with a time column, or set one with rdl_set_time_column.")
        .raise()
    };
    let splits = spec
        .splits(min_t, max_t)
        .unwrap_or_else(|e| RdlError::from(e).raise());

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
                anchors(&splits.train).into(),
                anchors(&splits.val).into(),
                anchors(&splits.test).into(),
                caller.into(),
            ],
        )
    });

    let mut out = spec_json;
    if let Some(o) = out.as_object_mut() {
        // The SQL is stored with the task; the caller wants the meaning.
        o.remove("sql");
        o.remove("sql_at");
        o.insert("name".into(), name.into());
        o.insert(
            "anchors".into(),
            serde_json::json!({
                "val_cutoff": rdl_engine::base::time::format_timestamp(splits.val_cutoff),
                "test_cutoff": rdl_engine::base::time::format_timestamp(splits.test_cutoff),
                "train": split_summary(&splits.train),
                "val": split_summary(&splits.val),
                "test": split_summary(&splits.test),
            }),
        );
    }
    JsonB(out)
}

fn anchors(us: &[i64]) -> Vec<TimestampWithTimeZone> {
    us.iter().map(|&t| pgtime::to_pg(t)).collect()
}

fn split_summary(a: &[i64]) -> serde_json::Value {
    let first = a
        .iter()
        .min()
        .map(|&t| rdl_engine::base::time::format_timestamp(t));
    let last = a
        .iter()
        .max()
        .map(|&t| rdl_engine::base::time::format_timestamp(t));
    serde_json::json!({ "count": a.len(), "first": first, "last": last })
}

/// Drops a task with its models, runs and grants (its owner only).
#[pg_extern]
fn rdl_drop_task(name: &str) -> bool {
    load_task_to_modify(name);
    crate::storage::as_owner(|| {
        execute(
            "DELETE FROM rdl.tasks t WHERE t.name OPERATOR(pg_catalog.=) $1",
            &[name.into()],
        )
    });
    TASKS.with(|c| c.borrow_mut().retain(|(_, n), _| n != name));
    true
}

/// Lets `role` (a role name, or `public`) use task `name`: predict, explain, evaluate and
/// inspect it. Only the owner may grant; the grantee still needs SELECT on every table the
/// model reads.
#[pg_extern]
fn rdl_grant_task(name: &str, role: &str) -> bool {
    load_task_to_modify(name);
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
    load_task_to_modify(name);
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
    load_task_to_modify(name);
    let grantee = role_oid(role);
    crate::storage::as_owner(|| {
        query_one::<bool>(
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

pub type LabelRow = (
    name!(entity_id, String),
    name!(anchor_time, TimestampWithTimeZone),
    name!(label, Option<f64>),
    name!(label_text, Option<String>),
);

/// The training table of a split: one row per (entity, anchor) with its label, computed
/// by one set-based statement as the calling user. `label` holds binary and regression
/// labels; `label_text` the class of a multiclass task and the item list of a ranking task.
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
    let task = load_task(name);
    TableIterator::new(split_rows(name, &task, split))
}

/// The rows of a split: its anchors' labels, and for a task split by entity (a static
/// target) only the entities of that split.
pub fn split_rows(name: &str, task: &Task, split: &str) -> Vec<LabelRow> {
    let anchors = split_anchors(name, split);
    let mut rows = run_labels(task, task.spec.label_sql(), anchors.into());
    if task.spec.splits_by_entity() {
        rows.retain(|r| rdl_engine::pql::static_split_of(&r.0) == split);
    }
    rows
}

/// The anchors of a task's split (`train`, `val` or `test`).
pub fn split_anchors(name: &str, split: &str) -> Vec<TimestampWithTimeZone> {
    let column = match split {
        "train" => "train_anchors",
        "val" => "val_anchors",
        "test" => "test_anchors",
        other => RdlError::new("22023", format!("unknown split \"{other}\""))
            .hint("Use 'train', 'val' or 'test'.")
            .raise(),
    };
    crate::storage::as_owner(|| {
        query_one(
            &format!("SELECT t.{column} FROM rdl.tasks t WHERE t.name OPERATOR(pg_catalog.=) $1"),
            &[name.into()],
        )
    })
    .unwrap_or_default()
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
    let task = load_task(name);
    let rows = run_labels(&task, task.spec.labels_at_sql(), anchor.into());
    TableIterator::new(rows.into_iter().map(|(e, _, l, t)| (e, l, t)))
}

fn run_labels(task: &Task, sql: &str, first: pgrx::datum::DatumWithOid<'static>) -> Vec<LabelRow> {
    let mut args = vec![first];
    for p in &task.spec.params {
        args.push(p.clone().into());
    }
    let kind = task.spec.task_type;
    crate::sql::connect(|client| {
        let table = spi(client.select(sql, None, &args));
        let mut rows = Vec::with_capacity(table.len());
        for row in table {
            let entity: String = spi(row.get(1)).unwrap_or_default();
            let Some(anchor) = spi(row.get::<TimestampWithTimeZone>(2)) else {
                continue;
            };
            let (label, text) = match kind {
                TaskType::BinaryClassification | TaskType::Regression => {
                    (spi(row.get::<f64>(3)), None)
                }
                TaskType::MulticlassClassification => (None, spi(row.get::<String>(3))),
                TaskType::Ranking => (
                    None,
                    spi(row.get::<Vec<Option<String>>>(3)).map(|v| {
                        let items: Vec<String> = v.into_iter().flatten().collect();
                        format!("{{{}}}", items.join(","))
                    }),
                ),
            };
            rows.push((entity, anchor, label, text));
        }
        rows
    })
}
