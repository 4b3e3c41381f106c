//! Date and time values: PostgreSQL's binary forms (microseconds and days
//! counted from 2000-01-01) rendered as ISO-8601 text.
//!
//! The calendar arithmetic is done here with plain integers rather than with
//! chrono because PostgreSQL's ranges (4713 BC to 5874897 AD for `date`) are
//! wider than chrono's, and a value the server can store must never make the
//! server panic or fail.

use std::fmt::Write;

use super::{DecodeError, Reader};

const USECS_PER_SEC: i64 = 1_000_000;
const USECS_PER_MINUTE: i64 = 60 * USECS_PER_SEC;
const USECS_PER_HOUR: i64 = 60 * USECS_PER_MINUTE;
const USECS_PER_DAY: i64 = 24 * USECS_PER_HOUR;
/// Days from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_DAYS_FROM_UNIX: i64 = 10_957;

/// Proleptic Gregorian (year, month, day) of a day counted from 2000-01-01.
/// The year is astronomical: 0 is 1 BC, -1 is 2 BC.
pub(super) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Days since 0000-03-01, so that the leap day ends each 400-year era.
    let z = days + PG_EPOCH_DAYS_FROM_UNIX + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365, from March 1st
    let mp = (5 * doy + 2) / 153; // 0..=11, March is 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Writes `YYYY-MM-DD` (at least four year digits). For a year before 1 AD
/// it writes the BC year (1 BC for astronomical year 0) and returns `true`: the
/// caller then ends the whole value with `" BC"`, as PostgreSQL's ISO style does.
fn write_date(out: &mut String, days: i64) -> bool {
    let (year, month, day) = civil_from_days(days);
    let (year, bc) = if year <= 0 {
        (1 - year, true)
    } else {
        (year, false)
    };
    push_padded(out, year.unsigned_abs(), 4);
    out.push('-');
    push_padded(out, u64::from(month), 2);
    out.push('-');
    push_padded(out, u64::from(day), 2);
    bc
}

/// Writes `v` in decimal, zero-padded to at least `width` (≤ 20) digits. Every date and
/// time value of a result goes through here, so it avoids `write!`'s formatting
/// machinery, which cost more than the rest of a row's rendering together.
fn push_padded(out: &mut String, mut v: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let start = start.min(digits.len() - width.min(digits.len()));
    // ASCII digits only.
    out.push_str(std::str::from_utf8(&digits[start..]).unwrap_or_default());
}

/// `HH:MM:SS` plus `.ffffff` with trailing zeros removed (none when whole).
fn write_time(out: &mut String, usecs: i64) {
    let hour = usecs / USECS_PER_HOUR;
    let min = (usecs % USECS_PER_HOUR) / USECS_PER_MINUTE;
    let sec = (usecs % USECS_PER_MINUTE) / USECS_PER_SEC;
    // 0 <= usecs <= one day: every part is non-negative.
    push_padded(out, hour.unsigned_abs(), 2);
    out.push(':');
    push_padded(out, min.unsigned_abs(), 2);
    out.push(':');
    push_padded(out, sec.unsigned_abs(), 2);
    write_fraction(out, usecs % USECS_PER_SEC);
}

/// `.ffffff` without trailing zeros, nothing for zero. `frac` is 0..1_000_000.
fn write_fraction(out: &mut String, frac: i64) {
    if frac != 0 {
        out.push('.');
        let start = out.len();
        push_padded(out, frac.unsigned_abs(), 6);
        let kept = out.trim_end_matches('0').len().max(start);
        out.truncate(kept);
    }
}

/// `date`: days since 2000-01-01; `i32::MAX`/`i32::MIN` are ±infinity.
pub(super) fn date(raw: &[u8]) -> Result<String, DecodeError> {
    let days = postgres_protocol::types::date_from_sql(raw)?;
    Ok(match days {
        i32::MAX => "infinity".to_owned(),
        i32::MIN => "-infinity".to_owned(),
        d => {
            let mut out = String::with_capacity(13);
            if write_date(&mut out, i64::from(d)) {
                out.push_str(" BC");
            }
            out
        }
    })
}

