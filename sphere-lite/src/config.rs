//! Server configuration: defaults, then an optional TOML file, then `SPHERE_LITE_*`
//! environment variables and command-line flags (the latter two via clap).
//!
//! Why: systemd units and containers set environment variables, operators prefer a file, and
//! tests pass flags; one struct with validation errors that name the key and the fix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::adapters::mlflow::{DEFAULT_NAMESPACE, KeptKeys, valid_namespace};
use crate::adapters::{MlflowSettings, S3Settings};

/// Default listen address (loopback: expose it deliberately).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";
/// Default data directory.
pub const DEFAULT_DATA: &str = "./sphere-data";
/// Default S3 bucket when an S3 endpoint is set.
pub const DEFAULT_S3_BUCKET: &str = "sphere-lite";
/// Default S3 signing region.
pub const DEFAULT_S3_REGION: &str = "us-east-1";

/// The settings sphere-lite runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Data directory (`sphere.redb` and `blobs/`).
    pub data: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// Hard cap on a package body in bytes.
    pub max_upload_bytes: u64,
    /// Blobs in S3 instead of `<data>/blobs/` when set.
    pub s3: Option<S3Settings>,
    /// Tracking in MLflow instead of `<data>/sphere.redb` when set (then `s3` is set too and
    /// nothing is stored in `data`).
    pub mlflow: Option<MlflowSettings>,
    /// File of trusted release public keys (one `tinylcm-release-public:` line each); without
    /// it, model releases are refused.
    pub release_keys: Option<PathBuf>,
    /// Serve HTTPS with this certificate and key instead of plain HTTP when set.
    pub tls: Option<TlsFiles>,
    /// The `[server]` section: timeouts, connection cap, host allow-list, failure budget.
    pub server: crate::door::DoorSettings,
    /// The `[storage]` section: retention, per-device quota, last-seen interval.
    pub storage: crate::domain::storage::StorageSettings,
}

/// The PEM files of native TLS (both or neither are configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, server certificate first.
    pub cert: PathBuf,
    /// Private key of the server certificate (PKCS#8, RSA or SEC1).
    pub key: PathBuf,
}

/// The TLS keys as given by flags/environment (`--tls-cert`, `SPHERE_LITE_TLS_CERT`, ...): see
/// the same-named keys of [`FileConfig`].
#[derive(Debug, Default, Clone)]
pub struct TlsOptions {
    /// PEM certificate chain.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
}

impl TlsOptions {
    fn or(self, other: TlsOptions) -> TlsOptions {
        TlsOptions {
            tls_cert: self.tls_cert.or(other.tls_cert),
            tls_key: self.tls_key.or(other.tls_key),
        }
    }

    fn resolve(self) -> Result<Option<TlsFiles>, ConfigError> {
        let empty = |p: &Option<PathBuf>| p.as_ref().is_none_or(|p| p.as_os_str().is_empty());
        match (empty(&self.tls_cert), empty(&self.tls_key)) {
            (true, true) => Ok(None),
            (false, false) => Ok(self
                .tls_cert
                .zip(self.tls_key)
                .map(|(cert, key)| TlsFiles { cert, key })),
            (false, true) => Err(ConfigError::Invalid {
                key: "tls_key",
                problem: "a TLS certificate is set but no key".into(),
                fix: "set tls_key (--tls-key, SPHERE_LITE_TLS_KEY) to the certificate's PEM private key, or remove tls_cert to serve plain HTTP",
            }),
            (true, false) => Err(ConfigError::Invalid {
                key: "tls_cert",
                problem: "a TLS key is set but no certificate".into(),
                fix: "set tls_cert (--tls-cert, SPHERE_LITE_TLS_CERT) to the PEM certificate chain, or remove tls_key to serve plain HTTP",
            }),
        }
    }
}

/// The MLflow keys as given by flags/environment (`--mlflow-url`, `SPHERE_LITE_MLFLOW_URL`,
/// ...): see the same-named keys of [`FileConfig`].
#[derive(Debug, Default, Clone)]
pub struct MlflowOptions {
    /// MLflow server URL: setting it switches tracking to MLflow.
    pub mlflow_url: Option<String>,
    /// Experiment name prefix (default `sphere-lite`).
    pub mlflow_namespace: Option<String>,
    /// Metric keys logged to MLflow (patterns; default every key).
    pub mlflow_metric_keys: Option<Vec<String>>,
}

