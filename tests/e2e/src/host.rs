//! A real in-process [`SyncHost`]: what the service loop does with what sync brings, minus the
//! pipeline. Releases are verified for real (trusted key, signature, the file's size and
//! SHA-256) before they count as installed; configurations are parsed with the protocol
//! crate's fragment rules.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tinylcm::sync::{InstallError, ModelIdentity, SyncHost};
use tinylcm_protocol::device_json::refusal::RefusalKind;
use tinylcm_protocol::release::{PublicKey, SignedRelease};

/// A model install as the host saw it.
#[derive(Debug, Clone)]
pub struct Install {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// Release name and version.
    pub name: String,
    /// Release version.
    pub version: String,
}

/// The test host.
pub struct TestHost {
    inbox: PathBuf,
    trusted: Vec<PublicKey>,
    /// The active model.
    pub model: Mutex<Option<ModelIdentity>>,
    /// Configurations applied: (revision, toml).
    pub configs: Mutex<Vec<(String, String)>>,
    /// Releases installed.
    pub installs: Mutex<Vec<Install>>,
    /// Releases refused: the reason.
    pub refusals: Mutex<Vec<String>>,
}

impl TestHost {
    /// A host whose feedback inbox is `inbox` and which trusts `trusted` release keys.
    pub fn new(inbox: PathBuf, trusted: Vec<PublicKey>) -> TestHost {
        TestHost {
            inbox,
            trusted,
            model: Mutex::new(None),
            configs: Mutex::new(Vec::new()),
            installs: Mutex::new(Vec::new()),
            refusals: Mutex::new(Vec::new()),
        }
    }
}

impl SyncHost for TestHost {
    fn active_model(&self) -> Option<ModelIdentity> {
        self.model.lock().unwrap().clone()
    }

    fn apply_config(&self, revision: &str, toml: &str) -> Result<(), String> {
        tinylcm_protocol::remote_config::parse_fragment(toml).map_err(|e| e.to_string())?;
        self.configs
            .lock()
            .unwrap()
            .push((revision.to_string(), toml.to_string()));
        Ok(())
    }

    fn install_release(&self, file: &Path, release: &SignedRelease) -> Result<(), InstallError> {
        let result = (|| -> Result<_, String> {
            let manifest = release.verify(&self.trusted).map_err(|e| e.to_string())?;
            let bytes = std::fs::read(file).map_err(|e| e.to_string())?;
            manifest.check_model(&bytes).map_err(|e| e.to_string())?;
            Ok((manifest, bytes))
        })();
        match result {
            Ok((m, bytes)) => {
                *self.model.lock().unwrap() = Some(ModelIdentity {
                    name: m.name.clone(),
                    version: m.version.clone(),
                    sha256: m.sha256.clone(),
                });
                self.installs.lock().unwrap().push(Install {
                    bytes,
                    name: m.name,
                    version: m.version,
                });
                Ok(())
            }
            Err(e) => {
                self.refusals.lock().unwrap().push(e.clone());
                Err(InstallError::Refused(RefusalKind::Other, e))
            }
        }
    }

    fn feedback_inbox(&self) -> PathBuf {
        self.inbox.clone()
    }
}
