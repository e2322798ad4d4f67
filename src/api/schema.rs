//! `rdl_schema_graph` and `rdl_set_time_column`: what rdl understands of the database.

use pgrx::prelude::*;
use pgrx::JsonB;
use rdl_engine::pipeline::args;

use crate::catalog;
use crate::error::{raise, spi, RdlError};
use crate::sql::{execute, query_one, query_two};

/// The schema graph as the caller sees it: tables with primary keys, typed columns, time
/// columns, and foreign keys. `schemas` limits it to those schemas.
#[pg_extern]
fn rdl_schema_graph(schemas: default!(Option<Vec<Option<String>>>, "NULL")) -> JsonB {
    let schemas = schemas.map(|v| {
        v.into_iter()
            .map(|s| crate::error::not_null(s, "a schema name"))
            .collect()
    });
    let graph = catalog::read_graph(schemas);
    match serde_json::to_value(&graph) {
        Ok(v) => JsonB(v),
        Err(e) => RdlError::new("XX000", format!("rdl: cannot serialise the graph: {e}")).raise(),
    }
}

/// Sets (or, with `col` NULL, removes) the time column of `tbl`: the moment each row became
/// known. A table whose time column is NULL is static: always visible to the model.
#[pg_extern]
fn rdl_set_time_column(tbl: Option<&str>, col: Option<&str>) -> String {
    let tbl = crate::error::not_null(tbl, "tbl");
    // The one statement that resolves through the caller's own search path: the name is
    // theirs. Fully qualified, and it runs no code of anyone's.
    let oid = spi(pgrx::Spi::get_one_with_args::<i64>(
        "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid::pg_catalog.int8",
        &[tbl.into()],
    ));
    let Some(oid) = oid else {
        RdlError::new("42P01", format!("relation \"{tbl}\" does not exist"))
            .hint("Name an existing table, schema-qualified if it is not on the search_path.")
            .raise()
    };
    let (relname, relkind) = query_two::<String, String>(
        "SELECT $1::pg_catalog.int8::pg_catalog.oid::pg_catalog.regclass::pg_catalog.text,
                c.relkind::pg_catalog.text
         FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.int8::pg_catalog.oid",
        &[oid.into()],
    );
    let relname = relname.unwrap_or_else(|| tbl.to_string());
    args::table_kind(&relname, relkind.as_deref()).unwrap_or_else(|e| raise(e));
    let readable = query_one::<bool>(
        "SELECT pg_catalog.has_table_privilege($1::pg_catalog.int8::pg_catalog.oid, 'SELECT')",
        &[oid.into()],
    );
    if readable != Some(true) {
        RdlError::new("42501", format!("permission denied for table {relname}"))
            .hint("rdl reads tables as the calling user; ask the owner to GRANT SELECT.")
            .raise()
    }
    // Every task over the table depends on its time column: it is part of the table's
    // definition, so it is its owner's to set (as ALTER TABLE or COMMENT ON would be).
    let owns = query_one::<bool>(
        "SELECT pg_catalog.pg_has_role(c.relowner, 'MEMBER') FROM pg_catalog.pg_class c
         WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.int8::pg_catalog.oid",
        &[oid.into()],
    );
    if owns != Some(true) {
        RdlError::new("42501", format!("must be owner of table {relname}"))
            .detail("The time column decides what every task over the table may see.")
            .hint("Ask the table's owner to set it.")
            .raise()
    }
    if let Some(col) = col {
        let ty = query_one::<String>(
            "SELECT pg_catalog.format_type(a.atttypid, NULL) FROM pg_catalog.pg_attribute a
             WHERE a.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.int8::pg_catalog.oid
               AND a.attname OPERATOR(pg_catalog.=) $2
               AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped",
            &[oid.into(), col.into()],
        );
        args::time_column_type(&relname, col, ty.as_deref()).unwrap_or_else(|e| raise(e));
    }
    let caller = crate::storage::caller();
    crate::storage::as_owner(|| {
        execute(
            "INSERT INTO rdl.time_columns (table_oid, column_name, set_by)
             VALUES ($1::pg_catalog.int8::pg_catalog.oid::pg_catalog.regclass, $2,
                     (SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) $3))
             ON CONFLICT (table_oid) DO UPDATE
             SET column_name = EXCLUDED.column_name, set_by = EXCLUDED.set_by,
                 set_at = pg_catalog.now()",
            &[oid.into(), col.into(), caller.into()],
        )
    });
    match col {
        Some(c) => format!("{relname}: time column {c}"),
        None => format!("{relname}: static"),
    }
}
