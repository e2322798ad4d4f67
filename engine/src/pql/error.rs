//! Errors carrying a PostgreSQL SQLSTATE, so the extension can `ereport` them unchanged.

use serde::Serialize;

/// An error from parsing or compiling a predictive query (or from its options).
///
/// `position` is 1-based and counts characters of the query text, as PostgreSQL's
/// `ERRORPOSITION` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PqlError {
    pub sqlstate: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub position: Option<usize>,
}

/// SQLSTATE codes used by the compiler (see the table in the module documentation).
pub mod sqlstate {
    pub const SYNTAX_ERROR: &str = "42601";
    pub const UNDEFINED_TABLE: &str = "42P01";
    pub const UNDEFINED_COLUMN: &str = "42703";
    pub const UNDEFINED_FUNCTION: &str = "42883";
    pub const AMBIGUOUS_COLUMN: &str = "42702";
    pub const INVALID_COLUMN_REFERENCE: &str = "42P10";
    pub const INVALID_FOREIGN_KEY: &str = "42830";
    pub const DATATYPE_MISMATCH: &str = "42804";
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
    pub const STATEMENT_TOO_COMPLEX: &str = "54001";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
}

impl PqlError {
    pub fn new(sqlstate: &'static str, message: impl Into<String>) -> Self {
        PqlError {
            sqlstate,
            message: message.into(),
            detail: None,
            hint: None,
            position: None,
        }
    }

    /// `42601 syntax error at N: expected ...`.
    pub fn syntax(position: usize, expected: impl AsRef<str>) -> Self {
        PqlError::new(
            sqlstate::SYNTAX_ERROR,
            format!("syntax error at {position}: {}", expected.as_ref()),
        )
        .at(position)
    }

    pub fn at(mut self, position: usize) -> Self {
        self.position = Some(position);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl std::fmt::Display for PqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(d) = &self.detail {
            write!(f, "\nDETAIL:  {d}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\nHINT:  {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PqlError {}