impl MlflowOptions {
    fn or(self, other: MlflowOptions) -> MlflowOptions {
        MlflowOptions {
            mlflow_url: self.mlflow_url.or(other.mlflow_url),
            mlflow_namespace: self.mlflow_namespace.or(other.mlflow_namespace),
            mlflow_metric_keys: self.mlflow_metric_keys.or(other.mlflow_metric_keys),
        }
    }

    fn resolve(self, s3: Option<&S3Settings>) -> Result<Option<MlflowSettings>, ConfigError> {
        let Some(url) = self.mlflow_url.filter(|u| !u.is_empty()) else {
            if self.mlflow_namespace.is_some() {
                return Err(ConfigError::Invalid {
                    key: "mlflow_namespace",
                    problem: "an MLflow namespace is set but no MLflow URL".into(),
                    fix: "set mlflow_url (e.g. http://127.0.0.1:5000), or remove mlflow_namespace",
                });
            }
            if self.mlflow_metric_keys.is_some() {
                return Err(ConfigError::Invalid {
                    key: "mlflow_metric_keys",
                    problem: "MLflow metric keys are set but no MLflow URL".into(),
                    fix: "set mlflow_url (e.g. http://127.0.0.1:5000), or remove mlflow_metric_keys",
                });
            }
            return Ok(None);
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                key: "mlflow_url",
                problem: format!("{url:?} is not an http(s) URL"),
                fix: "write http://HOST:PORT or https://HOST",
            });
        }
        if s3.is_none() {
            return Err(ConfigError::Invalid {
                key: "mlflow_url",
                problem: "MLflow tracking needs S3 blobs: the server keeps no local state then"
                    .into(),
                fix: "set s3_endpoint, s3_access_key and s3_secret_key as well, or remove mlflow_url to run embedded",
            });
        }
        let namespace = self
            .mlflow_namespace
            .unwrap_or_else(|| DEFAULT_NAMESPACE.into());
        if !valid_namespace(&namespace) {
            return Err(ConfigError::Invalid {
                key: "mlflow_namespace",
                problem: format!("{namespace:?} is not a valid namespace"),
                fix: "use 1-100 characters of A-Z a-z 0-9 . - in segments separated by / (no _ or %)",
            });
        }
        let metric_keys = match self.mlflow_metric_keys {
            None => KeptKeys::all(),
            Some(patterns) => {
                KeptKeys::parse(&patterns).map_err(|e| ConfigError::Invalid {
                    key: "mlflow_metric_keys",
                    problem: e.to_string(),
                    fix: "list metric keys (latency.total.p50_us) or key prefixes followed by .* (latency.*), or \"*\" for every key",
                })?
            }
        };
        Ok(Some(MlflowSettings {
            url,
            namespace,
            metric_keys,
        }))
    }
}

/// The S3 keys as given by flags/environment (`--s3-endpoint`, `SPHERE_LITE_S3_ENDPOINT`, ...):
/// all optional; see the same-named keys of [`FileConfig`].
#[derive(Debug, Default, Clone)]
pub struct S3Options {
    /// Endpoint URL: setting it switches blobs to S3.
    pub s3_endpoint: Option<String>,
    /// Bucket (default `sphere-lite`).
    pub s3_bucket: Option<String>,
    /// Access key id.
    pub s3_access_key: Option<String>,
    /// Secret key.
    pub s3_secret_key: Option<String>,
    /// Signing region (default `us-east-1`).
    pub s3_region: Option<String>,
    /// Key prefix inside the bucket.
    pub s3_prefix: Option<String>,
}

