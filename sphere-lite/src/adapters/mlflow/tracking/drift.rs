//! The MLflow adapter: the `DriftStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! client calls and shared helpers live in the parent module.

use super::*;
use crate::ports::DriftStore;

impl DriftStore for MlflowTracking {
    fn put_drift_events(&self, events: &[DriftEventView]) -> Result<usize, StoreError> {
        let mut new = 0;
        for event in events {
            let epoch = event.epoch.as_deref();
            let existing = self.event_runs(&event.device_id, epoch, event.event_seq)?;
            if let Some(first) = existing.first() {
                // Stored before; if a crash left it without an id, give it one now.
                if metric_u64(first, ID).is_none() {
                    self.assign_id(first, event.unix_ms)?;
                    new += 1;
                }
                continue;
            }
            let mut stored = event.clone();
            stored.id = 0;
            stored.status = DriftEventStatus::Pending;
            stored.label = None;
            stored.note = None;
            stored.decided_by = None;
            stored.decided_unix_ms = None;
            let json = serde_json::to_string(&stored)
                .map_err(|e| StoreError::new("mlflow", format!("encode: {e}")))?;
            if json.chars().count() > MAX_TAG_VALUE {
                return Err(StoreError::new(
                    "mlflow",
                    "drift event too large for an MLflow tag",
                ));
            }
            let name = match epoch {
                Some(epoch) => format!("{}/{epoch}/{}", event.device_id, event.event_seq),
                None => format!("{}/{}", event.device_id, event.event_seq),
            };
            let mut tags = vec![
                Tag::new(KIND, KIND_EVENT),
                Tag::new(DEVICE, &event.device_id),
                Tag::new(EVENT_SEQ, event.event_seq.to_string()),
                Tag::new(DETECTOR_HEX, hex(event.detector.as_bytes())),
                Tag::new(STATUS, status_str(DriftEventStatus::Pending)),
                Tag::new(EVENT, json),
            ];
            if let Some(epoch) = epoch {
                tags.push(Tag::new(EPOCH, epoch));
            }
            let run = self
                .client
                .create_run(&self.drift, &name, event.received_unix_ms, &tags)?;
            self.assign_id(&run, event.unix_ms)?;
            // Another replica may have stored the same (device, event_seq) meanwhile: the
            // canonical copy (smallest id) stays, the other is removed again.
            let copies = self.event_runs(&event.device_id, epoch, event.event_seq)?;
            if copies
                .first()
                .is_some_and(|first| first.info.run_id != run.info.run_id)
            {
                self.client.delete_run(&run.info.run_id)?;
                continue;
            }
            new += 1;
        }
        Ok(new)
    }

    fn drift_event(&self, id: u64) -> Result<Option<DriftEventView>, StoreError> {
        let Some((_, view)) = self.find_event(id)? else {
            return Ok(None);
        };
        let mut views = [view];
        self.with_feedback(&mut views)?;
        let [view] = views;
        Ok(Some(view))
    }

