//! The model release a device refused and why, as its metrics file names it under
//! [`REFUSED_RELEASE_MEMBER`]: the runtime writes [`ReleaseRefusal`] and the server reads it
//! back with [`refusal_report_of`], so neither side can rename a field or a reason alone.
//!
//! Why in the metrics file: it travels in every package the device sends, so the server always
//! holds the device's current answer, and a device keeps the refusal in its state database
//! until another assignment supersedes it, so a restart does not forget it (the counter
//! [`crate::metric_keys::MODELS_REFUSED`] restarts at 0 and says nothing of why). The member
//! holds strings only: an older server, which makes series of a metrics file's numbers,
//! ignores it. A device that knows the member always writes it (`null` without a refusal), so
//! the server can tell "refused nothing" from "too old to say" ([`RefusalReport`]).

use serde::{Deserialize, Serialize};

use super::metrics::{MAX_MODEL_FIELD_BYTES, bounded_metrics_files};
use crate::package::Package;

/// The member of a metrics file holding the device's [`ReleaseRefusal`] (or `null`).
pub const REFUSED_RELEASE_MEMBER: &str = "refused_release";

/// Longest refusal message kept, in bytes (the device cuts a longer one at a character).
pub const MAX_REFUSAL_MESSAGE_BYTES: usize = 1000;

/// Why a device refused a release, in one word a program can act on. The human message of
/// [`ReleaseRefusal`] says the details and what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// The device has no trusted release key configured, so it refuses every release.
    NoTrustedKeys,
    /// Signed by a key the device does not trust.
    UntrustedKey,
    /// Signed by a key the device lists as revoked.
    RevokedKey,
    /// The signature does not match the release manifest (altered or forged).
    BadSignature,
    /// The signed release or the model manifest inside it is invalid.
    InvalidRelease,
    /// The model is larger than the device's `[models] max-bytes`.
    TooLarge,
    /// The release's security epoch is below the highest the device has committed.
    BelowEpochFloor,
    /// The release's compatible is not the device's `[models] compatible`.
    Incompatible,
    /// The downloaded file is not the one the release describes.
    ModelMismatch,
    /// The model does not compute the golden outputs its release promises.
    GoldenMismatch,
    /// The model does not load or run on the device, or gives non-finite outputs.
    SmokeTest,
    /// The device rolled this release back before (health window, crash loop, a person).
    RolledBack,
    /// Any other reason, and every reason a newer device names that this side does not know.
    #[serde(other)]
    Other,
}

impl RefusalKind {
    /// Every kind, in the order the guide explains them.
    pub const ALL: [RefusalKind; 13] = [
        RefusalKind::NoTrustedKeys,
        RefusalKind::UntrustedKey,
        RefusalKind::RevokedKey,
        RefusalKind::BadSignature,
        RefusalKind::InvalidRelease,
        RefusalKind::TooLarge,
        RefusalKind::BelowEpochFloor,
        RefusalKind::Incompatible,
        RefusalKind::ModelMismatch,
        RefusalKind::GoldenMismatch,
        RefusalKind::SmokeTest,
        RefusalKind::RolledBack,
        RefusalKind::Other,
    ];

    /// The word on the wire (`untrusted_key`).
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::NoTrustedKeys => "no_trusted_keys",
            RefusalKind::UntrustedKey => "untrusted_key",
            RefusalKind::RevokedKey => "revoked_key",
            RefusalKind::BadSignature => "bad_signature",
            RefusalKind::InvalidRelease => "invalid_release",
            RefusalKind::TooLarge => "too_large",
            RefusalKind::BelowEpochFloor => "below_epoch_floor",
            RefusalKind::Incompatible => "incompatible",
            RefusalKind::ModelMismatch => "model_mismatch",
            RefusalKind::GoldenMismatch => "golden_mismatch",
            RefusalKind::SmokeTest => "smoke_test",
            RefusalKind::RolledBack => "rolled_back",
            RefusalKind::Other => "other",
        }
    }

    /// A few words for an operator (`untrusted key`).
    pub fn label(self) -> &'static str {
        match self {
            RefusalKind::NoTrustedKeys => "no trusted keys",
            RefusalKind::UntrustedKey => "untrusted key",
            RefusalKind::RevokedKey => "revoked key",
            RefusalKind::BadSignature => "bad signature",
            RefusalKind::InvalidRelease => "invalid release",
            RefusalKind::TooLarge => "too large",
            RefusalKind::BelowEpochFloor => "below the epoch floor",
            RefusalKind::Incompatible => "incompatible",
            RefusalKind::ModelMismatch => "model mismatch",
            RefusalKind::GoldenMismatch => "golden mismatch",
            RefusalKind::SmokeTest => "smoke test failed",
            RefusalKind::RolledBack => "rolled back before",
            RefusalKind::Other => "other",
        }
    }
}