impl S3Options {
    /// Each key from `self`, else from `other`.
    fn or(self, other: S3Options) -> S3Options {
        S3Options {
            s3_endpoint: self.s3_endpoint.or(other.s3_endpoint),
            s3_bucket: self.s3_bucket.or(other.s3_bucket),
            s3_access_key: self.s3_access_key.or(other.s3_access_key),
            s3_secret_key: self.s3_secret_key.or(other.s3_secret_key),
            s3_region: self.s3_region.or(other.s3_region),
            s3_prefix: self.s3_prefix.or(other.s3_prefix),
        }
    }

    fn resolve(self) -> Result<Option<S3Settings>, ConfigError> {
        let Some(endpoint) = self.s3_endpoint.filter(|e| !e.is_empty()) else {
            let other_set = self.s3_bucket.is_some()
                || self.s3_access_key.is_some()
                || self.s3_secret_key.is_some()
                || self.s3_region.is_some()
                || self.s3_prefix.is_some();
            if other_set {
                return Err(ConfigError::Invalid {
                    key: "s3_endpoint",
                    problem: "S3 keys are set but no endpoint".into(),
                    fix: "set s3_endpoint (e.g. http://127.0.0.1:8333), or remove the other s3_ keys",
                });
            }
            return Ok(None);
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                key: "s3_endpoint",
                problem: format!("{endpoint:?} is not an http(s) URL"),
                fix: "write http://HOST:PORT or https://HOST",
            });
        }
        let bucket = self.s3_bucket.unwrap_or_else(|| DEFAULT_S3_BUCKET.into());
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(ConfigError::Invalid {
                key: "s3_bucket",
                problem: format!("{bucket:?} is not a valid bucket name"),
                fix: "use 3-63 characters of a-z 0-9 . -",
            });
        }
        let (Some(access_key), Some(secret_key)) = (self.s3_access_key, self.s3_secret_key) else {
            return Err(ConfigError::Invalid {
                key: "s3_access_key",
                problem: "an S3 endpoint needs both an access key and a secret key".into(),
                fix: "set SPHERE_LITE_S3_ACCESS_KEY and SPHERE_LITE_S3_SECRET_KEY",
            });
        };
        let prefix = match self.s3_prefix.as_deref().map(|p| p.trim_matches('/')) {
            None | Some("") => None,
            Some(p) => {
                if crate::ports::BlobKey::new(p).is_err() {
                    return Err(ConfigError::Invalid {
                        key: "s3_prefix",
                        problem: format!("{p:?} is not a valid key prefix"),
                        fix: "use segments of A-Z a-z 0-9 . _ - separated by /",
                    });
                }
                Some(p.to_owned())
            }
        };
        Ok(Some(S3Settings {
            endpoint,
            bucket,
            access_key,
            secret_key,
            region: self
                .s3_region
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| DEFAULT_S3_REGION.into()),
            prefix,
        }))
    }
}

