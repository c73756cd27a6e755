//! Processing accepted packages: unpack each into per-file blobs and index what it carries,
//! in batches.
//!
//! Why batches: everything processing writes can be made again from the package's raw TAR,
//! which is durable since the upload was answered. So a batch of pending packages is written
//! without a flush per blob; then one [`crate::ports::Blobs::sync`] makes all the batch's
//! blobs durable, and only after it one tracking commit
//! ([`crate::ports::PackageStore::record_processed`]) stores the batch's prediction index,
//! drift and learning events, metric points and processed marks together. A crash anywhere
//! before that commit leaves the batch pending, and it is processed again (at the next start
//! at the latest, [`Sphere::process_pending`]): every part is keyed so a re-run stores
//! nothing twice. A store without a batch commit gets each part through its own method, in
//! the same order, one package after the other.
//!
//! Why a batch's packages are unpacked a few at once ([`crate::parallel`]): on MLflow + S3
//! each package is a handful of round trips (its TAR read, its files written); one after the
//! other, with MLflow and S3 5 ms away, they held processing to 26.6 packages/s, and a few at
//! once it passed 62 (`REPLICAS_DELAY_MS=5 cargo bench --bench replicas`). One device's
//! packages are unpacked by one thread in their order, so a drift event sent again keeps the
//! first embedding written and the device's report folds its packages as before.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tinylcm_protocol::package::{Limits, PackageError, read_package};

use super::ingest::{file_keys, raw_key, refused};
use super::reported::{Reported, Said};
use super::{Change, DomainError, Sphere, now_unix_ms};
use crate::ports::{BlobKey, PackageRecord, ProcessedPackage, StoreError};

/// Largest stored package processing reads whatever the upload cap is now: packages accepted
/// under a higher cap set before stay readable.
const STORED_PACKAGE_BYTES: u64 = 1 << 30;

/// Most packages processed in one batch (one sync, one commit): enough to make a flush
/// cheap per package, few enough that the dashboard sees new packages within a moment.
/// Why this many: a package's ~150 metric points each go to their own (device, key) series,
/// so a batch dirties about one database page per series it touches whatever the number of
/// packages; measured with `perf` under `cargo bench --bench ingest`, writing those pages was
/// most of processing's time at 64, and a batch this large takes several packages of each
/// device of a storm into one commit.
pub const PROCESS_BATCH: usize = 512;

/// Uploads accepted within this long count as a storm in progress: processing waits
/// ([`Sphere::processing_wait`]).
pub const UPLOADS_QUIET: Duration = Duration::from_millis(50);

/// Longest processing waits for a storm of uploads to pass before it runs a batch anyway, so
/// a storm that never ends still has its packages processed (one batch per this long).
pub const PROCESSING_WAIT_MAX: Duration = Duration::from_secs(1);

/// Most records of packages this process accepted that it keeps for their processing
/// ([`UploadActivity::note`]); beyond, processing reads the record from the store.
const ACCEPTED_KEPT: usize = 4096;

/// When an upload was last accepted (see [`Sphere::processing_wait`]), and the records of
/// those accepted and not processed yet.
///
/// Why keep the records: processing needs a package's record (its acceptance time, whether
/// it is done), and this process has just written it; on MLflow + S3 reading it back is a GET
/// per package. A kept record is used once, by whichever processing comes first, and then
/// forgotten; a package queued here that another replica processed meanwhile (it waited past
/// the stale age) is processed again, which stores nothing twice.
pub(crate) struct UploadActivity {
    start: Instant,
    /// Milliseconds after `start` of the last accepted upload, plus one (0: none yet).
    last_ms: AtomicU64,
    /// Records of accepted packages waiting for processing, by (device, package).
    accepted: Mutex<HashMap<(String, String), PackageRecord>>,
}

impl Default for UploadActivity {
    fn default() -> Self {
        UploadActivity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            accepted: Mutex::default(),
        }
    }
}

