//! The syntax tree of a predictive query, before names are resolved.

use serde::{Deserialize, Serialize};

/// An identifier as written: folded to lower case unless it was quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub value: String,
    pub quoted: bool,
    pub pos: usize,
}

/// A dotted name (`col`, `t.col`, `s.t.col`, `t.*`, `s.t.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QName {
    pub parts: Vec<Name>,
    /// Ends in `.*` (the parts then name the table only).
    pub star: bool,
    pub pos: usize,
}

impl QName {
    /// How it was written, for messages.
    pub fn display(&self) -> String {
        let mut s: Vec<String> = self
            .parts
            .iter()
            .map(|p| crate::ident::quote_ident(&p.value))
            .collect();
        if self.star {
            s.push("*".into());
        }
        s.join(".")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Agg {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    CountDistinct,
    First,
    Last,
    Exists,
    ListDistinct,
}

impl Agg {
    pub fn from_name(name: &str) -> Option<Agg> {
        Some(match name {
            "count" => Agg::Count,
            "sum" => Agg::Sum,
            "avg" => Agg::Avg,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "count_distinct" => Agg::CountDistinct,
            "first" => Agg::First,
            "last" => Agg::Last,
            "exists" => Agg::Exists,
            "list_distinct" => Agg::ListDistinct,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Agg::Count => "COUNT",
            Agg::Sum => "SUM",
            Agg::Avg => "AVG",
            Agg::Min => "MIN",
            Agg::Max => "MAX",
            Agg::CountDistinct => "COUNT_DISTINCT",
            Agg::First => "FIRST",
            Agg::Last => "LAST",
            Agg::Exists => "EXISTS",
            Agg::ListDistinct => "LIST_DISTINCT",
        }
    }

    /// Aggregates whose value over an empty window is 0 rather than NULL.
    pub fn zero_when_empty(self) -> bool {
        matches!(
            self,
            Agg::Count | Agg::CountDistinct | Agg::Exists | Agg::Sum
        )
    }
}

pub use crate::base::time::Unit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CmpOp {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

impl CmpOp {
    pub fn from_op(op: &str) -> Option<CmpOp> {
        Some(match op {
            "=" => CmpOp::Eq,
            "!=" | "<>" => CmpOp::Ne,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            _ => return None,
        })
    }

    /// The SQL operator.
    pub fn sql(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    pub fn eval(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
        }
    }
}

/// A literal value. Numbers keep their text so no precision is lost on the way to SQL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "value")]
pub enum Literal {
    Number(String),
    String(String),
    Boolean(bool),
    Null,
}

impl Literal {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Literal::Number(n) => n.parse().ok(),
            _ => None,
        }
    }
}

/// `<agg>(<table>.<column>|<table>.* [VIA ...] [WHERE ...], start, end, unit)`.
#[derive(Debug, Clone, PartialEq)]
pub struct AggCall {
    pub agg: Agg,
    pub pos: usize,
    pub arg: QName,
    /// Foreign-key columns the path must follow, in order (`VIA a.x -> b.y`).
    pub via: Vec<QName>,
    pub filter: Option<Cond>,
    pub start: i64,
    pub end: i64,
    pub unit: Unit,
    /// Position of the window start (for window errors).
    pub window_pos: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Column(QName),
    Literal(Literal, usize),
    Agg(Box<AggCall>),
}

impl Operand {
    pub fn pos(&self) -> usize {
        match self {
            Operand::Column(q) => q.pos,
            Operand::Literal(_, p) => *p,
            Operand::Agg(a) => a.pos,
        }
    }
}

/// A boolean condition (row filters, entity filters, ASSUMING).
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
    Cmp {
        op: CmpOp,
        left: Operand,
        right: Operand,
        pos: usize,
    },
    IsNull {
        operand: Operand,
        negated: bool,
    },
    /// A boolean operand on its own: a boolean column, `EXISTS(...)`, TRUE/FALSE.
    Truth(Operand),
}

#[derive(Debug, Clone, PartialEq)]
pub enum TargetAst {
    Agg {
        call: AggCall,
        cmp: Option<(CmpOp, Literal, usize)>,
    },
    Static(QName),
    ListDistinct {
        call: AggCall,
        k: u32,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub target: TargetAst,
    pub entity: QName,
    pub filter: Option<Cond>,
    pub assuming: Option<Cond>,
}
