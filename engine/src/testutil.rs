//! Fixtures the engine's tests share: columns, tables and foreign keys of hand-built
//! schema graphs, and the two-table graph (drivers ← results) several modules test on.

use crate::schema::{Column, ForeignKey, SchemaGraph, SemanticType, Table};

pub fn col(name: &str, pg_type: &str, semantic: SemanticType) -> Column {
    Column {
        name: name.into(),
        pg_type: pg_type.into(),
        semantic,
        nullable: true,
    }
}

/// A table of schema `public` whose first column is its primary key.
pub fn table(name: &str, cols: Vec<Column>, time: Option<&str>) -> Table {
    Table {
        schema: "public".into(),
        name: name.into(),
        table: format!("public.{name}"),
        kind: "table".into(),
        primary_key: vec![cols[0].name.clone()],
        columns: cols,
        time_column: time.map(str::to_string),
        time_source: None,
        visible: true,
    }
}

/// `public.{t}.{c}` → `public.{rt}.{rc}`, named as PostgreSQL names it.
pub fn fk(t: &str, c: &str, rt: &str, rc: &str) -> ForeignKey {
    ForeignKey {
        name: format!("{t}_{c}_fkey"),
        table: format!("public.{t}"),
        columns: vec![c.into()],
        ref_table: format!("public.{rt}"),
        ref_columns: vec![rc.into()],
        indexed: true,
    }
}

/// drivers (static, a categorical `nationality`) ← results (timed by `date` of
/// `date_type`, with one numeric column `(name, type)`).
pub fn drivers_results((num, num_type): (&str, &str), date_type: &str) -> SchemaGraph {
    use SemanticType::*;
    SchemaGraph {
        tables: vec![
            table(
                "drivers",
                vec![
                    col("driver_id", "integer", Key),
                    col("nationality", "text", Categorical),
                ],
                None,
            ),
            table(
                "results",
                vec![
                    col("result_id", "integer", Key),
                    col("driver_id", "integer", Key),
                    col(num, num_type, Numerical),
                    col("date", date_type, Timestamp),
                ],
                Some("date"),
            ),
        ],
        foreign_keys: vec![fk("results", "driver_id", "drivers", "driver_id")],
        ..SchemaGraph::default()
    }
}
