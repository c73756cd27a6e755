//! What a device last said about itself in its packages: the model it runs, how often it
//! syncs, its frame rate and mean confidence, and when its recent packages arrived.
//!
//! Why: the fleet page answers "is anything wrong, where" for every device at once, so it needs
//! these figures without reading each device's metric series or package list. They are kept
//! as one small JSON blob per device (`devices/<device>/reported.json`), rewritten when a
//! package of it is processed: the blob store is a port both backends have, so the tracking
//! port is not widened for it. The model's name and version are strings, which the metric
//! series never hold (the device sends them as the metrics file's
//! [`tinylcm_protocol::device_json::metrics::MODEL_MEMBER`]).
//!
//! It also holds the release the device last refused and why
//! ([`tinylcm_protocol::device_json::refusal`]), for the rollout page: the device keeps it until
//! another assignment supersedes it and repeats it in every metrics file, so the newest
//! package's word is the device's current one.
//!
//! Two packages of one device processed at the same moment may both read the old blob; the
//! later write wins and one package time is missing from the cadence until the next package:
//! a figure for a glance, not a record.

use serde::{Deserialize, Serialize};
use tinylcm_protocol::device_json::metrics::RunningModel;
use tinylcm_protocol::device_json::refusal::{RefusalReport, ReleaseRefusal};
use tinylcm_protocol::metric_keys;
use tinylcm_protocol::package::Package;

use super::{DomainError, Sphere};
use crate::ports::BlobKey;

/// Package arrival times kept per device, for the cadence of devices that do not report their
/// sync interval.
pub const CADENCE_PACKAGES: usize = 9;

/// The blob key of `device_id`'s report.
fn key(device_id: &str) -> Result<BlobKey, DomainError> {
    BlobKey::new(format!("devices/{device_id}/reported.json")).map_err(|e| {
        DomainError::BadRequest {
            error: e.to_string(),
            fix: None,
        }
    })
}

/// A device's latest report of itself (every field absent until a package said it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Reported {
    /// The model it runs.
    pub model: Option<RunningModel>,
    /// Its configured sync interval, seconds.
    pub sync_interval_seconds: Option<u64>,
    /// Frames per second over its last status interval.
    pub fps: Option<f64>,
    /// Mean top-class confidence over its last status interval, 0..=1.
    pub confidence: Option<f64>,
    /// When the figures above were measured (the package's creation time, device clock).
    pub figures_unix_ms: Option<u64>,
    /// Accept times (server clock, Unix ms) of its last [`CADENCE_PACKAGES`] packages, ascending.
    pub packages_unix_ms: Vec<u64>,
    /// Whether its metrics say which release it refused (`false` for a device older than
    /// that: its refusals can only be inferred from its refusal counter).
    pub reports_refusals: bool,
    /// The release it refused and why, while its assignment still is that release.
    pub refused_release: Option<ReleaseRefusal>,
    /// The classes it counts frames of (its newest metrics' per-class count keys,
    /// [`metric_keys::class_count_key`]), sorted: what the class chooser offers even where
    /// the tracking store does not keep those series (MLflow's `mlflow_metric_keys`).
    pub classes: Vec<String>,
}

impl Reported {
    /// The median gap between its recent packages, ms, once it sent three or more.
    pub fn cadence_ms(&self) -> Option<u64> {
        let mut gaps: Vec<u64> = self
            .packages_unix_ms
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .collect();
        if gaps.len() < 2 {
            return None;
        }
        gaps.sort_unstable();
        Some(gaps[gaps.len() / 2]).filter(|g| *g > 0)
    }

