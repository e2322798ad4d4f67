//! The schema graph: tables, keys, columns with semantic types, time columns and foreign
//! keys. The extension fills it from `pg_catalog`; everything that decides what a column
//! *means* lives here so it can be tested without a database.

use serde::{Deserialize, Serialize};

use crate::ident::quote_qualified;

/// What a column is to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SemanticType {
    Numerical,
    Categorical,
    Text,
    Timestamp,
    Boolean,
    /// Part of a primary or foreign key: structure, never a value the model reads.
    Key,
    Unsupported,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// `format_type()` of the column, e.g. `timestamp without time zone`.
    #[serde(rename = "type")]
    pub pg_type: String,
    pub semantic: SemanticType,
    pub nullable: bool,
}

/// Where a table's time column came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeSource {
    /// Picked by [`detect_time_column`].
    Detected,
    /// Set with `rdl_set_time_column` (a `None` column then means "static" by choice).
    User,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub schema: String,
    pub name: String,
    /// `schema.name`, quoted as PostgreSQL would: the form used in SQL and in messages.
    pub table: String,
    /// `table` or `partitioned table`.
    pub kind: String,
    /// Empty when the table has none (it can still be reached as a context table).
    pub primary_key: Vec<String>,
    pub columns: Vec<Column>,
    pub time_column: Option<String>,
    pub time_source: Option<TimeSource>,
    /// On the caller's `search_path` (`pg_table_is_visible`): unqualified names resolve here.
    pub visible: bool,
}

