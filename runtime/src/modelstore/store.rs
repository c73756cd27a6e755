//! [`ModelStore`]: the operations of the A/B store and the order of file writes and state
//! commits that keeps a `kill -9` at any instant safe.
//!
//! The rule: the state only ever refers to slots whose three files were completely written
//! and synced before the reference was committed, and the files of a referenced slot are never
//! touched. An install therefore (1) verifies and smoke-tests everything in memory, (2) drops
//! any stale reference to the target slot and flushes, (3) writes the files (temporary, fsync,
//! rename, fsync of the folder), (4) records the slot as staged and flushes. Activation,
//! commit and rollback are each one flushed state change; boot increments the trial's start
//! count and flushes before the model is loaded, so a model that crashes the service is
//! rolled back after `max-trial-starts` starts.
//!
//! Downgrades: a commit raises the store's epoch floor to the committed release's security
//! epoch (never lowers it); every install, by sync or by a person, refuses a release below the
//! floor, and a rollback never returns to a previous model below it (the configured model
//! runs instead). A model signed by a key later put in `[models] revoked-keys` is not started.

use std::path::PathBuf;
use std::sync::Arc;

use tinylcm_protocol::release::{PublicKey, ReleaseManifest, SignedRelease};

use super::config::ModelsConfig;
use super::error::ModelStoreError;
use super::golden::{SmokeReport, smoke_test};
use super::health::{HealthSummary, HealthWindow};
use super::layout::Layout;
use super::record::{
    ActiveModel, ActiveState, Happening, ModelsState, STATE_KEY, Slot, SlotRecord, Stored, Trial,
};
use super::verify::{
    Policy, VerifiedRelease, load_trusted_keys, parse_signed, verify, verify_release,
};
use crate::engine::EngineConfig;
use crate::model::{LoadedModel, read_bounded};
use crate::state::{Batch, Store};

/// The A/B model store of one device.
#[derive(Debug)]
pub struct ModelStore {
    layout: Layout,
    config: ModelsConfig,
    engine: EngineConfig,
    /// The trusted release keys, or why the keys file could not be used (reported by every
    /// install: a typo in the keys file must not stop the service from starting).
    trusted: Result<Vec<PublicKey>, (PathBuf, String)>,
    /// Ids of the keys in `[models] revoked-keys`.
    revoked: Vec<String>,
    store: Arc<Store>,
    /// Serialises read-modify-write of the state value between threads (e.g. the service
    /// loop committing while a worker processes `incoming/`).
    write: std::sync::Mutex<()>,
}

/// What the service should load, decided once per start by [`ModelStore::boot`].
#[derive(Debug, Clone, PartialEq)]
pub enum BootChoice {
    /// A model from a slot (verified against its release just now).
    Installed {
        /// The model file.
        model: PathBuf,
        /// Its manifest.
        manifest: PathBuf,
        /// Its identity.
        identity: ActiveModel,
    },
    /// Nothing usable is installed: run the configured (or built-in) model.
    Configured,
}

/// The boot decision with what it had to undo.
#[derive(Debug, Clone, PartialEq)]
pub struct Boot {
    /// What to load.
    pub choice: BootChoice,
    /// Why a trial or slot was abandoned on the way, if one was.
    pub rolled_back: Option<String>,
}

/// A release that was installed into a slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Installed {
    /// Its record (staged, or on trial when activated right away).
    pub record: SlotRecord,
    /// What the smoke test checked.
    pub smoke: SmokeReport,
}

/// What [`ModelStore::rollback`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum RolledBack {
    /// The trial was dropped; the committed model (or the configured one) runs again.
    Trial(SlotRecord),
    /// The committed model was replaced by the previously committed one.
    ToPrevious {
        /// The model taken out of use.
        from: SlotRecord,
        /// The model that runs again.
        to: SlotRecord,
    },
    /// The committed model was dropped: the configured model runs.
    ToConfigured(SlotRecord),
}