/// The TOML file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `data = "/var/lib/sphere-lite"`
    pub data: Option<PathBuf>,
    /// `listen = "127.0.0.1:8470"`
    pub listen: Option<String>,
    /// `max_upload_bytes = 67108864`
    pub max_upload_bytes: Option<u64>,
    /// `s3_endpoint = "http://127.0.0.1:8333"`: setting it switches blobs to S3.
    pub s3_endpoint: Option<String>,
    /// `s3_bucket = "sphere-lite"`
    pub s3_bucket: Option<String>,
    /// `s3_access_key = "..."`
    pub s3_access_key: Option<String>,
    /// `s3_secret_key = "..."` (prefer the environment for secrets)
    pub s3_secret_key: Option<String>,
    /// `s3_region = "us-east-1"`
    pub s3_region: Option<String>,
    /// `s3_prefix = "fleet-a"`
    pub s3_prefix: Option<String>,
    /// `mlflow_url = "http://127.0.0.1:5000"`: setting it switches tracking to MLflow (needs
    /// the s3_ keys too).
    pub mlflow_url: Option<String>,
    /// `mlflow_namespace = "fleet-a"`: prefix of all experiment names (default `sphere-lite`).
    pub mlflow_namespace: Option<String>,
    /// `mlflow_metric_keys = ["latency.*", "confidence.*"]`: the metric keys logged as MLflow
    /// metrics (default `["*"]`, every key); the keys the dashboard reads itself are logged
    /// whatever this says.
    pub mlflow_metric_keys: Option<Vec<String>>,
    /// File of trusted release public keys (one `tinylcm-release-public:` line each).
    pub release_keys: Option<PathBuf>,
    /// `tls_cert = "/etc/sphere-lite/cert.pem"`: PEM certificate chain; with `tls_key`,
    /// sphere-lite serves HTTPS instead of plain HTTP.
    pub tls_cert: Option<PathBuf>,
    /// `tls_key = "/etc/sphere-lite/key.pem"`: PEM private key (PKCS#8, RSA or SEC1).
    pub tls_key: Option<PathBuf>,
    /// `[server]`: the door's timeouts, connection cap, host allow-list and failure budget
    /// (keys in [`crate::door::ServerSection`]).
    #[serde(default)]
    pub server: crate::door::ServerSection,
    /// `[storage]`: retention of stored packages, the per-device quota and the last-seen
    /// interval (keys in [`crate::domain::storage::StorageSection`]).
    #[serde(default)]
    pub storage: crate::domain::storage::StorageSection,
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or parsed.
    #[error(
        "config file {path}: {message}. Fix: check the file's TOML (keys: data, listen, max_upload_bytes, s3_endpoint, s3_bucket, s3_access_key, s3_secret_key, s3_region, s3_prefix, mlflow_url, mlflow_namespace, mlflow_metric_keys, release_keys, tls_cert, tls_key, [server], [storage])"
    )]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A value is invalid.
    #[error("config key `{key}`: {problem}. Fix: {fix}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        problem: String,
        /// What to write instead.
        fix: &'static str,
    },
}