impl Table {
    /// Table `schema.name` of `kind` as the catalog lists it, before its keys, columns and
    /// time column are read; `visible` on the caller's search path.
    pub fn new(schema: String, name: String, kind: String, visible: bool) -> Table {
        Table {
            table: quote_qualified(&schema, &name),
            schema,
            name,
            kind,
            primary_key: Vec::new(),
            columns: Vec::new(),
            time_column: None,
            time_source: None,
            visible,
        }
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForeignKey {
    /// Constraint name.
    pub name: String,
    pub table: String,
    pub columns: Vec<String>,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
    /// Whether an index leads with one of `columns`: following the key from parent to
    /// children can then read only the rows it keeps (see `sampler::statements`).
    #[serde(default = "yes")]
    pub indexed: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchemaGraph {
    pub tables: Vec<Table>,
    pub foreign_keys: Vec<ForeignKey>,
    /// Things a person should know (tables without a primary key, ambiguous time columns).
    pub warnings: Vec<String>,
    /// Tables that exist but the caller may not read, as `(schema, name, visible)`: never
    /// part of the graph, named only so that a query over one gets "permission denied"
    /// rather than "does not exist".
    #[serde(skip)]
    pub unreadable: Vec<(String, String, bool)>,
}

impl SchemaGraph {
    /// Finds a table by its quoted qualified name (`public.drivers`).
    pub fn table(&self, qualified: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.table == qualified)
    }

    /// Resolves a name as PostgreSQL would: `schema.name` exactly, or a bare name among the
    /// tables on the search path, falling back to a unique match in any schema read.
    pub fn resolve(&self, schema: Option<&str>, name: &str) -> Result<&Table, ResolveError> {
        if let Some(s) = schema {
            return self
                .tables
                .iter()
                .find(|t| t.schema == s && t.name == name)
                .ok_or_else(|| {
                    if self.unreadable.iter().any(|u| u.0 == s && u.1 == name) {
                        ResolveError::Denied(quote_qualified(s, name))
                    } else {
                        ResolveError::NotFound(quote_qualified(s, name))
                    }
                });
        }
        let matches: Vec<&Table> = self.tables.iter().filter(|t| t.name == name).collect();
        if let Some(t) = matches.iter().find(|t| t.visible) {
            return Ok(t);
        }
        if let Some(u) = self.unreadable.iter().find(|u| u.1 == name && u.2) {
            // The name means this table (it is on the search path): it is just not readable.
            return Err(ResolveError::Denied(quote_qualified(&u.0, &u.1)));
        }
        match matches.as_slice() {
            [] => Err(ResolveError::NotFound(crate::ident::quote_ident(name))),
            [one] => Ok(one),
            many => Err(ResolveError::Ambiguous(
                many.iter().map(|t| t.table.clone()).collect(),
            )),
        }
    }

    /// Foreign keys leaving `table` (to its parents).
    pub fn parents_of<'a>(&'a self, table: &'a str) -> impl Iterator<Item = &'a ForeignKey> {
        self.foreign_keys.iter().filter(move |fk| fk.table == table)
    }

    /// Recomputes every column's semantic type now that keys are known, and adds warnings.
    pub fn finish(&mut self) {
        let mut key_cols: Vec<(String, String)> = Vec::new();
        for fk in &self.foreign_keys {
            for c in &fk.columns {
                key_cols.push((fk.table.clone(), c.clone()));
            }
        }
        for t in &mut self.tables {
            for c in &mut t.columns {
                let is_key = t.primary_key.contains(&c.name)
                    || key_cols
                        .iter()
                        .any(|(tt, cc)| *tt == t.table && *cc == c.name);
                // A time column inside a key (partitioned tables) stays the time column.
                if is_key && t.time_column.as_deref() != Some(c.name.as_str()) {
                    c.semantic = SemanticType::Key;
                }
            }
            if t.primary_key.is_empty() {
                self.warnings.push(format!(
                    "table {} has no primary key: it can be read as context through its \
                     foreign keys but cannot be an entity table",
                    t.table
                ));
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResolveError {
    NotFound(String),
    Ambiguous(Vec<String>),
    /// It exists, and the caller may not read it.
    Denied(String),
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::NotFound(n) => write!(f, "table {n} does not exist"),
            ResolveError::Denied(n) => write!(f, "permission denied for table {n}"),
            ResolveError::Ambiguous(c) => {
                write!(
                    f,
                    "table name is ambiguous: candidates are {}",
                    c.join(", ")
                )
            }
        }
    }
}

/// The semantic type of a column from its (base) type's `pg_type.typcategory` and name and,
/// for strings, the planner's distinct-value estimate (`pg_stats.n_distinct`: positive is a
/// count, negative a fraction of `rows`). Key membership is applied later by
/// [`SchemaGraph::finish`].
pub fn infer_semantic(
    typcategory: char,
    typname: &str,
    n_distinct: Option<f64>,
    rows: f64,
) -> SemanticType {
    match typcategory {
        'B' => SemanticType::Boolean,
        'N' if typname == "oid" || typname.starts_with("reg") => SemanticType::Unsupported,
        'N' => SemanticType::Numerical,
        // Intervals are durations: a number of seconds to the model.
        'T' => SemanticType::Numerical,
        'D' => match typname {
            "date" | "timestamp" | "timestamptz" => SemanticType::Timestamp,
            // A time of day without a date is periodic, not a point in time.
            _ => SemanticType::Numerical,
        },
        'E' => SemanticType::Categorical,
        'S' => {
            let distinct = match n_distinct {
                Some(d) if d > 0.0 => Some(d),
                Some(d) if d < 0.0 => Some(-d * rows.max(0.0)),
                _ => None,
            };
            match distinct {
                // Few distinct values relative to rows: a category, embedded per value.
                Some(d) if d <= 1000.0 && (rows <= 0.0 || d <= 0.5 * rows) => {
                    SemanticType::Categorical
                }
                _ => SemanticType::Text,
            }
        }
        'U' if typname == "uuid" => SemanticType::Categorical,
        _ => SemanticType::Unsupported,
    }
}

/// Names that conventionally mean "when this row became known", best first.
const TIME_NAMES: &[&str] = &[
    "created_at",
    "created",
    "creation_time",
    "inserted_at",
    "event_time",
    "occurred_at",
    "timestamp",
    "ts",
    "time",
    "datetime",
    "date",
];

/// Dates that describe an entity rather than stamp an event (a birth date does not make a
/// driver appear in 1985): never picked automatically.
fn is_attribute_date(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "dob"
        || n.contains("birth")
        || n.starts_with("born")
        || n.contains("expir")
        || n.contains("deadline")
        || n.starts_with("due")
        || n.starts_with("valid_")
}

impl Table {
    /// Sets the table's time column: the user's choice (`rdl_set_time_column`, `Some`,
    /// possibly "none"), else the detected one. A warning when detection found several
    /// date/time columns and none conventionally named.
    pub fn choose_time_column(&mut self, chosen: Option<Option<String>>) -> Option<String> {
        if let Some(col) = chosen {
            self.time_column = col;
            self.time_source = Some(TimeSource::User);
            return None;
        }
        self.time_column = detect_time_column(&self.columns);
        self.time_source = self.time_column.as_ref().map(|_| TimeSource::Detected);
        let temporal = self
            .columns
            .iter()
            .filter(|c| c.semantic == SemanticType::Timestamp)
            .count();
        (self.time_column.is_none() && temporal > 1).then(|| {
            format!(
                "table {} has {temporal} date/time columns and none is conventionally \
                 named: it is treated as static; choose one with \
                 rdl_set_time_column('{}', '<column>')",
                self.table,
                self.table.replace('\'', "''")
            )
        })
    }
}

/// Picks a table's time column: the only date/timestamp column, or among several the one
/// with a conventional name. `None` when there is no candidate or no way to choose (the
/// caller reports it; `rdl_set_time_column` settles it).
pub fn detect_time_column(columns: &[Column]) -> Option<String> {
    let candidates: Vec<&Column> = columns
        .iter()
        .filter(|c| c.semantic == SemanticType::Timestamp && !is_attribute_date(&c.name))
        .collect();
    if candidates.len() == 1 {
        return Some(candidates[0].name.clone());
    }
    TIME_NAMES.iter().find_map(|want| {
        candidates
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(want))
            .map(|c| c.name.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, semantic: SemanticType) -> Column {
        Column {
            name: name.into(),
            pg_type: String::new(),
            semantic,
            nullable: true,
        }
    }

    #[test]
    fn semantic_types_from_catalog() {
        use SemanticType::*;
        assert_eq!(infer_semantic('N', "int4", None, 0.0), Numerical);
        assert_eq!(infer_semantic('N', "numeric", None, 0.0), Numerical);
        assert_eq!(infer_semantic('N', "regclass", None, 0.0), Unsupported);
        assert_eq!(infer_semantic('N', "oid", None, 0.0), Unsupported);
        assert_eq!(infer_semantic('B', "bool", None, 0.0), Boolean);
        assert_eq!(infer_semantic('D', "timestamptz", None, 0.0), Timestamp);
        assert_eq!(infer_semantic('D', "date", None, 0.0), Timestamp);
        assert_eq!(infer_semantic('D', "time", None, 0.0), Numerical);
        assert_eq!(infer_semantic('T', "interval", None, 0.0), Numerical);
        assert_eq!(infer_semantic('E', "mood", None, 0.0), Categorical);
        assert_eq!(infer_semantic('U', "uuid", None, 0.0), Categorical);
        assert_eq!(infer_semantic('U', "jsonb", None, 0.0), Unsupported);
        assert_eq!(infer_semantic('A', "_int4", None, 0.0), Unsupported);
        // Strings: categories when few distinct values, text otherwise or when unknown.
        assert_eq!(infer_semantic('S', "text", Some(12.0), 800.0), Categorical);
        assert_eq!(
            infer_semantic('S', "text", Some(-0.01), 10_000.0),
            Categorical
        );
        assert_eq!(infer_semantic('S', "text", Some(-1.0), 800.0), Text);
        assert_eq!(infer_semantic('S', "text", Some(5000.0), 100_000.0), Text);
        assert_eq!(infer_semantic('S', "varchar", None, 800.0), Text);
    }

    #[test]
    fn time_column_single_candidate() {
        let cols = [
            col("id", SemanticType::Key),
            col("ts_value", SemanticType::Numerical),
            col("placed", SemanticType::Timestamp),
        ];
        assert_eq!(detect_time_column(&cols).as_deref(), Some("placed"));
    }

    #[test]
    fn time_column_conventional_name_among_several() {
        let cols = [
            col("updated_at", SemanticType::Timestamp),
            col("created_at", SemanticType::Timestamp),
        ];
        assert_eq!(detect_time_column(&cols).as_deref(), Some("created_at"));
        let cols = [
            col("shipped", SemanticType::Timestamp),
            col("delivered", SemanticType::Timestamp),
        ];
        assert_eq!(detect_time_column(&cols), None);
    }

    #[test]
    fn birth_dates_are_attributes_not_time() {
        let cols = [col("dob", SemanticType::Timestamp)];
        assert_eq!(detect_time_column(&cols), None);
        let cols = [col("date_of_birth", SemanticType::Timestamp)];
        assert_eq!(detect_time_column(&cols), None);
        let cols = [col("born", SemanticType::Timestamp)];
        assert_eq!(detect_time_column(&cols), None);
        let cols = [col("name", SemanticType::Text)];
        assert_eq!(detect_time_column(&cols), None);
    }

    fn table(schema: &str, name: &str, visible: bool) -> Table {
        let mut t = Table::new(schema.into(), name.into(), "table".into(), visible);
        assert_eq!(t.table, quote_qualified(schema, name));
        t.primary_key = vec!["id".into()];
        t.columns = vec![
            col("id", SemanticType::Numerical),
            col("x", SemanticType::Numerical),
        ];
        t
    }

    #[test]
    fn resolution_follows_search_path() {
        let g = SchemaGraph {
            tables: vec![
                table("a", "t", false),
                table("b", "t", true),
                table("a", "only", false),
            ],
            ..Default::default()
        };
        assert_eq!(g.resolve(None, "t").unwrap().schema, "b");
        assert_eq!(g.resolve(Some("a"), "t").unwrap().schema, "a");
        assert_eq!(g.resolve(None, "only").unwrap().schema, "a");
        assert!(matches!(
            g.resolve(None, "nope"),
            Err(ResolveError::NotFound(_))
        ));
        let g = SchemaGraph {
            tables: vec![table("a", "t", false), table("b", "t", false)],
            ..Default::default()
        };
        assert!(matches!(
            g.resolve(None, "t"),
            Err(ResolveError::Ambiguous(_))
        ));
    }

    #[test]
    fn finish_marks_keys_and_warns() {
        let mut t = table("public", "orders", true);
        t.columns.push(col("customer_id", SemanticType::Numerical));
        let mut nopk = table("public", "log", true);
        nopk.primary_key.clear();
        let mut g = SchemaGraph {
            tables: vec![t, nopk],
            foreign_keys: vec![ForeignKey {
                name: "fk".into(),
                table: "public.orders".into(),
                columns: vec!["customer_id".into()],
                ref_table: "public.customers".into(),
                ref_columns: vec!["id".into()],
                indexed: true,
            }],
            warnings: vec![],
            unreadable: Vec::new(),
        };
        g.finish();
        let o = g.table("public.orders").unwrap();
        assert_eq!(o.column("id").unwrap().semantic, SemanticType::Key);
        assert_eq!(o.column("customer_id").unwrap().semantic, SemanticType::Key);
        assert_eq!(o.column("x").unwrap().semantic, SemanticType::Numerical);
        assert_eq!(g.warnings.len(), 1);
        assert!(g.warnings[0].contains("public.log"));
    }
}
