//! UTC date and time for the dashboard: Unix ms → `2025-11-26 10:00:00 UTC`, and the value of
//! an HTML `datetime-local` field (`2025-11-26T10:00`, read as UTC) → Unix ms.
//!
//! Why: the pages show and filter by time; the calendar arithmetic is the protocol crate's
//! (`tinylcm_protocol::time`), shared with the runtime.

use tinylcm_protocol::time::{days_from_civil, parts};

/// `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format_utc(unix_ms: u64) -> String {
    let (y, m, d, h, min, s) = parts(unix_ms);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02}:{s:02} UTC")
}

/// `YYYY-MM-DD HH:MM:SS.mmm` (UTC, no suffix): the compact form of the log table, whose
/// column header says UTC once instead of every row repeating it.
pub fn format_utc_ms(unix_ms: u64) -> String {
    let (y, m, d, h, min, s) = parts(unix_ms);
    let ms = unix_ms % 1000;
    format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02}:{s:02}.{ms:03}")
}

/// The `datetime-local` form of `unix_ms` (`YYYY-MM-DDTHH:MM`), to refill a filter field.
pub fn format_local_field(unix_ms: u64) -> String {
    let text = format_utc(unix_ms);
    format!("{}T{}", &text[..10], &text[11..16])
}

/// Parse `YYYY-MM-DDTHH:MM` or `YYYY-MM-DDTHH:MM:SS` (UTC) into Unix ms; `None` if malformed,
/// out of range or before 1970.
pub fn parse_local_field(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if !(b.len() == 16 || b.len() == 19) || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    if b[13] != b':' || (b.len() == 19 && b[16] != b':') {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let s = text.get(range)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (y, mo, d, h, mi) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
    );
    let s = if b.len() == 19 { num(17..19)? } else { 0 };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo) || d == 0 || d > month_days[mo as usize - 1] || h > 23 || mi > 59 {
        return None;
    }
    if s > 59 || y < 1970 {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s);
    u64::try_from(secs).ok().map(|s| s * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_utc() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_764_147_600_000), "2025-11-26 09:00:00 UTC");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_utc_ms(1_764_147_600_045), "2025-11-26 09:00:00.045");
        assert_eq!(
            parse_local_field("2025-11-26T09:00"),
            Some(1_764_147_600_000)
        );
        assert_eq!(
            parse_local_field("2000-02-29T00:00:00"),
            Some(951_782_400_000)
        );
        assert_eq!(format_local_field(1_764_147_600_000), "2025-11-26T09:00");
        for bad in [
            "",
            "2025-11-26",
            "2025-13-01T00:00",
            "2025-02-29T00:00",
            "2025-01-01T24:00",
            "1969-12-31T23:59",
            "2025-01-01T00:00:60",
            "+025-01-01T00:00",
            "2025-01-01 00:00",
        ] {
            assert_eq!(parse_local_field(bad), None, "{bad}");
        }
        // Every day of a few years survives the round trip.
        for day in 0..2000u64 {
            let ms = 1_700_000_000_000 + day * 86_400_000;
            let field = format_local_field(ms);
            assert_eq!(parse_local_field(&field), Some(ms - ms % 60_000), "{field}");
        }
    }
}
