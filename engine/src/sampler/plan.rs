//! What the sampler reads of each table (key, time, structural and value columns, each
//! with the expression that reads it) and the foreign keys it walks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{raw_time, OutKind, SamplerConfig};
use crate::ident::{op, quote_ident};
use crate::schema::{SchemaGraph, SemanticType};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueColumn {
    pub name: String,
    pub semantic: SemanticType,
    pub out: OutKind,
    /// The SQL expression that reads it (over the table aliased `t`).
    #[serde(default)]
    pub expr: String,
}

/// What is read of one table. Every statement returns, after `ord`: the row key (text),
/// the row time (µs, NULL for static tables), the structural columns (text) and the value
/// columns — in that order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TablePlan {
    pub table: String,
    /// Columns whose text values identify the row (the primary key; `ctid` when none).
    pub key_columns: Vec<String>,
    pub time_column: Option<String>,
    pub time_type: Option<String>,
    /// Columns needed to follow edges (FK and referenced columns), read as text.
    pub structural: Vec<String>,
    pub values: Vec<ValueColumn>,
    /// `format_type` of every column, for casting request keys.
    pub types: BTreeMap<String, String>,
}

impl TablePlan {
    /// How the statements return the row time: `None` for a static table.
    pub fn time_out(&self) -> Option<OutKind> {
        self.time_column.as_ref()?;
        Some(raw_time(self.time_type.as_deref()?).unwrap_or(OutKind::Micros))
    }

    /// The kind of each column a statement over this table returns: `None` for the
    /// request's ordinal (int4), then key, time, structural columns, values and, when
    /// `counts`, the count of children.
    pub fn columns_out(&self, counts: bool) -> Vec<Option<OutKind>> {
        let mut want = vec![None, Some(OutKind::Text)];
        want.push(Some(self.time_out().unwrap_or(OutKind::Micros)));
        want.extend(std::iter::repeat_n(
            Some(OutKind::Text),
            self.structural.len(),
        ));
        want.extend(self.values.iter().map(|v| Some(v.out)));
        if counts {
            want.push(Some(OutKind::Micros));
        }
        want
    }
}

/// A foreign key as an edge of the walk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub name: String,
    pub child: String,
    pub child_columns: Vec<String>,
    pub parent: String,
    pub parent_columns: Vec<String>,
    /// Whether an index leads with a child column (PostgreSQL never creates one for a
    /// foreign key): decides how children are looked up.
    pub child_indexed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub config: SamplerConfig,
    pub tables: BTreeMap<String, TablePlan>,
    pub edges: Vec<Edge>,
}

/// Direction of a step along an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From a child row to the row its foreign key references.
    ToParent,
    /// From a row to the rows whose foreign key references it.
    ToChildren,
}

fn value_expr(c: &str, ty: &str, semantic: SemanticType) -> Option<(String, OutKind)> {
    let q = format!("t.{}", quote_ident(c));
    Some(match semantic {
        SemanticType::Numerical => {
            let e = if ty == "interval" || ty.starts_with("time") {
                format!("extract(epoch FROM {q})::pg_catalog.float8")
            } else if ty == "money" {
                format!("{q}::pg_catalog.numeric::pg_catalog.float8")
            } else {
                format!("{q}::pg_catalog.float8")
            };
            (e, OutKind::Float)
        }
        SemanticType::Boolean => (format!("{q}::pg_catalog.bool"), OutKind::Bool),
        SemanticType::Timestamp => match raw_time(ty) {
            Some(k) => (q, k),
            None => (
                format!(
                    "(extract(epoch FROM {q}) {} 1000000)::pg_catalog.int8",
                    op("*")
                ),
                OutKind::Micros,
            ),
        },
        // Long texts are cut: the encoder hashes whole strings anyway.
        SemanticType::Categorical | SemanticType::Text => (
            format!("pg_catalog.left({q}::pg_catalog.text, 200)"),
            OutKind::Text,
        ),
        SemanticType::Key | SemanticType::Unsupported => return None,
    })
}

