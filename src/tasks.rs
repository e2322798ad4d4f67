//! Task rows: reading a task the caller may use (or modify), with its active model's
//! identity in the same round trip; the per-backend cache of parsed specs; and the
//! labels of its splits, computed by the task's label statements as the calling user.

use std::cell::RefCell;
use std::rc::Rc;

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{JsonB, PgOid};
use rdl_engine::base::capped::Capped;
use rdl_engine::pipeline::{access, check_applies, Label, Labeled, Needs, Split};
use rdl_engine::pql::{self, TaskSpec, TaskType};

use crate::catalog;
use crate::error::{raise, spi, RdlError};
use crate::pgtime;
use crate::sql::query_one;

/// What one round trip tells about a task: its row version, its active model and, for
/// the tables a cached model reads, the first the caller may not read (`missing:` prefix
/// when it no longer exists).
pub struct TaskState {
    pub spec: Rc<TaskSpec>,
    pub active_model: Option<i64>,
    /// The active model row's version (`xmin:ctid`), with `active_model`.
    pub active_tag: Option<String>,
    /// A fingerprint of the columns of the tables asked about.
    pub columns_tag: Option<String>,
    pub denied_table: Option<String>,
}

/// What a function does with a task (see `storage.rs` for the rule).
pub use rdl_engine::pipeline::access::Access;

/// Parsed specs by (role, task name), with the row version they were read at.
type SpecCache = Capped<(pg_sys::Oid, String), (String, Rc<TaskSpec>)>;

thread_local! {
    /// Parsed specs by (role, task name), with the row version (`xmin`, `ctid`) they were
    /// read at. Keyed by role: an older spec is compiled again against the caller's view
    /// of the catalog (see [`read_task`]), and a cache never serves one role what was
    /// built for another. Bounded: a backend may cycle through many tasks and roles.
    static TASKS: RefCell<SpecCache> = RefCell::new(Capped::new(1024));
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
    access::check(name, access, &owner, is_owner, granted).unwrap_or_else(|e| raise(e));
    let key = (caller, name.to_string());
    let cached = TASKS.with(|c| {
        c.borrow()
            .get(&key)
            .filter(|(t, _)| *t == tag)
            .map(|(_, task)| task.clone())
    });
    let task = cached.unwrap_or_else(|| {
        let task = Rc::new(read_spec(name));
        TASKS.with(|c| c.borrow_mut().insert(key, (tag, task.clone())));
        task
    });
    TaskState {
        spec: task,
        active_model,
        active_tag,
        columns_tag,
        denied_table,
    }
}

/// The spec of a task the caller may use (or of an ad-hoc query, see [`crate::adhoc`]).
pub fn load(name: &str) -> Rc<TaskSpec> {
    match crate::adhoc::get(name) {
        Some(a) => a.spec.clone(),
        None => task_state(name, &[], Access::Use).spec,
    }
}

/// The spec of a task the caller owns.
pub fn load_to_modify(name: &str) -> Rc<TaskSpec> {
    task_state(name, &[], Access::Modify).spec
}

/// Forgets what this backend cached of task `name` (dropped).
pub fn forget(name: &str) {
    TASKS.with(|c| c.borrow_mut().retain(|(_, n), _| n != name));
}

/// The task's spec, its label statements generated anew. A spec stored by an older
/// version is compiled again from its query text against the caller's view of the
/// catalog: nothing an older version stored is run verbatim.
fn read_spec(name: &str) -> TaskSpec {
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
        Ok(pql::Stored::Current(spec)) => *spec,
        Ok(pql::Stored::Outdated { query, options }) => {
            let graph = catalog::read_graph(None);
            match pql::compile(&query, &graph, &options) {
                Ok(spec) => spec,
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

/// The labelled rows of a split: its anchors' labels, and for a task split by entity (a
/// static target) only the entities of that split. Computed by one set-based statement,
/// as the calling user.
pub fn split_rows(name: &str, spec: &TaskSpec, split: Split) -> Vec<Labeled> {
    let anchors = split_anchors(name, split);
    let mut rows = run_labels(spec, spec.label_sql(), anchors.into());
    if spec.splits_by_entity() {
        rows.retain(|r| rdl_engine::pql::static_split_of(&r.entity) == split.name());
    }
    rows
}

/// The anchors of a task's split.
pub fn split_anchors(name: &str, split: Split) -> Vec<TimestampWithTimeZone> {
    if let Some(a) = crate::adhoc::get(name) {
        return pgtime::to_pg_all(a.anchors(split));
    }
    let column = format!("{}_anchors", split.name());
    crate::storage::as_owner(|| {
        query_one(
            &format!("SELECT t.{column} FROM rdl.tasks t WHERE t.name OPERATOR(pg_catalog.=) $1"),
            &[name.into()],
        )
    })
    .unwrap_or_default()
}

/// Runs a label statement of `spec` (`$1` the anchors) as the calling user.
pub fn run_labels(
    spec: &TaskSpec,
    sql: &str,
    first: pgrx::datum::DatumWithOid<'static>,
) -> Vec<Labeled> {
    let mut args = vec![first];
    for p in &spec.params {
        args.push(p.clone().into());
    }
    let kind = spec.task_type;
    // Without JIT: a label statement's estimates (a row per anchor a fact row may fall
    // in) are far above its cost, and compiling it took 400 ms of a 20-ms statement on F1.
    crate::sql::with_setting(c"jit", c"off", || {
        crate::sql::connect(|client| {
            let table = spi(client.select(sql, None, &args));
            let mut rows = Vec::with_capacity(table.len());
            for row in table {
                let entity: String = spi(row.get(1)).unwrap_or_default();
                let Some(anchor) = spi(row.get::<TimestampWithTimeZone>(2)) else {
                    continue;
                };
                let label = match kind {
                    TaskType::BinaryClassification | TaskType::Regression => {
                        spi(row.get::<f64>(3)).map_or(Label::Missing, Label::Value)
                    }
                    TaskType::MulticlassClassification => {
                        spi(row.get::<String>(3)).map_or(Label::Missing, Label::Class)
                    }
                    TaskType::Ranking => spi(row.get::<Vec<Option<String>>>(3))
                        .map_or(Label::Missing, |v| {
                            Label::Items(v.into_iter().flatten().collect())
                        }),
                };
                rows.push(Labeled {
                    entity,
                    anchor: pgtime::from_pg(anchor),
                    label,
                });
            }
            rows
        })
    })
}

/// 42809 unless the task is of the kind `function` needs.
pub fn applies(t: &TaskSpec, task: &str, function: &str, needs: Needs) {
    check_applies(t.task_type, task, function, needs).unwrap_or_else(|e| crate::error::raise(e))
}
