//! Reads the schema graph from `pg_catalog` (never information_schema): tables the caller may
//! SELECT, their primary keys, columns and types, foreign keys, and time columns (user
//! overrides from `rdl.time_columns`, else detection by the engine).
//!
//! The statements run with the search path locked (`sql.rs`), so `format_type` qualifies
//! every type outside `pg_catalog`; whether a table is visible without a schema (how a
//! predictive query may name it) is computed against the caller's own path, read before.

use std::collections::HashMap;

use rdl_engine::pipeline::access::unreadable_linked;
use rdl_engine::schema::{infer_semantic, Column, ForeignKey, SchemaGraph, Table};

use crate::error::{raise, spi, RdlError};
use crate::sql::query_one;

// Whether a relation is visible on the caller's path ($2, namespace oids in search
// order): its schema is on the path and no schema before it holds a relation of that
// name — pg_table_is_visible, but for the caller's path rather than the locked one.
macro_rules! visible_sql {
    () => {
        "(SELECT p.ord FROM pg_catalog.unnest($2::pg_catalog.oid[]) WITH ORDINALITY p(ns, ord)
           WHERE p.ns OPERATOR(pg_catalog.=) c.relnamespace)
         OPERATOR(pg_catalog.=)
         (SELECT pg_catalog.min(p.ord) FROM pg_catalog.unnest($2::pg_catalog.oid[]) WITH ORDINALITY p(ns, ord)
           JOIN pg_catalog.pg_class c2 ON c2.relnamespace OPERATOR(pg_catalog.=) p.ns
          WHERE c2.relname OPERATOR(pg_catalog.=) c.relname)"
    };
}

// User schemas only; `$1` an optional list of schema names.
macro_rules! user_tables_sql {
    () => {
        "FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
WHERE c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p']::pg_catalog.\"char\"[])
  AND NOT c.relispartition
  AND NOT n.nspname OPERATOR(pg_catalog.=) ANY (ARRAY['pg_catalog', 'information_schema', 'rdl']::pg_catalog.name[])
  AND NOT n.nspname OPERATOR(pg_catalog.~) '^pg_(toast|temp_)'
  AND ($1::pg_catalog.text[] IS NULL OR n.nspname::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]))"
    };
}

const TABLES_SQL: &str = concat!(
    "SELECT c.oid::pg_catalog.int8, n.nspname::pg_catalog.text, c.relname::pg_catalog.text,
       CASE WHEN c.relkind OPERATOR(pg_catalog.=) 'p' THEN 'partitioned table' ELSE 'table' END,
       ",
    visible_sql!(),
    ", GREATEST(c.reltuples, 0)::pg_catalog.float8
",
    user_tables_sql!(),
    "
  AND pg_catalog.has_table_privilege(c.oid, 'SELECT')
ORDER BY n.nspname, c.relname"
);

// Tables of the same schemas the caller may not read: named in "permission denied" errors.
const UNREADABLE_SQL: &str = concat!(
    "SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text, ",
    visible_sql!(),
    "\n",
    user_tables_sql!(),
    "
  AND NOT pg_catalog.has_table_privilege(c.oid, 'SELECT')"
);

// Domains are read as their base type; string statistics decide categorical vs text.
const COLUMNS_SQL: &str = r#"
SELECT a.attrelid::pg_catalog.int8, a.attname::pg_catalog.text,
       pg_catalog.format_type(a.atttypid, a.atttypmod),
       NOT a.attnotnull,
       COALESCE(bt.typcategory, t.typcategory)::pg_catalog.text,
       COALESCE(bt.typname, t.typname)::pg_catalog.text,
       (SELECT s.n_distinct::pg_catalog.float8 FROM pg_catalog.pg_stats s
         WHERE s.schemaname OPERATOR(pg_catalog.=) n.nspname
           AND s.tablename OPERATOR(pg_catalog.=) c.relname
           AND s.attname OPERATOR(pg_catalog.=) a.attname
         ORDER BY s.inherited DESC LIMIT 1)
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
LEFT JOIN pg_catalog.pg_type bt ON t.typtype OPERATOR(pg_catalog.=) 'd'
                              AND bt.oid OPERATOR(pg_catalog.=) t.typbasetype
WHERE a.attrelid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.int8[]::pg_catalog.oid[])
  AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"#;