impl FileConfig {
    /// Read `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

impl Config {
    /// Combine flags/environment (`Some` wins), the file, and defaults; validate.
    pub fn resolve(
        data: Option<PathBuf>,
        listen: Option<String>,
        max_upload_bytes: Option<u64>,
        s3: S3Options,
        mlflow: MlflowOptions,
        tls: TlsOptions,
        file: FileConfig,
    ) -> Result<Self, ConfigError> {
        let tls = tls
            .or(TlsOptions {
                tls_cert: file.tls_cert,
                tls_key: file.tls_key,
            })
            .resolve()?;
        let s3 = s3
            .or(S3Options {
                s3_endpoint: file.s3_endpoint,
                s3_bucket: file.s3_bucket,
                s3_access_key: file.s3_access_key,
                s3_secret_key: file.s3_secret_key,
                s3_region: file.s3_region,
                s3_prefix: file.s3_prefix,
            })
            .resolve()?;
        let mlflow = mlflow
            .or(MlflowOptions {
                mlflow_url: file.mlflow_url,
                mlflow_namespace: file.mlflow_namespace,
                mlflow_metric_keys: file.mlflow_metric_keys,
            })
            .resolve(s3.as_ref())?;
        let data = data.or(file.data).unwrap_or_else(|| DEFAULT_DATA.into());
        let listen_text = listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = listen_text.parse().map_err(|_| ConfigError::Invalid {
            key: "listen",
            problem: format!("{listen_text:?} is not an address"),
            fix: "write IP:PORT, e.g. 127.0.0.1:8470 or 0.0.0.0:8470",
        })?;
        let max_upload_bytes = max_upload_bytes
            .or(file.max_upload_bytes)
            .unwrap_or(crate::domain::DEFAULT_MAX_UPLOAD_BYTES);
        if max_upload_bytes < 1024 {
            return Err(ConfigError::Invalid {
                key: "max_upload_bytes",
                problem: format!("{max_upload_bytes} is too small"),
                fix: "use at least 1024 (default 67108864)",
            });
        }
        Ok(Config {
            data,
            listen,
            max_upload_bytes,
            s3,
            mlflow,
            release_keys: file.release_keys,
            tls,
            server: file.server.resolve()?,
            storage: file.storage.resolve()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beats_defaults() {
        let file: FileConfig = toml::from_str("listen = \"0.0.0.0:1\"\ndata = \"/d\"").unwrap();
        let c = Config::resolve(
            None,
            Some("127.0.0.1:2".into()),
            None,
            S3Options::default(),
            MlflowOptions::default(),
            TlsOptions::default(),
            file,
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:2".parse().unwrap());
        assert_eq!(c.data, PathBuf::from("/d"));
        let d = Config::resolve(
            None,
            None,
            None,
            S3Options::default(),
            MlflowOptions::default(),
            TlsOptions::default(),
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(d.listen, DEFAULT_LISTEN.parse().unwrap());
        assert!(d.s3.is_none());
        assert!(
            Config::resolve(
                None,
                Some("nope".into()),
                None,
                S3Options::default(),
                MlflowOptions::default(),
                TlsOptions::default(),
                FileConfig::default()
            )
            .is_err()
        );
        assert!(toml::from_str::<FileConfig>("bogus = 1").is_err());
    }

    #[test]
    fn s3_keys_combine_and_are_validated() {
        let file: FileConfig = toml::from_str(
            "s3_endpoint = \"http://file:1\"\ns3_bucket = \"from-file\"\ns3_access_key = \"ak\"",
        )
        .unwrap();
        let flags = S3Options {
            s3_endpoint: Some("http://127.0.0.1:8333".into()),
            s3_secret_key: Some("sk".into()),
            ..S3Options::default()
        };
        let s3 = Config::resolve(
            None,
            None,
            None,
            flags,
            MlflowOptions::default(),
            TlsOptions::default(),
            file,
        )
        .unwrap()
        .s3
        .unwrap();
        assert_eq!(s3.endpoint, "http://127.0.0.1:8333");
        assert_eq!(s3.bucket, "from-file");
        assert_eq!(
            (s3.access_key.as_str(), s3.secret_key.as_str()),
            ("ak", "sk")
        );
        assert_eq!(s3.region, DEFAULT_S3_REGION);
        assert!(
            !format!("{s3:?}").contains("sk\""),
            "secret in Debug: {s3:?}"
        );

        let bad = |o: S3Options| {
            Config::resolve(
                None,
                None,
                None,
                o,
                MlflowOptions::default(),
                TlsOptions::default(),
                FileConfig::default(),
            )
        };
        let base = S3Options {
            s3_endpoint: Some("http://h:1".into()),
            s3_access_key: Some("a".into()),
            s3_secret_key: Some("s".into()),
            ..S3Options::default()
        };
        assert!(bad(base.clone()).is_ok());
        for broken in [
            S3Options {
                s3_endpoint: None,
                ..base.clone()
            },
            S3Options {
                s3_endpoint: Some("h:1".into()),
                ..base.clone()
            },
            S3Options {
                s3_secret_key: None,
                ..base.clone()
            },
            S3Options {
                s3_bucket: Some("Bad_Bucket".into()),
                ..base.clone()
            },
            S3Options {
                s3_prefix: Some("a/../b".into()),
                ..base.clone()
            },
        ] {
            assert!(bad(broken).is_err());
        }
    }

    /// S3 settings that resolve (MLflow needs them).
    fn some_s3() -> S3Options {
        S3Options {
            s3_endpoint: Some("http://h:1".into()),
            s3_access_key: Some("a".into()),
            s3_secret_key: Some("s".into()),
            ..S3Options::default()
        }
    }

    /// [`Config::resolve`] with only S3, MLflow and a file given.
    fn resolve(s3: S3Options, m: MlflowOptions, file: &str) -> Result<Config, ConfigError> {
        Config::resolve(
            None,
            None,
            None,
            s3,
            m,
            TlsOptions::default(),
            toml::from_str(file).unwrap(),
        )
    }

    #[test]
    fn mlflow_needs_s3_and_a_valid_namespace() {
        let s3 = some_s3();
        let url = |u: &str| MlflowOptions {
            mlflow_url: Some(u.into()),
            ..MlflowOptions::default()
        };
        let c = resolve(s3.clone(), url("http://127.0.0.1:5000"), "").unwrap();
        let m = c.mlflow.unwrap();
        assert_eq!(
            (m.url.as_str(), m.namespace.as_str()),
            ("http://127.0.0.1:5000", DEFAULT_NAMESPACE)
        );
        // From the file, with a namespace.
        let c = resolve(
            s3.clone(),
            MlflowOptions::default(),
            "mlflow_url = \"http://m:1\"\nmlflow_namespace = \"fleet-a/prod\"",
        )
        .unwrap();
        assert_eq!(c.mlflow.unwrap().namespace, "fleet-a/prod");
        // No S3: refused with the key and a fix.
        let err = resolve(S3Options::default(), url("http://m:1"), "")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mlflow_url") && err.contains("S3") && err.contains("Fix"),
            "{err}"
        );
        for (m, file) in [
            (url("m:1"), ""),
            (MlflowOptions::default(), "mlflow_namespace = \"x\""),
            (
                MlflowOptions {
                    mlflow_url: Some("http://m:1".into()),
                    mlflow_namespace: Some("bad_ns".into()),
                    ..MlflowOptions::default()
                },
                "",
            ),
        ] {
            assert!(resolve(s3.clone(), m, file).is_err());
        }
        assert!(m.metric_keys.keeps_all(), "every key by default");
    }

    #[test]
    fn mlflow_metric_keys_come_from_the_file_or_a_flag_and_are_checked() {
        let resolve = |m: MlflowOptions, file: &str| resolve(some_s3(), m, file);
        let keys = |c: Config| c.mlflow.unwrap().metric_keys.to_string();
        let url = "mlflow_url = \"http://m:1\"\n";
        let c = resolve(
            MlflowOptions::default(),
            &format!("{url}mlflow_metric_keys = [\"latency.*\", \"system.rss_mib\"]"),
        )
        .unwrap();
        assert_eq!(keys(c), "latency.*,system.rss_mib");
        // A flag (or SPHERE_LITE_MLFLOW_METRIC_KEYS) beats the file; an empty list keeps only
        // the dashboard's own keys.
        let flag = MlflowOptions {
            mlflow_metric_keys: Some(vec![]),
            ..MlflowOptions::default()
        };
        let c = resolve(flag, &format!("{url}mlflow_metric_keys = [\"*\"]")).unwrap();
        let kept = c.mlflow.unwrap().metric_keys;
        assert!(!kept.keeps_all() && !kept.keeps("classes.cat.total"));
        let err = resolve(
            MlflowOptions::default(),
            &format!("{url}mlflow_metric_keys = [\"latency*\"]"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("mlflow_metric_keys")
                && err.contains("\"latency*\"")
                && err.contains("Fix"),
            "{err}"
        );
        let err = resolve(MlflowOptions::default(), "mlflow_metric_keys = [\"a\"]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no MLflow URL"), "{err}");
    }

    #[test]
    fn tls_needs_both_files_from_any_source() {
        let resolve = |flags: TlsOptions, file: &str| {
            Config::resolve(
                None,
                None,
                None,
                S3Options::default(),
                MlflowOptions::default(),
                flags,
                toml::from_str(file).unwrap(),
            )
        };
        assert_eq!(resolve(TlsOptions::default(), "").unwrap().tls, None);
        // Flag for one, file for the other; a flag beats the file.
        let c = resolve(
            TlsOptions {
                tls_cert: Some("/flag/cert.pem".into()),
                tls_key: None,
            },
            "tls_cert = \"/file/cert.pem\"\ntls_key = \"/file/key.pem\"",
        )
        .unwrap();
        assert_eq!(
            c.tls,
            Some(TlsFiles {
                cert: "/flag/cert.pem".into(),
                key: "/file/key.pem".into()
            })
        );
        for (flags, file, key) in [
            (
                TlsOptions {
                    tls_cert: Some("/c.pem".into()),
                    tls_key: None,
                },
                "",
                "tls_key",
            ),
            (TlsOptions::default(), "tls_key = \"/k.pem\"", "tls_cert"),
            (
                TlsOptions {
                    tls_cert: Some("/c.pem".into()),
                    tls_key: Some("".into()),
                },
                "",
                "tls_key",
            ),
        ] {
            let err = resolve(flags, file).unwrap_err().to_string();
            assert!(
                err.contains(&format!("`{key}`")) && err.contains("Fix"),
                "{err}"
            );
        }
    }
}
