//! Entity ids given as `anyelement`: rendered as text and checked against the key's type.

use pgrx::prelude::*;
use pgrx::AnyElement;

use crate::error::{query_one, RdlError};

/// The text form of `id` (its type's output function), after checking that its type can
/// name a key of type `key_type` (`format_type` form).
pub fn key_text(id: &AnyElement, key_type: &str, task: &str) -> String {
    let oid = id.oid();
    let arg_type: String =
        query_one("SELECT pg_catalog.format_type($1, NULL)", &[oid.into()]).unwrap_or_default();
    let ints = ["smallint", "integer", "bigint", "numeric"];
    let ok = arg_type == key_type
        || (ints.contains(&arg_type.as_str()) && ints.contains(&key_type))
        || matches!(
            arg_type.as_str(),
            "text" | "character varying" | "unknown" | "name"
        );
    if !ok {
        RdlError::new(
            "42804",
            format!("entity id of type {arg_type} does not match the key of task \"{task}\" ({key_type})"),
        )
        .hint(format!("Pass the id as {key_type}, or cast it: id::{key_type}."))
        .raise()
    }
    unsafe {
        let mut func = pg_sys::InvalidOid;
        let mut varlena = false;
        pg_sys::getTypeOutputInfo(oid, &mut func, &mut varlena);
        let c = pg_sys::OidOutputFunctionCall(func, id.datum());
        let s = std::ffi::CStr::from_ptr(c).to_string_lossy().into_owned();
        pg_sys::pfree(c.cast());
        s
    }
}
