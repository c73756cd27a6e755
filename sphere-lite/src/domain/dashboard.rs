//! Read-only queries behind the web dashboard: one device, pages of devices, packages and
//! sample images, drift counts per device, and the bytes of one sample image.
//!
//! Why: the dashboard needs views the JSON API does not offer, and they must work on every
//! adapter pair, so they are built from what the ports give (the `Tracking` port gained only
//! the newest-first package listing, one search per page on MLflow): a device's packages and
//! its images newest package first from that listing, every device's images from the
//! per-file blob keys (`devices/<device>/packages/<package>/<name>`), drift counts from the
//! event listing. Every page is bounded ([`MAX_DASHBOARD_PAGE`]) and uses a cursor (the last
//! item's key or time and id), never an offset, so pages stay stable while data arrives.

use std::collections::{HashMap, HashSet};

use tinylcm_protocol::api::{DriftEventStatus, MAX_DRIFT_EVENT_PAGE};

use super::{DeviceSummary, DomainError, Sphere, quarantine_id};
use crate::ports::{BlobKey, DriftEventFilter, PackageRecord};

/// Largest page any dashboard listing returns.
pub const MAX_DASHBOARD_PAGE: usize = 200;

/// How many drift events the fleet's per-device counts look at, at most (the counts then say
/// they are incomplete rather than scanning without end).
pub const TALLY_SCAN_CAP: usize = 20_000;

/// Hours the fleet page's drift trend covers (one bar per hour).
pub const TREND_HOURS: usize = 24;

/// Drift events of one device, by review state, and its recent trend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriftTally {
    /// Not reviewed yet.
    pub pending: u64,
    /// All of them.
    pub total: u64,
    /// Incidents with at least one event not reviewed yet.
    pub open_incidents: u64,
    /// Drift events per hour over the last [`TREND_HOURS`] hours, oldest first (by the
    /// device's clock, or the server's when the two disagree by more than a day).
    pub per_hour: [u32; TREND_HOURS],
}

/// When `event` happened for the trend: the device's clock, unless it is more than a day off
/// the server's receipt (a board without a real-time clock before its first time sync).
fn trend_time(event: &tinylcm_protocol::api::DriftEventView) -> u64 {
    if event.unix_ms.abs_diff(event.received_unix_ms) <= 24 * 3_600_000 {
        event.unix_ms
    } else {
        event.received_unix_ms
    }
}

/// The hour bucket (0 oldest .. [`TREND_HOURS`] − 1 the current hour) of time `t` at `now`.
fn trend_bucket(t: u64, now: u64) -> Option<usize> {
    if t > now {
        return None;
    }
    let ago = ((now - t) / 3_600_000) as usize;
    (ago < TREND_HOURS).then(|| TREND_HOURS - 1 - ago)
}

/// The paging cursor of `record` in a newest-first package listing: `<accepted ms>.<id>`
/// (package ids never contain `.`).
pub fn package_cursor(record: &PackageRecord) -> String {
    format!("{}.{}", record.accepted_unix_ms, record.package_id)
}

/// The `(accepted ms, package id)` of a cursor made by [`package_cursor`], if well formed.
pub fn parse_package_cursor(text: &str) -> Option<(u64, String)> {
    let (ms, id) = text.split_once('.')?;
    if ms.is_empty() || ms.len() > 20 || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms = ms.parse().ok()?;
    tinylcm_protocol::ids::valid_package_id(id).then(|| (ms, id.to_owned()))
}

/// Packages a page of [`Sphere::device_images_newest_first`] looks into, at most.
pub const IMAGE_SCAN_PACKAGES: usize = 500;

/// The cursor after `image` in a newest-first image listing: `<accepted ms>.<package>/<name>`.
fn image_cursor(image: &SampleImage) -> String {
    format!(
        "{}.{}/{}",
        image.accepted_unix_ms.unwrap_or(0),
        image.package_id,
        image.name
    )
}

/// `(accepted ms, package id, name after which to go on)` of an image cursor; no name means
/// the whole package was shown.
fn parse_image_cursor(text: &str) -> Option<(u64, String, Option<String>)> {
    let (package, name) = match text.split_once('/') {
        Some((p, n)) => (p, Some(n)),
        None => (text, None),
    };
    let (ms, id) = parse_package_cursor(package)?;
    if name.is_some_and(|n| n.is_empty() || n.len() > 1024) {
        return None;
    }
    Some((ms, id, name.map(str::to_owned)))
}

