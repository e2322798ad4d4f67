//! Anchor times and train/validation/test splits, as RelBench makes them
//! (`relbench/base/task_base.py`), as a pure function of the data's time range.
//!
//! Timestamps are `i64` microseconds since the Unix epoch, UTC. Calendar arithmetic (months)
//! follows PostgreSQL's `timestamp + interval 'n months'`: the day of month is clamped to
//! the last day of the target month (Jan 31 + 1 month = Feb 28/29).
//!
//! With horizon `h` (the target window's end: labels need data up to `t + h`), step `s`
//! (option `anchor_step`, default the window's length `end - start`) and `n` evaluation
//! windows (option `eval_windows`, default 40):
//! - train: `val_cutoff - h - k*s` for k = 0, 1, ... while `>= min_time` (so no training
//!   label window reaches past `val_cutoff`);
//! - val: `val_cutoff + k*s` for k = 0..n-1 while `<= test_cutoff - h`;
//! - test: `test_cutoff + k*s` for k = 0..n-1 while `<= max_time - h`.
//!
//! For RelBench's tasks (start 0, step = window = timedelta) this is exactly RelBench's
//! `pd.date_range` scheme. RelBench computes train and validation on `db.upto(test)`; that
//! only changes `max_time` for the validation check, never a label, since no train or
//! validation window ends after `test_cutoff`.
//!
//! **Derived cutoffs** (options not given): `test_cutoff = floor(max_time - h - (n-1)*s)`
//! and `val_cutoff = test_cutoff - h - (n-1)*s`, so the last `n` full windows are the test
//! split and the `n` before them validation; `floor` truncates to the UTC day (to the hour
//! for hour windows). If `eval_windows` was not given and that would leave fewer than 3
//! training anchors, `n` shrinks (39, 38, ..., 1) until it does not. A missing
//! `val_cutoff` alone is derived from the given `test_cutoff` the same way; a missing
//! `test_cutoff` alone from the data.

use serde::{Deserialize, Serialize};

use crate::base::time::{format_timestamp, parse_timestamp, Span, Unit, US_PER_DAY, US_PER_HOUR};
use crate::pql::error::{sqlstate, PqlError};

/// A PostgreSQL array literal of anchors for `$1 timestamptz[]` (text input form).
pub fn anchors_array_literal(anchors: &[i64]) -> String {
    let items: Vec<String> = anchors
        .iter()
        .map(|a| format!("\"{}\"", format_timestamp(*a)))
        .collect();
    format!("{{{}}}", items.join(","))
}

/// A task's options, from the user's jsonb. Unknown keys are rejected (22023).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorOptions {
    /// First validation anchor (`2005-01-01`, `2005-01-01 12:00`, ISO 8601; UTC unless
    /// a zone is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_cutoff: Option<String>,
    /// First test anchor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_cutoff: Option<String>,
    /// Number of validation and of test anchors (default 40).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_windows: Option<u32>,
    /// Distance between anchors, e.g. `"30 days"`, `"1 month"` (default: the window's
    /// length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor_step: Option<String>,
}

pub const DEFAULT_EVAL_WINDOWS: u32 = 40;

/// Anchors one split may have at most. Every anchor is a label statement's worth of work
/// for every entity: a tiny step over a long history (or one stray row stamped in year 1)
/// must be refused, not computed.
pub const MAX_ANCHORS: usize = 10_000;

impl AnchorOptions {
    /// Reads and validates options from jsonb (`null` means all defaults).
    pub fn from_json(v: &serde_json::Value) -> Result<AnchorOptions, PqlError> {
        if v.is_null() {
            return Ok(AnchorOptions::default());
        }
        // serde would read a struct from an array too: `[]` must not mean "defaults".
        if !v.is_object() {
            return Err(PqlError::new(
                sqlstate::INVALID_PARAMETER_VALUE,
                "task options must be a JSON object",
            )
            .detail(format!("got {v}"))
            .hint("E.g. '{\"val_cutoff\": \"2005-01-01\", \"test_cutoff\": \"2010-01-01\"}'."));
        }
        let o: AnchorOptions = serde_json::from_value(v.clone()).map_err(|e| {
            PqlError::new(sqlstate::INVALID_PARAMETER_VALUE, "invalid task options")
                .detail(e.to_string())
                .hint("Options are val_cutoff, test_cutoff, eval_windows and anchor_step.")
        })?;
        o.validate()?;
        Ok(o)
    }

