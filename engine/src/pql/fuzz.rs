//! Fuzzing the query language: random token soups, random byte strings, and mutations of
//! valid queries (deletions, insertions, swaps, truncations, case and unicode changes)
//! through the whole compiler against the F1 graph. Every input must give `Ok` or a
//! `PqlError` with a valid SQLSTATE that is not an internal error, and a position inside
//! the input — never a panic. Deterministic (seeded), so a failure reproduces.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::tests::f1;
use super::{compile, AnchorOptions};

const VALID: &[&str] = &[
    "PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0 FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 30, days) > 0",
    "PREDICT MIN(qualifying.position, 0, 30, days) <= 3 FOR EACH drivers.driver_id ASSUMING COUNT(qualifying.*, 0, 30, days) > 0",
    "PREDICT AVG(results.position_order, 0, 60, days) FOR EACH drivers.driver_id ASSUMING COUNT(results.*, 0, 60, days) > 0",
    "PREDICT drivers.nationality FOR EACH drivers.driver_id",
    "PREDICT SUM(results.points, 0, 2, months) FOR EACH drivers.driver_id WHERE COUNT(results.*, -365, 0, days) > 0",
    "PREDICT LIST_DISTINCT(results.constructor_id, 0, 365, days) RANK TOP 3 FOR EACH drivers.driver_id",
    "PREDICT EXISTS(results.* WHERE results.grid = 1, 0, 4, weeks) FOR EACH drivers.driver_id",
    "PREDICT COUNT_DISTINCT(results.race_id, 0, 48, hours) >= 1 FOR EACH public.drivers.driver_id",
];

const TOKENS: &[&str] = &[
    "PREDICT",
    "FOR",
    "EACH",
    "WHERE",
    "ASSUMING",
    "VIA",
    "RANK",
    "TOP",
    "AND",
    "OR",
    "NOT",
    "IS",
    "NULL",
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "FIRST",
    "LAST",
    "EXISTS",
    "COUNT_DISTINCT",
    "LIST_DISTINCT",
    "days",
    "hours",
    "weeks",
    "months",
    "years",
    "(",
    ")",
    ",",
    ".",
    "*",
    "=",
    "!=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "-",
    "+",
    "0",
    "30",
    "-90",
    "1e309",
    "99999999999999999999",
    "3.5",
    "'x'",
    "'it''s'",
    "'",
    "\"",
    "\"Q\"\"x\"",
    "results",
    "drivers",
    "races",
    "qualifying",
    "circuits",
    "driver_id",
    "status_id",
    "position",
    "nationality",
    "public",
    "race_id",
    "date",
    ";",
    "--",
    "/*",
    "*/",
    "$1",
    "\u{0}",
    "é",
    "日本",
    "\u{202e}",
    " ",
    "\t",
    "\n",
];

/// Compiles `q`; panics with the input when the compiler panics or returns a bad error.
/// Returns the SQLSTATE (`00000` for success).
fn check(q: &str) -> &'static str {
    let graph = f1();
    let opts = AnchorOptions::default();
    let r = catch_unwind(AssertUnwindSafe(|| compile(q, &graph, &opts)));
    match r {
        Err(_) => panic!("compiler panicked on {q:?}"),
        Ok(Ok(_)) => "00000",
        Ok(Err(e)) => {
            let s = e.sqlstate;
            assert!(
                s.len() == 5
                    && s.bytes()
                        .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()),
                "bad SQLSTATE {s:?} for {q:?}"
            );
            assert!(
                !s.starts_with("XX"),
                "internal error {s} for {q:?}: {}",
                e.message
            );
            assert!(!e.message.is_empty(), "empty message for {q:?}");
            if let Some(p) = e.position {
                assert!(
                    p <= q.chars().count() + 1,
                    "position {p} past the end of {q:?}"
                );
            }
            s
        }
    }
}

fn mutate(rng: &mut ChaCha8Rng, q: &str) -> String {
    let mut chars: Vec<char> = q.chars().collect();
    for _ in 0..rng.random_range(1..4) {
        if chars.is_empty() {
            break;
        }
        let i = rng.random_range(0..chars.len());
        match rng.random_range(0..7) {
            0 => {
                let n = rng.random_range(1..6).min(chars.len() - i);
                chars.drain(i..i + n);
            }
            1 => {
                let t = TOKENS.choose(rng).copied().unwrap_or(" ");
                for (k, c) in t.chars().enumerate() {
                    chars.insert(i + k, c);
                }
            }
            2 => {
                let j = rng.random_range(0..chars.len());
                chars.swap(i, j);
            }
            3 => chars.truncate(i),
            4 => chars[i] = chars[i].to_ascii_lowercase(),
            5 => chars[i] = char::from_u32(rng.random_range(0..0x3000)).unwrap_or('?'),
            _ => {
                let c = chars[i];
                chars.insert(i, c);
            }
        }
    }
    chars.into_iter().collect()
}

#[test]
fn ten_thousand_mutated_valid_queries_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for q in VALID {
        assert!(compile(q, &f1(), &AnchorOptions::default()).is_ok(), "{q}");
    }
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..10_000 {
        let base = VALID.choose(&mut rng).copied().unwrap_or("");
        *seen.entry(check(&mutate(&mut rng, base))).or_insert(0) += 1;
    }
    // The mutations reach the compiler's later stages, not just the lexer: some still
    // compile, and errors of several kinds (syntax, unknown table/column, types) arise.
    assert!(seen.get("00000").copied().unwrap_or(0) > 100, "{seen:?}");
    for s in ["42601", "42P01", "42703"] {
        assert!(seen.get(s).copied().unwrap_or(0) > 10, "{s} rare: {seen:?}");
    }
    assert!(seen.len() >= 6, "{seen:?}");
}

#[test]
fn five_thousand_token_soups_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for _ in 0..5_000 {
        let n = rng.random_range(0..30);
        let parts: Vec<&str> = (0..n)
            .map(|_| TOKENS.choose(&mut rng).copied().unwrap_or(""))
            .collect();
        let sep = if rng.random_bool(0.5) { " " } else { "" };
        // Mostly well-formed prefixes, so the soups reach past the first token.
        let q = if rng.random_bool(0.7) {
            format!("PREDICT {}", parts.join(sep))
        } else {
            parts.join(sep)
        };
        check(&q);
    }
}

#[test]
fn random_strings_and_huge_inputs_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..2_000 {
        let n = rng.random_range(0..200);
        let s: String = (0..n)
            .map(|_| char::from_u32(rng.random_range(0..0x11_0000)).unwrap_or(' '))
            .collect();
        check(&s);
    }
    // Deep nesting and long inputs: no stack overflow, no quadratic blow-up that matters.
    check(&format!("PREDICT {}", "(".repeat(10_000)));
    check(&format!("PREDICT COUNT(results.* WHERE {}results.grid = 1, 0, 30, days) > 0 FOR EACH drivers.driver_id", "NOT ".repeat(5_000)));
    check(&"x".repeat(100_000));
    check(&format!(
        "PREDICT drivers.\"{}\" FOR EACH drivers.driver_id",
        "a".repeat(70_000)
    ));
}
