//! Time: microseconds since the Unix epoch (UTC) as `i64`, calendar arithmetic as
//! PostgreSQL does it (`timestamp + interval 'n months'` clamps the day of month), and the
//! text forms rdl reads and writes. Shared by anchors, the sampler, the query language,
//! what-if changes and the encoder, so that none of them borrows from another.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Hours,
    Days,
    Weeks,
    Months,
}

impl Unit {
    pub fn from_name(name: &str) -> Option<Unit> {
        Some(match name {
            "hour" | "hours" => Unit::Hours,
            "day" | "days" => Unit::Days,
            "week" | "weeks" => Unit::Weeks,
            "month" | "months" => Unit::Months,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Unit::Hours => "hours",
            Unit::Days => "days",
            Unit::Weeks => "weeks",
            Unit::Months => "months",
        }
    }
}

pub const US_PER_HOUR: i64 = 3_600_000_000;
pub const US_PER_DAY: i64 = 24 * US_PER_HOUR;

/// A length of time in one unit (`30 days`, `1 month`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub n: i64,
    pub unit: Unit,
}

impl Span {
    pub fn new(n: i64, unit: Unit) -> Span {
        Span { n, unit }
    }

    /// Parses `"30 days"`, `"1 month"`, `"12 hours"`, `"2 weeks"`.
    pub fn parse(s: &str) -> Option<Span> {
        let mut it = s.split_whitespace();
        let n: i64 = it.next()?.parse().ok()?;
        let unit = Unit::from_name(&it.next()?.to_ascii_lowercase())?;
        if it.next().is_some() {
            return None;
        }
        Some(Span { n, unit })
    }

    /// `ts + k * self`, calendar-aware for months.
    pub fn add_to(self, ts: i64, k: i64) -> i64 {
        add(ts, self.n * k, self.unit)
    }

    /// The PostgreSQL interval literal text (`30 days`).
    pub fn sql_interval(self) -> String {
        format!("{} {}", self.n, self.unit.name())
    }
}

/// `ts + n units`, as PostgreSQL adds an interval to a `timestamp`.
pub fn add(ts: i64, n: i64, unit: Unit) -> i64 {
    match unit {
        Unit::Hours => ts + n * US_PER_HOUR,
        Unit::Days => ts + n * US_PER_DAY,
        Unit::Weeks => ts + n * 7 * US_PER_DAY,
        Unit::Months => {
            let days = ts.div_euclid(US_PER_DAY);
            let tod = ts.rem_euclid(US_PER_DAY);
            let (y, m, d) = civil_from_days(days);
            let total = y * 12 + (m as i64 - 1) + n;
            let (ny, nm) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
            let nd = d.min(days_in_month(ny, nm));
            days_from_civil(ny, nm, nd) * US_PER_DAY + tod
        }
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Parses `YYYY-MM-DD[( |T)HH:MM[:SS[.ffffff]]][Z|UTC|±HH[:MM]]`; no zone means UTC.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) && !t.is_empty() {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)? as u32, num(8..10)? as u32);
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return None;
    }
    let mut us = days_from_civil(y, mo, d) * US_PER_DAY;
    let mut rest = &s[10..];
    if rest.starts_with(' ') || rest.starts_with('T') {
        rest = &rest[1..];
        let hh = rest.get(0..2)?.parse::<i64>().ok()?;
        if rest.get(2..3)? != ":" {
            return None;
        }
        let mm = rest.get(3..5)?.parse::<i64>().ok()?;
        rest = &rest[5..];
        let mut ss = 0i64;
        let mut frac = 0i64;
        if let Some(r) = rest.strip_prefix(':') {
            ss = r.get(0..2)?.parse().ok()?;
            rest = &r[2..];
            if let Some(r) = rest.strip_prefix('.') {
                let digits: String = r.chars().take_while(|c| c.is_ascii_digit()).collect();
                if digits.is_empty() || digits.len() > 6 {
                    return None;
                }
                frac = format!("{digits:0<6}").parse().ok()?;
                rest = &r[digits.len()..];
            }
        }
        if hh > 23 || mm > 59 || ss > 59 {
            return None;
        }
        us += hh * US_PER_HOUR + mm * 60_000_000 + ss * 1_000_000 + frac;
    }
    let rest = rest.trim_start();
    match rest {
        "" | "Z" | "z" | "UTC" | "utc" => Some(us),
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let z = &rest[1..];
            let (h, m) = match z.len() {
                2 => (z.parse::<i64>().ok()?, 0),
                4 => (z[0..2].parse().ok()?, z[2..4].parse().ok()?),
                5 if &z[2..3] == ":" => (z[0..2].parse().ok()?, z[3..5].parse().ok()?),
                _ => return None,
            };
            Some(us - sign * (h * US_PER_HOUR + m * 60_000_000))
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]+00`, the form PostgreSQL reads back as timestamptz.
pub fn format_timestamp(us: i64) -> String {
    let days = us.div_euclid(US_PER_DAY);
    let tod = us.rem_euclid(US_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s, f) = (
        tod / US_PER_HOUR,
        tod / 60_000_000 % 60,
        tod / 1_000_000 % 60,
        tod % 1_000_000,
    );
    if f == 0 {
        format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}+00")
    } else {
        format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{f:06}+00")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> i64 {
        parse_timestamp(s).unwrap()
    }

    #[test]
    fn calendar() {
        for days in [-800_000, -1, 0, 1, 10_957, 12_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(ts("2000-01-01"), 946_684_800_000_000);
        assert_eq!(ts("2005-01-01T00:00:00Z"), ts("2005-01-01"));
        assert_eq!(ts("2005-01-01 02:00:00+02"), ts("2005-01-01"));
        assert_eq!(ts("2005-01-01 02:00+02:00"), ts("2005-01-01"));
        assert_eq!(ts("2005-01-01 00:00:00.5") - ts("2005-01-01"), 500_000);
        assert!(parse_timestamp("2005-02-30").is_none());
        assert!(parse_timestamp("2005-1-1").is_none());
        assert!(parse_timestamp("yesterday").is_none());
        assert_eq!(
            format_timestamp(ts("1950-05-13 14:00:00")),
            "1950-05-13 14:00:00+00"
        );
        assert_eq!(
            format_timestamp(ts("1950-05-13 14:00:00.25")),
            "1950-05-13 14:00:00.250000+00"
        );
        // Months clamp the day like PostgreSQL.
        assert_eq!(add(ts("2005-01-31"), 1, Unit::Months), ts("2005-02-28"));
        assert_eq!(
            add(ts("2004-01-31 10:00"), 1, Unit::Months),
            ts("2004-02-29 10:00")
        );
        assert_eq!(add(ts("2005-03-31"), -1, Unit::Months), ts("2005-02-28"));
        assert_eq!(add(ts("2005-01-15"), -13, Unit::Months), ts("2003-12-15"));
        assert_eq!(add(ts("2005-01-01"), 2, Unit::Weeks), ts("2005-01-15"));
        assert_eq!(
            add(ts("2005-01-01"), -30, Unit::Hours),
            ts("2004-12-30 18:00")
        );
        assert_eq!(Span::parse("30 Days"), Some(Span::new(30, Unit::Days)));
        assert_eq!(Span::parse("1 month"), Some(Span::new(1, Unit::Months)));
        assert_eq!(Span::parse("30"), None);
    }
}