    pub fn validate(&self) -> Result<(), PqlError> {
        self.val_cutoff_us()?;
        self.test_cutoff_us()?;
        self.step()?;
        if self.eval_windows == Some(0) {
            return Err(bad("eval_windows must be at least 1"));
        }
        if let Some(n) = self.eval_windows.filter(|&n| n as usize > MAX_ANCHORS) {
            return Err(PqlError::new(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!("eval_windows {n} is more than {MAX_ANCHORS}"),
            )
            .hint("Use fewer validation and test windows."));
        }
        if let (Some(v), Some(t)) = (self.val_cutoff_us()?, self.test_cutoff_us()?) {
            if v >= t {
                return Err(bad("val_cutoff must be before test_cutoff"));
            }
        }
        Ok(())
    }

    pub fn val_cutoff_us(&self) -> Result<Option<i64>, PqlError> {
        cutoff("val_cutoff", self.val_cutoff.as_deref())
    }

    pub fn test_cutoff_us(&self) -> Result<Option<i64>, PqlError> {
        cutoff("test_cutoff", self.test_cutoff.as_deref())
    }

    pub fn step(&self) -> Result<Option<Span>, PqlError> {
        match self.anchor_step.as_deref() {
            None => Ok(None),
            Some(s) => match Span::parse(s) {
                Some(sp) if sp.n > 0 => Ok(Some(sp)),
                _ => Err(bad(format!("invalid anchor_step: \"{s}\"")).hint(
                    "Write a positive whole number and a unit, e.g. \"30 days\" or \"1 month\".",
                )),
            },
        }
    }
}

fn bad(msg: impl Into<String>) -> PqlError {
    PqlError::new(sqlstate::INVALID_PARAMETER_VALUE, msg)
}

fn cutoff(name: &str, v: Option<&str>) -> Result<Option<i64>, PqlError> {
    match v {
        None => Ok(None),
        Some(s) => parse_timestamp(s).map(Some).ok_or_else(|| {
            bad(format!("invalid {name}: \"{s}\"")).hint(
                "Write a date or timestamp such as \"2005-01-01\" or \"2005-01-01 12:00:00+00\".",
            )
        }),
    }
}

/// Anchor times per split, ascending, with the cutoffs used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Splits {
    pub train: Vec<i64>,
    pub val: Vec<i64>,
    pub test: Vec<i64>,
    pub val_cutoff: i64,
    pub test_cutoff: i64,
}

fn floor_to(ts: i64, unit: Unit) -> i64 {
    let q = if unit == Unit::Hours {
        US_PER_HOUR
    } else {
        US_PER_DAY
    };
    ts.div_euclid(q) * q
}

/// The anchors of each split (see the module documentation).
///
/// `min_time`/`max_time`: over every timed table of the graph; `horizon`: how far after an
/// anchor its label looks (the target window's end); `window_len`: the default step.
pub fn splits(
    min_time: i64,
    max_time: i64,
    horizon: Span,
    window_len: Span,
    options: &AnchorOptions,
) -> Result<Splits, PqlError> {
    options.validate()?;
    if max_time < min_time {
        return Err(bad("the database has no timed rows to make anchors from"));
    }
    let step = options.step()?.unwrap_or(window_len);
    if step.n <= 0 {
        return Err(bad("the anchor step must be positive"));
    }
    let given_val = options.val_cutoff_us()?;
    let given_test = options.test_cutoff_us()?;
    let explicit_n = options.eval_windows;
    let mut n = explicit_n.unwrap_or(DEFAULT_EVAL_WINDOWS) as i64;
    loop {
        let test_cutoff = match given_test {
            Some(t) => t,
            None => floor_to(
                step.add_to(horizon.add_to(max_time, -1), -(n - 1)),
                horizon.unit,
            ),
        };
        let val_cutoff = match given_val {
            Some(v) => v,
            None => step.add_to(horizon.add_to(test_cutoff, -1), -(n - 1)),
        };
        let s = make(
            min_time,
            max_time,
            horizon,
            step,
            n,
            val_cutoff,
            test_cutoff,
        );
        let derived = given_val.is_none() || given_test.is_none();
        if derived && explicit_n.is_none() && s.train.len() < 3 && n > 1 {
            n -= 1;
            continue;
        }
        return check(s, min_time, max_time, horizon);
    }
}

