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

/// A built-in operator, schema-qualified: `OPERATOR(pg_catalog.=)`. Every operator in the
/// SQL rdl generates is written this way, so no operator of the caller's `search_path`
/// can stand in for it (CVE-2018-1058).
pub fn op(symbol: &str) -> String {
    format!("OPERATOR(pg_catalog.{symbol})")
}

/// A type name as `format_type()` prints it (read with `search_path` locked to
/// `pg_catalog`, so a type outside `pg_catalog` comes schema-qualified), made safe to use
/// in a cast whatever the search path: a bare built-in name (`text`, `uuid`, `date`,
/// `text[]`) gets `pg_catalog.`; SQL-standard spellings (`integer`, `double precision`,
/// `character varying(20)`, `timestamp with time zone`), which the grammar maps to
/// `pg_catalog` itself, and names already qualified or quoted with a schema are kept.
pub fn qualify_type(ty: &str) -> String {
    let base = ty.trim_end_matches("[]");
    let head = base.split('(').next().unwrap_or(base).trim();
    let keyword = STANDARD_TYPES.contains(&head)
        || head.starts_with("timestamp")
        || head.starts_with("time ")
        || head.starts_with("interval")
        || head.starts_with("bit ")
        || head.starts_with("character")
        || head.starts_with("double ");
    let simple = (head
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !head.is_empty())
        || (head.starts_with('"') && head.ends_with('"') && !head[1..head.len() - 1].contains('"'));
    if keyword || !simple {
        ty.to_string()
    } else {
        format!("pg_catalog.{ty}")
    }
}

/// The names in `sql` that PostgreSQL would look up through the search path: operators not
/// written `OPERATOR(schema.op)`, functions and cast types without a schema. Key-word
/// constructs (`CAST`, `COALESCE`, `extract`, `ROW`, `ARRAY`, `EXISTS`, SQL-standard type
/// names) are resolved by the grammar and allowed. For tests of generated SQL.
pub fn unqualified_names(sql: &str) -> Vec<String> {
    // Blank out string literals and quoted identifiers: their contents are not names.
    let mut text = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                text.push('_');
            }
            Some(_) => text.push('_'),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                text.push('_');
            }
            None => text.push(c),
        }
    }
    let b = text.as_bytes();
    let mut out = Vec::new();
    let is_word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$';
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b':' && b.get(i + 1) == Some(&b':') {
            // A cast: the type must be qualified or a key word.
            let start = i + 2;
            let mut j = start;
            while j < b.len() && (is_word(b[j]) || b[j] == b'.') {
                j += 1;
            }
            let ty = &text[start..j];
            let head = ty.split('.').next().unwrap_or("");
            if !ty.contains('.') && !STANDARD_TYPES.contains(&head) {
                out.push(format!("::{ty}"));
            }
            i = j;
            continue;
        }
        if b"<>=!+-*/|~".contains(&c) {
            let mut j = i;
            while j < b.len() && b"<>=!+-*/|~".contains(&b[j]) {
                j += 1;
            }
            let op = &text[i..j];
            let qualified = text[..i].ends_with("OPERATOR(pg_catalog.");
            let star = op == "*" && (text[..i].ends_with('(') || text[..i].ends_with('.'));
            if !qualified && !star {
                out.push(op.to_string());
            }
            i = j;
            continue;
        }
        if is_word(c) && (i == 0 || !is_word(b[i - 1])) {
            let mut j = i;
            while j < b.len() && is_word(b[j]) {
                j += 1;
            }
            let word = &text[i..j];
            let called = b.get(j) == Some(&b'(');
            let qualified = i > 0 && b[i - 1] == b'.';
            let lower = word.to_ascii_lowercase();
            let after_as = text[..i].trim_end().to_ascii_lowercase().ends_with(" as")
                || text[..i]
                    .trim_end()
                    .to_ascii_lowercase()
                    .ends_with(" ordinality");
            let keyword = [
                "cast", "coalesce", "extract", "row", "array", "exists", "operator", "in", "any",
                "all", "not", "and", "or", "on", "from", "lateral", "values", "over", "filter",
                "greatest", "least", "select", "where", "with", "by", "then", "else", "when",
                "case", "end", "limit", "nullif",
            ]
            .contains(&lower.as_str());
            if called && !qualified && !keyword && !after_as && !word.starts_with('$') {
                out.push(format!("{word}("));
            }
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

/// Type names the grammar itself resolves to `pg_catalog` (key words, not looked up).
const STANDARD_TYPES: &[&str] = &[
    "integer",
    "int",
    "smallint",
    "bigint",
    "real",
    "float",
    "numeric",
    "decimal",
    "dec",
    "boolean",
    "bit",
    "time",
    "timestamp",
    "interval",
    "char",
    "character",
    "varchar",
    "national",
    "nchar",
    "double precision",
];

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

    #[test]
    fn types_are_qualified_unless_the_grammar_does_it() {
        assert_eq!(qualify_type("text"), "pg_catalog.text");
        assert_eq!(qualify_type("text[]"), "pg_catalog.text[]");
        assert_eq!(qualify_type("uuid"), "pg_catalog.uuid");
        assert_eq!(qualify_type("date"), "pg_catalog.date");
        assert_eq!(qualify_type("\"char\""), "pg_catalog.\"char\"");
        for kept in [
            "integer",
            "bigint",
            "double precision",
            "numeric(10,2)",
            "character varying(20)",
            "character(3)",
            "timestamp without time zone",
            "timestamp(3) with time zone",
            "time without time zone",
            "interval",
            "boolean",
            "integer[]",
            "public.mood",
            "\"My Schema\".\"my type\"",
        ] {
            assert_eq!(qualify_type(kept), kept);
        }
    }

    #[test]
    fn operators_are_qualified() {
        assert_eq!(op("<="), "OPERATOR(pg_catalog.<=)");
    }

    #[test]
    fn unqualified_names_are_found() {
        let sql = "SELECT pg_catalog.count(*), x::text, y::pg_catalog.int8, z::integer, \
                   a = b, c OPERATOR(pg_catalog.<=) d, now(), 'a = b()', \"f(\" \
                   FROM pg_catalog.unnest($1) AS u(k) WHERE CAST(q AS numeric) > 0";
        assert_eq!(unqualified_names(sql), vec!["::text", "=", "now(", ">"]);
    }
}
