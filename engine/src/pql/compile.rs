//! Conditions and aggregate calls of a query resolved against the schema graph: which
//! columns each may use, their type checks, and the foreign-key path of each aggregate.

use super::ast::*;
use super::error::{sqlstate, PqlError};
use super::kinds::{agg_kind, check_comparable, is_numeric, semantic_name, value_kind, Kind};
use super::names::{column_of, resolve_table};
use super::paths::fk_path;
use super::spec::*;
use crate::ident::quote_ident;
use crate::schema::{SchemaGraph, Table};

/// Where a condition appears: decides which columns and aggregates it may use.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Ctx {
    /// Inside an aggregate: columns of the aggregated table only.
    RowFilter,
    /// `WHERE` after FOR EACH: entity columns and aggregates over the past (end <= 0).
    EntityFilter,
    /// `ASSUMING`: entity columns and aggregates over any window.
    Assuming,
}

pub(crate) struct Compiler<'g> {
    graph: &'g SchemaGraph,
    entity: &'g Table,
}

impl<'g> Compiler<'g> {
    pub(crate) fn new(graph: &'g SchemaGraph, entity: &'g Table) -> Self {
        Compiler { graph, entity }
    }

    /// A column reference in a condition of context `ctx` (`table` is the aggregated
    /// table for row filters).
    pub(super) fn column(&self, q: &QName, ctx: Ctx, table: &Table) -> Result<ColumnRef, PqlError> {
        let (tparts, col) = q.parts.split_at(q.parts.len() - 1);
        let home = if ctx == Ctx::RowFilter {
            table
        } else {
            self.entity
        };
        if !tparts.is_empty() {
            let t = resolve_table(self.graph, tparts, q.pos)?;
            if t.table != home.table {
                let msg = if ctx == Ctx::RowFilter {
                    format!(
                        "a row filter may only use columns of {}, not {}",
                        home.table, t.table
                    )
                } else {
                    format!(
                        "this condition may only use columns of the entity table {} (or aggregates), not {}",
                        home.table, t.table
                    )
                };
                return Err(PqlError::new(sqlstate::FEATURE_NOT_SUPPORTED, msg)
                    .at(q.pos)
                    .hint(if ctx == Ctx::RowFilter {
                        "Filter on the aggregated table's own columns."
                    } else {
                        "Use an aggregate such as COUNT(table.* WHERE ..., -30, 0, days) > 0."
                    }));
            }
        }
        column_of(home, &col[0])
    }

    pub(super) fn cond(&self, c: &Cond, ctx: Ctx, table: &Table) -> Result<Expr, PqlError> {
        Ok(match c {
            Cond::And(a, b) => Expr::And(
                Box::new(self.cond(a, ctx, table)?),
                Box::new(self.cond(b, ctx, table)?),
            ),
            Cond::Or(a, b) => Expr::Or(
                Box::new(self.cond(a, ctx, table)?),
                Box::new(self.cond(b, ctx, table)?),
            ),
            Cond::Not(a) => Expr::Not(Box::new(self.cond(a, ctx, table)?)),
            Cond::Cmp {
                op,
                left,
                right,
                pos,
            } => {
                let l = self.operand(left, ctx, table)?;
                let r = self.operand(right, ctx, table)?;
                check_comparable(&l, &r, *pos)?;
                Expr::Compare {
                    op: *op,
                    left: l,
                    right: r,
                }
            }
            Cond::IsNull { operand, negated } => Expr::IsNull {
                value: self.operand(operand, ctx, table)?,
                negated: *negated,
            },
            Cond::Truth(o) => {
                let v = self.operand(o, ctx, table)?;
                let ok = match &v {
                    Value::Aggregate(a) => a.agg == Agg::Exists || agg_kind(a) == Kind::Bool,
                    other => value_kind(other) == Kind::Bool,
                };
                if !ok {
                    return Err(PqlError::new(
                        sqlstate::DATATYPE_MISMATCH,
                        "argument of a condition must be a boolean",
                    )
                    .at(o.pos())
                    .hint("Compare it with something, e.g. COUNT(...) > 0."));
                }
                Expr::Truth(v)
            }
        })
    }

    fn operand(&self, o: &Operand, ctx: Ctx, table: &Table) -> Result<Value, PqlError> {
        Ok(match o {
            Operand::Literal(l, _) => Value::Literal(l.clone()),
            Operand::Column(q) => Value::Column(self.column(q, ctx, table)?),
            Operand::Agg(call) => {
                if ctx == Ctx::RowFilter {
                    return Err(PqlError::new(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "aggregates are not allowed in a row filter",
                    )
                    .at(call.pos));
                }
                let a = self.aggregate(call)?;
                if ctx == Ctx::EntityFilter && a.window.end > 0 {
                    return Err(PqlError::new(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        "an aggregate in WHERE must look at the past (window end <= 0)",
                    )
                    .at(call.window_pos)
                    .detail(format!(
                        "The window ({}, {}] {} ends after the anchor time.",
                        a.window.start,
                        a.window.end,
                        a.window.unit.name()
                    ))
                    .hint("Conditions over the future window belong in ASSUMING."));
                }
                Value::Aggregate(Box::new(a))
            }
        })
    }

