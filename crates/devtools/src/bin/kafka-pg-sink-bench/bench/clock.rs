//! UTC times for the benchmark, on the connector's own RFC 3339 formatter
//! ([`kafka_pg_sink::decode::convert::format_timestamp_millis`]): record timestamps, and stamps for the
//! report and file names.

use std::time::{SystemTime, UNIX_EPOCH};

use kafka_pg_sink::decode::convert::{format_timestamp_millis, push_timestamp_millis};

/// `2026-01-01T00:00:00.123Z`, appended to `out`.
pub fn push_rfc3339_ms(out: &mut String, ms: i64) {
    push_timestamp_millis(out, ms);
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `2026-11-26T17:15:00Z` for now.
pub fn now_rfc3339() -> String {
    let full = format_timestamp_millis(now_ms());
    format!("{}Z", &full[..19])
}

/// `20261126T171500Z` for now, for result file names.
pub fn file_stamp() -> String {
    now_rfc3339().replace(['-', ':'], "")
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
        let stamp = file_stamp();
        assert_eq!(stamp.len(), 16, "{stamp}");
        assert!(
            stamp.ends_with('Z') && stamp.as_bytes()[8] == b'T',
            "{stamp}"
        );
    }
}
