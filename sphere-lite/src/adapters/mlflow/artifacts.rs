//! Where a run's artifacts are written: paths on MLflow's artifact proxy.
//!
//! Why: a data scientist reads a release with `mlflow artifacts download -u
//! models:/<name>/<version>` (or opens the version in the MLflow UI); MLflow resolves the
//! version's source `runs:/<run>/model` to the run's artifact URI plus `model`. On a server
//! that proxies artifacts (`mlflow server --serve-artifacts`, MLflow 3's default) that URI is
//! `mlflow-artifacts:/<experiment>/<run>/artifacts`, served under
//! `/api/2.0/mlflow-artifacts/artifacts/` from whatever store the server was given
//! (`--artifacts-destination s3://...`). Writing through the proxy puts the files exactly where
//! every MLflow client looks, without sphere-lite knowing MLflow's bucket or credentials. A run
//! whose artifact URI is not a proxy URI (`s3://...` on a server started with
//! `--no-serve-artifacts`) is refused here with what to change.

/// A path on the artifact proxy, relative to `/api/2.0/mlflow-artifacts/artifacts/`: only
/// `/`-separated segments of `A-Z a-z 0-9 . _ -`, none empty, `.` or `..`, so it needs no
/// escaping and cannot leave the run's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPath(String);

/// A run's artifact location that sphere-lite cannot write to.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArtifactLocationError {
    /// The run's artifacts are not served by MLflow's artifact proxy.
    #[error(
        "run artifact location {uri:?} is not served by MLflow's artifact proxy; start \
         `mlflow server` with --serve-artifacts (MLflow 3's default) and \
         --artifacts-destination, and no --default-artifact-root"
    )]
    NotProxied {
        /// The run's artifact URI.
        uri: String,
    },
    /// A path segment with characters outside the safe set.
    #[error("artifact path {path:?} is not a plain relative path")]
    BadPath {
        /// The offending path.
        path: String,
    },
}

const SCHEME: &str = "mlflow-artifacts:";

fn segments_ok(path: &str) -> bool {
    path.split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    })
}

impl ProxyPath {
    /// The proxy path of `relative` (e.g. `model/model.tflite`) in the artifacts of the run
    /// whose artifact URI is `artifact_uri` (`mlflow-artifacts:/<path>`, or
    /// `mlflow-artifacts://<host:port>/<path>` when the server names itself).
    pub fn in_run(artifact_uri: &str, relative: &str) -> Result<ProxyPath, ArtifactLocationError> {
        let not_proxied = || ArtifactLocationError::NotProxied {
            uri: artifact_uri.chars().take(200).collect(),
        };
        let rest = artifact_uri.strip_prefix(SCHEME).ok_or_else(not_proxied)?;
        let root = match rest.strip_prefix("//") {
            // The authority names this same server; the path after it is what counts.
            Some(with_host) => with_host.split_once('/').map_or("", |(_, p)| p),
            None => rest,
        };
        let root = root.trim_matches('/');
        if root.is_empty() || !segments_ok(root) {
            return Err(not_proxied());
        }
        if !segments_ok(relative) {
            return Err(ArtifactLocationError::BadPath {
                path: relative.chars().take(200).collect(),
            });
        }
        Ok(ProxyPath(format!("{root}/{relative}")))
    }

    /// The path, as it goes after `/api/2.0/mlflow-artifacts/artifacts/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_uris_map_to_proxy_paths() {
        let uri = "mlflow-artifacts:/7/0a1b/artifacts";
        assert_eq!(
            ProxyPath::in_run(uri, "model/model.tflite")
                .unwrap()
                .as_str(),
            "7/0a1b/artifacts/model/model.tflite"
        );
        let named = "mlflow-artifacts://mlflow.example:5000/7/0a1b/artifacts/";
        assert_eq!(
            ProxyPath::in_run(named, "model").unwrap().as_str(),
            "7/0a1b/artifacts/model"
        );
    }

    #[test]
    fn other_locations_and_unsafe_paths_are_refused() {
        for uri in [
            "s3://bucket/1/abc/artifacts",
            "file:///tmp/mlruns/1/abc/artifacts",
            "mlflow-artifacts:/",
            "mlflow-artifacts://host",
            "mlflow-artifacts:/1/../../etc",
            "mlflow-artifacts:/1/a b/artifacts",
            "mlflow-artifacts:/1/a%2f/artifacts",
        ] {
            assert!(
                matches!(
                    ProxyPath::in_run(uri, "model"),
                    Err(ArtifactLocationError::NotProxied { .. })
                ),
                "{uri}"
            );
        }
        let uri = "mlflow-artifacts:/1/abc/artifacts";
        for rel in ["", "../x", "model/../../x", "/abs", "a//b", "a?b", "ä"] {
            assert!(
                matches!(
                    ProxyPath::in_run(uri, rel),
                    Err(ArtifactLocationError::BadPath { .. })
                ),
                "{rel:?}"
            );
        }
    }
}
