//! The whole query resolved: entity, target, task type, filters and the time columns the
//! label statements read ([`Query`] → [`TaskSpec`], without SQL).

use super::ast::*;
use super::compile::{Compiler, Ctx};
use super::error::{sqlstate, PqlError};
use super::kinds::{agg_kind, check_comparable, Kind};
use super::names::{column_of, resolve_table, short};
use super::spec::*;
use crate::anchors::AnchorOptions;
use crate::ident::quote_ident;
use crate::schema::{SchemaGraph, SemanticType, Table};

/// What the target decides: the label's definition, its comparison, the task type and
/// the window it looks at (none for a static column).
type ResolvedTarget = (Target, Option<Comparison>, TaskType, Option<Window>);

/// Resolves the whole query (without generating SQL).
pub(crate) fn resolve(
    query: &str,
    ast: &Query,
    graph: &SchemaGraph,
    options: &AnchorOptions,
) -> Result<TaskSpec, PqlError> {
    let (entity, key) = entity_of(graph, &ast.entity)?;
    let entity_spec = entity_spec(entity, &key);
    let c = Compiler::new(graph, entity);

    let (target, comparison, task_type, window) = match &ast.target {
        TargetAst::Agg { call, cmp } => aggregate_target(&c, call, cmp.as_ref())?,
        TargetAst::ListDistinct { call, k } => list_target(&c, graph, call, *k)?,
        TargetAst::Static(q) => static_target(&c, entity, &key, q)?,
    };
    let entity_filter = ast
        .filter
        .as_ref()
        .map(|f| c.cond(f, Ctx::EntityFilter, entity))
        .transpose()?;
    let assuming = ast
        .assuming
        .as_ref()
        .map(|f| c.cond(f, Ctx::Assuming, entity))
        .transpose()?;
    let time_columns = time_columns(&entity_spec, &target, [&entity_filter, &assuming]);
    let label_type = match task_type {
        TaskType::MulticlassClassification => "text",
        TaskType::Ranking => "text[]",
        _ => "float8",
    };
    Ok(TaskSpec {
        version: SPEC_VERSION,
        query: query.to_string(),
        task_type,
        entity: entity_spec,
        target,
        comparison,
        window,
        entity_filter,
        assuming,
        time_columns,
        options: options.clone(),
        label_type: label_type.into(),
        params: Vec::new(),
        sql: String::new(),
        sql_at: String::new(),
    })
}

/// The entity table and its key column (`FOR EACH table.pk`): the key must be the
/// table's single-column primary key, so that one row is one entity.
fn entity_of<'g>(graph: &'g SchemaGraph, eq: &QName) -> Result<(&'g Table, ColumnRef), PqlError> {
    if eq.parts.len() < 2 {
        return Err(PqlError::syntax(
            eq.pos,
            "expected <table>.<primary key column> after FOR EACH",
        ));
    }
    let (tp, kc) = eq.parts.split_at(eq.parts.len() - 1);
    let entity = resolve_table(graph, tp, eq.pos)?;
    let key = column_of(entity, &kc[0])?;
    match entity.primary_key.as_slice() {
        [pk] if *pk == key.column => {}
        [] => {
            return Err(PqlError::new(
                sqlstate::INVALID_COLUMN_REFERENCE,
                format!("entity table {} has no primary key", entity.table),
            )
            .at(eq.pos)
            .hint("Add a single-column primary key to the entity table."))
        }
        [pk] => {
            return Err(PqlError::new(
                sqlstate::INVALID_COLUMN_REFERENCE,
                format!(
                    "column {} is not the primary key of {}",
                    quote_ident(&key.column),
                    entity.table
                ),
            )
            .at(kc[0].pos)
            .hint(format!(
                "Write FOR EACH {}.{}.",
                short(graph, &entity.table),
                quote_ident(pk)
            )))
        }
        _ => {
            return Err(PqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "entity table {} has a composite primary key ({})",
                    entity.table,
                    entity.primary_key.join(", ")
                ),
            )
            .at(eq.pos)
            .hint("Entity tables need a single-column primary key."))
        }
    }
    Ok((entity, key))
}

/// The entity as the spec keeps it; a time column counts only when it is among the
/// table's columns.
fn entity_spec(entity: &Table, key: &ColumnRef) -> EntitySpec {
    let entity_time_type = entity
        .time_column
        .as_ref()
        .and_then(|t| entity.column(t))
        .map(|c| c.pg_type.clone());
    EntitySpec {
        table: entity.table.clone(),
        key_column: key.column.clone(),
        key_type: key.pg_type.clone(),
        time_column: entity_time_type.as_ref().and(entity.time_column.clone()),
        time_type: entity_time_type,
    }
}

/// An aggregate target: binary when compared with a literal (or EXISTS), otherwise the
/// aggregate's own kind decides between regression, binary and multiclass.
fn aggregate_target(
    c: &Compiler,
    call: &AggCall,
    cmp: Option<&(CmpOp, Literal, usize)>,
) -> Result<ResolvedTarget, PqlError> {
    let a = c.aggregate(call)?;
    check_future(&a, call)?;
    let kind = agg_kind(&a);
    let (tt, comparison) = match cmp {
        Some((op, lit, pos)) => {
            check_comparable(
                &Value::Aggregate(Box::new(a.clone())),
                &Value::Literal(lit.clone()),
                *pos,
            )?;
            if *lit == Literal::Null {
                return Err(PqlError::new(
                    sqlstate::DATATYPE_MISMATCH,
                    "comparing with NULL is never true",
                )
                .at(*pos)
                .hint("Compare with a value; COUNT(...) = 0 asks for an empty window."));
            }
            (
                TaskType::BinaryClassification,
                Some(Comparison {
                    op: *op,
                    value: lit.clone(),
                }),
            )
        }
        None if a.agg == Agg::Exists => (TaskType::BinaryClassification, None),
        None => match kind {
            Kind::Number => (TaskType::Regression, None),
            Kind::Bool => (TaskType::BinaryClassification, None),
            Kind::Text => (TaskType::MulticlassClassification, None),
            _ => {
                return Err(PqlError::new(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!(
                        "cannot predict {} of a {} column",
                        a.agg.name(),
                        a.column.as_ref().map(|c| c.pg_type.as_str()).unwrap_or("?")
                    ),
                )
                .at(call.pos)
                .hint("Compare it with a literal to make a binary task."))
            }
        },
    };
    let w = a.window;
    Ok((Target::Aggregate(a), comparison, tt, Some(w)))
}

