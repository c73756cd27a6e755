//! The device's identity on the server: enrollment (an enrollment key traded once for a
//! device id and token) and where the result is kept.
//!
//! Kept in a 0600 file `<state dir>/sync/credentials.json`, written atomically and fsynced,
//! not in the state database: restoring a snapshot replaces the database's component states
//! and must not take the identity with it, and an operator forces a new enrollment by deleting
//! one file. The token never appears in logs or `Debug` output.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tinylcm_protocol::api::{EnrollRequest, EnrollResponse};
use tinylcm_protocol::ids::valid_device_id;
use tinylcm_protocol::paths;

use super::error::SyncError;
use super::http;

/// Largest credentials or enrollment-key file read.
const MAX_FILE_BYTES: u64 = 16 << 10;

/// What enrollment gave the device.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The server's base URL.
    pub server: String,
    /// The device id the server assigned.
    pub device_id: String,
    /// The device's bearer token (secret).
    pub token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .field("device_id", &self.device_id)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// The credentials file of the state folder `state_dir`.
pub fn credentials_path(state_dir: &Path) -> PathBuf {
    state_dir.join("sync").join("credentials.json")
}

impl Credentials {
    /// Reads the credentials in `state_dir`, `None` when the device is not enrolled.
    pub fn load(state_dir: &Path) -> Result<Option<Credentials>, SyncError> {
        let path = credentials_path(state_dir);
        let text = match read_small(&path) {
            Ok(t) => t,
            Err(SyncError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let c: Credentials = serde_json::from_str(&text).map_err(|e| {
            SyncError::Config(format!(
                "{} does not parse ({e}); delete it and enroll again",
                path.display()
            ))
        })?;
        if !valid_device_id(&c.device_id) || c.token.is_empty() {
            return Err(SyncError::Config(format!(
                "{} holds no valid device id or token; delete it and enroll again",
                path.display()
            )));
        }
        Ok(Some(c))
    }

    /// Writes them atomically, readable by the owner only, and fsyncs file and folder.
    pub fn save(&self, state_dir: &Path) -> Result<PathBuf, SyncError> {
        let path = credentials_path(state_dir);
        let dir = path.parent().unwrap_or(state_dir);
        std::fs::create_dir_all(dir).map_err(|e| SyncError::io("creating", dir, e))?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| SyncError::Config(e.to_string()))?;
        crate::files::write_private(&path, &json)
            .map_err(|e| SyncError::io("writing", &path, e))?;
        Ok(path)
    }
}

impl Credentials {
    /// Checks the recorded server against the https rule of [`super::SyncConfig::server`]
    /// (a device enrolled over plain http before that rule, or with `allow-insecure-http`
    /// since turned off, must not keep sending its token in the clear).
    pub fn check_server(
        &self,
        config: &super::SyncConfig,
        state_dir: &Path,
    ) -> Result<(), SyncError> {
        config
            .check_server(
                &format!("server in {}", credentials_path(state_dir).display()),
                &self.server,
            )
            .map_err(|e| SyncError::Config(e.to_string()))
    }
}

/// Reads a small text file with a bound.
pub fn read_small(path: &Path) -> Result<String, SyncError> {
    let f = std::fs::File::open(path).map_err(|e| SyncError::io("reading", path, e))?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| SyncError::io("reading", path, e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(SyncError::Config(format!(
            "{} is larger than {MAX_FILE_BYTES} bytes",
            path.display()
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| SyncError::Config(format!("{} is not UTF-8 text", path.display())))
}

/// Trades `key` for credentials at `server` (async, on the caller's runtime). The machine's
/// host name goes along as the device's display name (provisioning names each device from
/// its serial number), so operators see the same name whichever way a device enrolled.
pub async fn enroll_with(
    client: &reqwest::Client,
    server: &str,
    key: &str,
) -> Result<Credentials, SyncError> {
    let fail = |reason: String| SyncError::Enroll {
        server: server.to_string(),
        reason,
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(fail("the enrollment key is empty".into()));
    }
    let body = EnrollRequest {
        enrollment_key: key.to_string(),
        name: hostname(),
        hardware: Some(std::env::consts::ARCH.to_string()),
    };
    let request = client.post(http::join(server, paths::ENROLL)).json(&body);
    let answer = http::send(request, http::MAX_JSON_BYTES)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if answer.status != 200 {
        return Err(fail(answer.error_text()));
    }
    let r: EnrollResponse = answer.json().map_err(fail)?;
    if !valid_device_id(&r.device_id) || r.token.is_empty() {
        return Err(fail(
            "the server answered no valid device id or token".into(),
        ));
    }
    Ok(Credentials {
        server: server.trim_end_matches('/').to_string(),
        device_id: r.device_id,
        token: r.token,
    })
}

/// Enrolls the device with `server` using `key` and saves the credentials in `state_dir`
/// (blocking: for `tinylcm enroll`).
pub fn enroll(
    config: &super::SyncConfig,
    state_dir: &Path,
    server: &str,
    key: &str,
) -> Result<Credentials, SyncError> {
    config
        .check_server("the enrollment server", server)
        .map_err(|e| SyncError::Config(e.to_string()))?;
    let client = http::client(config)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SyncError::io("starting the HTTP runtime for", state_dir, e))?;
    let c = rt.block_on(enroll_with(&client, server, key))?;
    c.save(state_dir)?;
    tracing::info!("enrolled with {} as device {}", c.server, c.device_id);
    Ok(c)
}

/// The machine's host name, if it has a readable one (sent as the device's display name).
fn hostname() -> Option<String> {
    let text = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = text.trim();
    (!name.is_empty() && name.len() <= 64).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn saved_privately_loaded_back_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Credentials::load(dir.path()).unwrap().is_none());
        let c = Credentials {
            server: "http://h:1".into(),
            device_id: "dev-1".into(),
            token: "sld_secret".into(),
        };
        let path = c.save(dir.path()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Credentials::load(dir.path()).unwrap(), Some(c.clone()));
        assert!(!format!("{c:?}").contains("sld_secret"));
        std::fs::write(&path, "{").unwrap();
        let e = Credentials::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("enroll again"), "{e}");
        std::fs::write(&path, r#"{"server":"x","device_id":"../x","token":"t"}"#).unwrap();
        assert!(Credentials::load(dir.path()).is_err());
    }

    /// The server recorded with the credentials obeys the https rule too, and so does the
    /// server given to `tinylcm enroll`. Fails before this change: any http server was used.
    #[test]
    fn recorded_and_enrollment_servers_must_be_https_or_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let strict = crate::sync::SyncConfig::default();
        let lab = crate::sync::SyncConfig {
            allow_insecure_http: true,
            ..Default::default()
        };
        let c = |server: &str| Credentials {
            server: server.into(),
            device_id: "dev-1".into(),
            token: "t".into(),
        };
        let e = c("http://sphere.example")
            .check_server(&strict, dir.path())
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("credentials.json") && text.contains("allow-insecure-http"),
            "{text}"
        );
        c("http://sphere.example")
            .check_server(&lab, dir.path())
            .unwrap();
        c("http://127.0.0.1:1")
            .check_server(&strict, dir.path())
            .unwrap();
        c("https://sphere.example")
            .check_server(&strict, dir.path())
            .unwrap();
        let e = enroll(&strict, dir.path(), "http://sphere.example:8470", "key").unwrap_err();
        assert!(e.to_string().contains("the enrollment server"), "{e}");
    }
}
