//! UTC dates without a date crate: RFC 3339 for record timestamps, a compact stamp for file
//! names.

use std::time::{SystemTime, UNIX_EPOCH};

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Date and time of day of epoch milliseconds.
fn parts(ms: i64) -> (i64, u32, u32, i64, i64, i64, i64) {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, mo, d) = civil(days);
    let secs = rest / 1000;
    (
        y,
        mo,
        d,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        rest % 1000,
    )
}

/// `2026-01-01T00:00:00.123Z`, appended to `out`.
pub fn push_rfc3339_ms(out: &mut String, ms: i64) {
    use std::fmt::Write;
    let (y, mo, d, h, mi, s, milli) = parts(ms);
    let _ = write!(
        out,
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z"
    );
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `20261126T171500Z` for now, for result file names.
pub fn file_stamp() -> String {
    let (y, mo, d, h, mi, s, _) = parts(now_ms());
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// `2026-11-26T17:15:00Z` for now.
pub fn now_rfc3339() -> String {
    let (y, mo, d, h, mi, s, _) = parts(now_ms());
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        let mut s = String::new();
        push_rfc3339_ms(&mut s, 1_767_225_600_000);
        assert_eq!(s, "2026-01-01T00:00:00.000Z");
        s.clear();
        // 2024-02-29T23:59:59.999Z: a leap day.
        push_rfc3339_ms(&mut s, 1_709_251_199_999);
        assert_eq!(s, "2024-02-29T23:59:59.999Z");
        s.clear();
        push_rfc3339_ms(&mut s, 0);
        assert_eq!(s, "1970-01-01T00:00:00.000Z");
    }
}
