//! Name resolution, type checks and foreign-key paths: [`Query`] → [`TaskSpec`].

use super::ast::*;
use super::error::{sqlstate, PqlError};
use super::spec::*;
use crate::anchors::AnchorOptions;
use crate::ident::quote_ident;
use crate::schema::{ForeignKey, ResolveError, SchemaGraph, SemanticType, Table};

/// Where a condition appears: decides which columns and aggregates it may use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
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

fn column_of(table: &Table, name: &Name) -> Result<ColumnRef, PqlError> {
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

/// Numeric for arithmetic and ordering purposes (not a key).
fn is_numeric(c: &ColumnRef) -> bool {
    c.semantic == SemanticType::Numerical
}

fn numeric_pg_type(t: &str) -> bool {
    let t = t.to_ascii_lowercase();
    [
        "smallint",
        "integer",
        "bigint",
        "numeric",
        "real",
        "double precision",
        "int",
        "decimal",
        "float",
    ]
    .iter()
    .any(|p| t.starts_with(p))
}

/// What kind of value a [`Value`] holds, for literal checks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Number,
    Text,
    Bool,
    Other,
    Null,
}

fn column_kind(c: &ColumnRef) -> Kind {
    match c.semantic {
        SemanticType::Numerical => Kind::Number,
        SemanticType::Boolean => Kind::Bool,
        SemanticType::Categorical | SemanticType::Text => Kind::Text,
        SemanticType::Key if numeric_pg_type(&c.pg_type) => Kind::Number,
        SemanticType::Key if c.pg_type == "text" || c.pg_type.starts_with("character") => {
            Kind::Text
        }
        _ => Kind::Other,
    }
}

fn agg_kind(a: &AggregateSpec) -> Kind {
    match a.agg {
        Agg::Count | Agg::CountDistinct | Agg::Sum | Agg::Avg | Agg::Exists => Kind::Number,
        Agg::Min | Agg::Max | Agg::First | Agg::Last => {
            a.column.as_ref().map(column_kind).unwrap_or(Kind::Other)
        }
        Agg::ListDistinct => Kind::Other,
    }
}

fn value_kind(v: &Value) -> Kind {
    match v {
        Value::Column(c) => column_kind(c),
        Value::Aggregate(a) => agg_kind(a),
        Value::Literal(Literal::Number(_)) => Kind::Number,
        Value::Literal(Literal::String(_)) => Kind::Text,
        Value::Literal(Literal::Boolean(_)) => Kind::Bool,
        Value::Literal(Literal::Null) => Kind::Null,
    }
}

fn check_comparable(left: &Value, right: &Value, pos: usize) -> Result<(), PqlError> {
    let (l, r) = (value_kind(left), value_kind(right));
    let clash = |a: Kind, b: Kind| {
        matches!(
            (a, b),
            (Kind::Number, Kind::Bool)
                | (Kind::Bool, Kind::Number)
                | (Kind::Text, Kind::Number)
                | (Kind::Number, Kind::Text)
                | (Kind::Text, Kind::Bool)
                | (Kind::Bool, Kind::Text)
        )
    };
    // Strings may spell numbers ('1'); PostgreSQL casts them to the column's type.
    if clash(l, r)
        && !(l == Kind::Number && numeric_string(right))
        && !(r == Kind::Number && numeric_string(left))
    {
        return Err(PqlError::new(
            sqlstate::DATATYPE_MISMATCH,
            format!("cannot compare {} with {}", kind_name(l), kind_name(r)),
        )
        .at(pos));
    }
    Ok(())
}

fn numeric_string(v: &Value) -> bool {
    matches!(v, Value::Literal(Literal::String(s)) if s.trim().parse::<f64>().is_ok())
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Number => "a number",
        Kind::Text => "text",
        Kind::Bool => "a boolean",
        Kind::Other => "a value of another type",
        Kind::Null => "NULL",
    }
}

fn path_text(path: &[&ForeignKey], graph: &SchemaGraph) -> String {
    let mut s: Vec<String> = path
        .iter()
        .map(|fk| {
            let cols: Vec<String> = fk.columns.iter().map(|c| quote_ident(c)).collect();
            format!("{}.{}", short(graph, &fk.table), cols.join(","))
        })
        .collect();
    if let Some(last) = path.last() {
        s.push(short(graph, &last.ref_table));
    }
    s.join(" -> ")
}

/// A table's name as a user would write it: bare when on the search path.
fn short(graph: &SchemaGraph, qualified: &str) -> String {
    match graph.table(qualified) {
        Some(t) if t.visible => quote_ident(&t.name),
        _ => qualified.to_string(),
    }
}

