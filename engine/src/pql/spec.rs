//! The compiled task: what a query means, independent of the task's name.

use serde::{Deserialize, Serialize};

use super::ast::{Agg, CmpOp, Literal, Unit};
use crate::anchors::{AnchorOptions, Splits};
use crate::base::time::Span;
use crate::schema::SemanticType;

/// 2: the label statements are no longer stored (generated on load), and type names come
/// from the catalog read with a locked search path. Older specs are compiled again from
/// their query (see [`super::load_stored`]).
pub const SPEC_VERSION: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    BinaryClassification,
    Regression,
    MulticlassClassification,
    Ranking,
}

/// The entity table and its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntitySpec {
    /// Quoted qualified name (`public.drivers`).
    pub table: String,
    pub key_column: String,
    /// `format_type()` of the key column.
    pub key_type: String,
    /// When the entity table is timed, an entity exists at anchor t only if its time <= t.
    pub time_column: Option<String>,
    pub time_type: Option<String>,
}

/// One foreign key followed from a child table to its parent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FkHop {
    pub constraint: String,
    pub table: String,
    pub columns: Vec<String>,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    pub start: i64,
    pub end: i64,
    pub unit: Unit,
}

impl Window {
    /// How far after the anchor the label looks.
    pub fn horizon(&self) -> Span {
        Span::new(self.end, self.unit)
    }

    pub fn length(&self) -> Span {
        Span::new(self.end - self.start, self.unit)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnRef {
    pub table: String,
    pub column: String,
    pub pg_type: String,
    pub semantic: SemanticType,
}

/// An aggregate over the rows of `table` in a window, grouped by entity through `path`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateSpec {
    pub agg: Agg,
    pub table: String,
    /// `None` for `table.*`.
    pub column: Option<ColumnRef>,
    pub row_filter: Option<Expr>,
    pub window: Window,
    /// From `table` to the entity table; never empty.
    pub path: Vec<FkHop>,
    pub time_column: String,
    pub time_type: String,
    /// Single-column primary key of `table`, to break ties in FIRST/LAST.
    pub primary_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    Column(ColumnRef),
    Literal(Literal),
    Aggregate(Box<AggregateSpec>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare {
        op: CmpOp,
        left: Value,
        right: Value,
    },
    IsNull {
        value: Value,
        negated: bool,
    },
    Truth(Value),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Aggregate(AggregateSpec),
    /// A column of the entity table, read as of now (static).
    Static(ColumnRef),
    /// LIST_DISTINCT over a foreign-key column, ranked top `k`; items live in `item_table`.
    ListDistinct {
        aggregate: AggregateSpec,
        item_table: String,
        k: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub op: CmpOp,
    pub value: Literal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeColumn {
    pub table: String,
    pub column: String,
    pub pg_type: String,
}

/// A compiled predictive query. Serializable (stored as jsonb by the extension).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub version: u32,
    /// The query as the user wrote it.
    pub query: String,
    pub task_type: TaskType,
    pub entity: EntitySpec,
    pub target: Target,
    /// The comparison that makes an aggregate a binary label.
    pub comparison: Option<Comparison>,
    /// The target's window (`None` for a static target).
    pub window: Option<Window>,
    pub entity_filter: Option<Expr>,
    pub assuming: Option<Expr>,
    /// Every time column the labels read.
    pub time_columns: Vec<TimeColumn>,
    pub options: AnchorOptions,
    /// Type of the label column of [`TaskSpec::label_sql`]: `float8`, `text` (multiclass)
    /// or `text[]` (ranking, column named `labels`).
    pub label_type: String,
    /// Values of the query's literals, bound as `text` to `$2, $3, ...` of both label
    /// statements (`$1` is the anchors).
    pub params: Vec<String>,
    /// See [`TaskSpec::label_sql`]. Generated, never stored: stored SQL would be run verbatim
    /// by whoever uses the task.
    #[serde(skip)]
    pub sql: String,
    /// See [`TaskSpec::labels_at_sql`].
    #[serde(skip)]
    pub sql_at: String,
}

impl TaskSpec {
    /// One statement: `$1 timestamptz[]` (anchors), `$2..` the [`TaskSpec::params`] as text;
    /// returns `(entity_id text, anchor_time timestamptz, label float8)` (`label text` for
    /// multiclass, `labels text[]` for ranking), ordered by anchor_time then the entity key.
    pub fn label_sql(&self) -> &str {
        &self.sql
    }

    /// The same labels at one anchor: `$1 timestamptz`, `$2..` the params.
    pub fn labels_at_sql(&self) -> &str {
        &self.sql_at
    }

    /// The anchors of each split, given the data's time range (µs since the epoch, UTC;
    /// see [`crate::pql::time_range_sql`]).
    pub fn splits(&self, min_time: i64, max_time: i64) -> Result<Splits, super::PqlError> {
        match &self.window {
            Some(w) => {
                crate::anchors::splits(min_time, max_time, w.horizon(), w.length(), &self.options)
            }
            // A static target is a current value: every split is anchored at the latest
            // time and the entities are divided between them (see [`static_split_of`]);
            // anchors stepping back in time would put each entity, with its unchanging
            // label, in every split.
            None => Ok(Splits {
                train: vec![max_time],
                val: vec![max_time],
                test: vec![max_time],
                val_cutoff: max_time,
                test_cutoff: max_time,
            }),
        }
    }

    /// Whether the splits divide entities (static targets) rather than time.
    pub fn splits_by_entity(&self) -> bool {
        self.window.is_none()
    }
}

/// The split an entity of a static-target task belongs to: 80% train, 10% validation,
/// 10% test, by a hash of its key (stable across runs, machines and versions).
pub fn static_split_of(entity_key: &str) -> &'static str {
    match crate::base::hash::fnv1a(entity_key.as_bytes()) % 10 {
        0 => "val",
        1 => "test",
        _ => "train",
    }
}