/// `timestamp` (`utc == false`) and `timestamptz` (`utc == true`, which is
/// always UTC on the wire and gets a `Z`): microseconds since 2000-01-01.
pub(super) fn timestamp(raw: &[u8], utc: bool) -> Result<String, DecodeError> {
    let usecs = postgres_protocol::types::timestamp_from_sql(raw)?;
    Ok(match usecs {
        i64::MAX => "infinity".to_owned(),
        i64::MIN => "-infinity".to_owned(),
        t => {
            let mut out = String::with_capacity(32);
            let bc = write_date(&mut out, t.div_euclid(USECS_PER_DAY));
            out.push('T');
            write_time(&mut out, t.rem_euclid(USECS_PER_DAY));
            if utc {
                out.push('Z');
            }
            if bc {
                out.push_str(" BC");
            }
            out
        }
    })
}

/// `time`: microseconds since midnight (`24:00:00` is a valid value).
pub(super) fn time(raw: &[u8]) -> Result<String, DecodeError> {
    let usecs = postgres_protocol::types::time_from_sql(raw)?;
    if !(0..=USECS_PER_DAY).contains(&usecs) {
        return Err(format!("time value out of range: {usecs}").into());
    }
    let mut out = String::with_capacity(15);
    write_time(&mut out, usecs);
    Ok(out)
}

/// `timetz`: microseconds since midnight, then the zone as seconds *west* of
/// UTC. Printed as `HH:MM:SS[.ffffff]+HH:MM[:SS]`.
pub(super) fn timetz(raw: &[u8]) -> Result<String, DecodeError> {
    let mut r = Reader(raw);
    let usecs = r.i64()?;
    let zone = r.i32()?;
    r.finish("timetz")?;
    if !(0..=USECS_PER_DAY).contains(&usecs) {
        return Err(format!("timetz value out of range: {usecs}").into());
    }
    let mut out = String::with_capacity(24);
    write_time(&mut out, usecs);
    let east = -i64::from(zone);
    let sign = if east < 0 { '-' } else { '+' };
    let east = east.abs();
    let _ = write!(out, "{sign}{:02}:{:02}", east / 3600, (east % 3600) / 60);
    if east % 60 != 0 {
        let _ = write!(out, ":{:02}", east % 60);
    }
    Ok(out)
}

/// `interval`: microseconds, days, months, rendered as PostgreSQL does with
/// `intervalstyle = iso_8601`: each non-zero part with its own sign
/// (`P1DT-2H`), seconds with their fraction, zero as `PT0S`.
pub(super) fn interval(raw: &[u8]) -> Result<String, DecodeError> {
    let mut r = Reader(raw);
    let usecs = r.i64()?;
    let days = r.i32()?;
    let months = r.i32()?;
    r.finish("interval")?;
    // PostgreSQL 17 infinite intervals.
    if usecs == i64::MAX && days == i32::MAX && months == i32::MAX {
        return Ok("infinity".to_owned());
    }
    if usecs == i64::MIN && days == i32::MIN && months == i32::MIN {
        return Ok("-infinity".to_owned());
    }
    if usecs == 0 && days == 0 && months == 0 {
        return Ok("PT0S".to_owned());
    }
    // Rust's `/` and `%` truncate toward zero, as C's do in PostgreSQL.
    let (years, months) = (months / 12, months % 12);
    let hours = usecs / USECS_PER_HOUR;
    let minutes = (usecs % USECS_PER_HOUR) / USECS_PER_MINUTE;
    let rest = usecs % USECS_PER_MINUTE; // seconds and fraction, signed

    let mut out = String::with_capacity(32);
    out.push('P');
    let part = |out: &mut String, v: i64, unit: char| {
        if v != 0 {
            let _ = write!(out, "{v}{unit}");
        }
    };
    part(&mut out, i64::from(years), 'Y');
    part(&mut out, i64::from(months), 'M');
    part(&mut out, i64::from(days), 'D');
    if usecs != 0 {
        out.push('T');
    }
    part(&mut out, hours, 'H');
    part(&mut out, minutes, 'M');
    if rest != 0 {
        if rest < 0 {
            out.push('-');
        }
        let rest = rest.abs();
        let _ = write!(out, "{}", rest / USECS_PER_SEC);
        write_fraction(&mut out, rest % USECS_PER_SEC);
        out.push('S');
    }
    Ok(out)
}
