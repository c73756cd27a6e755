//! The sync client's counters, shared with the service so that `status.json` and the metrics
//! show what sync does: queued, uploaded, duplicates, dropped, failures, the last error and the
//! last success. In memory and per process; the durable totals are the store's `sync.*`
//! counters.
//!
//! It also holds the one alert sync raises by itself: [`ForeignAnswerAlert`], when something
//! that is not sphere-lite (typically a reverse proxy with a body limit below the device's
//! packages) answers the device's requests with an error. The packages it refused are kept,
//! but nothing reaches the server until someone fixes what is in between, so the alert says
//! what answered and how, in `status.json` and in the metrics the dashboard shows.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatusView {
    /// Whether the device has credentials.
    pub enrolled: bool,
    /// How often it syncs (`[sync] interval-seconds`); sent as the metric
    /// [`tinylcm_protocol::metric_keys::SYNC_INTERVAL_SECONDS`] so the dashboard judges the
    /// age of its last sync against it.
    #[serde(default)]
    pub interval_seconds: u64,
    /// Packages waiting in the outbox.
    pub outbox_packages: u64,
    /// Their bytes.
    pub outbox_bytes: u64,
    /// Packages queued since start.
    pub queued: u64,
    /// Packages the server accepted since start.
    pub uploaded: u64,
    /// Packages the server already had (a retry after a lost answer) since start.
    pub duplicates: u64,
    /// Packages dropped by the disk policy (or a 413) since start.
    pub dropped: u64,
    /// Packages the server refused as invalid (moved aside) since start.
    pub rejected: u64,
    /// Failed requests (network, 5xx, garbage) since start.
    pub failures: u64,
    /// Feedback items applied and acknowledged since start.
    pub feedback_items: u64,
    /// Remote configurations applied since start.
    pub configs_applied: u64,
    /// Results of feedback items (applied, or refused with the device's reason) sphere-lite
    /// took since start.
    #[serde(default)]
    pub feedback_results: u64,
    /// Model releases handed to the model store since start.
    pub models_installed: u64,
    /// Model releases refused since start (before or after their download); each is refused
    /// once and remembered.
    #[serde(default)]
    pub models_refused: u64,
    /// Why the last of them was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_refusal: Option<String>,
    /// Why the assigned release is not being installed for now (no room for its download,
    /// or the device could not take it and backs off); cleared once it is installed or refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_waiting: Option<String>,
    /// The last failure, if the last round had one.
    pub last_error: Option<String>,
    /// When a round last completed without failure (Unix ms).
    pub last_success_unix_ms: Option<u64>,
    /// Uploads are stopped because the server refused the token.
    pub needs_enrollment: bool,
    /// Something that is not sphere-lite answers sync requests with errors (a proxy): set by
    /// the last such answer, cleared when a whole round goes through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreign_answer: Option<ForeignAnswerAlert>,
    /// The HTTP status of [`SyncStatusView::foreign_answer`], 0 without one: always present, so
    /// that the metric [`tinylcm_protocol::api::FOREIGN_ANSWER_METRIC`] the dashboard reads
    /// falls back to 0 once the alert clears.
    #[serde(default)]
    pub foreign_answer_status: u16,
}

/// An error answer to a sync request that did not come from sphere-lite (its body lacked
/// sphere-lite's origin marker): the request's data is kept and retried with backoff.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignAnswerAlert {
    /// Which request met it: `upload`, `enrollment`, `feedback` or `model`.
    pub request: String,
    /// The answer's HTTP status (e.g. 413).
    pub status: u16,
    /// Who answered, e.g. `nginx/1.24.0 (not sphere-lite)` from its `Server` header.
    pub answered_by: String,
    /// The answer as text (status, who, the start of its body).
    pub error: String,
    /// When the same status from the same answerer was first seen in a row (Unix ms).
    pub since_unix_ms: u64,
    /// When it was last seen (Unix ms).
    pub last_unix_ms: u64,
    /// How many such answers in a row.
    pub times: u64,
    /// What to do about it.
    pub fix: String,
}