/// One page of a device's packages, newest accepted first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackagePage {
    /// The packages (as recorded; a raw blob without a record is left out).
    pub packages: Vec<PackageRecord>,
    /// Cursor of the next page ([`package_cursor`] of the last package), if there is one.
    pub next_after: Option<String>,
}

/// A stored image file of a processed package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleImage {
    /// Blob key (`devices/<device>/packages/<package>/<name>`).
    pub key: String,
    /// The device that sent it.
    pub device_id: String,
    /// The package it came in.
    pub package_id: String,
    /// Its name inside the package.
    pub name: String,
    /// The quarantine entry it stands for, if its name is a quarantine thumbnail name.
    pub quarantine_id: Option<u64>,
    /// When its package was accepted (Unix ms), if the package is recorded.
    pub accepted_unix_ms: Option<u64>,
}

/// One page of sample images, ordered by blob key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePage {
    /// The images.
    pub images: Vec<SampleImage>,
    /// Cursor of the next page (the last key), if there is one.
    pub next_after: Option<String>,
}

/// Whether a file name ends in an image extension the dashboard shows (`.jpg`, `.jpeg`,
/// `.png`, any case): the rule the Data Hub's parser of prediction files applies too.
pub use tinylcm_protocol::device_json::predictions::is_image_name;

/// Whether `key` is an image file of a processed package (the only blobs the dashboard serves).
pub fn is_image_key(key: &str) -> bool {
    key.starts_with("devices/")
        && key.split('/').nth(2) == Some("packages")
        && key.split('/').count() >= 5
        && is_image_name(key)
}

fn bad_device() -> DomainError {
    DomainError::BadRequest {
        error: "not a device id".into(),
        fix: Some("pick a device from the fleet page".into()),
    }
}

/// `limit` clamped to 1..=[`MAX_DASHBOARD_PAGE`].
fn clamp(limit: usize) -> usize {
    limit.clamp(1, MAX_DASHBOARD_PAGE)
}

impl Sphere {
    /// One device, if it exists (`None` also for a string that is not a device id).
    pub fn device_summary(&self, device_id: &str) -> Result<Option<DeviceSummary>, DomainError> {
        if !tinylcm_protocol::ids::valid_device_id(device_id) {
            return Ok(None);
        }
        Ok(self.tracking.device(device_id)?.map(|d| self.summary(d)))
    }