    /// Fold one processed package into the report: its accept time into the cadence, and the
    /// figures of its metrics (with what it says of a refused release) when they are newer
    /// than the ones held.
    pub fn note(
        &mut self,
        accepted_unix_ms: u64,
        created_unix_ms: u64,
        points: &[(String, f64)],
        model: Option<RunningModel>,
        refusal: RefusalReport,
    ) {
        if let Err(at) = self.packages_unix_ms.binary_search(&accepted_unix_ms) {
            self.packages_unix_ms.insert(at, accepted_unix_ms);
            let excess = self.packages_unix_ms.len().saturating_sub(CADENCE_PACKAGES);
            self.packages_unix_ms.drain(..excess);
        }
        let value = |key: &str| {
            points
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| *v)
                .filter(|v| v.is_finite())
        };
        let figures = [
            metric_keys::FPS,
            metric_keys::CONFIDENCE_MEAN,
            metric_keys::SYNC_INTERVAL_SECONDS,
        ];
        let classes: Vec<String> = points
            .iter()
            .filter_map(|(k, _)| metric_keys::class_of_count_key(k))
            .map(str::to_owned)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let has_figures = model.is_some()
            || refusal != RefusalReport::Unsaid
            || !classes.is_empty()
            || figures.iter().any(|k| value(k).is_some());
        if !has_figures || self.figures_unix_ms.is_some_and(|t| t > created_unix_ms) {
            return;
        }
        self.figures_unix_ms = Some(created_unix_ms);
        match refusal {
            RefusalReport::Unsaid => {}
            RefusalReport::NoRefusal => {
                self.reports_refusals = true;
                self.refused_release = None;
            }
            RefusalReport::Refused(r) => {
                self.reports_refusals = true;
                self.refused_release = Some(r);
            }
        }
        if model.is_some() {
            self.model = model;
        }
        if !classes.is_empty() {
            self.classes = classes;
        }
        if let Some(v) = value(metric_keys::FPS) {
            self.fps = Some(v.max(0.0));
        }
        if let Some(v) = value(metric_keys::CONFIDENCE_MEAN) {
            self.confidence = Some(v.clamp(0.0, 1.0));
        }
        if let Some(v) = value(metric_keys::SYNC_INTERVAL_SECONDS) {
            // The runtime bounds it to 1 s..1 day; anything else is not an interval.
            self.sync_interval_seconds = (1.0..=86_400.0).contains(&v).then_some(v as u64);
        }
    }
}

impl Sphere {
    /// What `device_id` last reported of itself (all absent for a device that sent nothing, and
    /// for a blob that no longer parses: it is rewritten by the next package).
    pub fn reported(&self, device_id: &str) -> Result<Reported, DomainError> {
        let Some(bytes) = self.blobs.get(&key(device_id)?)? else {
            return Ok(Reported::default());
        };
        Ok(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(device = %device_id, error = %e, "unreadable device report; starting afresh");
            Reported::default()
        }))
    }

    /// Write `reported` as `device_id`'s report, unsynced (processing syncs its batch's
    /// blobs at once); its key.
    pub(super) fn put_reported_unsynced(
        &self,
        device_id: &str,
        reported: &Reported,
    ) -> Result<BlobKey, DomainError> {
        let bytes = serde_json::to_vec(reported).map_err(|e| DomainError::BadRequest {
            error: e.to_string(),
            fix: None,
        })?;
        let key = key(device_id)?;
        self.blobs.put_unsynced(&key, &bytes)?;
        Ok(key)
    }
}

/// What one package says of its device beyond its metric points (see [`Reported::note`]),
/// taken from it while it is unpacked so the package need not be kept for the report.
#[derive(Debug)]
pub(super) struct Said {
    /// The package's creation time (device clock).
    created_unix_ms: u64,
    /// The model it names as running.
    model: Option<RunningModel>,
    /// What it says of a refused release.
    refusal: RefusalReport,
}

impl Said {
    /// What `package` says of its device.
    pub(super) fn of(package: &Package) -> Said {
        Said {
            created_unix_ms: package.manifest.created_unix_ms,
            model: tinylcm_protocol::device_json::metrics::running_model_of(package),
            refusal: tinylcm_protocol::device_json::refusal::refusal_report_of(package),
        }
    }
}

