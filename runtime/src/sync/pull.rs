//! What the device pulls: feedback (verdicts and remote configuration) and its model
//! assignment.
//!
//! * **Feedback**: a page's drift, sample and class verdicts become one inbox file, written
//!   atomically and fsynced ([`FeedbackFile::submit`]) before anything is acknowledged; the
//!   inbox thread applies it and removes it once durable. A crash after the file but before the
//!   ack brings the same items again and they are applied twice, which the inbox allows (every
//!   verdict is idempotent or bounded). Configuration items go to [`SyncHost::apply_config`]
//!   (durable before it returns). A configuration the host refuses is logged at error and
//!   still acknowledged: leaving it unacknowledged would block every later item, including the
//!   corrected configuration that replaces it (each item carries the whole effective fragment).
//!   A refusal — on receipt, or later when a generation failed with the configuration — is
//!   reported to sphere-lite ([`SyncHost::config_refusal`], `POST`
//!   [`paths::config_refusal`]) before and after each pull until sphere-lite records it, so
//!   the operator sees it and the server never sends that revision again. A server without
//!   the route (older than the device) answers 404: logged once, not retried.
//! * **Model**: an assignment whose SHA-256 differs from the active model and was not refused
//!   before is first checked without its file ([`SyncHost::check_release`]: signature, revoked
//!   key, the device's `[models] max-bytes`, epoch floor and compatible), so a release the
//!   device would refuse is never downloaded; such a refusal is remembered together with its
//!   reason (a device whose limit or compatible changes checks it again, and takes it when it
//!   now passes). Then the file is downloaded to `<state dir>/downloads/` ([`download::fetch`]:
//!   only when the state folder's file system keeps `[board] min-free-mib` free after it;
//!   resumed, bounded by the assignment's size, checked against its SHA-256), and handed to
//!   [`SyncHost::install_release`]. A refusal is remembered by the signed release (in the
//!   state database) so a bad release is not downloaded in a loop, while the same model file
//!   signed again (right key, right goldens) is taken. A release the host cannot take *now*
//!   ([`crate::sync::InstallError::Later`]) is tried again after a back-off per release
//!   ([`LATER_FIRST`] doubling up to [`LATER_MAX`], kept in the state database), not at every
//!   round; while a model is on trial ([`SyncHost::accepts_installs`] false) nothing is
//!   downloaded.
//! * **The refusal reported**: the last refusal of the assigned release (its name, version,
//!   SHA-256, [`RefusalKind`] and message) is kept in the state database ([`refusal_to_report`])
//!   and sent in every package's metrics file, so sphere-lite shows which release the device
//!   refused and why, also after the device restarted. It is kept until the assignment
//!   changes (another release, or none), the device runs the assigned release, or the
//!   release now passes the check before its download (the device's side changed).

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use sha2::{Digest, Sha256};

use tinylcm_protocol::api::{
    AckRequest, AckResponse, ConfigRefusal, FeedbackOutcome, FeedbackPage, FeedbackResult,
    ModelAssignment,
};
use tinylcm_protocol::device_json::refusal::{RefusalKind, ReleaseRefusal};
use tinylcm_protocol::paths;
use tinylcm_protocol::release::ReleaseManifest;

use super::credentials::Credentials;
use super::download::{self, FetchError};
use super::error::PullError;
use super::host::{InstallError, SyncHost};
use super::http;
use super::status::SyncStatus;
use crate::autonomy::feedback::{FeedbackFile, Submit as _};
use crate::board::DiskGuard;
use crate::state::{Batch, Store};

/// Most feedback pages taken per round.
const MAX_PAGES: usize = 10;
/// Name of the refused-release list in the `sync` table.
const REFUSED: &str = "refused-models";
/// Most refusals remembered (oldest forgotten first).
const MAX_REFUSED: usize = 64;
/// Name of the refusal reported to sphere-lite, in the `sync` table.
const REPORTED: &str = "model-refusal-reported";
/// Name of the back-off record of a release the host could not take now, in the `sync` table.
const LATER: &str = "model-later";
/// First wait after a release the host could not take now.
pub const LATER_FIRST: Duration = Duration::from_secs(60);
/// Longest wait between tries of such a release.
pub const LATER_MAX: Duration = Duration::from_secs(3600);