    /// Devices with an id above `after`, ordered by id, at most `limit` (clamped); and the
    /// cursor of the next page.
    pub fn devices_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<DeviceSummary>, Option<String>), DomainError> {
        let limit = clamp(limit);
        let mut devices: Vec<DeviceSummary> = self
            .list_devices()?
            .devices
            .into_iter()
            .filter(|d| after.is_none_or(|a| d.device_id.as_str() > a))
            .take(limit + 1)
            .collect();
        let next = (devices.len() > limit).then(|| {
            devices.truncate(limit);
            devices.last().map(|d| d.device_id.clone())
        });
        Ok((devices, next.flatten()))
    }

    /// Drift events per device (pending, total, open incidents, the hourly trend up to `now`);
    /// the flag says whether every event was counted.
    ///
    /// What says whether anything is wrong — the pending events and open incidents, and the
    /// last day's trend — is counted from scans of only those events, each of at most
    /// [`TALLY_SCAN_CAP`], so years of reviewed history never push today's incidents out of
    /// the count; only the all-time total is cut at the cap.
    pub fn drift_tallies(
        &self,
        now: u64,
    ) -> Result<(HashMap<String, DriftTally>, bool), DomainError> {
        let mut tallies: HashMap<String, DriftTally> = HashMap::new();
        let pending = DriftEventFilter {
            status: Some(DriftEventStatus::Pending),
            ..DriftEventFilter::default()
        };
        let mut open: HashSet<super::IncidentKey> = HashSet::new();
        let mut complete = self.scan_drift_events(&pending, |event| {
            let t = tallies.entry(event.device_id.clone()).or_default();
            t.pending += 1;
            if open.insert(super::IncidentKey::of(event)) {
                t.open_incidents += 1;
            }
        })?;
        // The trend's window by the device's clock, widened by the day `trend_time` allows it
        // to be off.
        let day = 24 * 3_600_000;
        let recent = DriftEventFilter {
            since: Some(now.saturating_sub(TREND_HOURS as u64 * 3_600_000 + day)),
            ..DriftEventFilter::default()
        };
        complete &= self.scan_drift_events(&recent, |event| {
            if let Some(b) = trend_bucket(trend_time(event), now) {
                let t = tallies.entry(event.device_id.clone()).or_default();
                t.per_hour[b] = t.per_hour[b].saturating_add(1);
            }
        })?;
        complete &= self.scan_drift_events(&DriftEventFilter::default(), |event| {
            tallies.entry(event.device_id.clone()).or_default().total += 1;
        })?;
        Ok((tallies, complete))
    }

    /// Calls `each` for the drift events `filter` matches, in id order, at most
    /// [`TALLY_SCAN_CAP`] of them; whether all were seen.
    fn scan_drift_events(
        &self,
        filter: &DriftEventFilter,
        mut each: impl FnMut(&tinylcm_protocol::api::DriftEventView),
    ) -> Result<bool, DomainError> {
        let mut after = 0;
        let mut scanned = 0;
        loop {
            let page = self
                .tracking
                .drift_events(filter, after, MAX_DRIFT_EVENT_PAGE)?;
            page.iter().for_each(&mut each);
            scanned += page.len();
            match page.last() {
                Some(last) if page.len() == MAX_DRIFT_EVENT_PAGE => after = last.id,
                _ => return Ok(true),
            }
            if scanned >= TALLY_SCAN_CAP {
                return Ok(false);
            }
        }
    }

    /// Packages of `device_id`, newest accepted first, after the cursor `after` (a previous
    /// page's `next_after`), at most `limit` (clamped). A malformed cursor is a bad request.
    pub fn device_packages(
        &self,
        device_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<PackagePage, DomainError> {
        if !tinylcm_protocol::ids::valid_device_id(device_id) {
            return Err(bad_device());
        }
        let limit = clamp(limit);
        let before = match after {
            Some(a) => Some(
                parse_package_cursor(a).ok_or_else(|| DomainError::BadRequest {
                    error: "`after` is not a package cursor".into(),
                    fix: Some("follow the page's own \"older packages\" link".into()),
                })?,
            ),
            None => None,
        };
        let mut packages = self.tracking.packages_newest_first(
            device_id,
            before.as_ref().map(|(t, id)| (*t, id.as_str())),
            limit + 1,
        )?;
        let next_after = (packages.len() > limit).then(|| {
            packages.truncate(limit);
            packages.last().map(package_cursor)
        });
        Ok(PackagePage {
            packages,
            next_after: next_after.flatten(),
        })
    }

    /// Image files of processed packages (of `device_id`, or of every device), with a key above
    /// `after`, ordered by key, at most `limit` (clamped).
    pub fn sample_images(
        &self,
        device_id: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ImagePage, DomainError> {
        let prefix = match device_id {
            Some(d) if tinylcm_protocol::ids::valid_device_id(d) => {
                format!("devices/{d}/packages/")
            }
            Some(_) => return Err(bad_device()),
            None => "devices/".to_owned(),
        };
        let limit = clamp(limit);
        let mut keys: Vec<BlobKey> = self
            .blobs
            .list(&prefix)?
            .into_iter()
            .filter(|k| is_image_key(k.as_str()))
            .filter(|k| after.is_none_or(|a| k.as_str() > a))
            .take(limit + 1)
            .collect();
        let next_after = (keys.len() > limit).then(|| {
            keys.truncate(limit);
            keys.last().map(|k| k.to_string())
        });
        let mut accepted: HashMap<(String, String), Option<u64>> = HashMap::new();
        let mut images = Vec::with_capacity(keys.len());
        for key in keys {
            // devices/<device>/packages/<package>/<name...>
            let mut parts = key.as_str().splitn(5, '/');
            let (Some(_), Some(device), Some(_), Some(package), Some(name)) = (
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
            ) else {
                continue;
            };
            let pair = (device.to_owned(), package.to_owned());
            let when = match accepted.get(&pair) {
                Some(w) => *w,
                None => {
                    let w = self
                        .tracking
                        .package(device, package)?
                        .map(|r| r.accepted_unix_ms);
                    accepted.insert(pair, w);
                    w
                }
            };
            images.push(SampleImage {
                device_id: device.to_owned(),
                package_id: package.to_owned(),
                name: name.to_owned(),
                quarantine_id: quarantine_id(name),
                accepted_unix_ms: when,
                key: key.to_string(),
            });
        }
        Ok(ImagePage {
            images,
            next_after: next_after.flatten(),
        })
    }

    /// Image files of `device_id`'s processed packages, newest accepted package first and by
    /// name within a package, after the cursor `after` (a previous page's `next_after`), at
    /// most `limit` (clamped).
    ///
    /// The cursor is `<accepted ms>.<package id>/<name>` (the last image shown) or
    /// `<accepted ms>.<package id>` (every image of that package shown): at most
    /// [`IMAGE_SCAN_PACKAGES`] packages are looked into per page, so a long run of packages
    /// without images ends a page early with a cursor rather than one blob listing per
    /// package without end.
    pub fn device_images_newest_first(
        &self,
        device_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ImagePage, DomainError> {
        if !tinylcm_protocol::ids::valid_device_id(device_id) {
            return Err(bad_device());
        }
        let limit = clamp(limit);
        let cursor = match after {
            Some(a) => Some(
                parse_image_cursor(a).ok_or_else(|| DomainError::BadRequest {
                    error: "`after` is not an image cursor".into(),
                    fix: Some("follow the page's own \"next page\" link".into()),
                })?,
            ),
            None => None,
        };
        let mut images: Vec<SampleImage> = Vec::new();
        // The package the cursor stopped in, to finish first.
        let mut queue: Vec<(u64, String, Option<String>)> = Vec::new();
        let mut before = None;
        if let Some((ms, package, name)) = cursor {
            if let Some(name) = name {
                queue.push((ms, package.clone(), Some(name)));
            }
            before = Some((ms, package));
        }
        let mut scanned = 0;
        loop {
            for (ms, package, name_after) in queue.drain(..) {
                scanned += 1;
                let prefix = format!("devices/{device_id}/packages/{package}/");
                let mut keys: Vec<String> = self
                    .blobs
                    .list(&prefix)?
                    .into_iter()
                    .map(|k| k.to_string())
                    .filter(|k| is_image_key(k))
                    .collect();
                keys.sort();
                for key in keys {
                    let name = key[prefix.len()..].to_owned();
                    if name_after.as_deref().is_some_and(|a| name.as_str() <= a) {
                        continue;
                    }
                    if images.len() == limit {
                        let last = images.last().map(image_cursor);
                        return Ok(ImagePage {
                            images,
                            next_after: last,
                        });
                    }
                    images.push(SampleImage {
                        device_id: device_id.to_owned(),
                        package_id: package.clone(),
                        quarantine_id: quarantine_id(&name),
                        name,
                        accepted_unix_ms: Some(ms),
                        key,
                    });
                }
                before = Some((ms, package));
                if scanned >= IMAGE_SCAN_PACKAGES {
                    let next_after = before.map(|(ms, p)| format!("{ms}.{p}"));
                    return Ok(ImagePage { images, next_after });
                }
            }
            let batch = self.tracking.packages_newest_first(
                device_id,
                before.as_ref().map(|(t, id)| (*t, id.as_str())),
                MAX_DASHBOARD_PAGE,
            )?;
            if batch.is_empty() {
                return Ok(ImagePage {
                    images,
                    next_after: None,
                });
            }
            queue.extend(
                batch
                    .into_iter()
                    .map(|r| (r.accepted_unix_ms, r.package_id, None)),
            );
        }
    }

    /// The bytes of the sample image under `key`; `None` when there is no such image or `key`
    /// is not an image key of a processed package (other blobs are never served this way).
    pub fn sample_image(&self, key: &str) -> Result<Option<Vec<u8>>, DomainError> {
        if !is_image_key(key) {
            return Ok(None);
        }
        let Ok(key) = BlobKey::new(key) else {
            return Ok(None);
        };
        Ok(self.blobs.get(&key)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tinylcm_protocol::api::DriftEventStatus;

    use super::{
        TALLY_SCAN_CAP, TREND_HOURS, is_image_key, package_cursor, parse_package_cursor,
        trend_bucket,
    };
    use crate::adapters::{DirBlobs, RedbTracking};
    use crate::domain::Sphere;
    use crate::domain::drift_incident::tests::event;
    use crate::ports::prelude::*;

    /// Fails before this change: the counts scanned every event oldest first and stopped at
    /// the cap, so behind a long reviewed history a device's new incident counted as none and
    /// the fleet page showed it healthy.
    #[test]
    fn a_new_incident_counts_behind_more_reviewed_history_than_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let tracking = Arc::new(RedbTracking::open(&dir.path().join("s.redb")).unwrap());
        let blobs = Arc::new(DirBlobs::open(&dir.path().join("blobs")).unwrap());
        let now = 1_000 * 3_600_000;
        let mut history: Vec<_> = (1..=TALLY_SCAN_CAP as u64)
            .map(|seq| {
                let mut e = event(seq, "old-device", Some("e"), seq);
                e.status = DriftEventStatus::Rejected;
                e
            })
            .collect();
        let mut new = event(0, "new-device", Some("e"), 1);
        new.event_seq = 1;
        (new.unix_ms, new.received_unix_ms) = (now - 1_000, now - 1_000);
        history.push(new);
        tracking.put_drift_events(&history).unwrap();
        let sphere = Sphere::new(tracking, blobs);

        let (tallies, complete) = sphere.drift_tallies(now).unwrap();
        let t = &tallies["new-device"];
        assert_eq!((t.pending, t.open_incidents), (1, 1), "{t:?}");
        assert_eq!(t.per_hour[TREND_HOURS - 1], 1);
        assert!(!complete, "the all-time total was cut at the cap");
        assert_eq!(tallies["old-device"].pending, 0);
    }

    /// Fails before this change: the package listing's cursor was a bare package id, which
    /// cannot say where a newest-first page ended.
    #[test]
    fn package_cursors_round_trip_and_refuse_anything_else() {
        let record = crate::ports::PackageRecord {
            device_id: "dev-1".into(),
            package_id: "a-b_c".into(),
            raw_key: "incoming/dev-1/a-b_c.tar".into(),
            accepted_unix_ms: 1_764_147_600_123,
            processed_unix_ms: None,
            failed: None,
            problems: vec![],
        };
        let cursor = package_cursor(&record);
        assert_eq!(cursor, "1764147600123.a-b_c");
        assert_eq!(
            parse_package_cursor(&cursor),
            Some((1_764_147_600_123, "a-b_c".into()))
        );
        for bad in [
            "a-b_c",
            ".a",
            "12.",
            "x1.a",
            "1.a/b",
            "1.a.b",
            "99999999999999999999999.a",
        ] {
            assert_eq!(parse_package_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_trend_has_one_bucket_per_hour_up_to_now() {
        let now = 100 * 3_600_000;
        assert_eq!(trend_bucket(now, now), Some(TREND_HOURS - 1));
        assert_eq!(trend_bucket(now - 3_600_000, now), Some(TREND_HOURS - 2));
        assert_eq!(trend_bucket(now - 24 * 3_600_000 + 1, now), Some(0));
        assert_eq!(trend_bucket(now - 24 * 3_600_000, now), None);
        assert_eq!(trend_bucket(now + 1, now), None);
    }

    #[test]
    fn only_images_of_processed_packages_are_image_keys() {
        assert!(is_image_key("devices/dev-1/packages/p/s/a.jpg"));
        assert!(is_image_key("devices/dev-1/packages/p/a.PNG"));
        for other in [
            "incoming/dev-1/p.tar",
            "devices/dev-1/packages/p/metrics.json",
            "devices/dev-1/other/p/a.jpg",
            "devices/dev-1/packages/a.jpg",
            "x/devices/dev-1/packages/p/a.jpg",
        ] {
            assert!(!is_image_key(other), "{other}");
        }
    }
}
