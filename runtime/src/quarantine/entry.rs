//! One quarantined sample as stored (versioned, serde), and the borrowed [`Candidate`] the
//! per-frame path hands in.
//!
//! The candidate borrows everything (label, detector name, features) so that deciding not to
//! admit a sample allocates nothing; the owned [`Entry`] is built only on admission.
//!
//! Entries are postcard-encoded in the state store's `quarantine` table. Postcard is not
//! self-describing, so `version` is the first field: a layout is recognised by reading that
//! one varint (`postcard::take_from_bytes::<u32>`) before decoding the rest. Layout 2 added
//! [`Entry::review_since_unix_ms`]; layout 1 entries (written before) are still read, as not
//! under review. Whatever is read back is checked ([`Entry::check`]) before it is trusted.

use serde::{Deserialize, Serialize};

use super::error::QuarantineError;
use super::status::Status;
use crate::knn::MAX_LABEL_BYTES;

/// Version of [`Entry`] written. Version 1 (without the review pin) is read too.
pub const ENTRY_VERSION: u32 = 2;

/// Longest feature vector accepted (the feature module's largest dimension).
pub const MAX_FEATURES: usize = crate::features::MAX_DIM;

/// Longest drift detector name kept in a [`Reason::Drift`], bytes.
pub const MAX_DETECTOR_BYTES: usize = 64;

/// Why a sample was quarantined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    /// Seen while drift detector `detector` reported an open drift.
    Drift {
        /// The detector's name.
        detector: String,
    },
    /// Far from every sample the KNN knows.
    FarFromKnown,
    /// The model was unsure.
    LowConfidence,
}

/// A [`Reason`], borrowed: what the per-frame path has at hand without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonRef<'a> {
    /// See [`Reason::Drift`].
    Drift {
        /// The detector's name.
        detector: &'a str,
    },
    /// See [`Reason::FarFromKnown`].
    FarFromKnown,
    /// See [`Reason::LowConfidence`].
    LowConfidence,
}

impl ReasonRef<'_> {
    /// The owned reason.
    pub fn to_owned(self) -> Reason {
        match self {
            ReasonRef::Drift { detector } => Reason::Drift {
                detector: detector.to_string(),
            },
            ReasonRef::FarFromKnown => Reason::FarFromKnown,
            ReasonRef::LowConfidence => Reason::LowConfidence,
        }
    }
}

/// A sample offered to [`Quarantine::admit`](super::Quarantine::admit), borrowed from the
/// per-frame path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate<'a> {
    /// The frame's sequence number.
    pub sample: u64,
    /// Why it is suspicious.
    pub reason: ReasonRef<'a>,
    /// The label the model (or KNN) predicted; the per-class cap is keyed by it.
    pub predicted: &'a str,
    /// The model's confidence in `predicted`, finite.
    pub confidence: f32,
    /// Mean distance to the KNN's nearest neighbours, if known; finite.
    pub knn_distance: Option<f32>,
    /// The feature vector (what the KNN sees): 1..=[`MAX_FEATURES`] finite values.
    pub features: &'a [f32],
}

impl Candidate<'_> {
    /// Bytes its features take in the quarantine's byte budget.
    pub fn feature_bytes(&self) -> u64 {
        feature_bytes(self.features.len())
    }

    /// Checks everything that comes from outside; allocates nothing (not even on error).
    pub fn check(&self) -> Result<(), QuarantineError> {
        check_label("predicted label", self.predicted)?;
        if let ReasonRef::Drift { detector } = self.reason {
            if detector.is_empty() || detector.len() > MAX_DETECTOR_BYTES {
                return Err(QuarantineError::Text {
                    what: "drift detector name",
                    len: detector.len(),
                    max: MAX_DETECTOR_BYTES,
                });
            }
        }
        check_features(self.features)?;
        check_finite("confidence", self.confidence)?;
        if let Some(d) = self.knn_distance {
            check_finite("knn distance", d)?;
        }
        Ok(())
    }
}

/// One quarantined sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Layout version ([`ENTRY_VERSION`]); first, so a reader can tell layouts apart.
    pub version: u32,
    /// Its id: unique for the life of the database, increasing with admission order.
    pub id: u64,
    /// When it was admitted, ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// The frame's sequence number.
    pub sample: u64,
    /// Why it was admitted.
    pub reason: Reason,
    /// The label predicted when it was admitted.
    pub predicted: String,
    /// The model's confidence in `predicted`.
    pub confidence: f32,
    /// Mean distance to the KNN's nearest neighbours, if it was known.
    pub knn_distance: Option<f32>,
    /// The feature vector.
    pub features: Vec<f32>,
    /// Where it is in its life.
    pub status: Status,
    /// Its thumbnail's file name in the thumbnails directory, when one was queued for
    /// writing. Always [`thumbnail_name`]`(id)`; the file may be missing (the write failed,
    /// or the directory's byte budget removed it), so readers must expect that.
    pub thumbnail: Option<String>,
    /// When the entry was put under review (ms since the Unix epoch): it backs a drift event
    /// sent to a human, so eviction leaves it alone until the verdict comes or the review
    /// bounds release it (see [`QuarantineConfig::max_under_review`]). `None`: not under
    /// review.
    ///
    /// [`QuarantineConfig::max_under_review`]: super::QuarantineConfig::max_under_review
    pub review_since_unix_ms: Option<u64>,
}

