//! The MLflow adapter: the `ReleaseStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! client calls and shared helpers live in the parent module.

use super::*;
use crate::ports::ReleaseStore;

impl ReleaseStore for MlflowTracking {
    fn put_release(&self, release: &ReleaseRecord) -> Result<Recorded, StoreError> {
        let mut runs = self.release_runs(&release.name, &release.version)?;
        runs.sort_by_key(|r| r.info.start_time);
        if let Some(run) = runs.first() {
            // A publish that failed after its run was made is finished by the repeat.
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
        self.register(release, &run.info.run_id)?;
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
        let mut runs = self.client.search_runs(&query, MAX_PENDING)?;
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
        self.client.set_experiment_tag(
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
            self.client
                .set_experiment_tag(&exp.experiment_id, &key, &now)?;
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