impl UploadActivity {
    /// `record` was accepted now.
    pub(crate) fn note(&self, record: &PackageRecord) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms.saturating_add(1), Ordering::Relaxed);
        let mut accepted = self.kept();
        if accepted.len() < ACCEPTED_KEPT {
            let id = (record.device_id.clone(), record.package_id.clone());
            accepted.insert(id, record.clone());
        }
    }

    /// The kept record of (device, package), forgotten now.
    fn take(&self, device: &str, package: &str) -> Option<PackageRecord> {
        self.kept().remove(&(device.to_owned(), package.to_owned()))
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), PackageRecord>> {
        // A panic elsewhere cannot leave the map half-changed: every change is one call.
        self.accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long ago the last upload was accepted (`None`: none yet).
    fn since_last(&self) -> Option<Duration> {
        let last = self.last_ms.load(Ordering::Relaxed).checked_sub(1)?;
        Some(
            self.start
                .elapsed()
                .saturating_sub(Duration::from_millis(last)),
        )
    }
}

/// What a batch has written so far, before its sync and commit.
#[derive(Default)]
struct Batch {
    /// Blobs written unsynced.
    written: Vec<BlobKey>,
    /// What each prepared package adds to the tracking store.
    done: Vec<ProcessedPackage>,
    /// Files per prepared package (for the log line).
    files: Vec<usize>,
    /// Per device, its report as read at the batch's start and as folded since.
    reports: BTreeMap<String, (Reported, Reported)>,
}

impl Batch {
    /// Add one device's prepared packages.
    fn add(&mut self, device: DevicePrepared) {
        if let Some((device_id, report)) = device.report {
            self.reports.insert(device_id, report);
        }
        for prepared in device.packages {
            self.written.extend(prepared.written);
            self.files.push(prepared.files);
            self.done.push(prepared.done);
        }
    }
}

/// One package unpacked, its blobs written unsynced ([`Sphere::prepare`]).
struct Prepared {
    /// What it adds to the tracking store.
    done: ProcessedPackage,
    /// The blobs it wrote.
    written: Vec<BlobKey>,
    /// How many files it held (for the log line).
    files: usize,
    /// What it says of its device (`None`: it failed for good).
    said: Option<Said>,
}

/// One device's packages of a batch, prepared one after the other.
#[derive(Default)]
struct DevicePrepared {
    /// The device's report as read before its first package and as folded since.
    report: Option<(String, (Reported, Reported))>,
    /// Its packages prepared.
    packages: Vec<Prepared>,
    /// Its packages whose preparation failed on storage (left pending): ids and error.
    failed: Vec<(String, String, DomainError)>,
}

impl Sphere {
    /// Unpack an accepted package into per-file blobs and mark it processed. A package whose
    /// raw TAR is missing or no longer parses is marked failed (kept for inspection); a store
    /// failure leaves it pending for the next attempt.
    pub fn process(&self, device_id: &str, package_id: &str) -> Result<(), DomainError> {
        self.process_batch(&[(device_id.to_owned(), package_id.to_owned())])
            .map(drop)
    }

    /// [`Sphere::process`] for several packages at once (see the module documentation):
    /// how many were processed or marked failed. Packages unknown or processed already are
    /// skipped. A package whose processing failed on storage stays pending while the others
    /// are committed, and the first such error is returned after them.
    pub fn process_batch(&self, jobs: &[(String, String)]) -> Result<usize, DomainError> {
        let jobs: Vec<Job<'_>> = jobs.iter().map(|(d, p)| Job::Ids(d, p)).collect();
        let (done, error) = self.process_jobs(&jobs);
        error.map_or(Ok(done), Err)
    }