/// Reports the host's unreported configuration refusal, if any. A failure is logged and
/// left for the next round: a report must never hold up feedback.
async fn report_refusal(client: &reqwest::Client, creds: &Credentials, host: &dyn SyncHost) {
    let Some((revision, reason)) = host.config_refusal() else {
        return;
    };
    let url = http::join(&creds.server, &paths::config_refusal(&creds.device_id));
    let request = client
        .post(url)
        .bearer_auth(&creds.token)
        .json(&ConfigRefusal::new(&revision, &reason));
    match http::send(request, http::MAX_JSON_BYTES).await {
        Ok(answer) if answer.status == 200 => {
            tracing::info!("sync: sphere-lite recorded the refusal of configuration {revision}");
            host.config_refusal_reported(&revision);
        }
        // An older sphere-lite has no such route (nor a proxy that passes only the routes it
        // knows): asking every round would change nothing.
        Ok(answer) if answer.status == 404 => {
            tracing::warn!(
                "sync: {} cannot record the refusal of configuration {revision} ({}; older \
                 than this device?); the device runs without it",
                answer.answered_by(),
                answer.error_text()
            );
            host.config_refusal_reported(&revision);
        }
        Ok(answer) => tracing::warn!(
            "sync: the refusal of configuration {revision} was not recorded ({}); again next \
             round",
            answer.error_text()
        ),
        Err(e) => tracing::warn!(
            "sync: the refusal of configuration {revision} was not sent ({e}); again next round"
        ),
    }
}

/// Pulls, applies and acknowledges feedback; returns the items acknowledged. A configuration
/// refusal is reported before (one left by a failed generation) and after (one refused on
/// receipt in this pull).
pub async fn pull_feedback(
    client: &reqwest::Client,
    creds: &Credentials,
    host: &dyn SyncHost,
    status: &SyncStatus,
) -> Result<usize, PullError> {
    report_refusal(client, creds, host).await;
    let done = pull_pages(client, creds, host, status).await?;
    report_refusal(client, creds, host).await;
    Ok(done)
}

