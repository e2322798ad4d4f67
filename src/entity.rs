//! Entity ids given as `anyelement`: rendered as text and checked against the key's type.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::{AnyArray, AnyElement};

use crate::error::{raise, spi};

/// The text form of `id` (its type's output function), after checking that its type can
/// name a key of type `key_type` (`format_type` form).
pub fn key_text(id: &AnyElement, key_type: &str, task: &str) -> String {
    let oid = id.oid();
    check_type(oid, key_type, task);
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

/// The elements of an array of ids, as text (NULL elements are skipped), after the same
/// type check as [`key_text`].
pub fn keys_text(ids: &AnyArray, key_type: &str, task: &str) -> Vec<String> {
    let elem = unsafe { pg_sys::get_element_type(ids.oid()) };
    check_type(elem, key_type, task);
    let arg = unsafe { DatumWithOid::new(ids.datum(), ids.oid()) };
    crate::sql::connect(|client| {
        let table = spi(client.select(
            "SELECT x::pg_catalog.text FROM pg_catalog.unnest($1) AS x WHERE x IS NOT NULL",
            None,
            &[arg],
        ));
        table.filter_map(|row| spi(row.get::<String>(1))).collect()
    })
}

/// Errors with 42804 unless a value of type `oid` can name a key of type `key_type`.
fn check_type(oid: pg_sys::Oid, key_type: &str, task: &str) {
    // format_type_be directly: this runs on every rdl_predict call.
    // SAFETY: format_type_be returns a palloc'd C string for any type OID.
    // Under the locked path, as the catalog reader names the key's type.
    let arg_type = crate::sql::locked(|| unsafe {
        let c = pg_sys::format_type_be(oid);
        let s = std::ffi::CStr::from_ptr(c).to_string_lossy().into_owned();
        pg_sys::pfree(c.cast());
        s
    });
    rdl_engine::pipeline::args::key_type(&arg_type, key_type, task).unwrap_or_else(|e| raise(e))
}