impl Plan {
    pub fn new(graph: &SchemaGraph, config: SamplerConfig) -> Plan {
        let mut tables = BTreeMap::new();
        for t in &graph.tables {
            let mut structural: Vec<String> = Vec::new();
            let mut add = |c: &String| {
                if !structural.contains(c) {
                    structural.push(c.clone());
                }
            };
            for fk in &graph.foreign_keys {
                if fk.table == t.table {
                    fk.columns.iter().for_each(&mut add);
                }
                if fk.ref_table == t.table {
                    fk.ref_columns.iter().for_each(&mut add);
                }
            }
            let time_type = t
                .time_column
                .as_ref()
                .and_then(|c| t.column(c))
                .map(|c| c.pg_type.clone());
            let values = t
                .columns
                .iter()
                .filter_map(|c| {
                    value_expr(&c.name, &c.pg_type, c.semantic).map(|(expr, out)| ValueColumn {
                        name: c.name.clone(),
                        semantic: c.semantic,
                        out,
                        expr,
                    })
                })
                .collect();
            tables.insert(
                t.table.clone(),
                TablePlan {
                    table: t.table.clone(),
                    key_columns: t.primary_key.clone(),
                    time_column: t.time_column.clone(),
                    time_type,
                    structural,
                    values,
                    types: t
                        .columns
                        .iter()
                        .map(|c| (c.name.clone(), c.pg_type.clone()))
                        .collect(),
                },
            );
        }
        let edges = graph
            .foreign_keys
            .iter()
            .filter(|fk| tables.contains_key(&fk.table) && tables.contains_key(&fk.ref_table))
            .map(|fk| Edge {
                name: fk.name.clone(),
                child: fk.table.clone(),
                child_columns: fk.columns.clone(),
                parent: fk.ref_table.clone(),
                parent_columns: fk.ref_columns.clone(),
                child_indexed: fk.indexed,
            })
            .collect();
        Plan {
            config,
            tables,
            edges,
        }
    }
}

impl Plan {
    /// Whether the step along an edge in `dir` at `hop` also counts the children of each
    /// requesting row (the seed's, at hop 1).
    pub fn counts_at(&self, dir: Direction, hop: u8) -> bool {
        self.config.counts && dir == Direction::ToChildren && hop == 1
    }

    /// The columns a statement over `table` returns after `ord`.
    pub(super) fn select_list(&self, tp: &TablePlan) -> String {
        let key = if tp.key_columns.is_empty() {
            "t.ctid::pg_catalog.text".to_string()
        } else if tp.key_columns.len() == 1 {
            format!("t.{}::pg_catalog.text", quote_ident(&tp.key_columns[0]))
        } else {
            let cols: Vec<String> = tp
                .key_columns
                .iter()
                .map(|c| format!("t.{}", quote_ident(c)))
                .collect();
            format!("ROW({})::pg_catalog.text", cols.join(", "))
        };
        let time = match (&tp.time_column, tp.time_out()) {
            (Some(c), Some(OutKind::Micros)) => format!(
                "(extract(epoch FROM t.{}) {} 1000000)::pg_catalog.int8",
                quote_ident(c),
                op("*")
            ),
            (Some(c), Some(_)) => format!("t.{}", quote_ident(c)),
            _ => "NULL::pg_catalog.int8".to_string(),
        };
        let mut exprs = vec![key, time];
        for c in &tp.structural {
            exprs.push(format!("t.{}::pg_catalog.text", quote_ident(c)));
        }
        exprs.extend(tp.values.iter().map(|v| v.expr.clone()));
        let names = output_names(tp);
        let parts: Vec<String> = exprs
            .iter()
            .zip(&names)
            .map(|(e, n)| format!("{e} AS {n}"))
            .collect();
        parts.join(", ")
    }
}

/// The names of the columns [`Plan::select_list`] returns, in order.
pub(super) fn output_names(tp: &TablePlan) -> Vec<String> {
    let mut v = vec!["rdl_key".to_string(), "rdl_time".to_string()];
    v.extend((0..tp.structural.len()).map(|i| format!("rdl_s{i}")));
    v.extend((0..tp.values.len()).map(|i| format!("rdl_v{i}")));
    v
}
