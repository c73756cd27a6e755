//! [`SyncClient`]: the sync thread and its rounds (package → upload → pull), with backoff.
//!
//! One thread runs a tokio current-thread runtime; the state store calls it makes are
//! synchronous and never interrupted, so a stop can only cut a round at a network wait, where
//! nothing is half-written: a package confirmed by the server but not yet deleted is sent
//! again next time and answered `duplicate`.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::backoff::Backoff;
use super::collect::{self, Sources};
use super::config::SyncConfig;
use super::credentials::{self, Credentials};
use super::error::{RoundError, SyncError};
use super::host::SyncHost;
use super::http;
use super::outbox::{
    DROPPED_COUNTER, DUPLICATE_COUNTER, Limits, Outbox, REJECTED_COUNTER, UPLOADED_COUNTER,
};
use super::predictions::PredictionSampler;
use super::pull;
use super::results;
use super::status::{SyncStatus, SyncStatusView};
use super::upload::{self, Verdict};
use crate::state::Store;

/// How long [`SyncClient::stop`] waits for the thread.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Rejected packages kept for inspection.
const MAX_REJECTED_FILES: usize = 16;

/// Everything the client needs besides the store and the host.
#[derive(Debug, Clone)]
pub struct SyncSetup {
    /// `[sync]`.
    pub config: SyncConfig,
    /// The folder of the state database (credentials, downloads, logs, rejected packages).
    pub state_dir: PathBuf,
    /// Where package data comes from.
    pub sources: Sources,
    /// Delay before the first round (default: none).
    pub first_round_delay: Duration,
    /// Free space kept on the data partition (`[board] min-free-mib`): a package that would
    /// eat into it is not queued; its data waits in the state database for a later round.
    pub disk_guard: Option<crate::board::DiskGuard>,
}

impl SyncSetup {
    /// The setup a running service uses, from its whole configuration.
    pub fn from_config(config: &crate::config::Config) -> SyncSetup {
        let state_dir = config
            .state
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), PathBuf::from);
        let sources = Sources {
            status_file: config.status.enabled.then(|| config.status.path.clone()),
            thumbnail_dir: config
                .quarantine
                .thumbnails
                .then(|| config.quarantine.thumbnail_dir.clone()),
            snapshots_dir: Some(config.state.snapshots.clone()),
            log_dir: config.sync.logs.then(|| super::logs::log_dir(&state_dir)),
        };
        SyncSetup {
            config: config.sync.clone(),
            disk_guard: Some(config.board.disk_guard(state_dir.clone())),
            state_dir,
            sources,
            first_round_delay: Duration::ZERO,
        }
    }
}

/// The running sync client.
pub struct SyncClient {
    stop: Arc<tokio::sync::Notify>,
    thread: Option<JoinHandle<()>>,
    done: std::sync::mpsc::Receiver<()>,
    status: Arc<SyncStatus>,
    sampler: PredictionSampler,
}

impl std::fmt::Debug for SyncClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncClient")
            .field("status", &self.status.view())
            .finish_non_exhaustive()
    }
}

impl SyncClient {
    /// Checks the setup, opens the outbox and starts the sync thread.
    pub fn start(
        setup: SyncSetup,
        store: Arc<Store>,
        host: Arc<dyn SyncHost>,
    ) -> Result<SyncClient, SyncError> {
        setup
            .config
            .validate()
            .map_err(|e| SyncError::Config(e.to_string()))?;
        let client = http::client(&setup.config)?;
        let limits = Limits {
            max_packages: setup.config.max_outbox_packages,
            max_bytes: setup.config.max_outbox_bytes(),
        };
        let outbox = Outbox::open(Arc::clone(&store), limits)?;
        let status = Arc::new(SyncStatus::default());
        status.update(|s| {
            s.interval_seconds = setup.config.interval_seconds;
            s.outbox_packages = outbox.len();
            s.outbox_bytes = outbox.bytes();
        });
        let sampler = PredictionSampler::new(
            setup.config.predictions_per_class,
            setup.config.prediction_interval_seconds * 1000,
        );
        let stop = Arc::new(tokio::sync::Notify::new());
        let (done_tx, done) = std::sync::mpsc::sync_channel(1);
        let worker = Worker {
            setup,
            store,
            host,
            client,
            outbox,
            status: Arc::clone(&status),
            sampler: sampler.clone(),
            last_packaged: None,
        };
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("sync".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(worker.run(stop2)),
                    Err(e) => tracing::error!("sync: cannot start its runtime: {e}"),
                }
                let _ = done_tx.send(());
            })
            .map_err(|e| SyncError::io("starting the sync thread for", "sync", e))?;
        Ok(SyncClient {
            stop,
            thread: Some(thread),
            done,
            status,
            sampler,
        })
    }

    /// The counters now.
    pub fn status(&self) -> SyncStatusView {
        self.status.view()
    }

    /// The live counters (for a status writer that outlives this borrow).
    pub fn status_handle(&self) -> Arc<SyncStatus> {
        Arc::clone(&self.status)
    }

    /// The handle through which the service offers prediction samples.
    pub fn predictions(&self) -> PredictionSampler {
        self.sampler.clone()
    }

    /// Stops after the current step (a network wait is cut short) and joins the thread,
    /// waiting at most [`STOP_TIMEOUT`]; returns whether it ended in time.
    pub fn stop(mut self) -> bool {
        self.shutdown()
    }

    fn shutdown(&mut self) -> bool {
        // `notify_one` stores a permit if the thread is not waiting right now.
        self.stop.notify_one();
        let Some(thread) = self.thread.take() else {
            return true;
        };
        match self.done.recv_timeout(STOP_TIMEOUT) {
            Ok(()) => {
                let _ = thread.join();
                true
            }
            Err(_) => {
                tracing::warn!(
                    "sync: the thread did not stop within {} s; leaving it",
                    STOP_TIMEOUT.as_secs()
                );
                false
            }
        }
    }
}

