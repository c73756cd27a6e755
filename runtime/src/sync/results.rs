//! Telling sphere-lite what became of its feedback: each item applied, or refused with the
//! device's reason.
//!
//! Why: acknowledging an item only says it reached the device's inbox. Whether a human's label
//! actually took effect (the sample may have left the quarantine, the class may be unknown, the
//! item may be invalid here) is known later, when the inference thread applies it; without
//! this report the dashboard showed a label as if it had taken effect. The feedback inbox
//! writes the results as small files ([`crate::autonomy::feedback::write_results`]); each round
//! sends them, oldest first, in bodies of at most [`MAX_RESULTS_PER_REPORT`], `POST`
//! [`paths::feedback_results`], and removes a file once sphere-lite answered 200. A server
//! older than the route answers 404: the results are dropped (logged), as they could never be
//! taken. Anything else keeps them for the next round; the inbox bounds how many files wait.

use tinylcm_protocol::api::{FeedbackResults, FeedbackResultsAnswer, MAX_RESULTS_PER_REPORT};
use tinylcm_protocol::paths;

use super::credentials::Credentials;
use super::host::SyncHost;
use super::http;
use super::status::SyncStatus;
use crate::autonomy::feedback::{pending_results, remove_results};

/// Most result files sent per round.
const MAX_FILES_PER_ROUND: usize = 32;

/// Sends the results waiting in the host's inbox. Never fails the round: what was not taken
/// waits for the next one (a report must never hold up feedback or models).
pub async fn report(
    client: &reqwest::Client,
    creds: &Credentials,
    host: &dyn SyncHost,
    status: &SyncStatus,
) {
    let inbox = host.feedback_inbox();
    for (path, results) in pending_results(&inbox, MAX_FILES_PER_ROUND) {
        for chunk in results.chunks(MAX_RESULTS_PER_REPORT) {
            let url = http::join(&creds.server, &paths::feedback_results(&creds.device_id));
            let body = FeedbackResults {
                results: chunk.to_vec(),
            };
            let request = client.post(url).bearer_auth(&creds.token).json(&body);
            match http::send(request, http::MAX_JSON_BYTES).await {
                Ok(answer) if answer.status == 200 => {
                    let recorded = answer
                        .json::<FeedbackResultsAnswer>()
                        .map_or(0, |a| a.recorded);
                    tracing::info!(
                        "sync: sphere-lite took the results of {} feedback items ({recorded} new)",
                        chunk.len()
                    );
                    status.update(|s| s.feedback_results += chunk.len() as u64);
                }
                Ok(answer) if answer.status == 404 => {
                    tracing::warn!(
                        "sync: {} does not take feedback results ({}; older than this \
                         device?); {} results dropped",
                        answer.answered_by(),
                        answer.error_text(),
                        results.len()
                    );
                    break;
                }
                Ok(answer) => {
                    tracing::warn!(
                        "sync: feedback results not taken ({}); again next round",
                        answer.error_text()
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!("sync: feedback results not sent ({e}); again next round");
                    return;
                }
            }
        }
        // Every chunk was taken (a repeat of one taken before changes nothing on the server).
        remove_results(&path);
    }
}
