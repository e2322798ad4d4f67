//! Conversions between PostgreSQL's `timestamptz` (µs since 2000-01-01 UTC) and the
//! engine's timestamps (µs since the Unix epoch, UTC).

use pgrx::datum::TimestampWithTimeZone;

/// 2000-01-01 − 1970-01-01 in microseconds.
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

pub fn to_pg(unix_us: i64) -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(unix_us - PG_EPOCH_OFFSET_US)
        .unwrap_or_else(|_| TimestampWithTimeZone::positive_infinity())
}

pub fn to_pg_all(unix_us: &[i64]) -> Vec<TimestampWithTimeZone> {
    unix_us.iter().map(|&t| to_pg(t)).collect()
}

pub fn from_pg(ts: TimestampWithTimeZone) -> i64 {
    from_pg_raw(ts.into_inner())
}

/// From a raw `TimestampTz` (µs since 2000-01-01 UTC).
pub fn from_pg_raw(ts: pgrx::pg_sys::TimestampTz) -> i64 {
    // Saturating: ±infinity stays at the ends of the range instead of overflowing.
    ts.saturating_add(PG_EPOCH_OFFSET_US)
}
