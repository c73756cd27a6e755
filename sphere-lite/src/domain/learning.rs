//! What devices learn on their own, and operators naming what they proposed.
//!
//! Why: a device's adaptation rounds (kept or rolled back, with the guard's reason), the
//! classes it proposes (`new-N`) and the incidents it closes were visible only as metric keys.
//! Devices now report them (`tinylcm_protocol::learning`); processing stores them here for
//! the device's timeline. An operator names a proposed class (or merges it into a known one)
//! by queueing a `Class { from, to }` feedback item: the device renames the class in its KNN
//! and reports the item applied or refused through the same results route drift verdicts
//! use, so the dashboard shows the rename queued → delivered → applied.

use tinylcm_protocol::api::MAX_LABEL_BYTES;
use tinylcm_protocol::device_json::drift::printable;
use tinylcm_protocol::learning::{ClassRenameRequest, ClassRenameView, LearningEventView};

pub(super) use tinylcm_protocol::device_json::learning::learning_of;

use super::{DomainError, Sphere, now_unix_ms};
use crate::ports::ClassRename;

/// Most learning events or renames one listing returns.
pub const MAX_LEARNING_PAGE: usize = 200;

fn bad(error: impl Into<String>, fix: &str) -> DomainError {
    DomainError::BadRequest {
        error: error.into(),
        fix: Some(fix.into()),
    }
}

fn no_device(device_id: &str) -> DomainError {
    DomainError::NotFound {
        error: format!("no device {device_id}"),
        fix: Some("list the devices with GET /api/v2/devices".into()),
    }
}

impl Sphere {
    /// The newest `limit` (at most [`MAX_LEARNING_PAGE`]) learning events of `device_id`,
    /// newest first (an unknown device has none).
    pub fn learning_events(
        &self,
        device_id: &str,
        limit: usize,
    ) -> Result<Vec<LearningEventView>, DomainError> {
        if !tinylcm_protocol::ids::valid_device_id(device_id) {
            return Ok(Vec::new());
        }
        Ok(self
            .tracking
            .learning_events(device_id, limit.min(MAX_LEARNING_PAGE))?)
    }

    /// The newest `limit` (at most [`MAX_LEARNING_PAGE`]) class renames asked for
    /// `device_id`, newest first, each with how far its feedback item got.
    pub fn class_renames(
        &self,
        device_id: &str,
        limit: usize,
    ) -> Result<Vec<ClassRenameView>, DomainError> {
        if !tinylcm_protocol::ids::valid_device_id(device_id) {
            return Ok(Vec::new());
        }
        Ok(self
            .tracking
            .class_renames(device_id, limit.min(MAX_LEARNING_PAGE))?)
    }

    /// `operator` names the class `request.from` of `device_id` `request.to` (a class the
    /// device has already: the two are merged), delivered as a feedback item; returns its id.
    pub fn rename_class(
        &self,
        device_id: &str,
        operator: &str,
        request: &ClassRenameRequest,
    ) -> Result<u64, DomainError> {
        for (field, value) in [("from", &request.from), ("to", &request.to)] {
            if value.trim().is_empty() || value.len() > MAX_LABEL_BYTES || !printable(value) {
                return Err(bad(
                    format!("`{field}` must be 1..={MAX_LABEL_BYTES} printable bytes"),
                    "give the class as the device names it and its new name",
                ));
            }
        }
        if request.from == request.to {
            return Err(bad(
                "`from` and `to` are the same class",
                "give the class a new name, or pick another class to merge it into",
            ));
        }
        if !tinylcm_protocol::ids::valid_device_id(device_id)
            || self.tracking.device(device_id)?.is_none()
        {
            return Err(no_device(device_id));
        }
        let id = self.tracking.queue_class_rename(
            device_id,
            &ClassRename {
                from: request.from.clone(),
                to: request.to.trim().to_owned(),
                by: operator.to_owned(),
                unix_ms: now_unix_ms(),
            },
        )?;
        tracing::info!(
            device = %device_id, from = %request.from, to = %request.to, by = %operator,
            feedback = id, "class rename queued"
        );
        self.notify(super::Change::FeedbackResults {
            device: device_id.to_owned(),
        });
        Ok(id)
    }
}