/// The pages of [`pull_feedback`].
async fn pull_pages(
    client: &reqwest::Client,
    creds: &Credentials,
    host: &dyn SyncHost,
    status: &SyncStatus,
) -> Result<usize, PullError> {
    let mut done = 0;
    let mut after = 0u64;
    for _ in 0..MAX_PAGES {
        let url = http::join(&creds.server, &paths::feedback(&creds.device_id));
        let request = client
            .get(url)
            .query(&[("after", after)])
            .bearer_auth(&creds.token);
        let answer = http::send(request, http::MAX_JSON_BYTES)
            .await
            .map_err(|source| PullError::Transport {
                what: "feedback",
                source,
            })?;
        if answer.status != 200 {
            return Err(PullError::Answer {
                what: "feedback",
                answer: answer.error_text(),
            });
        }
        let page: FeedbackPage = answer.json().map_err(|reason| PullError::Decode {
            what: "feedback",
            reason,
        })?;
        let Some(last) = page.items.iter().map(|i| i.id).max() else {
            return Ok(done);
        };
        let (file, configs) = FeedbackFile::from_items(&page.items);
        let inbox = host.feedback_inbox();
        // Results known now (configurations, verdicts this runtime cannot take); the inbox
        // reports the others once it applied them.
        let mut results = Vec::new();
        let now = crate::utc::now_unix_ms();
        if !(file.drift.is_empty() && file.sample.is_empty() && file.class.is_empty()) {
            match file.submit(&inbox) {
                Ok(path) => tracing::info!(
                    "sync: feedback items up to {last} written to {}",
                    path.display()
                ),
                Err(crate::autonomy::feedback::FeedbackError::Invalid { reason, .. }) => {
                    // Verdicts this runtime cannot take (e.g. a label over its bound) would be
                    // refused by the inbox too: acknowledged so they do not block the queue.
                    tracing::error!("sync: feedback up to {last} is not valid here: {reason}");
                    let why = format!("invalid on this device: {reason}");
                    for id in file
                        .items
                        .drift
                        .iter()
                        .chain(&file.items.sample)
                        .chain(&file.items.class)
                    {
                        results.push(FeedbackResult::new(
                            *id,
                            FeedbackOutcome::Refused,
                            Some(&why),
                            now,
                        ));
                    }
                }
                Err(e) => return Err(PullError::Inbox(e)),
            }
        }
        for (id, revision, toml) in configs {
            match host.apply_config(&revision, &toml) {
                Ok(()) => {
                    tracing::info!("sync: remote configuration {revision} applied");
                    status.update(|s| s.configs_applied += 1);
                    results.push(FeedbackResult::new(id, FeedbackOutcome::Applied, None, now));
                }
                Err(e) => {
                    tracing::error!(
                        "sync: remote configuration {revision} refused (acknowledged anyway, \
                         the next revision replaces it): {e}"
                    );
                    results.push(FeedbackResult::new(
                        id,
                        FeedbackOutcome::Refused,
                        Some(&e),
                        now,
                    ));
                }
            }
        }
        if let Err(e) = crate::autonomy::feedback::write_results(&inbox, &results) {
            tracing::warn!("sync: cannot keep feedback results for sphere-lite: {e}");
        }
        let url = http::join(&creds.server, &paths::feedback_ack(&creds.device_id));
        let request = client
            .post(url)
            .bearer_auth(&creds.token)
            .json(&AckRequest { up_to: last });
        let answer = http::send(request, http::MAX_JSON_BYTES)
            .await
            .map_err(|source| PullError::Transport {
                what: "feedback ack",
                source,
            })?;
        if answer.status != 200 {
            return Err(PullError::Answer {
                what: "feedback ack",
                answer: answer.error_text(),
            });
        }
        let ack: AckResponse = answer.json().map_err(|reason| PullError::Decode {
            what: "feedback ack",
            reason,
        })?;
        done += page.items.len();
        status.update(|s| s.feedback_items += page.items.len() as u64);
        after = ack.acknowledged_up_to.max(last);
    }
    Ok(done)
}

/// Releases refused before, by SHA-256.
pub fn refused(store: &Store) -> Vec<String> {
    store
        .get_sync::<Vec<String>>(REFUSED)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// What a refusal is remembered by: the signed release (manifest and signature), not only
/// the model file, so the same file published again with a right key or right goldens is
/// taken, while the same refused release is never downloaded twice.
fn refusal_key(a: &ModelAssignment) -> String {
    let mut hash = Sha256::new();
    hash.update(a.release.manifest.as_bytes());
    hash.update([0]);
    hash.update(a.release.signature.as_bytes());
    tinylcm_protocol::package::hex(&hash.finalize())
}

/// What a refusal *before the download* is remembered by: the signed release and the reason,
/// which names the device's side (its limit, floor, compatible, revoked key). The same check is
/// made again each round (it costs no download): while it fails for the same reason nothing is
/// logged or recorded again; when the device's side changed the release is judged anew.
fn precheck_key(a: &ModelAssignment, reason: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(refusal_key(a).as_bytes());
    hash.update([0]);
    hash.update(reason.as_bytes());
    tinylcm_protocol::package::hex(&hash.finalize())
}

fn remember_refusal(store: &Store, key: &str) -> Result<(), PullError> {
    let mut list = refused(store);
    if !list.iter().any(|s| s == key) {
        list.push(key.to_string());
    }
    let over = list.len().saturating_sub(MAX_REFUSED);
    list.drain(..over);
    let mut b = Batch::new();
    b.put_sync(REFUSED, &list)?;
    store.submit(b)?;
    Ok(store.flush()?)
}

/// The refusal reported to sphere-lite, as kept in the `sync` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct KeptRefusal {
    /// [`refusal_key`] of the refused release: another assignment supersedes it.
    release: String,
    /// The [`ReleaseRefusal`] as its wire JSON, so a runtime that knows other kinds reads it
    /// back (the state's binary codec would tie it to this build's list of kinds).
    json: String,
}

