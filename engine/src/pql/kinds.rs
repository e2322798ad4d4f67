//! The kinds of values a query compares (number, text, boolean), for type checks.

use super::ast::{Agg, Literal};
use super::error::{sqlstate, PqlError};
use super::spec::{AggregateSpec, ColumnRef, Value};
use crate::schema::SemanticType;

/// Numeric for arithmetic and ordering purposes (not a key).
pub(super) fn is_numeric(c: &ColumnRef) -> bool {
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
pub(super) enum Kind {
    Number,
    Text,
    Bool,
    Other,
    Null,
}

pub(super) fn column_kind(c: &ColumnRef) -> Kind {
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

pub(super) fn agg_kind(a: &AggregateSpec) -> Kind {
    match a.agg {
        Agg::Count | Agg::CountDistinct | Agg::Sum | Agg::Avg | Agg::Exists => Kind::Number,
        Agg::Min | Agg::Max | Agg::First | Agg::Last => {
            a.column.as_ref().map(column_kind).unwrap_or(Kind::Other)
        }
        Agg::ListDistinct => Kind::Other,
    }
}

pub(super) fn value_kind(v: &Value) -> Kind {
    match v {
        Value::Column(c) => column_kind(c),
        Value::Aggregate(a) => agg_kind(a),
        Value::Literal(Literal::Number(_)) => Kind::Number,
        Value::Literal(Literal::String(_)) => Kind::Text,
        Value::Literal(Literal::Boolean(_)) => Kind::Bool,
        Value::Literal(Literal::Null) => Kind::Null,
    }
}

pub(super) fn check_comparable(left: &Value, right: &Value, pos: usize) -> Result<(), PqlError> {
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

pub(super) fn semantic_name(s: SemanticType) -> &'static str {
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
