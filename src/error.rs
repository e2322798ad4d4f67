//! SQL errors with a proper SQLSTATE, detail and hint.
//!
//! Every user-facing failure goes through [`raise`], so messages name the object at fault and
//! hints say how to fix it. pgrx turns the report into an ERROR that unwinds Rust frames
//! cleanly: no panic ever reaches PostgreSQL as anything else.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// A failure destined to become an ERROR.
#[derive(Debug, Clone)]
pub struct RdlError {
    pub sqlstate: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl RdlError {
    pub fn new(sqlstate: &'static str, message: impl Into<String>) -> Self {
        Self {
            sqlstate,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Reports the error; never returns.
    pub fn raise(self) -> ! {
        let mut report = ErrorReport::new(sqlstate_code(self.sqlstate), self.message, "rdl");
        if let Some(d) = self.detail {
            report = report.set_detail(d);
        }
        if let Some(h) = self.hint {
            report = report.set_hint(h);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ERROR reports do not return")
    }
}

/// Unwraps an SPI result; an SPI failure is an internal error (the statement itself already
/// raised its own ERROR if PostgreSQL rejected it).
pub fn spi<T>(r: Result<T, pgrx::spi::SpiError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => RdlError::new("XX000", format!("rdl: SPI failed: {e}")).raise(),
    }
}

/// `"42P01"` → the packed code PostgreSQL uses (`MAKE_SQLSTATE`).
fn sqlstate_code(s: &str) -> PgSqlErrorCode {
    let b = s.as_bytes();
    if b.len() != 5 {
        return PgSqlErrorCode::ERRCODE_INTERNAL_ERROR;
    }
    let six = |c: u8| ((c as i32) - ('0' as i32)) & 0x3F;
    let code =
        six(b[0]) + (six(b[1]) << 6) + (six(b[2]) << 12) + (six(b[3]) << 18) + (six(b[4]) << 24);
    PgSqlErrorCode::from(code)
}

/// A required argument of a function that is not STRICT (it has other, optional,
/// arguments): NULL is a clear error rather than pgrx's internal one.
pub fn not_null<T>(v: Option<T>, what: &str) -> T {
    v.unwrap_or_else(|| {
        RdlError::new("22004", format!("{what} must not be NULL"))
            .hint("Pass a value; optional arguments may be NULL or left out.")
            .raise()
    })
}

impl From<rdl_engine::pipeline::Error> for RdlError {
    fn from(e: rdl_engine::pipeline::Error) -> Self {
        RdlError {
            sqlstate: e.sqlstate,
            message: e.message,
            detail: e.detail,
            hint: e.hint,
        }
    }
}

impl From<rdl_engine::pql::PqlError> for RdlError {
    fn from(e: rdl_engine::pql::PqlError) -> Self {
        RdlError {
            sqlstate: e.sqlstate,
            message: e.message,
            detail: e.detail,
            hint: e.hint,
        }
    }
}

/// Raises an engine error as an ERROR with its SQLSTATE, detail and hint.
pub fn raise(e: impl Into<RdlError>) -> ! {
    e.into().raise()
}