/// Every simple foreign-key path from `from` to `to` of at most `max_len` hops.
fn all_paths<'g>(
    graph: &'g SchemaGraph,
    from: &str,
    to: &str,
    max_len: usize,
) -> Vec<Vec<&'g ForeignKey>> {
    fn go<'g>(
        graph: &'g SchemaGraph,
        at: &str,
        to: &str,
        max_len: usize,
        seen: &mut Vec<String>,
        cur: &mut Vec<&'g ForeignKey>,
        out: &mut Vec<Vec<&'g ForeignKey>>,
    ) {
        if out.len() > 1000 {
            return;
        }
        for fk in graph.foreign_keys.iter().filter(|fk| fk.table == at) {
            if fk.ref_table == to {
                cur.push(fk);
                out.push(cur.clone());
                cur.pop();
            } else if cur.len() + 1 < max_len && !seen.contains(&fk.ref_table) {
                seen.push(fk.ref_table.clone());
                cur.push(fk);
                go(graph, &fk.ref_table, to, max_len, seen, cur, out);
                cur.pop();
                seen.pop();
            }
        }
    }
    let mut out = Vec::new();
    let mut seen = vec![from.to_string()];
    go(
        graph,
        from,
        to,
        max_len,
        &mut seen,
        &mut Vec::new(),
        &mut out,
    );
    out
}

const MAX_PATH: usize = 6;

impl<'g> Compiler<'g> {
    pub(crate) fn new(graph: &'g SchemaGraph, entity: &'g Table) -> Self {
        Compiler { graph, entity }
    }

