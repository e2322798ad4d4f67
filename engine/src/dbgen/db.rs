//! The generated database, held in memory: typed columns stored column by column, keys,
//! foreign keys (composite ones too) and time columns. Everything a sampler needs to build
//! contexts without PostgreSQL; the writers turn it into SQL and CSV.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::base::time::{civil_from_days, US_PER_DAY};
use crate::ident::quote_qualified;
use crate::schema::{self, SchemaGraph, SemanticType};

/// A column's SQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColType {
    Int,
    BigInt,
    Float,
    /// `numeric(12,2)`: money.
    Money,
    Text,
    Bool,
    Date,
    Timestamp,
    Timestamptz,
}

impl ColType {
    /// The type as `format_type()` spells it (what the catalog reader reports).
    pub fn pg(self) -> &'static str {
        match self {
            ColType::Int => "integer",
            ColType::BigInt => "bigint",
            ColType::Float => "double precision",
            ColType::Money => "numeric(12,2)",
            ColType::Text => "text",
            ColType::Bool => "boolean",
            ColType::Date => "date",
            ColType::Timestamp => "timestamp without time zone",
            ColType::Timestamptz => "timestamp with time zone",
        }
    }

    pub fn is_time(self) -> bool {
        matches!(
            self,
            ColType::Date | ColType::Timestamp | ColType::Timestamptz
        )
    }

    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            ColType::Int | ColType::BigInt | ColType::Float | ColType::Money
        )
    }
}

/// One cell. Strings are interned in [`Database::strings`]; times (dates included) are
/// microseconds since the Unix epoch, UTC (a date is its midnight).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(u32),
    Time(i64),
}

impl Cell {
    pub fn is_null(&self) -> bool {
        matches!(self, Cell::Null)
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Cell::Int(i) => Some(i as f64),
            Cell::Float(f) => Some(f),
            _ => None,
        }
    }

    pub fn as_time(&self) -> Option<i64> {
        match *self {
            Cell::Time(t) => Some(t),
            _ => None,
        }
    }

    /// The cell as a key (ints and strings only).
    pub fn key(&self) -> Option<Key> {
        match *self {
            Cell::Int(i) => Some(Key::Int(i)),
            Cell::Str(s) => Some(Key::Str(s)),
            _ => None,
        }
    }
}

/// A hashable key value (one column of a primary or foreign key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Int(i64),
    Str(u32),
}

impl From<Key> for Cell {
    fn from(k: Key) -> Cell {
        match k {
            Key::Int(i) => Cell::Int(i),
            Key::Str(s) => Cell::Str(s),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub ty: ColType,
    pub nullable: bool,
    pub data: Vec<Cell>,
}

/// What a table is for in the generated world (documentation and task building; the
/// database itself does not know).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The entity the tasks predict for.
    Entity,
    /// Timed facts that carry the planted signal.
    Event,
    /// Static lookup tables (regions, categories, items...).
    Dimension,
    /// Many-to-many links.
    Link,
    /// Tables with no signal (random dimensions and logs).
    Noise,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub name: String,
    pub role: Role,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    pub time_column: Option<String>,
}

impl Table {
    pub fn new(name: &str, role: Role) -> Table {
        Table {
            name: name.into(),
            role,
            columns: Vec::new(),
            primary_key: Vec::new(),
            time_column: None,
        }
    }