/// The refusal of the assigned release this device reports to sphere-lite in each package's
/// metrics, if any (kept across restarts until the assignment changes).
pub fn refusal_to_report(store: &Store) -> Option<ReleaseRefusal> {
    let kept = kept_refusal(store)?;
    serde_json::from_str(&kept.json).ok()
}

/// The refusal kept in the `sync` table, if any (an unreadable one counts as none).
fn kept_refusal(store: &Store) -> Option<KeptRefusal> {
    store
        .get_sync::<Option<KeptRefusal>>(REPORTED)
        .ok()
        .flatten()
        .flatten()
}

/// Keeps `refusal` of release `key` as the one to report, durably.
pub(crate) fn keep_refusal(
    store: &Store,
    key: &str,
    refusal: &ReleaseRefusal,
) -> Result<(), PullError> {
    let kept = KeptRefusal {
        release: key.to_owned(),
        json: serde_json::to_string(refusal).unwrap_or_default(),
    };
    let mut b = Batch::new();
    b.put_sync(REPORTED, &Some(kept))?;
    store.submit(b)?;
    Ok(store.flush()?)
}

/// Forgets the refusal to report unless it is of release `keep`: written only when there is
/// one to forget, so a round that changes nothing writes nothing.
pub(crate) fn forget_refusal_unless(store: &Store, keep: Option<&str>) -> Result<(), PullError> {
    match kept_refusal(store) {
        Some(k) if Some(k.release.as_str()) != keep => {
            let mut b = Batch::new();
            b.put_sync(REPORTED, &None::<KeptRefusal>)?;
            store.submit(b)?;
            Ok(store.flush()?)
        }
        _ => Ok(()),
    }
}

/// Remembers the refusal of assignment `a` (by `remembered`, [`refusal_key`] or
/// [`precheck_key`]) so it is not judged again, and keeps it as the one to report.
fn refuse(
    store: &Store,
    a: &ModelAssignment,
    remembered: &str,
    kind: RefusalKind,
    why: &str,
) -> Result<(), PullError> {
    let refusal = ReleaseRefusal::new(&a.name, &a.version, &a.sha256, kind, why);
    keep_refusal(store, &refusal_key(a), &refusal)?;
    remember_refusal(store, remembered)
}

/// The back-off of the one release the host last could not take now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Later {
    /// [`refusal_key`] of the release.
    release: String,
    /// "Later" answers so far.
    attempts: u32,
    /// Not tried again before (Unix ms).
    not_before_unix_ms: u64,
}

/// The wait after the `attempts`-th "later": [`LATER_FIRST`] doubling, at most [`LATER_MAX`].
fn later_wait(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    LATER_FIRST.saturating_mul(1 << doublings).min(LATER_MAX)
}

/// Time left before release `key` may be tried again, if it is backing off. A clock that went
/// back (no RTC before NTP) counts as passed: one early try at worst.
fn later_left(store: &Store, key: &str, now_ms: u64) -> Option<Duration> {
    let later = store.get_sync::<Later>(LATER).ok().flatten()?;
    if later.release != key || later.not_before_unix_ms <= now_ms {
        return None;
    }
    let left = Duration::from_millis(later.not_before_unix_ms - now_ms);
    (left <= LATER_MAX).then_some(left)
}

