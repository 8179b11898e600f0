//! Calendar arithmetic for [`super`]: RFC 3339 timestamps, dates, epoch milliseconds and
//! fixed windows, all in UTC on the proleptic Gregorian calendar.
//!
//! Guarantee: a date or time is accepted only if every field is in range (leap years included),
//! and for years 1-9999 [`parse_timestamp_millis`] reads back exactly what
//! [`format_timestamp_millis`] writes.

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// Epoch milliseconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z: the years that
/// [`format_timestamp_millis`] writes in a form PostgreSQL reads back.
pub(super) const MIN_TIMESTAMP_MS: i64 = -62_135_596_800_000;
pub(super) const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

/// The `len` ASCII digits at `b[at..]` as a number; None if any is not a digit.
fn number(b: &[u8], at: usize, len: usize) -> Option<i64> {
    let digits = b.get(at..at + len)?;
    digits.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DD` (year 1-9999) into (year, month, day).
pub(crate) fn parse_date(b: &[u8]) -> Result<(i64, i64, i64), String> {
    let syntax = "not in the form YYYY-MM-DD";
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(syntax.into());
    }
    let (Some(y), Some(m), Some(d)) = (number(b, 0, 4), number(b, 5, 2), number(b, 8, 2)) else {
        return Err(syntax.into());
    };
    if y == 0 {
        return Err("year 0 does not exist".into());
    }
    if !(1..=12).contains(&m) {
        return Err(format!("month {m} is out of range 1-12"));
    }
    if !(1..=days_in_month(y, m)).contains(&d) {
        return Err(format!("day {d} is out of range for {y:04}-{m:02}"));
    }
    Ok((y, m, d))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Parses an RFC 3339 timestamp, `YYYY-MM-DDTHH:MM:SS[.fraction](Z|z|+HH:MM|-HH:MM)` (a space or
/// `t` may replace the `T`), into milliseconds since the Unix epoch; the fraction is truncated to
/// milliseconds. Validates month 1-12, the day for the month (leap years included), hour 0-23,
/// minute 0-59 and second 0-60 (a leap second counts as the next minute's first second).
pub fn parse_timestamp_millis(text: &str) -> Result<i64, String> {
    let syntax = "not in the form YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)";
    let b = text.as_bytes();
    let (y, mo, d) = parse_date(b.get(..10).ok_or(syntax)?)?;
    let separators = [(10, [b'T', b't', b' ']), (13, [b':'; 3]), (16, [b':'; 3])];
    if !separators
        .iter()
        .all(|(i, ok)| b.get(*i).is_some_and(|c| ok.contains(c)))
    {
        return Err(syntax.into());
    }
    let (Some(h), Some(mi), Some(s)) = (number(b, 11, 2), number(b, 14, 2), number(b, 17, 2))
    else {
        return Err(syntax.into());
    };
    if h > 23 || mi > 59 || s > 60 {
        return Err(format!("time {h:02}:{mi:02}:{s:02} is out of range"));
    }
    let mut i = 19;
    let mut millis = 0;
    if b.get(i) == Some(&b'.') {
        let count = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if count == 0 {
            return Err(syntax.into());
        }
        let first3 = &b[i + 1..i + 1 + count.min(3)];
        millis = first3
            .iter()
            .fold(0, |acc, c| acc * 10 + i64::from(c - b'0'));
        millis *= 10_i64.pow(3 - first3.len() as u32);
        i += 1 + count;
    }
    let offset_minutes = parse_offset(&b[i..]).ok_or(syntax)?;
    let seconds = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset_minutes * 60;
    Ok(seconds * 1000 + millis)
}

/// `Z`, `z`, `+HH:MM` or `-HH:MM` into minutes east of UTC.
fn parse_offset(b: &[u8]) -> Option<i64> {
    match b {
        [b'Z' | b'z'] => Some(0),
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (number(b, 1, 2)?, number(b, 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            Some(if *sign == b'-' {
                -(h * 60 + m)
            } else {
                h * 60 + m
            })
        }
        _ => None,
    }
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, proleptic Gregorian).
/// Negative values work; years before 1 are written with a leading `-`.
pub fn format_timestamp_millis(ms: i64) -> String {
    let mut out = String::with_capacity(24);
    push_timestamp_millis(&mut out, ms);
    out
}

/// [`format_timestamp_millis`] appended to `out`, without an allocation of its own (the
/// benchmark's producer writes one per record).
pub fn push_timestamp_millis(out: &mut String, ms: i64) {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
    let in_day = ms.rem_euclid(DAY_MS);
    if y < 0 {
        out.push('-');
    }
    let year = y.unsigned_abs();
    if year >= 10_000 {
        // Out of PostgreSQL's range anyway; written in full rather than cut.
        out.push_str(&(year / 10_000).to_string());
    }
    let mut text = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    let in_day = in_day as u64;
    put(0, 4, year % 10_000);
    put(5, 2, m as u64);
    put(8, 2, d as u64);
    put(11, 2, in_day / 3_600_000);
    put(14, 2, in_day / 60_000 % 60);
    put(17, 2, in_day / 1000 % 60);
    put(20, 3, in_day % 1000);
    // Only ASCII digits and separators were written.
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

/// The start of the fixed window of `size_ms` containing `ms`; windows are aligned to the epoch.
/// A `size_ms` that is not positive means no windowing: `ms` itself is returned.
pub fn window_start_millis(ms: i64, size_ms: i64) -> i64 {
    if size_ms <= 0 {
        return ms;
    }
    ms.saturating_sub(ms.rem_euclid(size_ms))
}