    /// Adds a column filled with `data`.
    pub fn add(&mut self, name: &str, ty: ColType, data: Vec<Cell>) -> &mut Table {
        debug_assert!(self.columns.is_empty() || self.columns[0].data.len() == data.len());
        let nullable = data.iter().any(Cell::is_null);
        self.columns.push(Column {
            name: name.into(),
            ty,
            nullable,
            data,
        });
        self
    }

    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.data.len())
    }

    pub fn col(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn col_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Each row's time (`None` for a static table).
    pub fn times(&self) -> Option<Vec<i64>> {
        let c = self.col(self.time_column.as_deref()?)?;
        Some(
            c.data
                .iter()
                .map(|x| x.as_time().unwrap_or(i64::MIN))
                .collect(),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForeignKey {
    pub name: String,
    pub table: String,
    pub columns: Vec<String>,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
}

/// Interned strings (ids in insertion order: deterministic).
#[derive(Debug, Clone, Default)]
pub struct Strings {
    pub list: Vec<String>,
    map: HashMap<String, u32>,
}

impl Strings {
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.map.get(s) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(s.to_string());
        self.map.insert(s.to_string(), i);
        i
    }

    pub fn cell(&mut self, s: &str) -> Cell {
        Cell::Str(self.intern(s))
    }

    pub fn get(&self, i: u32) -> &str {
        &self.list[i as usize]
    }
}

/// A generated database and its tasks.
#[derive(Debug, Clone)]
pub struct Database {
    pub seed: u64,
    /// The vocabulary it was named from (`retail`, `healthcare`, ...).
    pub domain: String,
    pub tables: Vec<Table>,
    pub foreign_keys: Vec<ForeignKey>,
    pub strings: Strings,
    pub tasks: Vec<super::TaskDef>,
    /// The simulated period (µs, UTC): no timed row lies outside it.
    pub start: i64,
    pub end: i64,
}

/// The schema every generated table lives in.
pub const SCHEMA: &str = "public";

impl Database {
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Rows in all tables.
    pub fn total_rows(&self) -> usize {
        self.tables.iter().map(Table::rows).sum()
    }

    /// A cell as text the way PostgreSQL prints it (`None` for NULL).
    pub fn text(&self, ty: ColType, c: &Cell) -> Option<String> {
        Some(match (*c, ty) {
            (Cell::Null, _) => return None,
            (Cell::Int(i), _) => i.to_string(),
            (Cell::Float(f), ColType::Money) => format!("{f:.2}"),
            (Cell::Float(f), _) => format_float(f),
            (Cell::Bool(b), _) => if b { "t" } else { "f" }.to_string(),
            (Cell::Str(s), _) => self.strings.get(s).to_string(),
            (Cell::Time(t), ColType::Date) => format_date(t),
            (Cell::Time(t), ColType::Timestamptz) => format!("{}+00", format_ts(t)),
            (Cell::Time(t), _) => format_ts(t),
        })
    }

    /// A cell as the sampler would read it (for contexts built without PostgreSQL).
    pub fn value(&self, c: &Cell) -> crate::encode::Value {
        use crate::encode::Value;
        match *c {
            Cell::Null => Value::Null,
            Cell::Int(i) => Value::Num(i as f64),
            Cell::Float(f) => Value::Num(f),
            Cell::Bool(b) => Value::Bool(b),
            Cell::Str(s) => Value::Text(self.strings.get(s).to_string()),
            Cell::Time(t) => Value::Time(t),
        }
    }

    /// The min and max over every timed table's time column (µs), as rdl computes the
    /// range that anchors are placed in.
    pub fn time_range(&self) -> (i64, i64) {
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for t in &self.tables {
            for x in t.times().unwrap_or_default() {
                lo = lo.min(x);
                hi = hi.max(x);
            }
        }
        (lo, hi)
    }

    /// The schema graph the extension would read from the catalog after loading (and after
    /// `ANALYZE`: strings with few distinct values are categorical, the rest text).
    pub fn schema_graph(&self) -> SchemaGraph {
        let mut g = SchemaGraph::default();
        for t in &self.tables {
            let columns: Vec<schema::Column> = t
                .columns
                .iter()
                .map(|c| schema::Column {
                    name: c.name.clone(),
                    pg_type: c.ty.pg().to_string(),
                    semantic: semantic_of(c),
                    nullable: c.nullable,
                })
                .collect();
            let time_column = schema::detect_time_column(&columns);
            g.tables.push(schema::Table {
                schema: SCHEMA.into(),
                name: t.name.clone(),
                table: quote_qualified(SCHEMA, &t.name),
                kind: "table".into(),
                primary_key: t.primary_key.clone(),
                time_source: time_column.as_ref().map(|_| schema::TimeSource::Detected),
                time_column,
                columns,
                visible: true,
            });
        }
        for fk in &self.foreign_keys {
            g.foreign_keys.push(crate::schema::ForeignKey {
                name: fk.name.clone(),
                table: quote_qualified(SCHEMA, &fk.table),
                columns: fk.columns.clone(),
                ref_table: quote_qualified(SCHEMA, &fk.ref_table),
                ref_columns: fk.ref_columns.clone(),
                // schema.sql creates no index on a foreign-key column.
                indexed: false,
            });
        }
        g.finish();
        g
    }
}

/// The semantic type `infer_semantic` gives the column once statistics exist.
fn semantic_of(c: &Column) -> SemanticType {
    match c.ty {
        ColType::Bool => SemanticType::Boolean,
        t if t.is_time() => SemanticType::Timestamp,
        t if t.is_numeric() => SemanticType::Numerical,
        _ => {
            let mut seen: Vec<u32> = c
                .data
                .iter()
                .filter_map(|x| match x {
                    Cell::Str(s) => Some(*s),
                    _ => None,
                })
                .collect();
            let rows = seen.len();
            seen.sort_unstable();
            seen.dedup();
            if seen.len() <= 1000 && seen.len() * 2 <= rows {
                SemanticType::Categorical
            } else {
                SemanticType::Text
            }
        }
    }
}

/// Shortest text that reads back as the same float8 (as PostgreSQL 12+ prints it).
pub fn format_float(f: f64) -> String {
    if f == f.trunc() && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

pub fn format_date(us: i64) -> String {
    let (y, m, d) = civil_from_days(us.div_euclid(US_PER_DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD HH:MM:SS` (UTC wall clock; whole seconds).
pub fn format_ts(us: i64) -> String {
    let tod = us.rem_euclid(US_PER_DAY) / 1_000_000;
    format!(
        "{} {:02}:{:02}:{:02}",
        format_date(us),
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    )
}