impl Reported {
    /// Fold a processed package (what it said, its metric `points`) into the report.
    pub(super) fn note_said(
        &mut self,
        said: Said,
        accepted_unix_ms: u64,
        points: &[(String, f64)],
    ) {
        self.note(
            accepted_unix_ms,
            said.created_unix_ms,
            points,
            said.model,
            said.refusal,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(version: &str) -> Option<RunningModel> {
        Some(RunningModel {
            name: "shapes".into(),
            version: version.into(),
            sha256: String::new(),
        })
    }

    #[test]
    fn newer_figures_win_and_the_cadence_is_the_median_gap() {
        let mut r = Reported::default();
        let points = vec![
            (metric_keys::FPS.to_owned(), 29.5),
            (metric_keys::CONFIDENCE_MEAN.to_owned(), 0.93),
            (metric_keys::SYNC_INTERVAL_SECONDS.to_owned(), 5.0),
        ];
        r.note(10_000, 9_000, &points, model("2"), RefusalReport::Unsaid);
        assert_eq!(r.model, model("2"));
        assert_eq!(r.sync_interval_seconds, Some(5));
        assert_eq!(r.fps, Some(29.5));
        assert_eq!(r.cadence_ms(), None, "one package has no cadence");
        // An older package processed late changes the cadence, not the figures.
        r.note(
            5_000,
            4_000,
            &[(metric_keys::FPS.to_owned(), 1.0)],
            model("1"),
            RefusalReport::Unsaid,
        );
        assert_eq!((r.fps, r.model.clone()), (Some(29.5), model("2")));
        r.note(15_000, 14_000, &[], None, RefusalReport::Unsaid);
        r.note(15_000, 14_000, &[], None, RefusalReport::Unsaid);
        assert_eq!(r.packages_unix_ms, vec![5_000, 10_000, 15_000]);
        assert_eq!(r.cadence_ms(), Some(5_000));
        for i in 0..20 {
            r.note(20_000 + i * 7_000, 0, &[], None, RefusalReport::Unsaid);
        }
        assert_eq!(r.packages_unix_ms.len(), CADENCE_PACKAGES);
        assert_eq!(r.cadence_ms(), Some(7_000));
        // A nonsense interval is dropped rather than believed.
        r.note(
            999_000,
            20_000,
            &[(metric_keys::SYNC_INTERVAL_SECONDS.to_owned(), 0.0)],
            None,
            RefusalReport::Unsaid,
        );
        assert_eq!(r.sync_interval_seconds, None);
    }

    /// Fails before this change: the report had no place for a refusal. The newest package's
    /// word wins: a refusal, then `null` (superseded) clears it; an older device's silence
    /// leaves it unsaid; an older package processed late changes nothing.
    #[test]
    fn the_newest_package_says_which_release_was_refused() {
        use tinylcm_protocol::device_json::refusal::RefusalKind;
        let refusal = ReleaseRefusal::new("shapes", "3", "", RefusalKind::TooLarge, "too big");
        let mut r = Reported::default();
        r.note(1_000, 1_000, &[], model("1"), RefusalReport::Unsaid);
        assert!(!r.reports_refusals);
        r.note(
            2_000,
            2_000,
            &[],
            None,
            RefusalReport::Refused(refusal.clone()),
        );
        assert!(r.reports_refusals);
        assert_eq!(r.refused_release, Some(refusal.clone()));
        r.note(1_500, 1_500, &[], None, RefusalReport::NoRefusal);
        assert_eq!(r.refused_release, Some(refusal), "an older package is late");
        r.note(3_000, 3_000, &[], None, RefusalReport::NoRefusal);
        assert_eq!(r.refused_release, None);
        // A blob written before these fields still reads.
        let old: Reported = serde_json::from_str(r#"{"fps": 3.0}"#).unwrap();
        assert!(!old.reports_refusals && old.refused_release.is_none());
    }

    /// The classes are the newest package's per-class count keys (a renamed class leaves the
    /// list); an older package processed late and a package without them change nothing.
    #[test]
    fn the_newest_package_names_the_classes() {
        let counts = |names: &[&str]| -> Vec<(String, f64)> {
            let mut points: Vec<(String, f64)> = names
                .iter()
                .map(|n| (metric_keys::class_count_key(n), 3.0))
                .collect();
            points.push(("classes.cat.mean_confidence".into(), 0.9));
            points
        };
        let mut r = Reported::default();
        r.note(
            1_000,
            1_000,
            &counts(&["dog", "cat", "new-1"]),
            None,
            RefusalReport::Unsaid,
        );
        assert_eq!(r.classes, ["cat", "dog", "new-1"]);
        r.note(
            3_000,
            3_000,
            &counts(&["cat", "dog", "fox"]),
            None,
            RefusalReport::Unsaid,
        );
        assert_eq!(r.classes, ["cat", "dog", "fox"]);
        r.note(2_000, 2_000, &counts(&["owl"]), None, RefusalReport::Unsaid);
        r.note(
            4_000,
            4_000,
            &[(metric_keys::FPS.into(), 2.0)],
            None,
            RefusalReport::Unsaid,
        );
        assert_eq!(r.classes, ["cat", "dog", "fox"]);
    }
}
