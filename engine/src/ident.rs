//! PostgreSQL identifier quoting, matching `quote_ident()`.
//!
//! Generated SQL must quote every identifier the same way PostgreSQL would, so that names
//! like `"Order Items"` or reserved words survive the round trip.

/// Quotes `name` when PostgreSQL would need it (anything but a lower-case, non-reserved
/// identifier of `[a-z_][a-z0-9_$]*`). Reserved words are always quoted; the list is the
/// SQL-standard reserved subset PostgreSQL refuses as bare column names.
pub fn quote_ident(name: &str) -> String {
    if is_plain(name) {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// `schema.name`, each part quoted as needed.
pub fn quote_qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// Quotes a string as a SQL literal (standard_conforming_strings on, PostgreSQL's default
/// since 9.1). Only for identifiers shown in messages or DDL that cannot take parameters;
/// values in queries are always bound as parameters.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn is_plain(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_lowercase() || c == '_' => {}
        _ => return false,
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$') {
        return false;
    }
    !RESERVED.contains(&name)
}

/// PostgreSQL's reserved key words (`pg_get_keywords()` where catcode = 'R'), plus the
/// type/function-name words that cannot be used bare as column names.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_stay_bare() {
        assert_eq!(quote_ident("drivers"), "drivers");
        assert_eq!(quote_ident("driver_id2"), "driver_id2");
        assert_eq!(quote_ident("_x$"), "_x$");
    }

    #[test]
    fn odd_names_are_quoted() {
        assert_eq!(quote_ident("Order Items"), "\"Order Items\"");
        assert_eq!(quote_ident("Drivers"), "\"Drivers\"");
        assert_eq!(quote_ident("1abc"), "\"1abc\"");
        assert_eq!(quote_ident("user"), "\"user\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident(""), "\"\"");
        assert_eq!(quote_qualified("Sales", "order"), "\"Sales\".\"order\"");
    }

    #[test]
    fn literals_double_quotes() {
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