impl Drop for SyncClient {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What a round ended with.
enum RoundEnd {
    /// Everything went; `more` when the outbox still holds packages.
    Done { more: bool },
    /// Something failed; retry with backoff.
    Failed(RoundError),
    /// Not enrolled (nothing to do until credentials exist).
    NotEnrolled,
}

struct Worker {
    setup: SyncSetup,
    store: Arc<Store>,
    host: Arc<dyn SyncHost>,
    client: reqwest::Client,
    outbox: Outbox,
    status: Arc<SyncStatus>,
    sampler: PredictionSampler,
    /// When the last package was built: retries after a failure upload and pull again but
    /// package at most once per interval, so an outage does not fill the outbox with tiny
    /// packages of the client's own warnings.
    last_packaged: Option<std::time::Instant>,
}

impl Worker {
    async fn run(mut self, stop: Arc<tokio::sync::Notify>) {
        let cap = Duration::from_secs(self.setup.config.max_backoff_seconds);
        let mut backoff = Backoff::new(Duration::from_secs(1), cap);
        let mut delay = self.setup.first_round_delay;
        loop {
            tokio::select! {
                _ = stop.notified() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            let end = tokio::select! {
                _ = stop.notified() => return,
                end = self.round() => end,
            };
            delay = match end {
                RoundEnd::Done { more } => {
                    backoff.succeed();
                    self.status.update(|s| {
                        s.last_error = None;
                        s.last_success_unix_ms = Some(crate::utc::now_unix_ms());
                        s.clear_foreign();
                    });
                    if more {
                        Duration::from_millis(50)
                    } else {
                        self.setup.config.interval()
                    }
                }
                RoundEnd::NotEnrolled => self.setup.config.interval(),
                RoundEnd::Failed(e) => {
                    let wait = backoff.fail().max(Duration::from_millis(100));
                    tracing::warn!(
                        "sync: {e}; retrying in {:.1} s (failure {} in a row)",
                        wait.as_secs_f64(),
                        backoff.failures()
                    );
                    self.status.update(|s| {
                        s.failures += 1;
                        s.last_error = Some(e.to_string());
                    });
                    wait
                }
            };
        }
    }

    fn publish_outbox(&self) {
        let (n, b) = (self.outbox.len(), self.outbox.bytes());
        self.status.update(|s| {
            s.outbox_packages = n;
            s.outbox_bytes = b;
        });
    }

    /// Credentials from the file, or from enrolling with the configured key file.
    async fn credentials(&self) -> Result<Option<Credentials>, RoundError> {
        if let Some(c) =
            Credentials::load(&self.setup.state_dir).map_err(RoundError::Credentials)?
        {
            c.check_server(&self.setup.config, &self.setup.state_dir)
                .map_err(RoundError::Credentials)?;
            return Ok(Some(c));
        }
        let (Some(server), Some(key_file)) = (
            &self.setup.config.server,
            &self.setup.config.enrollment_key_file,
        ) else {
            return Ok(None);
        };
        let key = match credentials::read_small(key_file) {
            Ok(k) => k,
            Err(e) => return Err(RoundError::EnrollmentKey(e)),
        };
        let c = credentials::enroll_with(&self.client, server, &key)
            .await
            .map_err(RoundError::Credentials)?;
        c.save(&self.setup.state_dir)
            .map_err(RoundError::Credentials)?;
        tracing::info!(
            "sync: enrolled with {} as device {} (the key file is not needed any more)",
            c.server,
            c.device_id
        );
        Ok(Some(c))
    }

    /// Raises the status alert if a request of `request` was answered with an error by
    /// something that is not sphere-lite (see [`http::take_foreign`]).
    fn note_foreign(&self, request: &str) {
        if let Some(f) = http::take_foreign() {
            tracing::warn!(
                "sync: {request}: {} answered in sphere-lite's place ({}); nothing is dropped, \
                 the request is retried with backoff",
                f.answered_by,
                f.text
            );
            let now = crate::utc::now_unix_ms();
            self.status.update(|s| s.raise_foreign(request, &f, now));
        }
    }

    async fn round(&mut self) -> RoundEnd {
        let _ = http::take_foreign();
        let creds = self.credentials().await;
        self.note_foreign("enrollment");
        let creds = match creds {
            Ok(Some(c)) => c,
            Ok(None) => {
                self.status.update(|s| s.enrolled = false);
                return RoundEnd::NotEnrolled;
            }
            Err(e) => return RoundEnd::Failed(e),
        };
        self.status.update(|s| s.enrolled = true);
        let due = self
            .last_packaged
            .is_none_or(|t| t.elapsed() >= self.setup.config.interval());
        if due {
            self.last_packaged = Some(std::time::Instant::now());
            if let Err(e) = self.package(&creds) {
                return RoundEnd::Failed(RoundError::Packaging(e));
            }
        }
        let uploaded = self.upload_all(&creds).await;
        self.note_foreign("upload");
        // Packages a proxy refused were kept and skipped: the small ones behind them went
        // (with the status that shows the alert), and feedback and models are still pulled.
        let kept = match uploaded {
            Ok(kept) => kept,
            Err(e) => return RoundEnd::Failed(e),
        };
        let more = !self.outbox.is_empty() || self.last_packaged.is_none();
        let feedback = pull::pull_feedback(&self.client, &creds, &*self.host, &self.status).await;
        self.note_foreign("feedback");
        if let Err(e) = feedback {
            return RoundEnd::Failed(RoundError::Pull(e));
        }
        results::report(&self.client, &creds, &*self.host, &self.status).await;
        self.note_foreign("feedback results");
        let model = pull::pull_model(
            &self.client,
            &creds,
            &*self.host,
            &self.store,
            &self.setup.state_dir,
            self.setup.disk_guard.as_ref(),
        )
        .await;
        self.note_foreign("model");
        match model {
            Ok(outcome) => self.note_model(outcome),
            Err(e) => return RoundEnd::Failed(RoundError::Pull(e)),
        }
        if let Some(e) = kept {
            return RoundEnd::Failed(e);
        }
        RoundEnd::Done { more }
    }

    /// Shows what the model assignment came to in the status (and so in `status.json` and
    /// the metrics sphere-lite keeps: `sync.models_refused`).
    fn note_model(&self, outcome: pull::ModelOutcome) {
        match outcome {
            pull::ModelOutcome::Installed(_) => self.status.update(|s| {
                s.models_installed += 1;
                s.model_waiting = None;
            }),
            pull::ModelOutcome::Refused(why) => self.status.update(|s| {
                s.models_refused += 1;
                s.model_refusal = Some(why);
                s.model_waiting = None;
            }),
            pull::ModelOutcome::Waiting(why) => {
                let view = self.status.view();
                if view.model_waiting.as_deref() != Some(why.as_str()) {
                    tracing::warn!("sync: {why}");
                }
                self.status.update(|s| s.model_waiting = Some(why));
            }
            pull::ModelOutcome::Nothing => {}
        }
    }

    /// Builds one package from what is new and queues it with its cursors.
    fn package(&mut self, creds: &Credentials) -> Result<(), SyncError> {
        let model = self.host.active_model();
        let view = self.status.view();
        let collected = collect::collect(
            &self.store,
            &self.setup.sources,
            &creds.device_id,
            self.outbox.cursors(),
            self.setup.config.max_package_bytes(),
            &view,
            model.as_ref(),
            Some(&self.sampler),
        )?;
        if collected.logs_lost {
            tracing::warn!("sync: log lines were rotated away before they could be sent");
        }
        if collected.package.is_none() && !collected.moved {
            return Ok(());
        }
        if collected.more {
            // The rest goes into the next package, built at the next round (soon).
            self.last_packaged = None;
        }
        let size = collected.package.as_ref().map_or(0, |p| p.tar.len() as u64);
        if let Some(guard) = &self.setup.disk_guard {
            if size > 0 && !guard.ok_to_write(size) {
                tracing::warn!(
                    "sync: the data partition is nearly full; a package of {size} bytes waits \
                     (its data stays in the state database)"
                );
                return Ok(());
            }
        }
        let queued = collected.package.is_some();
        let r = self.outbox.enqueue(collected.package, collected.cursors)?;
        // The features sent for review, kept for labels that come back after their samples
        // left the quarantine (a loss here only loses that fallback).
        let mut b = crate::state::Batch::new();
        match crate::quarantine::review::remember(&self.store, collected.review, &mut b) {
            Ok(()) if !b.is_empty() => {
                if let Err(e) = self.store.submit(b) {
                    tracing::warn!("sync: the features sent for review are not kept: {e}");
                }
            }
            Ok(()) => {}
            Err(e) => tracing::warn!("sync: the features sent for review are not kept: {e}"),
        }
        let dropped = r.dropped.len() as u64;
        self.status.update(|s| {
            s.queued += u64::from(queued && r.id.is_some());
            s.dropped += dropped;
        });
        self.publish_outbox();
        Ok(())
    }

    /// Uploads the outbox oldest first until it is empty or something fails. A package that
    /// something other than sphere-lite refused with a 4xx (a proxy's body limit, a filter) is
    /// kept and skipped, and the others still go; the first such refusal is returned so that
    /// the round backs off. Any other failure stops the pass (`Err`).
    async fn upload_all(&mut self, creds: &Credentials) -> Result<Option<RoundError>, RoundError> {
        let mut kept = None;
        for id in self.outbox.ids() {
            let (header, tar) = self.outbox.load(id).map_err(RoundError::Outbox)?;
            let size = tar.len();
            let verdict = upload::upload(&self.client, creds, &header.package_id, tar).await;
            let counter = match &verdict {
                Verdict::Stored { duplicate: false } => {
                    self.status.update(|s| {
                        s.uploaded += 1;
                        s.needs_enrollment = false;
                    });
                    UPLOADED_COUNTER
                }
                Verdict::Stored { duplicate: true } => {
                    tracing::info!(
                        "sync: package {} was already on the server",
                        header.package_id
                    );
                    self.status.update(|s| s.duplicates += 1);
                    DUPLICATE_COUNTER
                }
                Verdict::Invalid(e) => {
                    tracing::error!(
                        "sync: the server refuses package {} for good ({e}); moved aside",
                        header.package_id
                    );
                    self.move_aside(id, &header.package_id);
                    self.status.update(|s| s.rejected += 1);
                    REJECTED_COUNTER
                }
                Verdict::TooLarge(e) => {
                    tracing::warn!(
                        "sync: package {} is too large for the server ({e}); dropped",
                        header.package_id
                    );
                    self.status.update(|s| s.dropped += 1);
                    DROPPED_COUNTER
                }
                Verdict::Unauthorized(e) => {
                    self.status.update(|s| s.needs_enrollment = true);
                    tracing::error!(
                        "sync: the server refuses this device's token ({e}): re-enroll the \
                         device (`tinylcm enroll`, or delete {} and provide an enrollment key \
                         file); uploads wait until then",
                        credentials::credentials_path(&self.setup.state_dir).display()
                    );
                    return Err(RoundError::Unauthorized(e.clone()));
                }
                Verdict::Foreign(f) => {
                    let e = RoundError::Kept {
                        package: header.package_id.clone(),
                        bytes: size,
                        answer: f.text.clone(),
                    };
                    if f.status >= 500 {
                        return Err(e);
                    }
                    tracing::warn!("sync: {e}; trying the next package");
                    kept.get_or_insert(e);
                    continue;
                }
                Verdict::Retry(e) => {
                    return Err(RoundError::Upload {
                        package: header.package_id.clone(),
                        reason: e.clone(),
                    });
                }
            };
            self.outbox
                .remove(id, counter)
                .map_err(RoundError::Outbox)?;
            self.publish_outbox();
        }
        Ok(kept)
    }

    /// Keeps a refused package's bytes under `<state dir>/sync/rejected/` (newest few).
    fn move_aside(&self, id: u64, package_id: &str) {
        let dir = self.setup.state_dir.join("sync").join("rejected");
        let Ok((_, tar)) = self.outbox.load(id) else {
            return;
        };
        if std::fs::create_dir_all(&dir).is_err() {
            return;
        }
        let path = dir.join(format!("{package_id}.tar"));
        if let Err(e) = crate::files::write_atomic(&path, &tar, crate::files::Durability::Unsynced)
        {
            tracing::warn!("sync: keeping rejected package {}: {e}", path.display());
        }
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(|e| e.ok()).collect())
            .unwrap_or_default();
        if files.len() > MAX_REJECTED_FILES {
            files.sort_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
            for e in &files[..files.len() - MAX_REJECTED_FILES] {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