impl SyncStatusView {
    /// Records a foreign error answer to `request` at `now_unix_ms` (keeping the first time
    /// while the same status comes from the same answerer).
    pub fn raise_foreign(
        &mut self,
        request: &str,
        answer: &super::http::Foreign,
        now_unix_ms: u64,
    ) {
        let same = self
            .foreign_answer
            .as_ref()
            .filter(|a| a.status == answer.status && a.answered_by == answer.answered_by);
        let (since, times) = same.map_or((now_unix_ms, 0), |a| (a.since_unix_ms, a.times));
        let fix = match answer.status {
            413 => {
                "a proxy between this device and sphere-lite limits request bodies below the \
                    device's packages ([sync] max-package-kib): raise its limit (nginx: \
                    client_max_body_size) or point [sync] server at sphere-lite itself"
            }
            _ => {
                "check what answers at [sync] server: it is not sphere-lite (a proxy, a \
                  gateway or a captive portal); the device keeps its data and retries"
            }
        };
        self.foreign_answer = Some(ForeignAnswerAlert {
            request: request.to_owned(),
            status: answer.status,
            answered_by: answer.answered_by.clone(),
            error: answer.text.clone(),
            since_unix_ms: since,
            last_unix_ms: now_unix_ms,
            times: times.saturating_add(1),
            fix: fix.to_owned(),
        });
        self.foreign_answer_status = answer.status;
    }

    /// Clears the alert (a whole round went through).
    pub fn clear_foreign(&mut self) {
        self.foreign_answer = None;
        self.foreign_answer_status = 0;
    }
}

/// The live counters (cheap to read from any thread).
#[derive(Debug, Default)]
pub struct SyncStatus {
    inner: Mutex<SyncStatusView>,
}

impl SyncStatus {
    /// A copy of the counters.
    pub fn view(&self) -> SyncStatusView {
        self.lock().clone()
    }

    /// Changes the counters under the lock.
    pub fn update(&self, f: impl FnOnce(&mut SyncStatusView)) {
        f(&mut self.lock());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SyncStatusView> {
        // Counters only: a panic half-way cannot break an invariant worth refusing over.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_foreign_answer_alert_counts_repeats_and_clears() {
        let nginx = super::super::http::Foreign {
            status: 413,
            answered_by: "nginx (not sphere-lite)".into(),
            text: "HTTP 413 from nginx (not sphere-lite): \"<html>\"".into(),
        };
        let mut v = SyncStatusView::default();
        v.raise_foreign("upload", &nginx, 10);
        v.raise_foreign("upload", &nginx, 20);
        let a = v.foreign_answer.clone().unwrap();
        assert_eq!((a.since_unix_ms, a.last_unix_ms, a.times), (10, 20, 2));
        assert!(a.fix.contains("client_max_body_size"), "{}", a.fix);
        assert_eq!(v.foreign_answer_status, 413);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(
            json["foreign_answer"]["answered_by"],
            "nginx (not sphere-lite)"
        );
        v.raise_foreign(
            "feedback",
            &super::super::http::Foreign {
                status: 502,
                ..nginx
            },
            30,
        );
        assert_eq!(v.foreign_answer.as_ref().unwrap().times, 1);
        v.clear_foreign();
        assert_eq!(
            (v.foreign_answer.is_none(), v.foreign_answer_status),
            (true, 0)
        );
        // A status.json written before this field existed still reads.
        let old: SyncStatusView = serde_json::from_str(
            r#"{"enrolled":true,"outbox_packages":0,
            "outbox_bytes":0,"queued":0,"uploaded":0,"duplicates":0,"dropped":0,"rejected":0,
            "failures":0,"feedback_items":0,"configs_applied":0,"models_installed":0,
            "last_error":null,"last_success_unix_ms":null,"needs_enrollment":false}"#,
        )
        .unwrap();
        assert_eq!(old.foreign_answer_status, 0);
    }
}