/// Records another "later" for release `key` (a new release starts the count again).
fn remember_later(store: &Store, key: &str, now_ms: u64) -> Result<Duration, PullError> {
    let attempts = match store.get_sync::<Later>(LATER).ok().flatten() {
        Some(l) if l.release == key => l.attempts.saturating_add(1),
        _ => 1,
    };
    let wait = later_wait(attempts);
    let later = Later {
        release: key.to_string(),
        attempts,
        not_before_unix_ms: now_ms.saturating_add(wait.as_millis() as u64),
    };
    let mut b = Batch::new();
    b.put_sync(LATER, &later)?;
    store.submit(b)?;
    store.flush()?;
    Ok(wait)
}

/// What [`pull_model`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelOutcome {
    /// Nothing assigned, or the assignment runs already, was refused before, or backs off.
    Nothing,
    /// Handed to the host, which installed it.
    Installed(String),
    /// Refused this round, before or after its download (remembered): why.
    Refused(String),
    /// Not taken this round and why: no room for its download, or the host could not take it
    /// now (tried again after a back-off).
    Waiting(String),
}

fn valid_sha(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks the assignment, downloads and installs it when it is new; `disk` guards the state
/// folder's file system (a download that would leave less than its minimum free waits).
pub async fn pull_model(
    client: &reqwest::Client,
    creds: &Credentials,
    host: &dyn SyncHost,
    store: &Store,
    state_dir: &Path,
    disk: Option<&DiskGuard>,
) -> Result<ModelOutcome, PullError> {
    let url = http::join(&creds.server, &paths::model(&creds.device_id));
    let answer = http::send(
        client.get(url).bearer_auth(&creds.token),
        http::MAX_JSON_BYTES,
    )
    .await
    .map_err(|source| PullError::Transport {
        what: "model assignment",
        source,
    })?;
    if answer.status == 204 {
        // No assignment supersedes any refusal.
        forget_refusal_unless(store, None)?;
        return Ok(ModelOutcome::Nothing);
    }
    if answer.status != 200 {
        return Err(PullError::Answer {
            what: "model assignment",
            answer: answer.error_text(),
        });
    }
    let a: ModelAssignment = answer.json().map_err(|reason| PullError::Decode {
        what: "model assignment",
        reason,
    })?;
    if !valid_sha(&a.sha256) || a.size == 0 || a.size > tinylcm_protocol::release::MAX_MODEL_BYTES {
        return Err(PullError::BadAssignment {
            label: format!("{}/{}", a.name, a.version),
            size: a.size,
        });
    }
    let key = refusal_key(&a);
    if host.active_model().is_some_and(|m| m.sha256 == a.sha256) {
        forget_refusal_unless(store, None)?;
        return Ok(ModelOutcome::Nothing);
    }
    // A refusal of another release is superseded by this assignment.
    forget_refusal_unless(store, Some(&key))?;
    if refused(store).contains(&key) {
        return Ok(ModelOutcome::Nothing);
    }
    let label = format!("{}/{}", a.name, a.version);
    // What the signed release says must be what the server assigns: the download is bounded
    // and checked by the assignment's figures.
    if let Ok(m) = serde_json::from_str::<ReleaseManifest>(&a.release.manifest) {
        if m.size != a.size || m.sha256 != a.sha256 {
            return Err(PullError::Contradicted {
                label,
                size: a.size,
                sha256: a.sha256.clone(),
                release_size: m.size,
                release_sha256: m.sha256,
            });
        }
    }
    match host.check_release(&a.release) {
        // A refusal before the download no longer holds (the device's side changed).
        Ok(()) => forget_refusal_unless(store, None)?,
        Err(InstallError::Refused(kind, e)) => {
            let pre = precheck_key(&a, &e);
            if refused(store).contains(&pre) {
                return Ok(ModelOutcome::Nothing);
            }
            tracing::error!(
                "sync: model release {label} ({}) refused before downloading it, not \
                 downloaded: {e}",
                a.sha256
            );
            host.release_refused(&label, &e);
            refuse(store, &a, &pre, kind, &e)?;
            return Ok(ModelOutcome::Refused(e));
        }
        Err(InstallError::Later(e)) => {
            return Ok(ModelOutcome::Waiting(format!(
                "model release {label} cannot be checked now: {e}"
            )));
        }
    }
    let now_ms = crate::utc::now_unix_ms();
    if let Some(left) = later_left(store, &key, now_ms) {
        tracing::debug!(
            "sync: model release {label} backs off for {} s more",
            left.as_secs()
        );
        return Ok(ModelOutcome::Nothing);
    }
    if !host.accepts_installs() {
        tracing::debug!("sync: model release {label} waits: the device takes no install now");
        return Ok(ModelOutcome::Nothing);
    }
    let dir = state_dir.join("downloads");
    let file = match download::fetch(client, creds, &a, &dir, disk).await {
        Ok(file) => file,
        Err(why @ FetchError::NoRoom { .. }) => {
            return Ok(ModelOutcome::Waiting(format!(
                "model release {label} not downloaded: {why}"
            )));
        }
        Err(e) => return Err(PullError::Download(e)),
    };
    let result = host.install_release(&file, &a.release);
    let _ = std::fs::remove_file(&file);
    match result {
        Ok(()) => {
            tracing::info!("sync: model release {label} installed");
            Ok(ModelOutcome::Installed(a.sha256))
        }
        Err(InstallError::Refused(kind, e)) => {
            tracing::error!(
                "sync: model release {label} ({}) refused, it will not be downloaded again: {e}",
                a.sha256
            );
            refuse(store, &a, &key, kind, &e)?;
            Ok(ModelOutcome::Refused(e))
        }
        Err(InstallError::Later(e)) => {
            let wait = remember_later(store, &key, now_ms)?;
            tracing::warn!(
                "sync: model release {label} not installed now, tried again in {} s: {e}",
                wait.as_secs()
            );
            Ok(ModelOutcome::Waiting(format!(
                "model release {label} not installed now: {e}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autonomy::feedback::Verdict;
    use tinylcm_protocol::api::DriftVerdict as WireDrift;
    use tinylcm_protocol::api::{FeedbackItem, FeedbackVerdict};

    #[test]
    fn items_map_onto_the_feedback_file_and_configs_apart() {
        let verdicts = vec![
            FeedbackVerdict::Drift {
                incident: None,
                event: Some(4),
                verdict: WireDrift::Confirmed,
            },
            FeedbackVerdict::Sample {
                id: 9,
                label: Some("star".into()),
                reject: false,
            },
            FeedbackVerdict::Config {
                revision: "r1".into(),
                toml: "[knn]\nk = 3".into(),
            },
            FeedbackVerdict::Class {
                from: "new-1".into(),
                to: "empty".into(),
            },
        ];
        let items: Vec<FeedbackItem> = verdicts
            .into_iter()
            .enumerate()
            .map(|(i, verdict)| FeedbackItem {
                id: 10 + i as u64,
                created_unix_ms: 1,
                verdict,
            })
            .collect();
        let (file, configs) = FeedbackFile::from_items(&items);
        assert_eq!(file.drift.len(), 1);
        // Each verdict keeps the item it came from, for the device's results.
        assert_eq!(
            (
                &file.items.drift[..],
                &file.items.sample[..],
                &file.items.class[..]
            ),
            (&[10][..], &[11][..], &[13][..])
        );
        assert_eq!(file.drift[0].event, Some(4));
        assert_eq!(file.drift[0].verdict, Verdict::Confirmed);
        assert_eq!(file.sample[0].label.as_deref(), Some("star"));
        assert_eq!(file.class[0].to, "empty");
        assert_eq!(
            configs,
            vec![(12, "r1".to_string(), "[knn]\nk = 3".to_string())]
        );
        // The file with its items goes through the inbox's TOML and back.
        let dir = tempfile::tempdir().unwrap();
        let path = file.submit(dir.path()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(FeedbackFile::parse(&path, &text).unwrap(), file);
        file.validate(Path::new("x")).unwrap();
    }

    /// A state store in a temporary folder (kept while the folder is).
    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            dir.path().join("s.redb"),
            crate::state::DurabilityPolicy::default(),
        )
        .unwrap();
        (dir, store)
    }

    #[test]
    fn refusals_are_remembered_and_bounded() {
        let (_dir, store) = temp_store();
        for i in 0..70 {
            remember_refusal(&store, &format!("{i:064x}")).unwrap();
        }
        remember_refusal(&store, &format!("{:064x}", 69)).unwrap();
        let list = refused(&store);
        assert_eq!(list.len(), MAX_REFUSED);
        assert_eq!(list.last().unwrap(), &format!("{:064x}", 69));
        assert!(!list.contains(&format!("{:064x}", 0)));
        assert!(valid_sha(&"a".repeat(64)) && !valid_sha(&"A".repeat(64)));
    }

    /// Fails before this change: a refusal was a counter in memory and a line in the log, so
    /// after a restart the device said nothing of it. The refusal is kept with its kind and
    /// message, survives reopening the state database, stays while the same release is
    /// assigned and goes once another assignment supersedes it.
    #[test]
    fn a_refusal_is_kept_with_its_reason_across_a_reopen_until_superseded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let open = || Store::open(&path, crate::state::DurabilityPolicy::default()).unwrap();
        let why = "release shapes 3 is signed by key k-9, which is not among the trusted keys";
        {
            let store = open();
            assert_eq!(refusal_to_report(&store), None);
            let refusal = ReleaseRefusal::new(
                "shapes",
                "3",
                &"ab".repeat(32),
                RefusalKind::UntrustedKey,
                why,
            );
            keep_refusal(&store, "release-3", &refusal).unwrap();
            remember_refusal(&store, "pre-3").unwrap();
        }
        let store = open();
        let kept = refusal_to_report(&store).expect("kept across the reopen");
        assert_eq!(
            (kept.name.as_str(), kept.version.as_str(), kept.kind),
            ("shapes", "3", RefusalKind::UntrustedKey)
        );
        assert_eq!(kept.message, why);
        assert!(refused(&store).contains(&"pre-3".to_string()));
        // The same release still assigned: kept.
        forget_refusal_unless(&store, Some("release-3")).unwrap();
        assert!(refusal_to_report(&store).is_some());
        // Another release (or none) assigned: gone, and still gone after a reopen.
        forget_refusal_unless(&store, Some("release-4")).unwrap();
        assert_eq!(refusal_to_report(&store), None);
        drop(store);
        assert_eq!(refusal_to_report(&open()), None);
    }

    /// Fails before this change: a release the host could not take now was downloaded and
    /// handed over again at every round (41 downloads in 40 s).
    #[test]
    fn a_later_release_backs_off_doubling_and_a_new_release_starts_again() {
        let (_dir, store) = temp_store();
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let t0 = 1_800_000_000_000u64;
        assert_eq!(later_left(&store, &a, t0), None);
        assert_eq!(remember_later(&store, &a, t0).unwrap(), LATER_FIRST);
        assert_eq!(later_left(&store, &a, t0), Some(LATER_FIRST));
        assert_eq!(
            later_left(&store, &b, t0),
            None,
            "another release is not held back"
        );
        let t1 = t0 + LATER_FIRST.as_millis() as u64;
        assert_eq!(
            later_left(&store, &a, t1),
            None,
            "tried again after the wait"
        );
        assert_eq!(remember_later(&store, &a, t1).unwrap(), 2 * LATER_FIRST);
        for _ in 0..20 {
            remember_later(&store, &a, t1).unwrap();
        }
        assert_eq!(later_left(&store, &a, t1), Some(LATER_MAX));
        // A clock that went back does not block for ever.
        assert_eq!(
            later_left(&store, &a, t1 - 10 * LATER_MAX.as_millis() as u64),
            None
        );
        assert_eq!(remember_later(&store, &b, t1).unwrap(), LATER_FIRST);
    }
}
