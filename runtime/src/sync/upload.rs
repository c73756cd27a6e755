//! One upload and what its answer means for the package.
//!
//! Only a 200 whose body names the same package id as `accepted` or `duplicate` confirms a
//! package; anything else that might be transient (5xx, network errors, timeouts, an answer
//! that does not parse, a 200 for another id) is retried, because deleting a package on a
//! doubtful answer is the one way to lose it. A 400 can never succeed (the same bytes are
//! sent again), 401/403 need a new enrollment, 413 needs a smaller package.

use tinylcm_protocol::api::{UploadOutcome, UploadResponse};
use tinylcm_protocol::package::CONTENT_TYPE;
use tinylcm_protocol::paths;

use super::credentials::Credentials;
use super::http::{self, Answer, Transport};

/// What to do with a package after an upload attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The server has it (`duplicate`: it had it already): delete it.
    Stored {
        /// The server had it before this attempt.
        duplicate: bool,
    },
    /// 400: the server refuses these bytes for good: move it aside.
    Invalid(String),
    /// 413: too large for this server: drop it by policy.
    TooLarge(String),
    /// 401/403: the token is not accepted: stop until enrolled again.
    Unauthorized(String),
    /// Anything that may pass later: keep it and retry with backoff.
    Retry(String),
}

/// Classifies an upload's outcome.
pub fn classify(result: Result<Answer, Transport>, package_id: &str) -> Verdict {
    let answer = match result {
        Ok(a) => a,
        Err(e) => return Verdict::Retry(e.to_string()),
    };
    match answer.status {
        200 => match answer.json::<UploadResponse>() {
            Ok(r) if r.package_id == package_id => Verdict::Stored {
                duplicate: r.outcome == UploadOutcome::Duplicate,
            },
            Ok(r) => Verdict::Retry(format!(
                "the server confirmed package {} instead of {package_id}",
                r.package_id
            )),
            Err(e) => Verdict::Retry(e),
        },
        400 => Verdict::Invalid(answer.error_text()),
        401 | 403 => Verdict::Unauthorized(answer.error_text()),
        413 => Verdict::TooLarge(answer.error_text()),
        _ => Verdict::Retry(answer.error_text()),
    }
}

/// Uploads `tar` (package `package_id`) as the enrolled device.
pub async fn upload(
    client: &reqwest::Client,
    creds: &Credentials,
    package_id: &str,
    tar: Vec<u8>,
) -> Verdict {
    let request = client
        .post(http::join(
            &creds.server,
            &paths::packages(&creds.device_id),
        ))
        .bearer_auth(&creds.token)
        .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
        .body(tar);
    classify(http::send(request, http::MAX_JSON_BYTES).await, package_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Result<Answer, Transport> {
        Ok(Answer {
            status,
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn only_a_matching_confirmation_deletes() {
        let ok = r#"{"package_id":"p1","outcome":"accepted"}"#;
        let dup = r#"{"package_id":"p1","outcome":"duplicate"}"#;
        assert_eq!(
            classify(answer(200, ok), "p1"),
            Verdict::Stored { duplicate: false }
        );
        assert_eq!(
            classify(answer(200, dup), "p1"),
            Verdict::Stored { duplicate: true }
        );
        assert!(matches!(classify(answer(200, ok), "p2"), Verdict::Retry(_)));
        assert!(matches!(
            classify(answer(200, "<html>"), "p1"),
            Verdict::Retry(_)
        ));
        assert!(matches!(classify(answer(200, ""), "p1"), Verdict::Retry(_)));
        assert!(matches!(
            classify(answer(500, "{}"), "p1"),
            Verdict::Retry(_)
        ));
        assert!(matches!(
            classify(answer(503, "x"), "p1"),
            Verdict::Retry(_)
        ));
        assert!(matches!(classify(answer(302, ""), "p1"), Verdict::Retry(_)));
        assert!(matches!(
            classify(Err(Transport::Network("reset".into())), "p1"),
            Verdict::Retry(_)
        ));
        assert!(matches!(
            classify(Err(Transport::TooLarge { max: 1 }), "p1"),
            Verdict::Retry(_)
        ));
        assert!(matches!(
            classify(answer(400, r#"{"error":"bad"}"#), "p1"),
            Verdict::Invalid(e) if e.contains("bad")
        ));
        assert!(matches!(
            classify(answer(401, ""), "p1"),
            Verdict::Unauthorized(_)
        ));
        assert!(matches!(
            classify(answer(403, ""), "p1"),
            Verdict::Unauthorized(_)
        ));
        assert!(matches!(
            classify(answer(413, ""), "p1"),
            Verdict::TooLarge(_)
        ));
    }
}
