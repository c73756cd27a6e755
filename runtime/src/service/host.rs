//! What the sync client may ask of the running service ([`SyncHost`]), answered by the service.
//!
//! The sync thread talks to sphere-lite; the service owns the configuration, the model store
//! and the pipeline. Each request is made durable through the part that owns it (the remote
//! configuration file, the A/B store) before it returns, so the sync client acknowledges only
//! what survives a power cut; the pipeline then picks it up through a reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tinylcm_protocol::device_json::refusal::RefusalKind;
use tinylcm_protocol::release::{ReleaseManifest, SignedRelease};

use super::control::Control;
use super::remote::RemoteConfig;
use crate::modelstore::{ActiveState, ModelStore, ModelStoreError};
use crate::sync::{InstallError, ModelIdentity, SyncHost};

/// The service as the sync client sees it.
pub struct ServiceHost {
    control: Arc<Control>,
    remote: RemoteConfig,
    config_file: Option<PathBuf>,
    models: Arc<ModelStore>,
    inbox: PathBuf,
    max_model_bytes: u64,
}

impl ServiceHost {
    /// A host over the service's `control`, the remote configuration beside the database at
    /// `state_path`, the local `config_file` it is checked against, and the model store.
    pub fn new(
        control: Arc<Control>,
        state_path: &Path,
        config_file: Option<PathBuf>,
        models: Arc<ModelStore>,
        max_model_bytes: u64,
    ) -> ServiceHost {
        ServiceHost {
            control,
            remote: RemoteConfig::beside(state_path),
            config_file,
            models,
            inbox: crate::autonomy::feedback::inbox_dir(state_path),
            max_model_bytes,
        }
    }
}

impl ServiceHost {
    /// Automatic installs never bring back a release this device took out of use (health
    /// window, crash loop, or a person's rollback); `tinylcm model install` still can.
    fn not_rolled_back(&self, release: &SignedRelease) -> Result<(), InstallError> {
        if let Ok(manifest) = serde_json::from_str::<ReleaseManifest>(&release.manifest) {
            let before = self
                .models
                .rolled_back_before(&manifest.name, &manifest.version)
                .map_err(|e| InstallError::Later(e.to_string()))?;
            if let Some(why) = before {
                return Err(InstallError::Refused(
                    RefusalKind::RolledBack,
                    format!(
                        "release {} {} was rolled back on this device ({why}); publish a new \
                         version",
                        manifest.name, manifest.version
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The release's own faults are final; the device's (disk, database) and the store's moment
/// (a model on trial) are not.
fn install_error(e: ModelStoreError) -> InstallError {
    if e.is_refusal() && !matches!(e, ModelStoreError::Refused(_)) {
        InstallError::Refused(e.refusal_kind(), e.to_string())
    } else {
        InstallError::Later(e.to_string())
    }
}

impl SyncHost for ServiceHost {
    fn active_model(&self) -> Option<ModelIdentity> {
        match self.models.active() {
            Ok(active) => active.map(|a| ModelIdentity {
                name: a.name,
                version: a.version,
                sha256: a.sha256,
            }),
            Err(e) => {
                tracing::warn!("cannot read the active model: {e}");
                None
            }
        }
    }

    fn apply_config(&self, revision: &str, toml: &str) -> Result<(), String> {
        self.remote
            .apply(
                self.config_file.as_deref(),
                revision,
                toml,
                crate::utc::now_unix_ms(),
            )
            .map_err(|e| e.to_string())?;
        tracing::info!(revision, "remote configuration applied; reloading");
        self.control
            .request_reload(format!("remote configuration {revision}"));
        Ok(())
    }

    fn check_release(&self, release: &SignedRelease) -> Result<(), InstallError> {
        self.models.check_release(release).map_err(install_error)?;
        self.not_rolled_back(release)
    }

    fn release_refused(&self, label: &str, reason: &str) {
        self.models
            .record_refusal(label.replace('/', " "), reason.to_string());
    }

    fn install_release(&self, file: &Path, release: &SignedRelease) -> Result<(), InstallError> {
        let bytes =
            crate::model::read_bounded(file, self.max_model_bytes).map_err(|e| match e {
                // The release is over this device's limit: final (the sync client refuses such a
                // release before downloading it; this is the last line).
                crate::model::ModelError::TooLarge { .. } => {
                    InstallError::Refused(RefusalKind::TooLarge, e.to_string())
                }
                e => {
                    InstallError::Later(format!("cannot read the download {}: {e}", file.display()))
                }
            })?;
        self.not_rolled_back(release)?;
        let installed = self
            .models
            .install(&bytes, release, true)
            .map_err(install_error)?;
        self.control
            .request_reload(format!("model {} installed", installed.record.label()));
        Ok(())
    }

    fn accepts_installs(&self) -> bool {
        // Two slots: while one model is on trial, the other holds the way back.
        !matches!(self.models.active(), Ok(Some(a)) if a.state == ActiveState::Trial)
    }

    fn feedback_inbox(&self) -> PathBuf {
        self.inbox.clone()
    }

    fn config_refusal(&self) -> Option<(String, String)> {
        self.remote.unreported_refusal()
    }

    fn config_refusal_reported(&self, revision: &str) {
        if let Err(e) = self.remote.mark_reported(revision) {
            tracing::warn!("cannot note that the refusal was reported (it is sent again): {e}");
        }
    }
}