/// The release a device refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRefusal {
    /// Release name, as assigned.
    pub name: String,
    /// Release version, as assigned.
    pub version: String,
    /// The model file's SHA-256 (hex), as assigned.
    pub sha256: String,
    /// Why, in one word.
    pub kind: RefusalKind,
    /// Why, as the device's log says it (with what to do about it).
    pub message: String,
}

impl ReleaseRefusal {
    /// A refusal of release `name` `version` (`sha256`) for `kind`; `message` is made
    /// printable (control characters become spaces) and cut to [`MAX_REFUSAL_MESSAGE_BYTES`]
    /// at a character boundary, so what a device builds always passes [`Self::is_valid`]
    /// when its release fields do.
    pub fn new(
        name: &str,
        version: &str,
        sha256: &str,
        kind: RefusalKind,
        message: &str,
    ) -> ReleaseRefusal {
        let mut text = String::with_capacity(message.len().min(MAX_REFUSAL_MESSAGE_BYTES));
        for c in message.chars() {
            let c = if c.is_control() { ' ' } else { c };
            if text.len() + c.len_utf8() > MAX_REFUSAL_MESSAGE_BYTES {
                break;
            }
            text.push(c);
        }
        ReleaseRefusal {
            name: name.to_owned(),
            version: version.to_owned(),
            sha256: sha256.to_owned(),
            kind,
            message: text,
        }
    }

    /// Whether it can be shown: a name, every field printable and bounded (it is device input
    /// shown on the dashboard).
    pub fn is_valid(&self) -> bool {
        let ok = |s: &str, max: usize| s.len() <= max && !s.chars().any(char::is_control);
        !self.name.trim().is_empty()
            && ok(&self.name, MAX_MODEL_FIELD_BYTES)
            && ok(&self.version, MAX_MODEL_FIELD_BYTES)
            && ok(&self.sha256, MAX_MODEL_FIELD_BYTES)
            && ok(&self.message, MAX_REFUSAL_MESSAGE_BYTES)
    }

    /// Whether it is the refusal of release `name` `version` with model `sha256`: the device
    /// names the release as it was assigned, so by name and version, and by SHA-256 too when
    /// both sides have one.
    pub fn is_of(&self, name: &str, version: &str, sha256: &str) -> bool {
        self.name == name
            && self.version == version
            && (self.sha256.is_empty()
                || sha256.is_empty()
                || self.sha256.eq_ignore_ascii_case(sha256))
    }
}

/// What a package says of the device's refused release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalReport {
    /// Nothing: no metrics file has the member (a device older than it, or no metrics in this
    /// package), or its value is not a valid refusal.
    Unsaid,
    /// The device refused nothing that is still current.
    NoRefusal,
    /// The device refused this release.
    Refused(ReleaseRefusal),
}