    /// A column reference in a condition of context `ctx` (`table` is the aggregated
    /// table for row filters).
    fn column(&self, q: &QName, ctx: Ctx, table: &Table) -> Result<ColumnRef, PqlError> {
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

    fn cond(&self, c: &Cond, ctx: Ctx, table: &Table) -> Result<Expr, PqlError> {
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
        match (call.agg, &column) {
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
        if call.end <= call.start {
            return Err(PqlError::new(
                sqlstate::INVALID_PARAMETER_VALUE,
                format!(
                    "window end must be after its start: ({}, {}] is empty",
                    call.start, call.end
                ),
            )
            .at(call.window_pos)
            .hint(
                "The window (start, end] holds rows with anchor + start < time <= anchor + end.",
            ));
        }
        let Some(time_column) = table.time_column.clone() else {
            return Err(PqlError::new(
                sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("table {} has no time column", table.table),
            )
            .at(q.pos)
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
                .at(q.pos)
            })?;
        let row_filter = call
            .filter
            .as_ref()
            .map(|f| self.cond(f, Ctx::RowFilter, table))
            .transpose()?;
        let path = self.path(table, call)?;
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

    /// The shortest FK path from `table` to the entity table that follows the `VIA` columns
    /// in order; an error when there is none or several.
    fn path(&self, table: &Table, call: &AggCall) -> Result<Vec<FkHop>, PqlError> {
        let g = self.graph;
        let mut via: Vec<&ForeignKey> = Vec::new();
        for v in &call.via {
            if v.star || v.parts.len() < 2 {
                return Err(PqlError::syntax(
                    v.pos,
                    "expected <table>.<foreign key column> after VIA",
                ));
            }
            let (tp, c) = v.parts.split_at(v.parts.len() - 1);
            let t = resolve_table(g, tp, v.pos)?;
            let col = column_of(t, &c[0])?;
            let fks: Vec<&ForeignKey> = g
                .parents_of(&t.table)
                .filter(|fk| fk.columns.first() == Some(&col.column))
                .collect();
            match fks.as_slice() {
                [] => {
                    return Err(PqlError::new(
                        sqlstate::INVALID_FOREIGN_KEY,
                        format!(
                            "{}.{} is not a foreign key column",
                            t.table,
                            quote_ident(&col.column)
                        ),
                    )
                    .at(c[0].pos)
                    .hint("VIA names the foreign key columns the path follows."))
                }
                [one] => via.push(one),
                many => {
                    return Err(PqlError::new(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        format!(
                            "{}.{} starts several foreign keys ({})",
                            t.table,
                            quote_ident(&col.column),
                            many.iter()
                                .map(|f| f.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                    .at(c[0].pos))
                }
            }
        }
        let all = all_paths(g, &table.table, &self.entity.table, MAX_PATH);
        let follows = |p: &Vec<&ForeignKey>| {
            let mut it = p.iter();
            via.iter().all(|v| it.any(|fk| std::ptr::eq(*fk, *v)))
        };
        let matching: Vec<&Vec<&ForeignKey>> = all.iter().filter(|p| follows(p)).collect();
        let Some(best) = matching.iter().map(|p| p.len()).min() else {
            let mut e = PqlError::new(
                sqlstate::INVALID_FOREIGN_KEY,
                format!(
                    "no foreign-key path from {} to the entity table {}{}",
                    table.table,
                    self.entity.table,
                    if via.is_empty() { "" } else { " through the VIA columns" }
                ),
            )
            .at(call.arg.pos)
            .hint(format!(
                "The aggregated table must reference {} by foreign keys, directly or through other tables.",
                self.entity.table
            ));
            if !via.is_empty() && !all.is_empty() {
                e = e.detail(format!(
                    "Paths that exist: {}.",
                    all.iter()
                        .map(|p| path_text(p, g))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
            return Err(e);
        };
        let shortest: Vec<&&Vec<&ForeignKey>> =
            matching.iter().filter(|p| p.len() == best).collect();
        if shortest.len() > 1 {
            let cands: Vec<String> = shortest.iter().map(|p| path_text(p, g)).collect();
            let first_fk = &shortest[0][0];
            return Err(PqlError::new(
                sqlstate::AMBIGUOUS_COLUMN,
                format!(
                    "ambiguous foreign-key path from {} to {}",
                    table.table, self.entity.table
                ),
            )
            .at(call.arg.pos)
            .detail(format!("Candidates: {}.", cands.join("; ")))
            .hint(format!(
                "Name the foreign key to follow with VIA, e.g. {}({} VIA {}.{}, ...); chain hops with ->.",
                call.agg.name(),
                call.arg.display(),
                short(g, &first_fk.table),
                quote_ident(&first_fk.columns[0])
            )));
        }
        let chosen = shortest[0];
        if let Some(fk) = chosen.iter().find(|fk| fk.columns.len() != 1) {
            return Err(PqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "composite foreign keys are not supported yet ({} on {})",
                    fk.name, fk.table
                ),
            )
            .at(call.arg.pos));
        }
        Ok(chosen
            .iter()
            .map(|fk| FkHop {
                constraint: fk.name.clone(),
                table: fk.table.clone(),
                columns: fk.columns.clone(),
                ref_table: fk.ref_table.clone(),
                ref_columns: fk.ref_columns.clone(),
            })
            .collect())
    }
}

fn semantic_name(s: SemanticType) -> &'static str {
    match s {
        SemanticType::Numerical => "numerical",
        SemanticType::Categorical => "categorical",
        SemanticType::Text => "text",
        SemanticType::Timestamp => "a timestamp",
        SemanticType::Boolean => "boolean",
        SemanticType::Key => "a key",
        SemanticType::Unsupported => "unsupported",
    }
}

/// Resolves the whole query (without generating SQL).
pub(crate) fn resolve(
    query: &str,
    ast: &Query,
    graph: &SchemaGraph,
    options: &AnchorOptions,
) -> Result<TaskSpec, PqlError> {
    // Entity: FOR EACH table.pk
    let eq = &ast.entity;
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
    let entity_time_type = entity
        .time_column
        .as_ref()
        .and_then(|t| entity.column(t))
        .map(|c| c.pg_type.clone());
    let entity_spec = EntitySpec {
        table: entity.table.clone(),
        key_column: key.column.clone(),
        key_type: key.pg_type.clone(),
        time_column: entity_time_type.as_ref().and(entity.time_column.clone()),
        time_type: entity_time_type,
    };
    let c = Compiler::new(graph, entity);

    let (target, comparison, task_type, window) = match &ast.target {
        TargetAst::Agg { call, cmp } => {
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
            (Target::Aggregate(a), comparison, tt, Some(w))
        }
        TargetAst::ListDistinct { call, k } => {
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
            (
                Target::ListDistinct {
                    aggregate: a,
                    item_table,
                    k: *k,
                },
                None,
                TaskType::Ranking,
                Some(w),
            )
        }
        TargetAst::Static(q) => {
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
            (Target::Static(col), None, tt, None)
        }
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
    match &target {
        Target::Aggregate(a) | Target::ListDistinct { aggregate: a, .. } => aggs.push(a),
        Target::Static(_) => {}
    }
    for e in [&entity_filter, &assuming].into_iter().flatten() {
        collect_aggs(e, &mut aggs);
    }
    for a in aggs {
        push_tc(TimeColumn {
            table: a.table.clone(),
            column: a.time_column.clone(),
            pg_type: a.time_type.clone(),
        });
    }
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
