//! The MLflow adapter: the `LearningStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! client calls and shared helpers live in the parent module. Learning events are runs of
//! the drift experiment (kind `learning-event`, started at the device's time, so the newest
//! come first without a metric); a class rename is the device's feedback queue item itself
//! (the queue run keeps every item) plus a write-once `rename.<id>` param saying who asked.

use tinylcm_protocol::learning::{ClassRenameView, LearningEventView};

use super::*;
use crate::ports::{ClassRename, LearningStore};

const KIND_LEARNING: &str = "learning-event";
/// The event as JSON ([`LearningEventView`]).
const LEARNING: &str = "sphere.learning";
/// Write-once param of the device's queue run: who asked for the rename of item `<id>`.
const RENAME_PARAM_PREFIX: &str = "rename.";
/// Idempotency-key prefix of a rename's queue item.
const RENAME_SRC: &str = "class-rename/";
/// Most learning runs of one package looked at.
const MAX_PACKAGE_LEARNING: usize = 2 * tinylcm_protocol::learning::MAX_LEARNING_EVENTS_PER_MEMBER;

/// A rename as kept in its `rename.<id>` param.
#[derive(Serialize, Deserialize)]
struct StoredRename {
    by: String,
    unix_ms: u64,
}

impl LearningStore for MlflowTracking {
    fn put_learning_events(&self, events: &[LearningEventView]) -> Result<usize, StoreError> {
        let mut new = 0;
        let mut known: HashMap<(String, String), HashSet<String>> = HashMap::new();
        for event in events {
            let package = (event.device_id.clone(), event.package_id.clone());
            if !known.contains_key(&package) {
                let query = RunQuery {
                    experiment_ids: vec![self.drift.clone()],
                    filter: Filter::new()
                        .tag_eq(KIND, &lit_const(KIND_LEARNING))
                        .tag_eq(DEVICE, &lit(&event.device_id)?)
                        .tag_eq(PACKAGE_ID, &lit(&event.package_id)?)
                        .build(),
                    order_by: vec![],
                };
                let mut keys = HashSet::new();
                for run in self.client.search_runs(&query, MAX_PACKAGE_LEARNING)? {
                    keys.insert(learning_of(&run)?.key());
                }
                known.insert(package.clone(), keys);
            }
            let keys = known.get_mut(&package).expect("inserted above");
            let key = event.key();
            if keys.contains(&key) {
                continue;
            }
            let json = serde_json::to_string(event)
                .map_err(|e| StoreError::new("mlflow", format!("encode: {e}")))?;
            if json.chars().count() > MAX_TAG_VALUE {
                return Err(StoreError::new(
                    "mlflow",
                    "learning event too large for an MLflow tag",
                ));
            }
            let mut tags = vec![
                Tag::new(KIND, KIND_LEARNING),
                Tag::new(DEVICE, &event.device_id),
                Tag::new(PACKAGE_ID, &event.package_id),
                Tag::new(EVENT_SEQ, event.event_seq.to_string()),
                Tag::new(LEARNING, json),
            ];
            if let Some(epoch) = &event.epoch {
                tags.push(Tag::new(EPOCH, epoch));
            }
            let name = format!("{}/learning/{key}", event.device_id);
            self.client
                .create_run(&self.drift, &name, event.unix_ms, &tags)?;
            keys.insert(key);
            new += 1;
        }
        Ok(new)
    }

    fn learning_events(
        &self,
        device_id: &str,
        limit: usize,
    ) -> Result<Vec<LearningEventView>, StoreError> {
        let mut out: Vec<LearningEventView> = Vec::new();
        let Ok(device) = Literal::new(device_id) else {
            return Ok(out);
        };
        if limit == 0 {
            return Ok(out);
        }
        let query = RunQuery {
            experiment_ids: vec![self.drift.clone()],
            filter: Filter::new()
                .tag_eq(KIND, &lit_const(KIND_LEARNING))
                .tag_eq(DEVICE, &device)
                .build(),
            order_by: vec!["attributes.start_time DESC".into()],
        };
        let mut seen = HashSet::new();
        // Twice the page: a copy left by two replicas processing one package is listed once.
        let page = u32::try_from(limit.saturating_mul(2)).unwrap_or(u32::MAX);
        let (runs, _) = self.client.search_runs_page(&query, page, None)?;
        for run in &runs {
            let event = learning_of(run)?;
            if seen.insert(event.key()) {
                out.push(event);
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse((e.unix_ms, e.key())));
        out.truncate(limit);
        Ok(out)
    }

    fn queue_class_rename(&self, device_id: &str, rename: &ClassRename) -> Result<u64, StoreError> {
        let nonce =
            hex(&crate::secret::random_bytes::<8>().map_err(|e| StoreError::new("mlflow", e))?);
        let verdict = FeedbackVerdict::Class {
            from: rename.from.clone(),
            to: rename.to.clone(),
        };
        let ids = self.append_items(
            device_id,
            &[(verdict, Some(format!("{RENAME_SRC}{nonce}")))],
            rename.unix_ms,
        )?;
        let id = ids[0];
        let run = self
            .queue_run(device_id)?
            .ok_or_else(|| StoreError::new("mlflow", format!("no device {device_id}")))?;
        let value = serde_json::to_string(&StoredRename {
            by: rename.by.clone(),
            unix_ms: rename.unix_ms,
        })
        .map_err(|e| StoreError::new("mlflow", format!("encode: {e}")))?;
        self.client.claim_param(
            &run.info.run_id,
            &format!("{RENAME_PARAM_PREFIX}{id}"),
            &value,
        )?;
        Ok(id)
    }

    fn class_renames(
        &self,
        device_id: &str,
        limit: usize,
    ) -> Result<Vec<ClassRenameView>, StoreError> {
        let Some(run) = self.queue_run(device_id)? else {
            return Ok(Vec::new());
        };
        let acked = metric_u64(&run, ACKED).unwrap_or(0);
        let mut out = Vec::new();
        for stored in queue_items(&run)?.into_iter().rev() {
            if out.len() >= limit {
                break;
            }
            if !stored
                .src
                .as_deref()
                .is_some_and(|s| s.starts_with(RENAME_SRC))
            {
                continue;
            }
            let FeedbackVerdict::Class { from, to } = &stored.item.verdict else {
                continue;
            };
            let id = stored.item.id;
            // The param is written right after the item: a crash in between leaves no name.
            let asked: Option<StoredRename> = run
                .param(&format!("{RENAME_PARAM_PREFIX}{id}"))
                .and_then(|v| serde_json::from_str(v).ok());
            let feedback = super::feedback_state(&run, stored.item.clone(), acked)?;
            out.push(ClassRenameView {
                device_id: device_id.to_owned(),
                from: from.clone(),
                to: to.clone(),
                by: asked.as_ref().map_or_else(String::new, |a| a.by.clone()),
                requested_unix_ms: asked.map_or(stored.item.created_unix_ms, |a| a.unix_ms),
                feedback,
            });
        }
        Ok(out)
    }
}

fn learning_of(run: &Run) -> Result<LearningEventView, StoreError> {
    let json = run
        .tag(LEARNING)
        .ok_or_else(|| corrupt(format!("learning run {} has no event", run.info.run_id)))?;
    serde_json::from_str(json).map_err(|e| corrupt(format!("learning event: {e}")))
}