/// What the first metrics file of `package` that has the [`REFUSED_RELEASE_MEMBER`] says.
pub fn refusal_report_of(package: &Package) -> RefusalReport {
    bounded_metrics_files(package)
        .find_map(|content| {
            let doc: serde_json::Value = serde_json::from_slice(content).ok()?;
            match doc.get(REFUSED_RELEASE_MEMBER)? {
                serde_json::Value::Null => Some(RefusalReport::NoRefusal),
                value => Some(
                    ReleaseRefusal::deserialize(value)
                        .ok()
                        .filter(ReleaseRefusal::is_valid)
                        .map_or(RefusalReport::Unsaid, RefusalReport::Refused),
                ),
            }
        })
        .unwrap_or(RefusalReport::Unsaid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_json::metrics::metrics_of;
    use crate::package::{FileKind, PackageBuilder, read_package};

    fn package(doc: &str) -> Package {
        let mut b = PackageBuilder::new("p", "d", 1).unwrap();
        b.add("metrics.json", FileKind::Metrics, doc.as_bytes().to_vec())
            .unwrap();
        read_package(b.finish().unwrap().as_slice(), &Default::default()).unwrap()
    }

    fn refusal() -> ReleaseRefusal {
        ReleaseRefusal::new(
            "shapes",
            "3",
            &"ab".repeat(32),
            RefusalKind::UntrustedKey,
            "release shapes 3 is signed by key k-1, which is not among the trusted release keys",
        )
    }

    /// Fails before this change: a device's refusal had no place in what it sends, so the
    /// server could only guess it from a counter that restarts with the device.
    #[test]
    fn a_refusal_round_trips_through_the_metrics_file_and_adds_no_series() {
        let r = refusal();
        let doc = serde_json::json!({
            REFUSED_RELEASE_MEMBER: r,
            "fps": 3,
        })
        .to_string();
        assert!(
            doc.contains(r#""kind":"untrusted_key""#),
            "the wire word: {doc}"
        );
        let p = package(&doc);
        assert_eq!(refusal_report_of(&p), RefusalReport::Refused(r));
        // Strings only: an older server (which charts a metrics file's numbers) ignores it.
        let (points, problems) = metrics_of(&p);
        assert_eq!(points, vec![("fps".to_owned(), 3.0)]);
        assert!(problems.is_empty(), "{problems:?}");
    }

    /// Backward and forward compatible: an older device's file says nothing, `null` says no
    /// refusal, a reason a newer device names is `other`, a bad block is nothing.
    #[test]
    fn old_devices_null_unknown_kinds_and_bad_blocks() {
        assert_eq!(
            refusal_report_of(&package(r#"{"fps": 1}"#)),
            RefusalReport::Unsaid
        );
        assert_eq!(
            refusal_report_of(&package(r#"{"refused_release": null}"#)),
            RefusalReport::NoRefusal
        );
        let newer = r#"{"refused_release": {"name": "shapes", "version": "3", "sha256": "",
            "kind": "quantum_flux", "message": "m", "extra": 1}}"#;
        let RefusalReport::Refused(r) = refusal_report_of(&package(newer)) else {
            panic!("a newer device's refusal is read");
        };
        assert_eq!(r.kind, RefusalKind::Other);
        let long = "m".repeat(MAX_REFUSAL_MESSAGE_BYTES + 1);
        for bad in [
            r#"{"refused_release": "untrusted"}"#.to_owned(),
            r#"{"refused_release": {"name": "", "version": "1", "sha256": "", "kind": "other", "message": ""}}"#.to_owned(),
            r#"{"refused_release": {"name": "a\u0007", "version": "1", "sha256": "", "kind": "other", "message": ""}}"#.to_owned(),
            format!(r#"{{"refused_release": {{"name": "a", "version": "1", "sha256": "", "kind": "other", "message": "{long}"}}}}"#),
            "not json".to_owned(),
        ] {
            assert_eq!(refusal_report_of(&package(&bad)), RefusalReport::Unsaid, "{bad}");
        }
    }

    #[test]
    fn every_kind_has_its_wire_word_and_the_message_is_bounded_and_printable() {
        for kind in RefusalKind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<RefusalKind>(&json).unwrap(), kind);
            assert!(!kind.label().is_empty());
        }
        let r = ReleaseRefusal::new(
            "shapes",
            "3",
            "",
            RefusalKind::Other,
            &format!("a\nb{}", "é".repeat(MAX_REFUSAL_MESSAGE_BYTES)),
        );
        assert!(r.is_valid());
        assert!(r.message.starts_with("a b"));
        assert!(r.message.len() <= MAX_REFUSAL_MESSAGE_BYTES);
    }

    #[test]
    fn a_refusal_names_its_release_by_hash_else_by_name_and_version() {
        let r = refusal();
        let sha = "AB".repeat(32);
        assert!(r.is_of("shapes", "3", &sha));
        assert!(!r.is_of("shapes", "3", &"cd".repeat(32)));
        assert!(r.is_of("shapes", "3", ""));
        assert!(!r.is_of("shapes", "4", ""));
    }
}