// Top-level constraints only: partitions inherit clones of their parent's (conparentid <> 0).
const CONSTRAINTS_SQL: &str = r#"
SELECT con.contype::pg_catalog.text, con.conname::pg_catalog.text,
       con.conrelid::pg_catalog.int8, con.confrelid::pg_catalog.int8,
       ARRAY(SELECT a.attname::pg_catalog.text
             FROM pg_catalog.unnest(con.conkey) WITH ORDINALITY k(num, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) con.conrelid
                                           AND a.attnum OPERATOR(pg_catalog.=) k.num
             ORDER BY k.ord),
       ARRAY(SELECT a.attname::pg_catalog.text
             FROM pg_catalog.unnest(con.confkey) WITH ORDINALITY k(num, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) con.confrelid
                                           AND a.attnum OPERATOR(pg_catalog.=) k.num
             ORDER BY k.ord),
       EXISTS (SELECT FROM pg_catalog.pg_index i
               JOIN pg_catalog.pg_class ic ON ic.oid OPERATOR(pg_catalog.=) i.indexrelid
               JOIN pg_catalog.pg_am am ON am.oid OPERATOR(pg_catalog.=) ic.relam
               WHERE i.indrelid OPERATOR(pg_catalog.=) con.conrelid AND i.indisvalid
                 AND i.indpred IS NULL
                 AND am.amname OPERATOR(pg_catalog.=) ANY (ARRAY['btree', 'hash']::pg_catalog.name[])
                 AND i.indkey[0] OPERATOR(pg_catalog.=) ANY (con.conkey))
FROM pg_catalog.pg_constraint con
WHERE con.contype OPERATOR(pg_catalog.=) ANY (ARRAY['p', 'f']::pg_catalog."char"[])
  AND con.conrelid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.int8[]::pg_catalog.oid[])
  AND con.conparentid OPERATOR(pg_catalog.=) 0::pg_catalog.oid
ORDER BY con.conrelid, con.conname
"#;

const OVERRIDES_SQL: &str = r#"
SELECT o.table_oid::pg_catalog.oid::pg_catalog.int8, o.column_name::pg_catalog.text
FROM rdl.time_columns o
WHERE o.table_oid::pg_catalog.oid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.int8[]::pg_catalog.oid[])
"#;

// Tables reachable from an entity table through foreign keys (either direction) within a
// number of hops, whatever the caller's privileges: the first one the caller may not read.
const UNREADABLE_LINKED_SQL: &str = r#"
WITH RECURSIVE fk AS (
    SELECT conrelid AS a, confrelid AS b FROM pg_catalog.pg_constraint
    WHERE contype OPERATOR(pg_catalog.=) 'f' AND conparentid OPERATOR(pg_catalog.=) 0::pg_catalog.oid
), reach (rel, d) AS (
    SELECT $1::pg_catalog.regclass::pg_catalog.oid, 0
    UNION
    SELECT CASE WHEN fk.a OPERATOR(pg_catalog.=) r.rel THEN fk.b ELSE fk.a END,
           r.d OPERATOR(pg_catalog.+) 1
    FROM reach r JOIN fk ON r.rel OPERATOR(pg_catalog.=) fk.a OR r.rel OPERATOR(pg_catalog.=) fk.b
    WHERE r.d OPERATOR(pg_catalog.<) $2
)
SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM reach r
JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.rel
JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
WHERE NOT n.nspname OPERATOR(pg_catalog.=) ANY (ARRAY['pg_catalog', 'information_schema', 'rdl']::pg_catalog.name[])
  AND NOT pg_catalog.has_table_privilege(r.rel, 'SELECT')
ORDER BY r.d, 1
LIMIT 1
"#;

/// Errors with 42501 when the caller may not read a table linked to `entity_table` within
/// `depth` hops: such a table would otherwise be silently missing from the context.
pub fn check_linked_readable(entity_table: &str, depth: u8, task: &str) {
    let denied = query_one::<String>(
        UNREADABLE_LINKED_SQL,
        &[entity_table.into(), (depth as i32).into()],
    );
    if let Some(t) = denied {
        raise(unreadable_linked(task, entity_table, depth, &t))
    }
}

