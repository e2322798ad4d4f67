//! Reads the schema graph from `pg_catalog` (never information_schema): tables the caller may
//! SELECT, their primary keys, columns and types, foreign keys, and time columns (user
//! overrides from `rdl.time_columns`, else detection by the engine).

use std::collections::HashMap;

use pgrx::prelude::*;
use rdl_engine::ident::quote_qualified;
use rdl_engine::schema::{
    detect_time_column, infer_semantic, Column, ForeignKey, SchemaGraph, Table, TimeSource,
};

use crate::error::{query_one, spi, RdlError};

const TABLES_SQL: &str = r#"
SELECT c.oid::int8, n.nspname::text, c.relname::text,
       CASE c.relkind WHEN 'p' THEN 'partitioned table' ELSE 'table' END,
       pg_catalog.pg_table_is_visible(c.oid), greatest(c.reltuples, 0)::float8
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'rdl')
  AND n.nspname !~ '^pg_(toast|temp_)'
  AND ($1::text[] IS NULL OR n.nspname = ANY ($1::text[]))
  AND pg_catalog.has_table_privilege(c.oid, 'SELECT')
ORDER BY n.nspname, c.relname
"#;

// Tables of the same schemas the caller may not read: named in "permission denied" errors.
const UNREADABLE_SQL: &str = r#"
SELECT n.nspname::text, c.relname::text, pg_catalog.pg_table_is_visible(c.oid)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'rdl')
  AND n.nspname !~ '^pg_(toast|temp_)'
  AND ($1::text[] IS NULL OR n.nspname = ANY ($1::text[]))
  AND NOT pg_catalog.has_table_privilege(c.oid, 'SELECT')
"#;

// Domains are read as their base type; string statistics decide categorical vs text.
const COLUMNS_SQL: &str = r#"
SELECT a.attrelid::int8, a.attname::text,
       pg_catalog.format_type(a.atttypid, a.atttypmod),
       NOT a.attnotnull,
       coalesce(bt.typcategory, t.typcategory)::text,
       coalesce(bt.typname, t.typname)::text,
       (SELECT s.n_distinct::float8 FROM pg_catalog.pg_stats s
         WHERE s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = a.attname
         ORDER BY s.inherited DESC LIMIT 1)
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
WHERE a.attrelid = ANY ($1::int8[]::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"#;

// Top-level constraints only: partitions inherit clones of their parent's (conparentid <> 0).
const CONSTRAINTS_SQL: &str = r#"
SELECT con.contype::text, con.conname::text, con.conrelid::int8, con.confrelid::int8,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num
             ORDER BY k.ord),
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num
             ORDER BY k.ord)
FROM pg_catalog.pg_constraint con
WHERE con.contype IN ('p', 'f')
  AND con.conrelid = ANY ($1::int8[]::oid[])
  AND con.conparentid = 0
ORDER BY con.conrelid, con.conname
"#;

const OVERRIDES_SQL: &str = r#"
SELECT table_oid::oid::int8, column_name::text FROM rdl.time_columns
WHERE table_oid::oid = ANY ($1::int8[]::oid[])
"#;

// Tables reachable from an entity table through foreign keys (either direction) within a
// number of hops, whatever the caller's privileges: the first one the caller may not read.
const UNREADABLE_LINKED_SQL: &str = r#"
WITH RECURSIVE fk AS (
    SELECT conrelid AS a, confrelid AS b FROM pg_catalog.pg_constraint
    WHERE contype = 'f' AND conparentid = 0
), reach (rel, d) AS (
    SELECT $1::regclass::oid, 0
    UNION
    SELECT CASE WHEN fk.a = r.rel THEN fk.b ELSE fk.a END, r.d + 1
    FROM reach r JOIN fk ON r.rel IN (fk.a, fk.b)
    WHERE r.d < $2
)
SELECT format('%I.%I', n.nspname, c.relname) FROM reach r
JOIN pg_catalog.pg_class c ON c.oid = r.rel
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'rdl')
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
        RdlError::new("42501", format!("permission denied for table {t}"))
            .detail(format!(
                "Task \"{task}\" reads every table linked to {entity_table} by foreign keys within {depth} hops, as the calling user."
            ))
            .hint("Ask the table's owner to GRANT SELECT on it to you.")
            .raise()
    }
}

/// The schema graph of the given schemas (all non-system schemas when `None`), as the
/// calling user sees it.
pub fn read_graph(schemas: Option<Vec<String>>) -> SchemaGraph {
    Spi::connect(|client| {
        let mut oids: Vec<i64> = Vec::new();
        let mut tables: Vec<Table> = Vec::new();
        let mut rows_est: Vec<f64> = Vec::new();
        let schemas_arg = schemas.clone();
        for row in spi(client.select(TABLES_SQL, None, &[schemas.into()])) {
            let oid: i64 = spi(row.get(1)).unwrap_or_default();
            let schema: String = spi(row.get(2)).unwrap_or_default();
            let name: String = spi(row.get(3)).unwrap_or_default();
            oids.push(oid);
            rows_est.push(spi(row.get::<f64>(6)).unwrap_or(0.0));
            tables.push(Table {
                table: quote_qualified(&schema, &name),
                schema,
                name,
                kind: spi(row.get(4)).unwrap_or_default(),
                primary_key: Vec::new(),
                columns: Vec::new(),
                time_column: None,
                time_source: None,
                visible: spi(row.get(5)).unwrap_or(false),
            });
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
            });
        }

        let mut overrides: HashMap<i64, Option<String>> = HashMap::new();
        for row in spi(client.select(OVERRIDES_SQL, None, &[oids.clone().into()])) {
            overrides.insert(spi(row.get(1)).unwrap_or_default(), spi(row.get(2)));
        }

        let mut warnings = Vec::new();
        for (i, t) in tables.iter_mut().enumerate() {
            match overrides.get(&oids[i]) {
                Some(col) => {
                    t.time_column = col.clone();
                    t.time_source = Some(TimeSource::User);
                }
                None => {
                    t.time_column = detect_time_column(&t.columns);
                    t.time_source = t.time_column.as_ref().map(|_| TimeSource::Detected);
                    let temporal = t
                        .columns
                        .iter()
                        .filter(|c| c.semantic == rdl_engine::schema::SemanticType::Timestamp)
                        .count();
                    if t.time_column.is_none() && temporal > 1 {
                        warnings.push(format!(
                            "table {} has {temporal} date/time columns and none is conventionally \
                             named: it is treated as static; choose one with \
                             rdl_set_time_column('{}', '<column>')",
                            t.table,
                            t.table.replace('\'', "''")
                        ));
                    }
                }
            }
        }

        let unreadable = spi(client.select(UNREADABLE_SQL, None, &[schemas_arg.into()]))
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
