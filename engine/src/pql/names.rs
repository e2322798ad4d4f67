//! Table and column names of a query, looked up in the schema graph (with the errors a
//! user needs to fix a misspelt or misquoted name).

use super::ast::Name;
use super::error::{sqlstate, PqlError};
use super::spec::ColumnRef;
use crate::ident::quote_ident;
use crate::schema::{ResolveError, SchemaGraph, Table};

pub(crate) fn resolve_table<'g>(
    graph: &'g SchemaGraph,
    parts: &[Name],
    pos: usize,
) -> Result<&'g Table, PqlError> {
    let (schema, name) = match parts {
        [t] => (None, t),
        [s, t] => (Some(s.value.as_str()), t),
        _ => unreachable!("callers pass one or two parts"),
    };
    graph.resolve(schema, &name.value).map_err(|e| match e {
        ResolveError::NotFound(n) => {
            PqlError::new(sqlstate::UNDEFINED_TABLE, format!("relation {n} does not exist"))
                .at(pos)
                .hint("rdl reads the tables of the schemas it was given; check the name and its case (unquoted names are folded to lower case).")
        }
        ResolveError::Denied(n) => PqlError::new(
            "42501",
            format!("permission denied for table {n}"),
        )
        .at(pos)
        .hint("rdl reads tables as the calling user; ask the table's owner to GRANT SELECT on it."),
        ResolveError::Ambiguous(c) => PqlError::new(
            sqlstate::UNDEFINED_TABLE,
            format!(
                "relation {} is not on the search path and exists in several schemas",
                quote_ident(&name.value)
            ),
        )
        .at(pos)
        .detail(format!("Candidates: {}.", c.join(", ")))
        .hint("Qualify the table with its schema."),
    })
}

pub(super) fn column_of(table: &Table, name: &Name) -> Result<ColumnRef, PqlError> {
    match table.column(&name.value) {
        Some(c) => Ok(ColumnRef {
            table: table.table.clone(),
            column: c.name.clone(),
            pg_type: c.pg_type.clone(),
            semantic: c.semantic,
        }),
        None => {
            let similar: Vec<&str> = table
                .columns
                .iter()
                .map(|c| c.name.as_str())
                .filter(|c| c.eq_ignore_ascii_case(&name.value))
                .collect();
            let mut e = PqlError::new(
                sqlstate::UNDEFINED_COLUMN,
                format!(
                    "column {}.{} does not exist",
                    table.table,
                    quote_ident(&name.value)
                ),
            )
            .at(name.pos);
            if let Some(s) = similar.first() {
                e = e.hint(format!(
                    "Perhaps you meant {}: quote names that are not lower case.",
                    quote_ident(s)
                ));
            }
            Err(e)
        }
    }
}

/// A table's name as a user would write it: bare when on the search path.
pub(super) fn short(graph: &SchemaGraph, qualified: &str) -> String {
    match graph.table(qualified) {
        Some(t) if t.visible => quote_ident(&t.name),
        _ => qualified.to_string(),
    }
}