    /// [`Sphere::process_batch`]: how many were processed or marked failed, and the first
    /// error.
    fn process_jobs(&self, jobs: &[Job<'_>]) -> (usize, Option<DomainError>) {
        let devices = match crate::parallel::map(&by_device(jobs), |jobs| self.prepare_device(jobs))
        {
            Ok(devices) => devices,
            Err(crate::parallel::Panicked) => {
                tracing::error!(
                    packages = jobs.len(),
                    "processing a batch panicked; left pending"
                );
                return (
                    0,
                    Some(StoreError::new("processing", "a processing thread panicked").into()),
                );
            }
        };
        let mut batch = Batch::default();
        let mut first_error = None;
        for mut device in devices {
            for (device, package, e) in device.failed.drain(..) {
                tracing::error!(device = %device, package = %package, error = %e, "processing failed; left pending");
                first_error.get_or_insert(e);
            }
            batch.add(device);
        }
        if batch.done.is_empty() {
            return (0, first_error);
        }
        match self.commit_processed(&mut batch) {
            Ok(()) => (batch.done.len(), first_error),
            Err(e) => {
                tracing::error!(packages = batch.done.len(), error = %e, "processing a batch failed; left pending");
                (0, Some(e))
            }
        }
    }

    /// Prepare one device's `jobs` in their order, folding each into the device's report
    /// (read before its first package).
    fn prepare_device(&self, jobs: &[&Job<'_>]) -> DevicePrepared {
        let mut out = DevicePrepared::default();
        for job in jobs {
            let (device_id, package_id) = job.ids();
            match self
                .prepare(job)
                .and_then(|p| self.fold_report(device_id, p, &mut out))
            {
                Ok(Some(prepared)) => out.packages.push(prepared),
                Ok(None) => {}
                Err(e) => out
                    .failed
                    .push((device_id.to_owned(), package_id.to_owned(), e)),
            }
        }
        out
    }

    /// Fold what `prepared` says of its device into the device's report in `out`.
    fn fold_report(
        &self,
        device_id: &str,
        prepared: Option<Prepared>,
        out: &mut DevicePrepared,
    ) -> Result<Option<Prepared>, DomainError> {
        let Some(mut prepared) = prepared else {
            return Ok(None);
        };
        let Some(said) = prepared.said.take() else {
            return Ok(Some(prepared));
        };
        if out.report.is_none() {
            let reported = self.reported(device_id)?;
            out.report = Some((device_id.to_owned(), (reported.clone(), reported)));
        }
        if let Some((_, (_, report))) = &mut out.report {
            let points = prepared.done.metrics.as_ref().map_or(&[][..], |(_, p)| p);
            report.note_said(said, prepared.done.accepted_unix_ms, points);
        }
        Ok(Some(prepared))
    }

    /// Write the batch's device reports, make its blobs durable, then commit what it adds to
    /// the tracking store.
    fn commit_processed(&self, batch: &mut Batch) -> Result<(), DomainError> {
        let changed: Vec<(&String, &Reported)> = batch
            .reports
            .iter()
            .filter(|(_, (before, after))| after != before)
            .map(|(device, (_, after))| (device, after))
            .collect();
        let keys = crate::parallel::map(&changed, |(device, after)| {
            self.put_reported_unsynced(device, after)
        })
        .map_err(|crate::parallel::Panicked| StoreError::new("blobs", "a report write panicked"))?;
        for key in keys {
            batch.written.push(key?);
        }
        self.blobs.sync(&batch.written)?;
        let new_events = match self.tracking.record_processed(&batch.done)? {
            Some(new) => new,
            None => batch
                .done
                .iter()
                .map(|done| self.record_processed_parts(done))
                .collect::<Result<_, _>>()?,
        };
        let mut devices = HashSet::new();
        for ((done, new), files) in batch.done.iter().zip(new_events).zip(&batch.files) {
            if done.failed.is_none() {
                tracing::info!(
                    device = %done.device_id, package = %done.package_id, files,
                    drift_events = new,
                    metrics = done.metrics.as_ref().map_or(0, |(_, p)| p.len()),
                    problems = done.problems.len(),
                    "package processed"
                );
            }
            devices.insert(done.device_id.as_str());
        }
        for device in devices {
            self.notify(Change::Package {
                device: device.to_owned(),
            });
        }
        Ok(())
    }

    /// Store `done` through each aggregate's own method (a store without a batch commit);
    /// how many of its drift events were new.
    fn record_processed_parts(&self, done: &ProcessedPackage) -> Result<usize, StoreError> {
        self.tracking.put_predictions(&done.predictions)?;
        let new = self.tracking.put_drift_events(&done.drift_events)?;
        if !done.learning_events.is_empty() {
            self.tracking.put_learning_events(&done.learning_events)?;
        }
        if let Some((at, points)) = &done.metrics {
            self.tracking
                .put_metrics(&done.device_id, &done.package_id, *at, points)?;
        }
        self.tracking.mark_processed(
            &done.device_id,
            &done.package_id,
            done.processed_unix_ms,
            done.failed.clone(),
            &done.problems,
        )?;
        Ok(new)
    }

    /// Unpack one pending package: write its blobs unsynced and note what it adds to the
    /// tracking store; `None` for a package unknown or processed already. Its record is the
    /// job's, or the one this process kept when it accepted the package, or else read from
    /// the store.
    fn prepare(&self, job: &Job<'_>) -> Result<Option<Prepared>, DomainError> {
        let (device_id, package_id) = job.ids();
        let kept = self.uploads.take(device_id, package_id);
        let record = match job {
            Job::Record(record) => Some((*record).clone()),
            Job::Ids(..) => match kept {
                Some(record) => Some(record),
                None => self.tracking.package(device_id, package_id)?,
            },
        };
        let Some(record) = record else {
            return Ok(None);
        };
        if record.processed_unix_ms.is_some() {
            return Ok(None);
        }
        let fail = |reason: String| {
            tracing::error!(device = %device_id, package = %package_id, %reason, "package processing failed");
            Ok(Some(Prepared {
                done: processed(&record, Some(reason), Vec::new()),
                written: Vec::new(),
                files: 0,
                said: None,
            }))
        };
        let raw = raw_key(device_id, package_id)?;
        // Streamed from the store: the raw TAR is never held beside the files it holds.
        let Some(stream) = self.blobs.open(&raw, 0, None)? else {
            return fail("raw package blob is missing".into());
        };
        // Accepted under the cap in force then; a lower cap set since must not fail it now
        // (the members stay bounded by the per-member and member-count limits).
        let limits = Limits {
            max_package_bytes: self.max_upload_bytes().max(STORED_PACKAGE_BYTES),
            ..self.limits()
        };
        let package = match read_package(std::io::BufReader::new(stream), &limits) {
            Ok(p) => p,
            // The store failed while streaming: a retry may work, so it stays pending.
            Err(PackageError::Read { source }) => {
                return Err(DomainError::Store(StoreError::new(
                    "blobs",
                    format!("read {raw}: {source}"),
                )));
            }
            Err(e) => return fail(refused(e).to_string()),
        };
        let keys = match file_keys(&package.manifest) {
            Ok(k) => k,
            Err(e) => return fail(e.to_string()),
        };
        let mut written = Vec::with_capacity(keys.len() + 1);
        let mut bytes = 0u64;
        for (key, (_, content)) in keys.iter().zip(&package.files) {
            self.blobs.put_unsynced(key, content)?;
            written.push(key.clone());
            bytes += content.len() as u64;
        }
        // After the writes: a quota listing running meanwhile either saw them or is followed
        // by this count.
        self.admission.note_written(device_id, bytes);
        // Drift events after their samples are stored (an event never points at a missing
        // blob: the batch's blobs are synced before its commit), keyed by device and event_seq
        // so a re-run stores nothing twice.
        let drift = super::drift::events_of(&package, now_unix_ms());
        // Data Hub parts (embeddings, log index, prediction index) likewise before the events,
        // so an event never lists an embedding that is not there.
        let mut problems = drift.problems;
        let (predictions, datahub_problems) =
            self.store_datahub(&package, &drift.embeddings, &drift.events, &mut written)?;
        problems.extend(datahub_problems);
        // Metric points keyed by (device, key, time, package): a re-run stores the same points.
        let (points, metric_problems) = super::metrics::metrics_of(&package);
        problems.extend(metric_problems);
        // What the device learnt (its timeline): keyed by (device, epoch, event_seq).
        let learning = super::learning::learning_of(&package, now_unix_ms());
        problems.extend(learning.problems);
        for problem in &problems {
            tracing::warn!(device = %device_id, package = %package_id, %problem, "package problem");
        }
        let mut done = processed(&record, None, problems);
        done.predictions = predictions;
        done.drift_events = drift.events;
        done.learning_events = learning.events;
        if !points.is_empty() {
            let at = super::metrics::point_time(
                package.manifest.created_unix_ms,
                record.accepted_unix_ms,
            );
            done.metrics = Some((at, points));
        }
        Ok(Some(Prepared {
            done,
            written,
            files: keys.len(),
            // What the device says of itself (model, interval, figures) for the fleet page.
            said: Some(Said::of(&package)),
        }))
    }

    /// How much longer background processing should wait before its next batch, having
    /// waited `waited` already; `None`: run it now.
    ///
    /// Why: accepting an upload and processing one both commit to the tracking store, which
    /// takes one writer at a time, and a batch's commit (its metric points above all) holds it
    /// far longer than a group of accepts does. Measured with `cargo bench --bench ingest`
    /// (16 devices at once): with processing running beside the storm, uploads were accepted
    /// at a fraction of the rate they were without it, waiting behind processing's commits.
    /// So while uploads are arriving ([`UPLOADS_QUIET`]) processing waits, at most
    /// [`PROCESSING_WAIT_MAX`], and catches up once the storm has passed. The 200 still comes
    /// only after the raw TAR and its record are durable; only unpacking waits. Stores whose
    /// commits do not queue behind one writer (MLflow) never wait.
    pub fn processing_wait(&self, waited: Duration) -> Option<Duration> {
        if !self.tracking.commits_in_groups() {
            return None;
        }
        let since = self.uploads.since_last()?;
        if since >= UPLOADS_QUIET || waited >= PROCESSING_WAIT_MAX {
            return None;
        }
        Some((UPLOADS_QUIET - since).min(PROCESSING_WAIT_MAX - waited))
    }

    /// How many accepted packages are not processed yet.
    pub fn pending_count(&self) -> Result<usize, DomainError> {
        Ok(self.tracking.unprocessed_count()?)
    }

    /// Process every accepted-but-unprocessed package (at startup, after a crash), in batches
    /// of [`PROCESS_BATCH`]. Returns how many were processed; failures are logged and left
    /// pending for the next sweep or start.
    pub fn process_pending(&self) -> Result<usize, DomainError> {
        let pending = self.tracking.unprocessed()?;
        Ok(self.process_records(&pending))
    }

    /// Process the packages accepted at least `age_ms` before `now_ms` and still pending.
    /// With replicas, the one that accepted a package processes it within moments; one still
    /// pending after `age_ms` was left by a replica that stopped in between, and any other
    /// replica finishes it (processing twice stores nothing twice). Returns how many were
    /// processed.
    pub fn process_stale_pending(&self, age_ms: u64, now_ms: u64) -> Result<usize, DomainError> {
        // Only the stale ones' records are read (on MLflow + S3 a GET each), not every young
        // one's that the replica which accepted it is about to process.
        let stale = self
            .tracking
            .unprocessed_accepted_by(now_ms.saturating_sub(age_ms))?;
        Ok(self.process_records(&stale))
    }

    /// Whether another process may write the same stores (replicas on MLflow + S3): then
    /// packages one of them left pending are found by [`Sphere::process_stale_pending`].
    pub fn shares_its_stores(&self) -> bool {
        !self.tracking.sole_writer()
    }

    /// Process `pending` in batches; failures are logged and left pending.
    fn process_records(&self, pending: &[PackageRecord]) -> usize {
        let mut done = 0;
        for chunk in pending.chunks(PROCESS_BATCH) {
            // The records as listed: read again, they would cost a request each on MLflow + S3.
            let jobs: Vec<Job<'_>> = chunk.iter().map(Job::Record).collect();
            let (n, error) = self.process_jobs(&jobs);
            done += n;
            if let Some(e) = error {
                tracing::error!(
                    error = %e,
                    "pending packages not all processed; left pending for the next retry"
                );
            }
        }
        done
    }
}

/// A package to process.
enum Job<'a> {
    /// By its ids: its record is the one this process kept at acceptance, or read.
    Ids(&'a str, &'a str),
    /// With its record as a listing of the pending packages gave it.
    Record(&'a PackageRecord),
}

impl Job<'_> {
    /// (device, package).
    fn ids(&self) -> (&str, &str) {
        match self {
            Job::Ids(device, package) => (device, package),
            Job::Record(r) => (&r.device_id, &r.package_id),
        }
    }
}

/// `jobs` by device, each device's in their order, without repeats of a (device, package).
fn by_device<'j, 'a>(jobs: &'j [Job<'a>]) -> Vec<Vec<&'j Job<'a>>> {
    let mut seen = HashSet::new();
    let mut devices: Vec<Vec<&Job<'_>>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for job in jobs {
        let (device, package) = job.ids();
        if !seen.insert((device, package)) {
            continue;
        }
        let at = *index.entry(device).or_insert_with(|| {
            devices.push(Vec::new());
            devices.len() - 1
        });
        devices[at].push(job);
    }
    devices
}