/// Layout 1 of [`Entry`] (before the review pin), read from older databases.
#[derive(Deserialize)]
struct EntryV1 {
    version: u32,
    id: u64,
    created_unix_ms: u64,
    sample: u64,
    reason: Reason,
    predicted: String,
    confidence: f32,
    knn_distance: Option<f32>,
    features: Vec<f32>,
    status: Status,
    thumbnail: Option<String>,
}

impl From<EntryV1> for Entry {
    fn from(e: EntryV1) -> Entry {
        Entry {
            version: e.version,
            id: e.id,
            created_unix_ms: e.created_unix_ms,
            sample: e.sample,
            reason: e.reason,
            predicted: e.predicted,
            confidence: e.confidence,
            knn_distance: e.knn_distance,
            features: e.features,
            status: e.status,
            thumbnail: e.thumbnail,
            review_since_unix_ms: None,
        }
    }
}

impl Entry {
    /// Bytes its features take in the quarantine's byte budget.
    pub fn feature_bytes(&self) -> u64 {
        feature_bytes(self.features.len())
    }

    /// Decodes stored bytes and checks them: a damaged or foreign entry is an error naming
    /// what is wrong, never a panic and never an entry that would misbehave later.
    pub fn decode(id: u64, bytes: &[u8]) -> Result<Entry, QuarantineError> {
        let damaged = |reason: String| QuarantineError::Damaged { id, reason };
        let (version, _) = postcard::take_from_bytes::<u32>(bytes)
            .map_err(|e| damaged(format!("no version: {e}")))?;
        let decoded = match version {
            1 => postcard::from_bytes::<EntryV1>(bytes).map(|mut e| {
                e.version = ENTRY_VERSION;
                Entry::from(e)
            }),
            ENTRY_VERSION => postcard::from_bytes::<Entry>(bytes),
            _ => {
                return Err(damaged(format!(
                    "layout version {version}; this build reads 1..={ENTRY_VERSION}"
                )));
            }
        };
        let entry = decoded.map_err(|e| damaged(format!("does not decode: {e}")))?;
        if entry.id != id {
            return Err(damaged(format!(
                "stored under id {id} but says {}",
                entry.id
            )));
        }
        entry.check().map_err(|e| match e {
            QuarantineError::Damaged { .. } => e,
            e => damaged(e.to_string()),
        })?;
        Ok(entry)
    }

    /// Checks the fields a damaged database could have made unusable.
    pub fn check(&self) -> Result<(), QuarantineError> {
        check_label("predicted label", &self.predicted)?;
        if let Reason::Drift { detector } = &self.reason {
            if detector.len() > MAX_DETECTOR_BYTES {
                return Err(QuarantineError::Text {
                    what: "drift detector name",
                    len: detector.len(),
                    max: MAX_DETECTOR_BYTES,
                });
            }
        }
        check_features(&self.features)?;
        check_finite("confidence", self.confidence)?;
        if let Some(d) = self.knn_distance {
            check_finite("knn distance", d)?;
        }
        if let Some(label) = self.status.label() {
            check_label("status label", label)?;
        }
        // The name is only ever derived from the id; anything else was not written by us.
        if let Some(name) = &self.thumbnail {
            if *name != thumbnail_name(self.id) {
                return Err(QuarantineError::Damaged {
                    id: self.id,
                    reason: format!("thumbnail name {name:?} is not derived from the id"),
                });
            }
        }
        Ok(())
    }
}

/// A thumbnail's file name: derived from the numeric id alone (never from stored or input
/// text), zero-padded so that names sort in admission order.
pub fn thumbnail_name(id: u64) -> String {
    format!("{id:020}.jpg")
}

/// The id a thumbnail file name stands for, if it is one of ours.
pub(crate) fn thumbnail_id(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".jpg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn feature_bytes(len: usize) -> u64 {
    (len as u64).saturating_mul(std::mem::size_of::<f32>() as u64)
}

pub(crate) fn check_label(what: &'static str, label: &str) -> Result<(), QuarantineError> {
    if label.is_empty() || label.len() > MAX_LABEL_BYTES {
        return Err(QuarantineError::Text {
            what,
            len: label.len(),
            max: MAX_LABEL_BYTES,
        });
    }
    Ok(())
}

fn check_features(features: &[f32]) -> Result<(), QuarantineError> {
    if features.is_empty() || features.len() > MAX_FEATURES {
        return Err(QuarantineError::Dimension {
            len: features.len(),
            max: MAX_FEATURES,
        });
    }
    match features.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(QuarantineError::NonFinite {
            what: "feature",
            index,
        }),
        None => Ok(()),
    }
}