impl ModelStore {
    /// The store in `dir` with its state in `store`; trusted keys are read from
    /// `config.trusted_keys` now. A missing or bad keys file (or none configured) does not
    /// fail here: boot, status and rollback still work, and every install is refused saying
    /// why.
    pub fn open(
        config: &ModelsConfig,
        dir: PathBuf,
        engine: EngineConfig,
        store: Arc<Store>,
    ) -> Result<Self, ModelStoreError> {
        let trusted = load_trusted_keys(config.trusted_keys.as_deref()).map_err(|e| {
            tracing::warn!("model installs will be refused: {e}");
            match e {
                ModelStoreError::TrustedKeys { path, reason } => (path, reason),
                other => (PathBuf::new(), other.to_string()),
            }
        });
        Ok(ModelStore {
            layout: Layout::new(dir),
            config: config.clone(),
            engine,
            trusted,
            revoked: config.revoked_key_ids(),
            store,
            write: std::sync::Mutex::new(()),
        })
    }

    /// The trusted keys, or the error that made them unusable.
    fn trusted_keys(&self) -> Result<&[PublicKey], ModelStoreError> {
        self.trusted
            .as_deref()
            .map_err(|(path, reason)| ModelStoreError::TrustedKeys {
                path: path.clone(),
                reason: reason.clone(),
            })
    }