/// The mark of `record` as processed now (failed for good when `failed` is given), with
/// nothing else stored yet.
fn processed(
    record: &PackageRecord,
    failed: Option<String>,
    problems: Vec<String>,
) -> ProcessedPackage {
    ProcessedPackage {
        device_id: record.device_id.clone(),
        package_id: record.package_id.clone(),
        raw_key: record.raw_key.clone(),
        accepted_unix_ms: record.accepted_unix_ms,
        processed_unix_ms: now_unix_ms(),
        failed,
        problems,
        predictions: Vec::new(),
        drift_events: Vec::new(),
        learning_events: Vec::new(),
        metrics: None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::Duration;

    use crate::adapters::{DirBlobs, RedbTracking};
    use crate::domain::Sphere;
    use crate::ports::prelude::*;
    use crate::ports::{BlobKey, BlobStream, Blobs, PackageRecord, StoreError};

    fn accepted(package_id: &str, accepted_unix_ms: u64) -> PackageRecord {
        PackageRecord {
            device_id: "d".into(),
            package_id: package_id.into(),
            raw_key: format!("incoming/d/{package_id}.tar"),
            accepted_unix_ms,
            processed_unix_ms: None,
            failed: None,
            problems: vec![],
        }
    }

    /// Processing waits while uploads are being accepted, never longer than the bound, and
    /// not at all before any upload.
    #[test]
    fn processing_waits_for_a_storm_of_uploads_at_most_the_bound() {
        use super::{PROCESSING_WAIT_MAX, UPLOADS_QUIET};
        use tinylcm_protocol::package::{FileKind, PackageBuilder};

        let dir = tempfile::tempdir().unwrap();
        let tracking = Arc::new(RedbTracking::open(&dir.path().join("s.redb")).unwrap());
        let blobs = Arc::new(DirBlobs::open(&dir.path().join("blobs")).unwrap());
        let sphere = Sphere::new(tracking, blobs);
        assert_eq!(
            sphere.processing_wait(Duration::ZERO),
            None,
            "no upload yet"
        );
        let device = crate::test_support::enrolled(&sphere, None).device_id;
        // Right after an accept processing waits; a stall of the test thread longer than
        // UPLOADS_QUIET between the two calls could hide it once, not ten times.
        let waited_once = (0..10).any(|n| {
            let mut b = PackageBuilder::new(format!("p{n}"), device.as_str(), 1).unwrap();
            b.add("m.json", FileKind::Metrics, b"{}".to_vec()).unwrap();
            sphere.accept_upload(&device, &b.finish().unwrap()).unwrap();
            sphere
                .processing_wait(Duration::ZERO)
                .is_some_and(|wait| wait > Duration::ZERO && wait <= UPLOADS_QUIET)
        });
        assert!(waited_once, "processing never waited for the uploads");
        assert_eq!(sphere.processing_wait(PROCESSING_WAIT_MAX), None, "bounded");
    }

    /// Local blobs that note how many raw packages are being read at once, in all and per
    /// device; a read waits (at most 2 s) until another is in progress, so reads one after
    /// the other show as one at a time.
    struct Overlap {
        inner: DirBlobs,
        reading: Mutex<HashMap<String, usize>>,
        changed: Condvar,
        most_at_once: AtomicUsize,
        most_of_one_device: AtomicUsize,
    }

    impl Blobs for Overlap {
        fn put(&self, key: &BlobKey, bytes: &[u8]) -> Result<(), StoreError> {
            self.inner.put(key, bytes)
        }
        fn get(&self, key: &BlobKey) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(key)
        }
        fn list(&self, prefix: &str) -> Result<Vec<BlobKey>, StoreError> {
            self.inner.list(prefix)
        }
        fn delete(&self, key: &BlobKey) -> Result<(), StoreError> {
            self.inner.delete(key)
        }
        fn presigned_get(
            &self,
            key: &BlobKey,
            expiry: Duration,
        ) -> Result<Option<String>, StoreError> {
            self.inner.presigned_get(key, expiry)
        }
        fn open(
            &self,
            key: &BlobKey,
            start: u64,
            len: Option<u64>,
        ) -> Result<Option<BlobStream>, StoreError> {
            let device = key
                .as_str()
                .split('/')
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            let mut reading = self.reading.lock().unwrap();
            *reading.entry(device.clone()).or_default() += 1;
            self.most_of_one_device
                .fetch_max(reading[&device], Ordering::SeqCst);
            self.changed.notify_all();
            let (mut reading, _) = self
                .changed
                .wait_timeout_while(reading, Duration::from_secs(2), |r| {
                    r.values().sum::<usize>() < 2
                })
                .unwrap();
            self.most_at_once
                .fetch_max(reading.values().sum(), Ordering::SeqCst);
            let stream = self.inner.open(key, start, len);
            *reading.get_mut(&device).unwrap() -= 1;
            stream
        }
    }

    /// A batch's packages are read a few at once (on MLflow + S3 each read is a round trip),
    /// one device's one after the other in their order, and every one is processed.
    #[test]
    fn a_batch_reads_several_devices_packages_at_once_and_each_devices_in_order() {
        use tinylcm_protocol::package::{FileKind, PackageBuilder};

        let dir = tempfile::tempdir().unwrap();
        let tracking = Arc::new(RedbTracking::open(&dir.path().join("s.redb")).unwrap());
        let blobs = Arc::new(Overlap {
            inner: DirBlobs::open(&dir.path().join("blobs")).unwrap(),
            reading: Mutex::default(),
            changed: Condvar::new(),
            most_at_once: AtomicUsize::new(0),
            most_of_one_device: AtomicUsize::new(0),
        });
        let sphere = Sphere::new(tracking.clone(), blobs.clone());
        let devices: Vec<String> = (0..3)
            .map(|_| crate::test_support::enrolled(&sphere, None).device_id)
            .collect();
        for device in &devices {
            for n in 0..2 {
                let mut b = PackageBuilder::new(format!("p{n}"), device.as_str(), 1).unwrap();
                b.add("m.json", FileKind::Metrics, b"{}".to_vec()).unwrap();
                sphere.accept_upload(device, &b.finish().unwrap()).unwrap();
            }
        }

        assert_eq!(sphere.process_pending().unwrap(), 6);
        assert!(tracking.unprocessed().unwrap().is_empty());
        assert!(
            blobs.most_at_once.load(Ordering::SeqCst) >= 2,
            "packages were read one after the other"
        );
        assert_eq!(blobs.most_of_one_device.load(Ordering::SeqCst), 1);
        for device in &devices {
            let reported = sphere.reported(device).unwrap();
            assert!(
                !reported.packages_unix_ms.is_empty(),
                "{device}'s report was not folded"
            );
        }
    }

    #[test]
    fn the_stale_sweep_takes_only_packages_pending_longer_than_the_age() {
        let dir = tempfile::tempdir().unwrap();
        let tracking = Arc::new(RedbTracking::open(&dir.path().join("s.redb")).unwrap());
        let blobs = Arc::new(DirBlobs::open(&dir.path().join("blobs")).unwrap());
        let sphere = Sphere::new(tracking.clone(), blobs);
        tracking.record_accepted(&accepted("old", 1_000)).unwrap();
        tracking
            .record_accepted(&accepted("young", 100_000))
            .unwrap();

        // At 70 s, only the package accepted 69 s ago is past a 60 s age.
        assert_eq!(sphere.process_stale_pending(60_000, 70_000).unwrap(), 1);
        let left: Vec<_> = tracking
            .unprocessed()
            .unwrap()
            .into_iter()
            .map(|r| r.package_id)
            .collect();
        assert_eq!(left, ["young"]);
        assert!(
            tracking
                .package("d", "old")
                .unwrap()
                .unwrap()
                .processed_unix_ms
                .is_some(),
            "the stale package is done (marked failed: its raw TAR is missing)"
        );
        assert_eq!(sphere.process_stale_pending(60_000, 160_000).unwrap(), 1);
        assert!(tracking.unprocessed().unwrap().is_empty());
        // The embedded store is one process's alone: no replica can leave packages behind.
        assert!(!sphere.shares_its_stores());
    }
}
