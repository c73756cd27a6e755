//! The log lines a device sends (a package's `logs` members, JSON lines of [`LogLine`]s) as the
//! Data Hub's log viewer shows them.
//!
//! Why here: sphere-lite reads stored log files through [`view_line`] when an operator pages
//! through a device's logs, and the fuzz target `datahub` runs the same function without the
//! server's dependency tree.

use crate::datahub::{LogLine, LogLineView, MAX_LOG_LINE_BYTES};

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Line `number` of log file `file` of package `package_id` as shown: a [`LogLine`] with its
/// message and target cut to bounds, or any other line raw (cut too).
pub fn view_line(package_id: &str, file: &str, number: u64, raw: &str) -> LogLineView {
    match serde_json::from_str::<LogLine>(raw) {
        Ok(l) => LogLineView {
            package_id: package_id.to_owned(),
            file: file.to_owned(),
            line: number,
            unix_ms: Some(l.unix_ms),
            level: Some(l.level),
            target: l.target.map(|t| cut(&t, 200)),
            message: cut(&l.message, MAX_LOG_LINE_BYTES),
        },
        Err(_) => LogLineView {
            package_id: package_id.to_owned(),
            file: file.to_owned(),
            line: number,
            unix_ms: None,
            level: None,
            target: None,
            message: cut(raw, MAX_LOG_LINE_BYTES),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_on_character_boundaries_and_others_shown_raw() {
        let long = format!(
            r#"{{"unix_ms":1,"level":"info","message":"{}é"}}"#,
            "x".repeat(MAX_LOG_LINE_BYTES - 1)
        );
        let line = view_line("p", "f", 1, &long);
        assert_eq!(line.message, "x".repeat(MAX_LOG_LINE_BYTES - 1));
        assert_eq!(line.unix_ms, Some(1));
        let raw = view_line("p", "f", 3, "not json");
        assert_eq!((raw.message.as_str(), raw.level), ("not json", None));
    }
}