    /// Resolves an aggregate call: table, column, window, row filter and FK path.
    pub(crate) fn aggregate(&self, call: &AggCall) -> Result<AggregateSpec, PqlError> {
        let fname = call.agg.name();
        let q = &call.arg;
        let (tparts, col): (&[Name], Option<&Name>) = if q.star {
            (&q.parts[..], None)
        } else {
            if q.parts.len() < 2 {
                return Err(PqlError::syntax(
                    q.pos,
                    format!("expected <table>.<column> or <table>.* in {fname}"),
                ));
            }
            let (t, c) = q.parts.split_at(q.parts.len() - 1);
            (t, Some(&c[0]))
        };
        let table = resolve_table(self.graph, tparts, q.pos)?;
        let column = col.map(|c| column_of(table, c)).transpose()?;
        if table.table == self.entity.table {
            return Err(PqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("{fname} over the entity table {} itself is not supported", table.table),
            )
            .at(q.pos)
            .hint("Aggregate a table that references the entity table, or predict a column of the entity table directly (PREDICT table.column)."));
        }
        check_agg_column(call, table, column.as_ref())?;
        check_window(call)?;
        let (time_column, time_type) = window_time(table, q.pos)?;
        let row_filter = call
            .filter
            .as_ref()
            .map(|f| self.cond(f, Ctx::RowFilter, table))
            .transpose()?;
        let path = fk_path(self.graph, self.entity, table, call)?;
        let primary_key = match table.primary_key.as_slice() {
            [pk] => Some(pk.clone()),
            _ => None,
        };
        Ok(AggregateSpec {
            agg: call.agg,
            table: table.table.clone(),
            column,
            row_filter,
            window: Window {
                start: call.start,
                end: call.end,
                unit: call.unit,
            },
            path,
            time_column,
            time_type,
            primary_key,
        })
    }
}

/// The column an aggregate needs: every aggregate but COUNT and EXISTS reads one, and
/// SUM/AVG/MIN/MAX only make sense on numbers.
fn check_agg_column(
    call: &AggCall,
    table: &Table,
    column: Option<&ColumnRef>,
) -> Result<(), PqlError> {
    let fname = call.agg.name();
    let q = &call.arg;
    match (call.agg, column) {
        (
            Agg::CountDistinct
            | Agg::Sum
            | Agg::Avg
            | Agg::Min
            | Agg::Max
            | Agg::First
            | Agg::Last
            | Agg::ListDistinct,
            None,
        ) => {
            return Err(PqlError::syntax(
                q.pos,
                format!("{fname} needs a column, not {}", q.display()),
            ))
        }
        (Agg::Sum | Agg::Avg | Agg::Min | Agg::Max, Some(c)) if !is_numeric(c) => {
            return Err(PqlError::new(
                sqlstate::DATATYPE_MISMATCH,
                format!(
                    "{fname} needs a numeric column, but {}.{} is {} ({})",
                    table.table,
                    quote_ident(&c.column),
                    c.pg_type,
                    semantic_name(c.semantic)
                ),
            )
            .at(q.pos)
            .hint("Use COUNT, COUNT_DISTINCT, FIRST or LAST, or a numeric column."))
        }
        _ => {}
    }
    Ok(())
}

/// An empty window `(start, end]` would give every entity the empty-window label.
fn check_window(call: &AggCall) -> Result<(), PqlError> {
    if call.end <= call.start {
        return Err(PqlError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!(
                "window end must be after its start: ({}, {}] is empty",
                call.start, call.end
            ),
        )
        .at(call.window_pos)
        .hint("The window (start, end] holds rows with anchor + start < time <= anchor + end."));
    }
    Ok(())
}

/// The aggregated table's time column and its type: a window aggregate needs to know when
/// each row became known.
fn window_time(table: &Table, pos: usize) -> Result<(String, String), PqlError> {
    let Some(time_column) = table.time_column.clone() else {
        return Err(PqlError::new(
            sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("table {} has no time column", table.table),
        )
        .at(pos)
        .detail("A window aggregate needs to know when each row became known.")
        .hint(format!(
            "Set one with rdl_set_time_column('{}', '<column>').",
            table.table.replace('\'', "''")
        )));
    };
    let time_type = table
        .column(&time_column)
        .map(|c| c.pg_type.clone())
        .ok_or_else(|| {
            PqlError::new(
                sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "time column {} of {} is not among its columns",
                    quote_ident(&time_column),
                    table.table
                ),
            )
            .at(pos)
        })?;
    Ok((time_column, time_type))
}
