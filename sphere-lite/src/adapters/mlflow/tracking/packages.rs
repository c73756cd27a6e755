//! The MLflow adapter: the `PackageStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! client calls and shared helpers live in the parent module.

use super::*;
use crate::ports::PackageStore;

/// Runs fetched beyond a page of [`PackageStore::packages_newest_first`]: replica duplicates and
/// packages of the cursor's millisecond already shown are dropped after the search, so a
/// page stays full unless more than this many share one millisecond.
const PAGE_SLACK: usize = 64;

impl PackageStore for MlflowTracking {
    fn package(
        &self,
        device_id: &str,
        package_id: &str,
    ) -> Result<Option<PackageRecord>, StoreError> {
        self.package_runs(device_id, package_id)?
            .first()
            .map(package_of)
            .transpose()
    }

    fn record_accepted(&self, record: &PackageRecord) -> Result<Recorded, StoreError> {
        if !self
            .package_runs(&record.device_id, &record.package_id)?
            .is_empty()
        {
            return Ok(Recorded::AlreadyKnown);
        }
        let run = self.client.create_run(
            &self.packages,
            &format!("{}/{}", record.device_id, record.package_id),
            record.accepted_unix_ms,
            &[
                Tag::new(KIND, KIND_PACKAGE),
                Tag::new(DEVICE, &record.device_id),
                Tag::new(PACKAGE_ID, &record.package_id),
                Tag::new(RAW_KEY, &record.raw_key),
                Tag::new(ACCEPTED, record.accepted_unix_ms.to_string()),
            ],
        )?;
        // Another replica may have recorded the same package meanwhile: the canonical record
        // (earliest, then smallest run id) stays, a later one is removed again.
        let runs = self.package_runs(&record.device_id, &record.package_id)?;
        if runs
            .first()
            .is_some_and(|first| first.info.run_id != run.info.run_id)
        {
            self.client.delete_run(&run.info.run_id)?;
            return Ok(Recorded::AlreadyKnown);
        }
        if let Some(done) = record.processed_unix_ms {
            self.mark_processed(
                &record.device_id,
                &record.package_id,
                done,
                record.failed.clone(),
                &record.problems,
            )?;
        }
        self.bump_package_count(record)?;
        Ok(Recorded::New)
    }

    fn mark_processed(
        &self,
        device_id: &str,
        package_id: &str,
        now_unix_ms: u64,
        failed: Option<String>,
        problems: &[String],
    ) -> Result<(), StoreError> {
        let runs = self.package_runs(device_id, package_id)?;
        if runs.is_empty() {
            return Err(StoreError::new(
                "mlflow",
                format!("no package {device_id}/{package_id}"),
            ));
        }
        let mut tags = vec![
            Tag::new(PROCESSED, now_unix_ms.to_string()),
            Tag::new(PROBLEMS, problems_json(problems)),
        ];
        if let Some(f) = &failed {
            tags.push(Tag::new(FAILED, cut(f, MAX_TAG_VALUE - 100)));
        }
        let status = if failed.is_some() {
            "FAILED"
        } else {
            "FINISHED"
        };
        // Every copy (duplicates from a replica race): none may stay pending.
        for run in &runs {
            self.client.log_batch(&run.info.run_id, &[], &[], &tags)?;
            self.client
                .update_run(&run.info.run_id, status, now_unix_ms)?;
        }
        Ok(())
    }

    fn packages_newest_first(
        &self,
        device_id: &str,
        before: Option<(u64, &str)>,
        limit: usize,
    ) -> Result<Vec<PackageRecord>, StoreError> {
        let mut filter = Filter::new()
            .tag_eq(KIND, &lit_const(KIND_PACKAGE))
            .tag_eq(DEVICE, &lit(device_id)?);
        if let Some((t, _)) = before {
            // `<=`: packages accepted in the cursor's millisecond but with a smaller id follow.
            filter = filter.start_time(Cmp::Le, t);
        }
        let query = RunQuery {
            experiment_ids: vec![self.packages.clone()],
            filter: filter.build(),
            order_by: vec!["attributes.start_time DESC".into()],
        };
        // A run starts at its package's acceptance time; the slack covers replica duplicates
        // and packages of the cursor's own millisecond that were already shown.
        let runs = self.client.search_runs(&query, limit + PAGE_SLACK)?;
        // One record per package: a replica race's duplicate counts as the earliest copy.
        let mut by_id: HashMap<String, PackageRecord> = HashMap::new();
        for run in &runs {
            let record = package_of(run)?;
            match by_id.get(&record.package_id) {
                Some(kept) if kept.accepted_unix_ms <= record.accepted_unix_ms => {}
                _ => {
                    by_id.insert(record.package_id.clone(), record);
                }
            }
        }
        let mut out: Vec<PackageRecord> = by_id
            .into_values()
            .filter(|r| {
                before.is_none_or(|(t, id)| (r.accepted_unix_ms, r.package_id.as_str()) < (t, id))
            })
            .collect();
        out.sort_by(|a, b| {
            (b.accepted_unix_ms, &b.package_id).cmp(&(a.accepted_unix_ms, &a.package_id))
        });
        out.truncate(limit);
        Ok(out)
    }

    fn unprocessed(&self) -> Result<Vec<PackageRecord>, StoreError> {
        let query = RunQuery {
            experiment_ids: vec![self.packages.clone()],
            filter: Filter::new()
                .tag_eq(KIND, &lit_const(KIND_PACKAGE))
                .status_eq(&lit_const("RUNNING"))
                .build(),
            order_by: vec!["attributes.start_time ASC".into()],
        };
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for run in self.client.search_runs(&query, MAX_PENDING)? {
            let record = package_of(&run)?;
            if seen.insert((record.device_id.clone(), record.package_id.clone())) {
                out.push(record);
            }
        }
        Ok(out)
    }
}
