//! The MLflow adapter: the `ReleaseStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! client calls and shared helpers live in the parent module.

use super::*;
use crate::adapters::mlflow::artifacts::{ArtifactLocationError, ProxyPath};
use crate::ports::{BlobKey, ReleaseStore};
use tinylcm_protocol::release::ReleaseManifest;

/// The artifact folder of a release run: what the model version's source `runs:/<run>/model`
/// names, so `mlflow artifacts download -u models:/<name>/<version>` fetches it.
const MODEL_DIR: &str = "model";
/// The model file, named as a device's model store names it.
const MODEL_FILE: &str = "model.tflite";
/// The runtime's model manifest (labels, input spec, output roles), beside the model.
const MODEL_MANIFEST_FILE: &str = "model.toml";
/// The signed release as devices verify it (`tinylcm model verify` reads it).
const SIGNED_RELEASE_FILE: &str = "release.json";

impl ReleaseStore for MlflowTracking {
    fn put_release(&self, release: &ReleaseRecord) -> Result<Recorded, StoreError> {
        let mut runs = self.release_runs(&release.name, &release.version)?;
        runs.sort_by_key(|r| r.info.start_time);
        if let Some(run) = runs.first() {
            // A publish that failed after its run was made is finished by the repeat.
            self.log_release_artifacts(release, run)?;
            self.register(release, &run.info.run_id)?;
            return Ok(Recorded::AlreadyKnown);
        }
        let json = serde_json::to_string(release).map_err(corrupt)?;
        let chars: Vec<char> = json.chars().collect();
        let mut tags = vec![
            Tag::new(KIND, KIND_RELEASE),
            Tag::new(RELEASE_NAME, release.name.clone()),
            Tag::new(RELEASE_VERSION, release.version.clone()),
        ];
        for (i, chunk) in chars.chunks(MAX_TAG_VALUE).enumerate() {
            tags.push(Tag::new(
                format!("{RECORD_PREFIX}{i}"),
                chunk.iter().collect::<String>(),
            ));
        }
        let run_name = format!("{}-{}", release.name, release.version);
        let run =
            self.client
                .create_run(&self.releases, &run_name, release.uploaded_unix_ms, &tags)?;
        // Two replicas recording the same release at once both create a run; readers take the
        // oldest, and both describe the same verified file (same name, version and SHA-256
        // checked by the domain), so either answer is right.
        // The files go first: a model version never points at an empty folder.
        self.log_release_artifacts(release, &run)?;
        self.register(release, &run.info.run_id)?;
        // The UI shows a RUNNING run as still in progress; the record is complete now.
        self.client
            .update_run(&run.info.run_id, "FINISHED", release.uploaded_unix_ms)?;
        Ok(Recorded::New)
    }

    fn release(&self, name: &str, version: &str) -> Result<Option<ReleaseRecord>, StoreError> {
        let mut runs = self.release_runs(name, version)?;
        runs.sort_by_key(|r| r.info.start_time);
        runs.first().map(release_of).transpose()
    }

    fn releases(&self) -> Result<Vec<ReleaseRecord>, StoreError> {
        let query = RunQuery {
            experiment_ids: vec![self.releases.clone()],
            filter: Filter::new().tag_eq(KIND, &lit_const(KIND_RELEASE)).build(),
            order_by: vec![],
        };
        let mut runs = self.client.search_runs(&query, MAX_RELEASES)?;
        runs.sort_by_key(|r| r.info.start_time);
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for run in &runs {
            let record = release_of(run)?;
            if seen.insert((record.name.clone(), record.version.clone())) {
                out.push(record);
            }
        }
        out.sort_by(|a, b| {
            (a.name.as_str(), a.uploaded_unix_ms).cmp(&(b.name.as_str(), b.uploaded_unix_ms))
        });
        Ok(out)
    }

    fn set_rollout(&self, rollout: &Rollout) -> Result<(), StoreError> {
        let json = serde_json::to_string(rollout).map_err(corrupt)?;
        self.set_experiment_tag(
            &self.releases,
            &format!("{ROLLOUT_PREFIX}{}", rollout.group),
            &json,
        )?;
        // The tag above is what devices are served from; the alias mirrors it in the model
        // registry for people and tools that read MLflow.
        let mut runs = self.release_runs(&rollout.name, &rollout.version)?;
        runs.sort_by_key(|r| r.info.start_time);
        if let Some(run) = runs.first() {
            let release = release_of(run)?;
            let version = self.register(&release, &run.info.run_id)?;
            let alias = if rollout.percent >= 100 {
                format!("rollout-{}", rollout.group)
            } else {
                format!("canary-{}", rollout.group)
            };
            self.client
                .set_model_alias(&self.registry_name(&rollout.name), &alias, &version)?;
        }
        Ok(())
    }