/// The schema graph of the given schemas (all non-system schemas when `None`), as the
/// calling user sees it.
pub fn read_graph(schemas: Option<Vec<String>>) -> SchemaGraph {
    let path = crate::sql::caller_path();
    crate::sql::connect(|client| {
        let mut oids: Vec<i64> = Vec::new();
        let mut tables: Vec<Table> = Vec::new();
        let mut rows_est: Vec<f64> = Vec::new();
        let schemas_arg = schemas.clone();
        let path_arg = path.clone();
        for row in spi(client.select(TABLES_SQL, None, &[schemas.into(), path.into()])) {
            let oid: i64 = spi(row.get(1)).unwrap_or_default();
            let text = |i| spi(row.get::<String>(i)).unwrap_or_default();
            oids.push(oid);
            rows_est.push(spi(row.get::<f64>(6)).unwrap_or(0.0));
            let visible = spi(row.get(5)).unwrap_or(false);
            tables.push(Table::new(text(2), text(3), text(4), visible));
        }
        let index: HashMap<i64, usize> = oids.iter().enumerate().map(|(i, o)| (*o, i)).collect();

        for row in spi(client.select(COLUMNS_SQL, None, &[oids.clone().into()])) {
            let oid: i64 = spi(row.get(1)).unwrap_or_default();
            let Some(&ti) = index.get(&oid) else { continue };
            let category: String = spi(row.get(5)).unwrap_or_default();
            let typname: String = spi(row.get(6)).unwrap_or_default();
            let n_distinct: Option<f64> = spi(row.get(7));
            tables[ti].columns.push(Column {
                name: spi(row.get(2)).unwrap_or_default(),
                pg_type: spi(row.get(3)).unwrap_or_default(),
                semantic: infer_semantic(
                    category.chars().next().unwrap_or('X'),
                    &typname,
                    n_distinct,
                    rows_est[ti],
                ),
                nullable: spi(row.get(4)).unwrap_or(true),
            });
        }

        let mut foreign_keys = Vec::new();
        for row in spi(client.select(CONSTRAINTS_SQL, None, &[oids.clone().into()])) {
            let kind: String = spi(row.get(1)).unwrap_or_default();
            let rel: i64 = spi(row.get(3)).unwrap_or_default();
            let Some(&ti) = index.get(&rel) else { continue };
            let cols: Vec<String> = spi(row.get(5)).unwrap_or_default();
            if kind == "p" {
                tables[ti].primary_key = cols;
                continue;
            }
            // An edge to a table the caller cannot read is not part of their graph.
            let frel: i64 = spi(row.get(4)).unwrap_or_default();
            let Some(&fi) = index.get(&frel) else {
                continue;
            };
            foreign_keys.push(ForeignKey {
                name: spi(row.get(2)).unwrap_or_default(),
                table: tables[ti].table.clone(),
                columns: cols,
                ref_table: tables[fi].table.clone(),
                ref_columns: spi(row.get(6)).unwrap_or_default(),
                indexed: spi(row.get(7)).unwrap_or(true),
            });
        }

        let mut overrides: HashMap<i64, Option<String>> = HashMap::new();
        for row in spi(client.select(OVERRIDES_SQL, None, &[oids.clone().into()])) {
            overrides.insert(spi(row.get(1)).unwrap_or_default(), spi(row.get(2)));
        }

        let warnings = (tables.iter_mut().enumerate())
            .filter_map(|(i, t)| t.choose_time_column(overrides.remove(&oids[i])))
            .collect();

        let unreadable =
            spi(client.select(UNREADABLE_SQL, None, &[schemas_arg.into(), path_arg.into()]))
                .map(|row| {
                    (
                        spi(row.get::<String>(1)).unwrap_or_default(),
                        spi(row.get::<String>(2)).unwrap_or_default(),
                        spi(row.get::<bool>(3)).unwrap_or(false),
                    )
                })
                .collect();
        let mut graph = SchemaGraph {
            tables,
            foreign_keys,
            warnings,
            unreadable,
        };
        graph.finish();
        graph
    })
}

/// The data's time range, µs: where anchors are placed. 55000 when no table has a time.
pub fn data_range(graph: &rdl_engine::schema::SchemaGraph) -> (i64, i64) {
    let range_sql = format!(
        "SELECT (extract(epoch FROM r.min_time) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8, \
                (extract(epoch FROM r.max_time) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8 FROM ({}) r",
        rdl_engine::pql::time_range_sql(graph)
    );
    match crate::sql::query_two::<i64, i64>(&range_sql, &[]) {
        (Some(min_t), Some(max_t)) => (min_t, max_t),
        _ => RdlError::new(
            "55000",
            "the database has no timed rows to place anchors in",
        )
        .hint("Load data into a table with a time column, or set one with rdl_set_time_column.")
        .raise(),
    }
}
