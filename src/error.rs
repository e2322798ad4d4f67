//! SQL errors with a proper SQLSTATE, detail and hint.
//!
//! Every user-facing failure goes through [`raise`], so messages name the object at fault and
//! hints say how to fix it. pgrx turns the report into an ERROR that unwinds Rust frames
//! cleanly: no panic ever reaches PostgreSQL as anything else.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};
use rdl_engine::pipeline::error::{packed_sqlstate, Error};

/// A failure destined to become an ERROR: the engine's [`Error`] (SQLSTATE, message,
/// detail, hint), raised here.
#[derive(Debug, Clone)]
pub struct RdlError(pub Error);

impl RdlError {
    pub fn new(sqlstate: &'static str, message: impl Into<String>) -> Self {
        RdlError(Error::new(sqlstate, message))
    }

    pub fn hint(self, hint: impl Into<String>) -> Self {
        RdlError(self.0.hint(hint))
    }

    pub fn detail(self, detail: impl Into<String>) -> Self {
        RdlError(self.0.detail(detail))
    }

    /// Reports the error; never returns.
    pub fn raise(self) -> ! {
        let Error {
            sqlstate,
            message,
            detail,
            hint,
        } = self.0;
        let code = packed_sqlstate(sqlstate).map(PgSqlErrorCode::from);
        let code = code.unwrap_or(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR);
        let mut report = ErrorReport::new(code, message, "rdl");
        if let Some(d) = detail {
            report = report.set_detail(d);
        }
        if let Some(h) = hint {
            report = report.set_hint(h);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ERROR reports do not return")
    }
}

/// The engine's errors (recipes', the query language's, training's) as they are raised.
impl<E: Into<Error>> From<E> for RdlError {
    fn from(e: E) -> Self {
        RdlError(e.into())
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

/// A required argument of a function that is not STRICT: 22004 when NULL
/// ([`rdl_engine::pipeline::args::not_null`]).
pub fn not_null<T>(v: Option<T>, what: &str) -> T {
    rdl_engine::pipeline::args::not_null(v, what).unwrap_or_else(|e| raise(e))
}

/// Raises an engine error as an ERROR with its SQLSTATE, detail and hint.
pub fn raise(e: impl Into<RdlError>) -> ! {
    e.into().raise()
}