fn make(
    min_time: i64,
    max_time: i64,
    horizon: Span,
    step: Span,
    n: i64,
    val_cutoff: i64,
    test_cutoff: i64,
) -> Splits {
    let mut train = Vec::new();
    let base = horizon.add_to(val_cutoff, -1);
    let mut k = 0;
    // One more than allowed, so that `check` can tell the split is too long.
    while train.len() <= MAX_ANCHORS {
        let t = step.add_to(base, -k);
        if t < min_time {
            break;
        }
        train.push(t);
        k += 1;
    }
    train.reverse();
    let val_end = horizon.add_to(test_cutoff, -1);
    let val: Vec<i64> = (0..n)
        .map(|k| step.add_to(val_cutoff, k))
        .take_while(|t| *t <= val_end)
        .collect();
    let test_end = horizon.add_to(max_time, -1);
    let test: Vec<i64> = (0..n)
        .map(|k| step.add_to(test_cutoff, k))
        .take_while(|t| *t <= test_end)
        .collect();
    Splits {
        train,
        val,
        test,
        val_cutoff,
        test_cutoff,
    }
}

fn check(s: Splits, min_time: i64, max_time: i64, horizon: Span) -> Result<Splits, PqlError> {
    let range = format!(
        "The data spans {} to {}; val_cutoff is {}, test_cutoff {}, the horizon {}.",
        format_timestamp(min_time),
        format_timestamp(max_time),
        format_timestamp(s.val_cutoff),
        format_timestamp(s.test_cutoff),
        horizon.sql_interval()
    );
    let hint = "Give val_cutoff and test_cutoff (and eval_windows) in the task options.";
    if s.train.len() > MAX_ANCHORS {
        return Err(PqlError::new(
            sqlstate::PROGRAM_LIMIT_EXCEEDED,
            format!("the training split would have more than {MAX_ANCHORS} anchors"),
        )
        .detail(range)
        .hint("Use a longer anchor_step (e.g. \"30 days\"), or check the data for rows stamped long before the rest."));
    }
    if s.val_cutoff >= s.test_cutoff {
        return Err(bad("val_cutoff must be before test_cutoff")
            .detail(range)
            .hint(hint));
    }
    if s.test.is_empty() {
        return Err(
            bad("no test anchor: test_cutoff + horizon is after the last row")
                .detail(range)
                .hint(hint),
        );
    }
    if s.val.is_empty() {
        return Err(
            bad("no validation anchor: val_cutoff + horizon is after test_cutoff")
                .detail(range)
                .hint(hint),
        );
    }
    if s.train.is_empty() {
        return Err(
            bad("no training anchor: val_cutoff - horizon is before the first row")
                .detail(range)
                .hint(hint),
        );
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> i64 {
        parse_timestamp(s).unwrap()
    }

    fn f1_opts() -> AnchorOptions {
        AnchorOptions::from_json(&serde_json::json!({
            "val_cutoff": "2005-01-01", "test_cutoff": "2010-01-01"
        }))
        .unwrap()
    }

    #[test]
    fn array_literal() {
        assert_eq!(
            anchors_array_literal(&[0, US_PER_DAY]),
            "{\"1970-01-01 00:00:00+00\",\"1970-01-02 00:00:00+00\"}"
        );
    }

    #[test]
    fn relbench_f1_scheme() {
        let d30 = Span::new(30, Unit::Days);
        let (min, max) = (ts("1950-05-13"), ts("2026-03-08 04:00"));
        let s = splits(min, max, d30, d30, &f1_opts()).unwrap();
        assert_eq!(*s.train.last().unwrap(), ts("2004-12-02"));
        assert!(s.train[0] >= min && s.train[0] - US_PER_DAY * 30 < min);
        assert_eq!(s.train.len(), 665);
        assert_eq!(s.val.len(), 40);
        assert_eq!(s.val[0], ts("2005-01-01"));
        assert_eq!(s.val[39], ts("2005-01-01") + 39 * 30 * US_PER_DAY);
        assert_eq!(s.test.len(), 40);
        assert_eq!(s.test[0], ts("2010-01-01"));
        let d60 = Span::new(60, Unit::Days);
        let s = splits(min, max, d60, d60, &f1_opts()).unwrap();
        // val: min(2005-01-01 + 39*60 d, 2010-01-01 - 60 d) caps it at 30 anchors.
        assert_eq!(s.val.len(), 30);
        assert!(*s.val.last().unwrap() <= ts("2010-01-01") - 60 * US_PER_DAY);
        assert_eq!(s.test.len(), 40);
        // Test capped by max_time - horizon.
        let s = splits(min, ts("2010-06-01"), d30, d30, &f1_opts()).unwrap();
        assert_eq!(s.test.len(), 5);
    }

    #[test]
    fn step_decoupled_from_window() {
        let d90 = Span::new(90, Unit::Days);
        let o = AnchorOptions {
            anchor_step: Some("1 month".into()),
            ..f1_opts()
        };
        let s = splits(ts("2000-01-01"), ts("2020-01-01"), d90, d90, &o).unwrap();
        assert_eq!(*s.train.last().unwrap(), ts("2005-01-01") - 90 * US_PER_DAY);
        assert_eq!(s.val[1], ts("2005-02-01"));
        assert_eq!(s.test[2], ts("2010-03-01"));
    }

    #[test]
    fn derived_cutoffs() {
        let d30 = Span::new(30, Unit::Days);
        let (min, max) = (ts("2000-01-01"), ts("2020-06-15 13:45"));
        let s = splits(min, max, d30, d30, &AnchorOptions::default()).unwrap();
        assert_eq!(s.test.len(), 40);
        assert_eq!(s.val.len(), 40);
        assert_eq!(s.test_cutoff % US_PER_DAY, 0);
        assert!(*s.test.last().unwrap() + 30 * US_PER_DAY <= max);
        assert!(*s.test.last().unwrap() + 31 * US_PER_DAY > max);
        assert_eq!(*s.val.last().unwrap(), s.test_cutoff - 30 * US_PER_DAY);
        // Short history: eval windows shrink until training has 3 anchors.
        let s = splits(min, ts("2000-12-31"), d30, d30, &AnchorOptions::default()).unwrap();
        assert!(s.train.len() >= 3, "{s:?}");
        assert_eq!(s.val.len(), s.test.len());
        // Too short for anything.
        let e = splits(min, ts("2000-02-15"), d30, d30, &AnchorOptions::default()).unwrap_err();
        assert_eq!(e.sqlstate, "22023");
    }

    #[test]
    fn options_errors() {
        let e =
            AnchorOptions::from_json(&serde_json::json!({"val_cutof": "2005-01-01"})).unwrap_err();
        assert_eq!(e.sqlstate, "22023");
        assert!(e.detail.unwrap().contains("val_cutof"));
        for bad in [
            serde_json::json!({"val_cutoff": "soon"}),
            serde_json::json!({"anchor_step": "30"}),
            serde_json::json!({"anchor_step": "0 days"}),
            serde_json::json!({"eval_windows": 0}),
            serde_json::json!({"eval_windows": "x"}),
            serde_json::json!({"val_cutoff": "2010-01-01", "test_cutoff": "2005-01-01"}),
            serde_json::json!([]),
            serde_json::json!(["2005-01-01"]),
            serde_json::json!("2005-01-01"),
        ] {
            assert_eq!(
                AnchorOptions::from_json(&bad).unwrap_err().sqlstate,
                "22023"
            );
        }
        assert_eq!(
            AnchorOptions::from_json(&serde_json::Value::Null).unwrap(),
            AnchorOptions::default()
        );
    }

    #[test]
    fn anchor_counts_are_capped() {
        // Hourly anchors over 70 years: refused, not computed.
        let opts = AnchorOptions {
            anchor_step: Some("1 hour".into()),
            ..AnchorOptions::default()
        };
        let (lo, hi) = (
            parse_timestamp("1950-01-01").unwrap(),
            parse_timestamp("2020-01-01").unwrap(),
        );
        let e = splits(
            lo,
            hi,
            Span::new(1, Unit::Hours),
            Span::new(1, Unit::Hours),
            &opts,
        )
        .unwrap_err();
        assert_eq!(e.sqlstate, "54000", "{e:?}");
        // The same step over 400 days is fine (9,600 anchors).
        let lo = parse_timestamp("2018-11-27").unwrap();
        let s = splits(
            lo,
            hi,
            Span::new(1, Unit::Hours),
            Span::new(1, Unit::Hours),
            &opts,
        )
        .unwrap();
        assert!(
            s.train.len() <= MAX_ANCHORS && s.train.len() > 9_000,
            "{}",
            s.train.len()
        );
        let many =
            AnchorOptions::from_json(&serde_json::json!({"eval_windows": 10_001})).unwrap_err();
        assert_eq!(many.sqlstate, "54000");
    }
}
