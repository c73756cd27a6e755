//! Building MLflow search filter strings that cannot be subverted by the values in them.
//!
//! Why: filters are strings (`tags.x = 'v' and metrics.y > 3`) and several values in them come
//! from devices or operators (device ids, package ids, detector names). MLflow 3.17 has no
//! escape for a quote inside a quoted value (`'it''s'` and `'it\'s'` do not match `it's`), so
//! quoting cannot be made safe. Instead a value goes into a filter only as a [`Literal`]: a
//! string of `[A-Za-z0-9._:/-]`, which can neither end the quoted value nor start another
//! clause. Free-form strings (detector names) are stored in a second, hex-encoded tag and
//! filtered through that ([`hex`]). Keys are compile-time constants of the same alphabet.

use std::fmt::Write as _;

/// Longest literal accepted (MLflow's longest key or tag value it compares is far longer; ours
/// are ids, hashes and hex of at most 64 bytes).
pub const MAX_LITERAL: usize = 256;

/// A value that is safe inside single quotes in an MLflow filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal(String);

/// A string that cannot be a [`Literal`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("value cannot be used in an MLflow filter: {reason}")]
pub struct UnsafeLiteral {
    /// Why.
    pub reason: &'static str,
}

fn safe_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-')
}

impl Literal {
    /// `value` if it is 1..=[`MAX_LITERAL`] bytes of `[A-Za-z0-9._:/-]`.
    pub fn new(value: &str) -> Result<Literal, UnsafeLiteral> {
        if value.is_empty() {
            return Err(UnsafeLiteral { reason: "empty" });
        }
        if value.len() > MAX_LITERAL {
            return Err(UnsafeLiteral { reason: "too long" });
        }
        if !value.bytes().all(safe_byte) {
            return Err(UnsafeLiteral {
                reason: "only A-Z a-z 0-9 . _ : / - are allowed",
            });
        }
        Ok(Literal(value.to_owned()))
    }

    /// The value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Lower-case hex of `value`'s bytes: any string as a [`Literal`]-safe tag value.
pub fn hex(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    for b in value {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A numeric comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `=`
    Eq,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

impl Cmp {
    fn as_str(self) -> &'static str {
        match self {
            Cmp::Eq => "=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
        }
    }
}

/// Clauses joined with `and`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    clauses: Vec<String>,
}

fn checked_key(key: &'static str) -> &'static str {
    // Keys are our own constants; a bad one is a programming error caught by the unit tests,
    // and must still never produce a broken filter: it is replaced by a key that matches
    // nothing.
    if !key.is_empty() && key.bytes().all(|b| safe_byte(b) && b != b'/' && b != b':') {
        key
    } else {
        "sphere.invalid-key"
    }
}

impl Filter {
    /// An empty filter (matches everything).
    pub fn new() -> Filter {
        Filter::default()
    }

    /// `tags.`key` = 'value'`.
    pub fn tag_eq(mut self, key: &'static str, value: &Literal) -> Filter {
        self.clauses
            .push(format!("tags.`{}` = '{}'", checked_key(key), value.0));
        self
    }

    /// `metrics.`key` <op> value`.
    pub fn metric(mut self, key: &'static str, op: Cmp, value: u64) -> Filter {
        self.clauses.push(format!(
            "metrics.`{}` {} {value}",
            checked_key(key),
            op.as_str()
        ));
        self
    }

    /// `attributes.start_time <op> value` (runs).
    pub fn start_time(mut self, op: Cmp, value: u64) -> Filter {
        self.clauses
            .push(format!("attributes.start_time {} {value}", op.as_str()));
        self
    }

    /// `attributes.status = 'status'`.
    pub fn status_eq(mut self, status: &Literal) -> Filter {
        self.clauses
            .push(format!("attributes.status = '{}'", status.0));
        self
    }

    /// `name LIKE 'prefix%'` (experiments). `%` and `_` are LIKE wildcards and the match may
    /// ignore case (SQLite): callers check the exact prefix of the results as well.
    pub fn name_like_prefix(mut self, prefix: &Literal) -> Filter {
        self.clauses.push(format!("name LIKE '{}%'", prefix.0));
        self
    }

    /// The filter string.
    pub fn build(&self) -> String {
        self.clauses.join(" and ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_refuse_anything_that_could_leave_the_quotes() {
        for good in ["dev-1", "a_b.c", "0123abcdef", "sphere-lite/device/", "x:y"] {
            assert_eq!(Literal::new(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "it's",
            "x' or tags.a = 'b",
            "a\"b",
            "a`b",
            "a b",
            "a\\b",
            "a%b",
            "a\nb",
            "a\0b",
            "ä",
            "a;b",
            "a)b",
        ] {
            assert!(Literal::new(bad).is_err(), "{bad:?}");
        }
        assert!(Literal::new(&"a".repeat(MAX_LITERAL + 1)).is_err());
    }

    #[test]
    fn free_form_values_are_filtered_through_hex() {
        let detector = "x' or tags.`sphere.status` != '";
        let h = hex(detector.as_bytes());
        assert!(h.bytes().all(|b| b.is_ascii_hexdigit()));
        let f = Filter::new()
            .tag_eq("sphere.detector_hex", &Literal::new(&h).unwrap())
            .build();
        assert_eq!(f, format!("tags.`sphere.detector_hex` = '{h}'"));
        // Exactly two quotes: the value cannot add a clause.
        assert_eq!(f.matches('\'').count(), 2);
        assert_eq!(hex(b"\x00\xff a"), "00ff2061");
    }

    #[test]
    fn clauses_join_with_and() {
        let f = Filter::new()
            .tag_eq("sphere.device", &Literal::new("dev-1").unwrap())
            .metric("sphere.id", Cmp::Gt, 5)
            .metric("sphere.unix_ms", Cmp::Ge, 10)
            .metric("sphere.unix_ms", Cmp::Lt, 20)
            .metric("sphere.id", Cmp::Eq, 7)
            .status_eq(&Literal::new("RUNNING").unwrap())
            .build();
        assert_eq!(
            f,
            "tags.`sphere.device` = 'dev-1' and metrics.`sphere.id` > 5 and \
             metrics.`sphere.unix_ms` >= 10 and metrics.`sphere.unix_ms` < 20 and \
             metrics.`sphere.id` = 7 and attributes.status = 'RUNNING'"
        );
        assert_eq!(Filter::new().build(), "");
        assert_eq!(
            Filter::new().start_time(Cmp::Le, 1_000).build(),
            "attributes.start_time <= 1000"
        );
        assert_eq!(
            Filter::new()
                .name_like_prefix(&Literal::new("ns/device/").unwrap())
                .build(),
            "name LIKE 'ns/device/%'"
        );
    }

    #[test]
    fn bad_keys_never_break_the_filter() {
        let f = Filter::new()
            .tag_eq("a` = 'x' or tags.`b", &Literal::new("v").unwrap())
            .build();
        assert_eq!(f, "tags.`sphere.invalid-key` = 'v'");
    }
}