    fn drift_events(
        &self,
        filter: &DriftEventFilter,
        after: u64,
        limit: usize,
    ) -> Result<Vec<DriftEventView>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 || after == u64::MAX {
            return Ok(out);
        }
        let mut f = Filter::new()
            .tag_eq(KIND, &lit_const(KIND_EVENT))
            .metric(ID, Cmp::Gt, after);
        if let Some(d) = &filter.device {
            match Literal::new(d) {
                Ok(l) => f = f.tag_eq(DEVICE, &l),
                // No device has such an id.
                Err(_) => return Ok(out),
            }
        }
        if let Some(d) = &filter.detector {
            f = f.tag_eq(DETECTOR_HEX, &lit(&hex(d.as_bytes()))?);
        }
        if let Some(s) = filter.status {
            f = f.tag_eq(STATUS, &lit(status_str(s))?);
        }
        if let Some(t) = filter.since {
            f = f.metric(UNIX_MS, Cmp::Ge, t);
        }
        if let Some(t) = filter.until {
            f = f.metric(UNIX_MS, Cmp::Lt, t);
        }
        let query = RunQuery {
            experiment_ids: vec![self.drift.clone()],
            filter: f.build(),
            order_by: vec![format!("metrics.`{ID}` ASC")],
        };
        let page = u32::try_from(limit).unwrap_or(u32::MAX);
        let mut token: Option<String> = None;
        loop {
            let (runs, next) = self
                .client
                .search_runs_page(&query, page, token.as_deref())?;
            for run in &runs {
                let view = self.event_view(run)?;
                // The status tag can lag the decision param after a crash: the param decides.
                if view.id > after && filter.matches(&view) {
                    out.push(view);
                    if out.len() >= limit {
                        self.with_feedback(&mut out)?;
                        return Ok(out);
                    }
                }
            }
            match next {
                Some(t) => token = Some(t),
                None => {
                    self.with_feedback(&mut out)?;
                    return Ok(out);
                }
            }
        }
    }

    fn decide_drift_event(
        &self,
        id: u64,
        decision: &Decision,
        feedback: &[FeedbackVerdict],
    ) -> Result<DecideOutcome, StoreError> {
        let Some((run, view)) = self.find_event(id)? else {
            return Ok(DecideOutcome::NotFound);
        };
        if view.status != DriftEventStatus::Pending {
            self.repair_decided(&run, &view)?;
            return Ok(DecideOutcome::AlreadyDecided(view));
        }
        let nonce =
            hex(&crate::secret::random_bytes::<8>().map_err(|e| StoreError::new("mlflow", e))?);
        // The note and the feedback go first, under this attempt's nonce, so the winning
        // decision is never without them (a loser's are removed again).
        let feedback_json = serde_json::to_string(feedback)
            .map_err(|e| StoreError::new("mlflow", format!("encode: {e}")))?;
        let mut tags = vec![Tag::new(format!("{FEEDBACK_PREFIX}{nonce}"), feedback_json)];
        if let Some(note) = &decision.note {
            tags.push(Tag::new(format!("{NOTE_PREFIX}{nonce}"), note));
        }
        if tags.iter().any(|t| t.value.chars().count() > MAX_TAG_VALUE) {
            return Err(StoreError::new("mlflow", "decision too large for MLflow"));
        }
        self.client.log_batch(&run.info.run_id, &[], &[], &tags)?;
        let stored = StoredDecision {
            status: decision.status,
            label: decision.label.clone(),
            by: decision.by.clone(),
            unix_ms: decision.unix_ms,
            nonce: nonce.clone(),
        };
        let value = serde_json::to_string(&stored)
            .map_err(|e| StoreError::new("mlflow", format!("encode: {e}")))?;
        if value.chars().count() > MAX_PARAM_VALUE {
            return Err(StoreError::new("mlflow", "decision too large for MLflow"));
        }
        match self
            .client
            .claim_param(&run.info.run_id, DECISION, &value)?
        {
            ParamOutcome::Stored => {
                self.client
                    .set_tag(&run.info.run_id, STATUS, status_str(decision.status))?;
                self.append_items(
                    &view.device_id,
                    &with_sources(id, feedback),
                    decision.unix_ms,
                )?;
                let mut decided = view;
                decided.status = decision.status;
                decided.label = decision.label.clone();
                decided.note = decision.note.clone();
                decided.decided_by = Some(decision.by.clone());
                decided.decided_unix_ms = Some(decision.unix_ms);
                let mut views = [decided];
                self.with_feedback(&mut views)?;
                let [decided] = views;
                Ok(DecideOutcome::Decided(decided))
            }
            ParamOutcome::Taken => {
                for t in &tags {
                    // Best effort: a left-over tag of a lost attempt is never read.
                    if let Err(e) = self.client.delete_tag(&run.info.run_id, &t.key) {
                        tracing::warn!(error = %e, "could not remove a lost decision's tag");
                    }
                }
                let run = self
                    .client
                    .run(&run.info.run_id)?
                    .ok_or_else(|| StoreError::new("mlflow", "drift event run vanished"))?;
                let current = self.event_view(&run)?;
                Ok(DecideOutcome::AlreadyDecided(current))
            }
        }
    }

    fn append_feedback(
        &self,
        device_id: &str,
        verdicts: &[FeedbackVerdict],
        now_unix_ms: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let items: Vec<_> = verdicts.iter().map(|v| (v.clone(), None)).collect();
        self.append_items(device_id, &items, now_unix_ms)
    }

    fn feedback_after(
        &self,
        device_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FeedbackItem>, StoreError> {
        let marks = match &self.feedback_marks {
            Some(marks) => marks.after(device_id, after)?,
            None => feedback_marks::Marks::MaybeNew,
        };
        if marks == feedback_marks::Marks::NothingNew {
            return Ok(vec![]);
        }
        let Some(run) = self.queue_run(device_id)? else {
            return Ok(vec![]);
        };
        let items = queue_items(&run)?;
        if let (feedback_marks::Marks::Unmarked, Some(m)) = (&marks, &self.feedback_marks) {
            // Items queued from now on are marked before they are written; this marks the
            // ones before, so that polls after them need no MLflow read either.
            m.mark(device_id, items.last().map_or(0, |s| s.item.id))?;
        }
        let acked = metric_u64(&run, ACKED).unwrap_or(0);
        let from = after.max(acked);
        let mut sources = HashSet::new();
        let mut out = Vec::new();
        for stored in items {
            // A decision's item queued twice (a repair racing the decider) is delivered once.
            let first = stored
                .src
                .as_ref()
                .is_none_or(|s| sources.insert(s.clone()));
            if stored.item.id > from && first {
                out.push(stored.item);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn record_feedback_results(
        &self,
        device_id: &str,
        results: &[FeedbackResult],
    ) -> Result<usize, StoreError> {
        let Some(run) = self.queue_run(device_id)? else {
            return Ok(0);
        };
        let last = queue_items(&run)?.last().map_or(0, |s| s.item.id);
        let mut new = 0;
        for r in results {
            let key = format!("{RESULT_PARAM_PREFIX}{}", r.id);
            if r.id == 0 || r.id > last || run.param(&key).is_some() {
                continue;
            }
            let value = serde_json::to_string(r)
                .map_err(|e| StoreError::new("mlflow", format!("encode: {e}")))?;
            if value.chars().count() > MAX_PARAM_VALUE {
                return Err(StoreError::new("mlflow", "feedback result too large"));
            }
            // Write-once: a result reported before (by this or another replica) stands.
            if let ParamOutcome::Stored = self.client.claim_param(&run.info.run_id, &key, &value)? {
                new += 1;
            }
        }
        Ok(new)
    }

    fn ack_feedback(&self, device_id: &str, up_to: u64) -> Result<u64, StoreError> {
        let Some(run) = self.queue_run(device_id)? else {
            return Ok(0);
        };
        let acked = metric_u64(&run, ACKED).unwrap_or(0);
        let last = queue_items(&run)?.last().map_or(0, |s| s.item.id);
        let new = acked.max(up_to.min(last));
        if new > acked {
            // step = the watermark: MLflow's latest value is the one with the largest step, so
            // concurrent acks can never move it backwards.
            self.client.log_metric(
                &run.info.run_id,
                &Metric {
                    key: ACKED.into(),
                    value: new as f64,
                    timestamp: crate::domain::now_unix_ms() as i64,
                    step: i64::try_from(new).unwrap_or(i64::MAX),
                },
            )?;
        }
        Ok(new)
    }
}
