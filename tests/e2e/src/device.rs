//! A device's state folder as the runtime lays it out (state database, quarantine thumbnails,
//! inbox), drift events written as the autonomy layer writes them, and the sync setup for it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tinylcm::autonomy::{EventKind, RuntimeEvent};
use tinylcm::drift::{DetectorKind, DriftEvent};
use tinylcm::quarantine::{ENTRY_VERSION, Entry, Reason, Status, thumbnail_name};
use tinylcm::state::{Batch, DurabilityPolicy, Store};
use tinylcm::sync::collect::Sources;
use tinylcm::sync::{SyncConfig, SyncSetup};

/// Paths of a device state folder.
#[derive(Debug, Clone)]
pub struct Device {
    /// The folder.
    pub dir: PathBuf,
}

impl Device {
    /// The device in `dir`.
    pub fn new(dir: &Path) -> Device {
        std::fs::create_dir_all(dir).unwrap();
        Device {
            dir: dir.to_path_buf(),
        }
    }

    /// The database file.
    pub fn db(&self) -> PathBuf {
        self.dir.join("state.redb")
    }

    /// The quarantine thumbnail folder.
    pub fn thumbnails(&self) -> PathBuf {
        self.dir.join("quarantine")
    }

    /// The feedback inbox.
    pub fn inbox(&self) -> PathBuf {
        tinylcm::autonomy::feedback::inbox_dir(&self.db())
    }

    /// Opens the store with a short commit interval.
    pub fn open_store(&self) -> Arc<Store> {
        let policy = DurabilityPolicy {
            commit_interval: Duration::from_millis(100),
            ..Default::default()
        };
        Arc::new(Store::open(self.db(), policy).unwrap())
    }

    /// A sync setup for `server`, enrolling with `key` (written to a key file), rounds every
    /// second, backoff capped at `max_backoff` seconds.
    pub fn setup(&self, server: &str, key: &str, max_backoff: u64) -> SyncSetup {
        let key_file = self.dir.join("enroll.key");
        std::fs::write(&key_file, format!("{key}\n")).unwrap();
        SyncSetup {
            config: SyncConfig {
                server: Some(server.to_string()),
                enrollment_key_file: Some(key_file),
                interval_seconds: 1,
                max_backoff_seconds: max_backoff,
                connect_timeout_seconds: 2,
                request_timeout_seconds: 10,
                ..Default::default()
            },
            state_dir: self.dir.clone(),
            disk_guard: None,
            sources: Sources {
                status_file: None,
                thumbnail_dir: Some(self.thumbnails()),
                snapshots_dir: Some(self.dir.join("snapshots")),
                log_dir: None,
            },
            first_round_delay: Duration::ZERO,
        }
    }

    /// The device id once enrolled.
    pub fn device_id(&self) -> Option<String> {
        enrolled(&self.dir).map(|c| c.device_id)
    }

    /// The device token once enrolled.
    pub fn token(&self) -> Option<String> {
        enrolled(&self.dir).map(|c| c.token)
    }
}

/// The credentials a device with its state in `dir` enrolled with, once it has.
pub fn enrolled(dir: &std::path::Path) -> Option<tinylcm::sync::Credentials> {
    tinylcm::sync::Credentials::load(dir).ok().flatten()
}

/// A small JPEG, different per `seed`.
pub fn jpeg(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(16, 16, |x, y| {
        image::Rgb([seed, (x * 16) as u8, (y * 16) as u8])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&img)
        .unwrap();
    out
}

/// Appends a drift onset for frame `sample` to the event log, with a quarantine entry `qid`
/// of that frame and its thumbnail, as the autonomy layer and the quarantine do; returns the
/// event's sequence number.
pub fn add_drift(store: &Store, device: &Device, incident: u64, sample: u64, qid: u64) -> u64 {
    add_drift_with_thumbnail(store, device, incident, sample, qid, jpeg(qid as u8))
}

/// [`add_drift`] with `thumbnail` as the frame's thumbnail (written before the event is
/// logged, so no sync round can package the event without it).
pub fn add_drift_with_thumbnail(
    store: &Store,
    device: &Device,
    incident: u64,
    sample: u64,
    qid: u64,
    thumbnail: Vec<u8>,
) -> u64 {
    let event = RuntimeEvent {
        unix_ms: tinylcm::utc::now_unix_ms(),
        kind: EventKind::Drift {
            incident,
            event: DriftEvent {
                detector: DetectorKind::PageHinkleyDistance,
                statistic: 12.5,
                threshold: 10.0,
                magnitude: 2.0,
                sample_id: sample,
                at: sample,
            },
        },
    };
    let entry = Entry {
        version: ENTRY_VERSION,
        id: qid,
        created_unix_ms: tinylcm::utc::now_unix_ms(),
        sample,
        reason: Reason::Drift {
            detector: "page-hinkley-distance".into(),
        },
        predicted: "circle".into(),
        confidence: 0.4,
        knn_distance: Some(1.5),
        features: vec![0.25; 8],
        status: Status::Pending,
        thumbnail: Some(thumbnail_name(qid)),
        review_since_unix_ms: None,
    };
    std::fs::create_dir_all(device.thumbnails()).unwrap();
    std::fs::write(device.thumbnails().join(thumbnail_name(qid)), thumbnail).unwrap();
    let mut b = Batch::new();
    b.append_event(&event).unwrap();
    b.put_quarantine(qid, &entry).unwrap();
    let r = store.submit(b).unwrap();
    r.first_event
}