    /// What an install must satisfy now, given the store's `state` (its epoch floor).
    fn policy<'a>(&'a self, state: &ModelsState) -> Result<Policy<'a>, ModelStoreError> {
        Ok(Policy {
            trusted: self.trusted_keys()?,
            revoked: &self.revoked,
            max_bytes: self.config.max_bytes,
            compatible: self.config.compatible.as_deref(),
            epoch_floor: state.epoch_floor,
        })
    }

    /// Checks the signed release `signed` as far as it can be without its model file
    /// (signature, revoked key, size limit, epoch floor, compatible), so that a release this
    /// device would refuse is not downloaded. Records nothing: the caller decides whether a
    /// refusal is new ([`ModelStore::record_refusal`]).
    pub fn check_release(
        &self,
        signed: &SignedRelease,
    ) -> Result<ReleaseManifest, ModelStoreError> {
        let state = self.state()?;
        verify_release(signed, &self.policy(&state)?, &signed_by(signed))
    }

    /// The store's file layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The committed state (call after any write of this store: writes are flushed).
    pub fn state(&self) -> Result<ModelsState, ModelStoreError> {
        Ok(match self.store.get_state::<Stored>(STATE_KEY)? {
            Some(stored) => stored.into_current(),
            None => ModelsState::default(),
        })
    }

    /// The identity of the model that runs; `None`: the configured model.
    pub fn active(&self) -> Result<Option<ActiveModel>, ModelStoreError> {
        Ok(self.state()?.active())
    }

    /// The write lock (a panic while holding it leaves no half-done change: the state value
    /// is replaced whole, so a poisoned lock is still usable).
    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits `state` durably before returning.
    fn save(&self, state: &ModelsState) -> Result<(), ModelStoreError> {
        let mut batch = Batch::new();
        batch.put_state(STATE_KEY, &Stored::V2(state.clone()))?;
        self.store.submit(batch)?;
        self.store.flush()?;
        Ok(())
    }

    /// Records a refusal (best effort: the refusal itself is what the caller reports).
    pub(crate) fn note_refusal(&self, label: String, error: &ModelStoreError) {
        self.record_refusal(label, error.to_string());
    }

    /// Records that release `label` was refused for `reason` (last refusal and history), e.g.
    /// by the sync client before downloading it. Best effort: a failing database is logged.
    pub fn record_refusal(&self, label: String, reason: String) {
        let _guard = self.guard();
        let recorded = self.state().and_then(|mut s| {
            s.refuse(Happening::Refused, label, reason);
            self.save(&s)
        });
        if let Err(e) = recorded {
            tracing::warn!("cannot record the refusal in the state database: {e}");
        }
    }

    /// Installs model file `model` with its signed release file `release`.
    pub fn install_files(
        &self,
        model: &std::path::Path,
        release: &std::path::Path,
        activate: bool,
    ) -> Result<Installed, ModelStoreError> {
        let what = release.display().to_string();
        let signed = read_bounded(release, 1024 * 1024)
            .map_err(|e| ModelStoreError::BadRelease {
                what: what.clone(),
                reason: e.to_string(),
            })
            .and_then(|bytes| parse_signed(&bytes, &what));
        let signed = match signed {
            Ok(s) => s,
            Err(e) => {
                self.note_refusal(what, &e);
                return Err(e);
            }
        };
        // Read no more than the release may describe: a huge file cannot make us allocate.
        let bytes = match read_bounded(model, self.config.max_bytes) {
            Ok(b) => b,
            Err(crate::model::ModelError::TooLarge { size, limit, .. }) => {
                let e = ModelStoreError::TooLarge { what, size, limit };
                self.note_refusal(model.display().to_string(), &e);
                return Err(e);
            }
            Err(e) => {
                return Err(ModelStoreError::io(
                    "reading",
                    model,
                    std::io::Error::other(e.to_string()),
                ));
            }
        };
        self.install(&bytes, &signed, activate)
    }

    /// Why release `name version` was rolled back on this device, if it was (within the
    /// history): automatic installs must not bring it back in a loop.
    pub fn rolled_back_before(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<String>, ModelStoreError> {
        let label = format!("{name} {version}");
        Ok(self
            .state()?
            .history
            .iter()
            .rev()
            .find(|h| h.what == Happening::RolledBack && h.release == label)
            .map(|h| h.detail.clone()))
    }

    /// Verifies, smoke-tests and installs `model` of release `signed` into the free slot;
    /// with `activate`, makes it the trial model in the same step. Refusals are recorded in
    /// the state (last refusal, history) and leave the active model unchanged.
    pub fn install(
        &self,
        model: &[u8],
        signed: &SignedRelease,
        activate: bool,
    ) -> Result<Installed, ModelStoreError> {
        let mut state = self.state()?;
        if let Some(trial) = &state.trial {
            return Err(ModelStoreError::Refused(format!(
                "{} is on trial; install after it is committed or rolled back \
                 (`tinylcm model rollback`)",
                trial.record.label()
            )));
        }
        let what = signed_by(signed);
        let checked = self
            .policy(&state)
            .and_then(|policy| verify(signed, model, &policy, &what))
            .and_then(|v| {
                let smoke = smoke_test(&self.engine, Arc::from(model), &v.manifest, &v.label())?;
                Ok((v, smoke))
            });
        let (verified, smoke) = match checked {
            Ok(ok) => ok,
            Err(e) => {
                if e.is_refusal() {
                    self.note_refusal(what, &e);
                }
                return Err(e);
            }
        };
        // Read again after the slow smoke test, under the lock, so the decision uses the
        // newest state.
        let _guard = self.guard();
        state = self.state()?;
        if let Some(trial) = &state.trial {
            return Err(ModelStoreError::Refused(format!(
                "{} was activated meanwhile; install after it is committed or rolled back",
                trial.record.label()
            )));
        }
        let slot = state.committed.as_ref().map_or(Slot::A, |c| c.slot.other());
        // (2) Nothing may refer to the slot while its files change.
        if state.references(slot) {
            state.release_slot(slot);
            self.save(&state)?;
        }
        // (3) The files.
        let signed_json = serde_json::to_vec_pretty(&verified.signed).map_err(|e| {
            ModelStoreError::io(
                "encoding",
                self.layout.release(slot),
                std::io::Error::other(e),
            )
        })?;
        self.layout
            .write_slot(slot, model, &verified.release.model_manifest, &signed_json)?;
        // (4) The reference.
        let record = record_of(&verified, slot);
        state.note(
            Happening::Installed,
            record.label(),
            format!("slot {slot}, {} golden(s) checked", smoke.goldens),
        );
        if activate {
            activate_record(&mut state, record.clone());
        } else {
            state.staged = Some(record.clone());
        }
        self.save(&state)?;
        tracing::info!(
            "model {} installed in slot {slot}{}",
            record.label(),
            if activate { " and activated" } else { "" }
        );
        Ok(Installed { record, smoke })
    }

    /// Makes the staged model the trial model (one flushed state change); it runs from the
    /// next service start (or model reload) and must pass the health window.
    pub fn activate(&self) -> Result<SlotRecord, ModelStoreError> {
        let _guard = self.guard();
        let mut state = self.state()?;
        let Some(record) = state.staged.take() else {
            return Err(ModelStoreError::Refused(
                "no installed model waits for activation: install one first \
                 (`tinylcm model install FILE --release FILE.release.json`)"
                    .into(),
            ));
        };
        activate_record(&mut state, record.clone());
        self.save(&state)?;
        tracing::info!(
            "model {} activated in slot {} (on trial)",
            record.label(),
            record.slot
        );
        Ok(record)
    }

    /// Decides what this service start loads; call once per start before any model is loaded.
    ///
    /// A trial's start count is incremented and flushed first; beyond `max-trial-starts` the
    /// trial is rolled back (a crash loop). A slot whose files no longer match its release is
    /// abandoned too. Falls back to the committed slot, then to the configured model.
    pub fn boot(&self) -> Result<Boot, ModelStoreError> {
        let _guard = self.guard();
        let mut state = self.state()?;
        let mut rolled_back = None;
        if let Some(mut trial) = state.trial.take() {
            trial.starts += 1;
            let label = trial.record.label();
            if trial.starts > self.config.max_trial_starts {
                let reason = format!(
                    "{label} was started {} times without passing its health window (crash \
                     loop): rolled back",
                    trial.starts - 1
                );
                state.refuse(Happening::RolledBack, label, reason.clone());
                self.save(&state)?;
                tracing::warn!("{reason}");
                rolled_back = Some(reason);
            } else {
                state.trial = Some(trial.clone());
                self.save(&state)?;
                match self.check_slot(&trial.record) {
                    Ok(()) => {
                        return Ok(Boot {
                            choice: self.choice(&trial.record, ActiveState::Trial),
                            rolled_back,
                        });
                    }
                    Err(why) => {
                        let reason =
                            format!("{label} on trial cannot be used ({why}): rolled back");
                        state.trial = None;
                        state.refuse(Happening::RolledBack, label, reason.clone());
                        self.save(&state)?;
                        tracing::warn!("{reason}");
                        rolled_back = Some(reason);
                    }
                }
            }
        }
        if let Some(committed) = state.committed.clone() {
            match self.check_slot(&committed) {
                Ok(()) => {
                    return Ok(Boot {
                        choice: self.choice(&committed, ActiveState::Committed),
                        rolled_back,
                    });
                }
                Err(why) => {
                    let label = committed.label();
                    let reason = format!(
                        "committed {label} cannot be used ({why}): the configured model runs"
                    );
                    state.committed = None;
                    state.refuse(Happening::RolledBack, label, reason.clone());
                    self.save(&state)?;
                    tracing::error!("{reason}");
                    rolled_back = Some(reason);
                }
            }
        }
        Ok(Boot {
            choice: BootChoice::Configured,
            rolled_back,
        })
    }

    fn choice(&self, record: &SlotRecord, state: ActiveState) -> BootChoice {
        BootChoice::Installed {
            model: self.layout.model(record.slot),
            manifest: self.layout.manifest(record.slot),
            identity: ActiveModel::of(record, state),
        }
    }

    /// Whether a slot's files are still the release its record names, and its signing key is
    /// not revoked.
    fn check_slot(&self, record: &SlotRecord) -> Result<(), String> {
        if self
            .revoked
            .iter()
            .any(|id| id.eq_ignore_ascii_case(&record.key_id))
        {
            return Err(format!(
                "its release is signed by key {}, which is revoked (`[models] revoked-keys`)",
                record.key_id
            ));
        }
        let loaded = LoadedModel::from_file(
            &self.layout.model(record.slot),
            Some(&self.layout.manifest(record.slot)),
        )
        .map_err(|e| e.to_string())?;
        if loaded.manifest.sha256.to_ascii_lowercase() != record.sha256 {
            return Err(format!(
                "the slot holds SHA-256 {}, the state expects {}",
                loaded.manifest.sha256, record.sha256
            ));
        }
        Ok(())
    }

    /// The health window for the model on trial (`None` when nothing is on trial).
    pub fn health_window(&self) -> Result<Option<HealthWindow>, ModelStoreError> {
        let state = self.state()?;
        Ok(state.trial.as_ref().map(|_| {
            HealthWindow::new(
                self.config.health_frames,
                state.committed.as_ref().and_then(|c| c.mean_confidence),
                self.config.min_confidence_ratio,
            )
        }))
    }

    /// Records how many frames the trial has run (queued, not flushed: informational, for
    /// status; call it now and then, e.g. with each status report).
    pub fn note_trial_frames(&self, frames: u64) -> Result<(), ModelStoreError> {
        let _guard = self.guard();
        let mut state = self.state()?;
        if let Some(trial) = state.trial.as_mut() {
            trial.frames = frames;
            let mut batch = Batch::new();
            batch.put_state(STATE_KEY, &Stored::V2(state))?;
            self.store.submit(batch)?;
        }
        Ok(())
    }

    /// Commits the trial model after a passed health window (`summary` is stored with it);
    /// the previously committed model stays available to `rollback` until the next install.
    pub fn commit(&self, summary: HealthSummary) -> Result<SlotRecord, ModelStoreError> {
        let _guard = self.guard();
        let mut state = self.state()?;
        let Some(trial) = state.trial.take() else {
            return Err(ModelStoreError::Refused(
                "no model is on trial: nothing to commit".into(),
            ));
        };
        let mut record = trial.record;
        record.mean_confidence = summary.mean_confidence;
        state.previous = state.committed.take();
        state.committed = Some(record.clone());
        let raised = record.epoch > state.epoch_floor;
        state.epoch_floor = state.epoch_floor.max(record.epoch);
        state.note(
            Happening::Committed,
            record.label(),
            format!(
                "health window passed: {} frames, mean confidence {}",
                summary.frames,
                summary
                    .mean_confidence
                    .map_or("n/a".to_string(), |c| format!("{c:.3}"))
            ),
        );
        if raised {
            // Same state change as the commit: a crash cannot leave one without the other.
            state.note(
                Happening::Committed,
                record.label(),
                format!(
                    "security epoch floor raised to {}: releases below it are refused from now on",
                    record.epoch
                ),
            );
        }
        self.save(&state)?;
        tracing::info!(
            "model {} committed (security epoch {}, floor {})",
            record.label(),
            record.epoch,
            state.epoch_floor
        );
        Ok(record)
    }

    /// Rolls back: drops the trial if there is one; else replaces the committed model by the
    /// previously committed one, or by the configured model when there is none.
    pub fn rollback(&self, reason: &str) -> Result<RolledBack, ModelStoreError> {
        let _guard = self.guard();
        let mut state = self.state()?;
        let done = if let Some(trial) = state.trial.take() {
            RolledBack::Trial(trial.record)
        } else if let Some(from) = state.committed.take() {
            match state.previous.take() {
                Some(to) if to.epoch >= state.epoch_floor => {
                    state.committed = Some(to.clone());
                    RolledBack::ToPrevious { from, to }
                }
                Some(below) => {
                    // Going back to it would undo the floor this device committed to.
                    tracing::warn!(
                        "the previous model {} has security epoch {}, below the floor {}: \
                         the configured model runs instead",
                        below.label(),
                        below.epoch,
                        state.epoch_floor
                    );
                    RolledBack::ToConfigured(from)
                }
                None => RolledBack::ToConfigured(from),
            }
        } else {
            return Err(ModelStoreError::Refused(
                "nothing to roll back: the configured model already runs".into(),
            ));
        };
        let label = match &done {
            RolledBack::Trial(r)
            | RolledBack::ToPrevious { from: r, .. }
            | RolledBack::ToConfigured(r) => r.label(),
        };
        state.refuse(Happening::RolledBack, label.clone(), reason.to_string());
        self.save(&state)?;
        tracing::warn!("model {label} rolled back: {reason}");
        Ok(done)
    }
}

fn record_of(v: &VerifiedRelease, slot: Slot) -> SlotRecord {
    SlotRecord {
        slot,
        name: v.release.name.clone(),
        version: v.release.version.clone(),
        sha256: v.release.sha256.clone(),
        size: v.release.size,
        key_id: v.signed.key_id.clone(),
        installed_unix_ms: crate::utc::now_unix_ms(),
        mean_confidence: None,
        epoch: v.release.epoch,
    }
}

/// How a release is named in errors before its signature is checked.
fn signed_by(signed: &SignedRelease) -> String {
    format!(
        "signed by {}",
        signed.key_id.chars().take(16).collect::<String>()
    )
}

fn activate_record(state: &mut ModelsState, record: SlotRecord) {
    state.note(
        Happening::Activated,
        record.label(),
        format!("slot {}", record.slot),
    );
    state.staged = None;
    state.trial = Some(Trial {
        record,
        starts: 0,
        frames: 0,
        activated_unix_ms: crate::utc::now_unix_ms(),
    });
}
