//! The SQL functions' argument checks that need no database: NULLs, ranges, names, and
//! whether a value's type (as `format_type` names it) fits where it goes. Each returns
//! the error the function raises, with its SQLSTATE.

use super::error::{Error, Result};

/// 22004 for a NULL required argument of a function that is not STRICT (it has other,
/// optional, arguments): a clear error rather than pgrx's internal one.
pub fn not_null<T>(v: Option<T>, what: &str) -> Result<T> {
    v.ok_or_else(|| {
        Error::new("22004", format!("{what} must not be NULL"))
            .hint("Pass a value; optional arguments may be NULL or left out.")
    })
}

/// `rdl_explain`'s `top_k`: 1 to 1000.
pub fn top_k(top_k: i32) -> Result<usize> {
    if !(1..=1000).contains(&top_k) {
        let m = format!("top_k must be between 1 and 1000, got {top_k}");
        return Err(Error::new("22023", m));
    }
    Ok(top_k as usize)
}

/// `rdl_predict_detail`'s `coverage`: 0.5 to 0.99.
pub fn coverage(coverage: f64) -> Result<f64> {
    if !(0.5..=0.99).contains(&coverage) {
        let m = format!("coverage must be between 0.5 and 0.99, got {coverage}");
        return Err(Error::new("22023", m));
    }
    Ok(coverage)
}

/// `rdl_importance`'s `max_examples`: at least 1.
pub fn max_examples(max_examples: i32) -> Result<usize> {
    if max_examples < 1 {
        return Err(Error::new("22023", "max_examples must be at least 1"));
    }
    Ok(max_examples as usize)
}

/// `rdl_recommend`'s `k`: positive.
pub fn top_items(k: i32) -> Result<usize> {
    if k <= 0 {
        return Err(Error::new("22023", format!("k must be positive, not {k}"))
            .hint("Ask for the top k items, e.g. rdl_recommend(task, id, 10)."));
    }
    Ok(k as usize)
}

/// A new task's name: not blank.
pub fn task_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::new("22023", "task name must not be empty"));
    }
    Ok(())
}

/// 42804 unless an entity id of type `arg_type` can name a key of type `key_type` of
/// `task`: the same type, integers of any width for one another, or text.
pub fn key_type(arg_type: &str, key_type: &str, task: &str) -> Result<()> {
    let ints = ["smallint", "integer", "bigint", "numeric"];
    let ok = arg_type == key_type
        || (ints.contains(&arg_type) && ints.contains(&key_type))
        || matches!(arg_type, "text" | "character varying" | "unknown" | "name");
    if !ok {
        return Err(Error::new(
            "42804",
            format!("entity id of type {arg_type} does not match the key of task \"{task}\" ({key_type})"),
        )
        .hint(format!("Pass the id as {key_type}, or cast it: id::{key_type}.")));
    }
    Ok(())
}

/// 42809 unless relation `relname` of kind `relkind` (`pg_class.relkind`) is a table or a
/// partitioned table: only those have time columns.
pub fn table_kind(relname: &str, relkind: Option<&str>) -> Result<()> {
    if !matches!(relkind, Some("r") | Some("p")) {
        return Err(Error::new("42809", format!("\"{relname}\" is not a table"))
            .hint("Time columns belong to tables or partitioned tables."));
    }
    Ok(())
}

/// Whether column `col` of `relname`, of type `ty` (`None`: there is no such column), can
/// be a time column: 42703 when it does not exist, 42804 unless a date or timestamp.
pub fn time_column_type(relname: &str, col: &str, ty: Option<&str>) -> Result<()> {
    match ty {
        None => Err(Error::new(
            "42703",
            format!("column \"{col}\" of relation \"{relname}\" does not exist"),
        )
        .hint("Name a date, timestamp or timestamptz column of the table.")),
        Some("date" | "timestamp without time zone" | "timestamp with time zone") => Ok(()),
        Some(other) => Err(Error::new(
            "42804",
            format!("column \"{col}\" of relation \"{relname}\" is of type {other}, not a date or timestamp"),
        )
        .hint("A time column must be date, timestamp or timestamptz; pass NULL to make the table static.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state<T: std::fmt::Debug>(r: Result<T>) -> &'static str {
        r.expect_err("an error").sqlstate
    }

    #[test]
    fn ranges_and_nulls() {
        assert_eq!(not_null(Some(3), "task").unwrap(), 3);
        let e = not_null::<i32>(None, "task").unwrap_err();
        assert_eq!(
            (e.sqlstate, e.message.as_str()),
            ("22004", "task must not be NULL")
        );
        assert_eq!((top_k(1).unwrap(), top_k(1000).unwrap()), (1, 1000));
        assert_eq!((state(top_k(0)), state(top_k(1001))), ("22023", "22023"));
        assert_eq!(coverage(0.9).unwrap(), 0.9);
        let e = coverage(0.995).unwrap_err();
        assert_eq!(
            e.message,
            "coverage must be between 0.5 and 0.99, got 0.995"
        );
        assert_eq!(
            (max_examples(1).unwrap(), state(max_examples(0))),
            (1, "22023")
        );
        assert_eq!((top_items(10).unwrap(), state(top_items(0))), (10, "22023"));
        assert!(task_name("churn").is_ok());
        assert_eq!(state(task_name("  ")), "22023");
    }

    #[test]
    fn key_types() {
        assert!(key_type("integer", "integer", "t").is_ok());
        assert!(key_type("bigint", "smallint", "t").is_ok());
        assert!(key_type("text", "uuid", "t").is_ok());
        assert!(key_type("unknown", "integer", "t").is_ok());
        let e = key_type("uuid", "integer", "churn").unwrap_err();
        assert_eq!(e.sqlstate, "42804");
        assert_eq!(
            e.message,
            "entity id of type uuid does not match the key of task \"churn\" (integer)"
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("Pass the id as integer, or cast it: id::integer.")
        );
    }

    #[test]
    fn time_columns() {
        assert!(table_kind("t", Some("r")).is_ok() && table_kind("t", Some("p")).is_ok());
        assert_eq!(state(table_kind("v", Some("v"))), "42809");
        assert_eq!(state(table_kind("v", None)), "42809");
        for ty in [
            "date",
            "timestamp without time zone",
            "timestamp with time zone",
        ] {
            assert!(time_column_type("t", "at", Some(ty)).is_ok());
        }
        assert_eq!(state(time_column_type("t", "at", None)), "42703");
        let e = time_column_type("t", "at", Some("text")).unwrap_err();
        assert_eq!(e.sqlstate, "42804");
        assert!(e
            .message
            .ends_with("is of type text, not a date or timestamp"));
    }
}