/// A `LIST_DISTINCT` target: ranking of the items its foreign key column points at.
fn list_target(
    c: &Compiler,
    graph: &SchemaGraph,
    call: &AggCall,
    k: u32,
) -> Result<ResolvedTarget, PqlError> {
    let a = c.aggregate(call)?;
    check_future(&a, call)?;
    let col = a.column.as_ref().expect("LIST_DISTINCT has a column");
    let fk = graph
        .parents_of(&a.table)
        .find(|fk| fk.columns.len() == 1 && fk.columns[0] == col.column);
    let Some(fk) = fk else {
        return Err(PqlError::new(
            sqlstate::INVALID_COLUMN_REFERENCE,
            format!(
                "LIST_DISTINCT needs a foreign key column, but {}.{} references no table",
                a.table,
                quote_ident(&col.column)
            ),
        )
        .at(call.arg.pos)
        .hint("Rank the items a foreign key points at, e.g. LIST_DISTINCT(orders.product_id, 0, 7, days)."));
    };
    let item_table = fk.ref_table.clone();
    let w = a.window;
    Ok((
        Target::ListDistinct {
            aggregate: a,
            item_table,
            k,
        },
        None,
        TaskType::Ranking,
        Some(w),
    ))
}

/// A column of the entity table itself: its semantic type decides the task.
fn static_target(
    c: &Compiler,
    entity: &Table,
    key: &ColumnRef,
    q: &QName,
) -> Result<ResolvedTarget, PqlError> {
    let col = c.column(q, Ctx::EntityFilter, entity)?;
    let tt = match col.semantic {
        _ if col.column == key.column => {
            return Err(PqlError::new(
                sqlstate::INVALID_COLUMN_REFERENCE,
                "cannot predict the entity's own key",
            )
            .at(q.pos))
        }
        SemanticType::Numerical => TaskType::Regression,
        SemanticType::Boolean => TaskType::BinaryClassification,
        SemanticType::Categorical | SemanticType::Text | SemanticType::Key => {
            TaskType::MulticlassClassification
        }
        SemanticType::Timestamp | SemanticType::Unsupported => {
            return Err(PqlError::new(
                sqlstate::DATATYPE_MISMATCH,
                format!(
                    "cannot predict column {} of type {}",
                    quote_ident(&col.column),
                    col.pg_type
                ),
            )
            .at(q.pos)
            .hint("Static targets are numeric (regression), boolean (binary) or categorical/text (multiclass) columns."))
        }
    };
    Ok((Target::Static(col), None, tt, None))
}

/// Every time column the label statements compare with an anchor, each once: the entity
/// table's (if timed), then each aggregate's, in the order they appear.
fn time_columns(
    entity_spec: &EntitySpec,
    target: &Target,
    filters: [&Option<Expr>; 2],
) -> Vec<TimeColumn> {
    let mut time_columns: Vec<TimeColumn> = Vec::new();
    let mut push_tc = |t: TimeColumn| {
        if !time_columns.contains(&t) {
            time_columns.push(t);
        }
    };
    if let (Some(c), Some(t)) = (&entity_spec.time_column, &entity_spec.time_type) {
        push_tc(TimeColumn {
            table: entity_spec.table.clone(),
            column: c.clone(),
            pg_type: t.clone(),
        });
    }
    let mut aggs: Vec<&AggregateSpec> = Vec::new();
    match target {
        Target::Aggregate(a) | Target::ListDistinct { aggregate: a, .. } => aggs.push(a),
        Target::Static(_) => {}
    }
    for e in filters.into_iter().flatten() {
        collect_aggs(e, &mut aggs);
    }
    for a in aggs {
        push_tc(TimeColumn {
            table: a.table.clone(),
            column: a.time_column.clone(),
            pg_type: a.time_type.clone(),
        });
    }
    time_columns
}

fn check_future(a: &AggregateSpec, call: &AggCall) -> Result<(), PqlError> {
    if a.window.end <= 0 {
        return Err(PqlError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            "the target window must end after the anchor time (end > 0)",
        )
        .at(call.window_pos)
        .hint("A target predicts the future: e.g. (0, 30] days after the anchor."));
    }
    Ok(())
}

pub(crate) fn collect_aggs<'a>(e: &'a Expr, out: &mut Vec<&'a AggregateSpec>) {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            collect_aggs(a, out);
            collect_aggs(b, out);
        }
        Expr::Not(a) => collect_aggs(a, out),
        Expr::Compare { left, right, .. } => {
            for v in [left, right] {
                if let Value::Aggregate(a) = v {
                    out.push(a);
                }
            }
        }
        Expr::IsNull { value, .. } | Expr::Truth(value) => {
            if let Value::Aggregate(a) = value {
                out.push(a);
            }
        }
    }
}
