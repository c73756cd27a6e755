//! Wall-clock time as both sides record and print it: milliseconds since the Unix epoch, shown
//! in UTC. No time-zone database on the device, and no dependency for four functions. Shared
//! so the device's log lines and the server's pages write a moment the same way.

/// Milliseconds since the Unix epoch (0 if the clock is before 1970, e.g. a Pi without a
/// real-time clock before time sync).
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Calendar date and time of day: (year, month, day, hour, minute, second).
pub fn parts(unix_ms: u64) -> (i64, u32, u32, u64, u64, u64) {
    let secs = unix_ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `2026-11-26 07:55:49Z`.
pub fn readable(unix_ms: u64) -> String {
    let (y, m, d, h, min, s) = parts(unix_ms);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02}:{s:02}Z")
}

/// `20261126T075549Z` (sorts by time, safe in file names).
pub fn compact(unix_ms: u64) -> String {
    let (y, m, d, h, min, s) = parts(unix_ms);
    format!("{y:04}{m:02}{d:02}T{h:02}{min:02}{s:02}Z")
}

/// `2026-11-26T07:55:49.123Z` (ISO 8601 / RFC 3339, what JSON APIs and browsers parse).
pub fn iso8601(unix_ms: u64) -> String {
    let (y, m, d, h, min, s) = parts(unix_ms);
    format!(
        "{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{:03}Z",
        unix_ms % 1000
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the inverse of the calendar date in
/// [`parts`]; Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(readable(0), "1970-01-01 00:00:00Z");
        assert_eq!(compact(951_782_400_000), "20000229T000000Z");
        assert_eq!(readable(1_795_679_749_000), "2026-11-26 07:55:49Z");
        assert_eq!(iso8601(1_795_679_749_007), "2026-11-26T07:55:49.007Z");
        for days in [-1, 0, 11_016, 20_418, 100_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