    fn rollouts(&self) -> Result<Vec<Rollout>, StoreError> {
        self.releases_tags(ROLLOUT_PREFIX, "rollout")
    }

    fn grant_release(&self, device_id: &str, name: &str, version: &str) -> Result<(), StoreError> {
        let Some(exp) = self.device_experiment(device_id)? else {
            return Ok(());
        };
        let key = format!("{GRANT_PREFIX}{name}/{version}");
        if exp.tag(&key).is_none() {
            let now = crate::domain::now_unix_ms().to_string();
            self.set_experiment_tag(&exp.experiment_id, &key, &now)?;
        }
        Ok(())
    }

    fn release_granted(
        &self,
        device_id: &str,
        name: &str,
        version: &str,
    ) -> Result<bool, StoreError> {
        let key = format!("{GRANT_PREFIX}{name}/{version}");
        Ok(self
            .device_experiment(device_id)?
            .is_some_and(|exp| exp.tag(&key).is_some()))
    }
}

impl MlflowTracking {
    /// Log `release`'s files as artifacts of its run `run` under [`MODEL_DIR`]: the model
    /// file (read from [`MlflowTracking::with_release_files`]'s store), the model manifest
    /// and the signed release. A file already there with its expected size is not sent again,
    /// so a repeated publish only completes what a failed one left out. A run whose artifacts
    /// are not on MLflow's artifact proxy gets none, with a warning (the release itself is
    /// recorded and served as before).
    fn log_release_artifacts(&self, release: &ReleaseRecord, run: &Run) -> Result<(), StoreError> {
        let dir = match ProxyPath::in_run(&run.info.artifact_uri, MODEL_DIR) {
            Ok(dir) => dir,
            Err(e @ ArtifactLocationError::NotProxied { .. }) => {
                tracing::warn!(release = %release.name, version = %release.version, "{e}; the release's files are not logged in MLflow");
                return Ok(());
            }
            Err(e) => return Err(StoreError::new("mlflow", e)),
        };
        let manifest: ReleaseManifest = serde_json::from_str(&release.signed.manifest)
            .map_err(|e| corrupt(format!("release manifest: {e}")))?;
        let signed = serde_json::to_vec_pretty(&release.signed).map_err(corrupt)?;
        let present: HashMap<String, Option<u64>> = self
            .client
            .list_artifacts(&dir)?
            .into_iter()
            .filter(|f| !f.is_dir)
            .map(|f| {
                let name = f.path.rsplit('/').next().unwrap_or_default().to_owned();
                (name, f.file_size)
            })
            .collect();
        let missing = |name: &str, size: u64| present.get(name) != Some(&Some(size));
        let put = |name: &str, bytes: &[u8]| -> Result<(), StoreError> {
            let path = ProxyPath::in_run(&run.info.artifact_uri, &format!("{MODEL_DIR}/{name}"))
                .map_err(|e| StoreError::new("mlflow", e))?;
            Ok(self.client.put_artifact(&path, bytes)?)
        };
        if missing(SIGNED_RELEASE_FILE, signed.len() as u64) {
            put(SIGNED_RELEASE_FILE, &signed)?;
        }
        let model_manifest = manifest.model_manifest.as_bytes();
        if missing(MODEL_MANIFEST_FILE, model_manifest.len() as u64) {
            put(MODEL_MANIFEST_FILE, model_manifest)?;
        }
        if missing(MODEL_FILE, release.size) {
            let Some(files) = &self.release_files else {
                tracing::debug!(release = %release.name, "no release file store: model file not logged");
                return Ok(());
            };
            let key = BlobKey::new(&release.blob_key)
                .map_err(|e| corrupt(format!("release blob key: {e}")))?;
            let model = files.get(&key)?.ok_or_else(|| {
                StoreError::new(
                    "mlflow",
                    format!(
                        "release {} {}: model file {key} is missing",
                        release.name, release.version
                    ),
                )
            })?;
            put(MODEL_FILE, &model)?;
        }
        Ok(())
    }
}