fn check_finite(what: &'static str, v: f32) -> Result<(), QuarantineError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(QuarantineError::NonFinite { what, index: 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64) -> Entry {
        Entry {
            version: ENTRY_VERSION,
            id,
            created_unix_ms: 1_000,
            sample: 7,
            reason: Reason::Drift {
                detector: "ph".into(),
            },
            predicted: "cat".into(),
            confidence: 0.4,
            knn_distance: Some(1.5),
            features: vec![0.5, -1.0, 2.0],
            status: Status::PseudoLabelled {
                label: "dog".into(),
            },
            thumbnail: Some(thumbnail_name(id)),
            review_since_unix_ms: Some(2_000),
        }
    }

    #[test]
    fn round_trip_and_version_first() {
        let e = entry(42);
        let bytes = postcard::to_stdvec(&e).unwrap();
        assert_eq!(bytes[0], ENTRY_VERSION as u8, "version is the first byte");
        assert_eq!(Entry::decode(42, &bytes).unwrap(), e);
    }

    /// An entry written by the previous layout (before the review pin) is read, as not under
    /// review.
    #[test]
    fn layout_1_entries_are_read_as_not_under_review() {
        #[derive(Serialize)]
        struct V1<'a> {
            version: u32,
            id: u64,
            created_unix_ms: u64,
            sample: u64,
            reason: &'a Reason,
            predicted: &'a str,
            confidence: f32,
            knn_distance: Option<f32>,
            features: &'a [f32],
            status: &'a Status,
            thumbnail: &'a Option<String>,
        }
        let e = entry(42);
        let bytes = postcard::to_stdvec(&V1 {
            version: 1,
            id: e.id,
            created_unix_ms: e.created_unix_ms,
            sample: e.sample,
            reason: &e.reason,
            predicted: &e.predicted,
            confidence: e.confidence,
            knn_distance: e.knn_distance,
            features: &e.features,
            status: &e.status,
            thumbnail: &e.thumbnail,
        })
        .unwrap();
        let read = Entry::decode(42, &bytes).unwrap();
        assert_eq!(
            read,
            Entry {
                review_since_unix_ms: None,
                ..e
            }
        );
    }

    #[test]
    fn damaged_or_foreign_bytes_are_errors() {
        let e = entry(42);
        let bytes = postcard::to_stdvec(&e).unwrap();
        let err = Entry::decode(43, &bytes).unwrap_err();
        assert!(err.to_string().contains("says 42"), "{err}");
        let mut future = bytes.clone();
        future[0] = 9;
        let err = Entry::decode(42, &future).unwrap_err();
        assert!(err.to_string().contains("layout version 9"), "{err}");
        for n in 0..bytes.len() {
            assert!(Entry::decode(42, &bytes[..n]).is_err(), "truncated to {n}");
        }
        let mut nan = e.clone();
        nan.features[1] = f32::NAN;
        let err = Entry::decode(42, &postcard::to_stdvec(&nan).unwrap()).unwrap_err();
        assert!(err.to_string().contains("feature 1"), "{err}");
        let mut path = e.clone();
        path.thumbnail = Some("../../etc/passwd".into());
        let err = Entry::decode(42, &postcard::to_stdvec(&path).unwrap()).unwrap_err();
        assert!(err.to_string().contains("thumbnail name"), "{err}");
    }

    #[test]
    fn candidates_with_bad_values_are_refused() {
        let good = [0.0f32; 4];
        let c = Candidate {
            sample: 1,
            reason: ReasonRef::FarFromKnown,
            predicted: "cat",
            confidence: 0.5,
            knn_distance: None,
            features: &good,
        };
        c.check().unwrap();
        assert_eq!(c.feature_bytes(), 16);
        let inf = [0.0, f32::INFINITY];
        let too_long = vec![0.0f32; MAX_FEATURES + 1];
        let long_label = "x".repeat(MAX_LABEL_BYTES + 1);
        let bad = [
            Candidate {
                features: &inf,
                ..c
            },
            Candidate { features: &[], ..c },
            Candidate {
                features: &too_long,
                ..c
            },
            Candidate {
                confidence: f32::NAN,
                ..c
            },
            Candidate {
                knn_distance: Some(f32::NEG_INFINITY),
                ..c
            },
            Candidate { predicted: "", ..c },
            Candidate {
                predicted: &long_label,
                ..c
            },
            Candidate {
                reason: ReasonRef::Drift { detector: "" },
                ..c
            },
        ];
        for b in bad {
            assert!(b.check().is_err(), "{b:?} accepted");
        }
    }

    #[test]
    fn thumbnail_names_come_from_the_id_only() {
        assert_eq!(thumbnail_name(7), "00000000000000000007.jpg");
        assert_eq!(thumbnail_id(&thumbnail_name(u64::MAX)), Some(u64::MAX));
        for bad in [
            "7.jpg",
            "../00000000000000000007.jpg",
            "0000000000000000000a.jpg",
            "x",
        ] {
            assert_eq!(thumbnail_id(bad), None, "{bad}");
        }
    }
}
