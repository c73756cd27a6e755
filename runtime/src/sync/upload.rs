//! One upload and what its answer means for the package.
//!
//! Only a 200 whose body names the same package id as `accepted` or `duplicate` confirms a
//! package; anything else that might be transient (5xx, network errors, timeouts, an answer
//! that does not parse, a 200 for another id) is retried, because deleting a package on a
//! doubtful answer is the one way to lose it. A refusal is final only when sphere-lite itself
//! gave it (its error body carries the origin marker, see
//! [`tinylcm_protocol::api::ErrorResponse`]): its 400 can never succeed (the same bytes are
//! sent again), its 401/403 need a new enrollment, its 413 needs a smaller package. The same
//! statuses from anything else (a reverse proxy whose body limit is below our packages, a
//! gateway) say nothing about the package: it is kept and retried with backoff, and the sync
//! status shows who answered.

use tinylcm_protocol::api::{UploadOutcome, UploadResponse};
use tinylcm_protocol::package::CONTENT_TYPE;
use tinylcm_protocol::paths;

use super::credentials::Credentials;
use super::http::{self, Answer, Foreign, Transport};

/// What to do with a package after an upload attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The server has it (`duplicate`: it had it already): delete it.
    Stored {
        /// The server had it before this attempt.
        duplicate: bool,
    },
    /// sphere-lite's own 400: it refuses these bytes for good: move it aside.
    Invalid(String),
    /// sphere-lite's own 413: too large for this server: drop it by policy.
    TooLarge(String),
    /// sphere-lite's own 401/403: the token is not accepted: stop until enrolled again.
    Unauthorized(String),
    /// An error answer that sphere-lite did not give (a proxy's 413 or 400, a gateway's 502):
    /// keep the package, retry with backoff, and alert.
    Foreign(Foreign),
    /// Anything that may pass later: keep it and retry with backoff.
    Retry(String),
}

/// Classifies an upload's outcome.
pub fn classify(result: Result<Answer, Transport>, package_id: &str) -> Verdict {
    let answer = match result {
        Ok(a) => a,
        Err(e) => return Verdict::Retry(e.to_string()),
    };
    if answer.is_foreign() {
        return Verdict::Foreign(Foreign {
            status: answer.status,
            answered_by: answer.answered_by(),
            text: answer.error_text(),
        });
    }
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
        with_server(status, body, None)
    }

    fn with_server(status: u16, body: &str, server: Option<&str>) -> Result<Answer, Transport> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(s) = server {
            headers.insert(reqwest::header::SERVER, s.parse().unwrap());
        }
        Ok(Answer::new(status, &headers, body.as_bytes().to_vec()))
    }

    /// sphere-lite's own error body, as `sphere-lite/src/http/reject.rs` sends it.
    fn ours(error: &str) -> String {
        serde_json::to_string(&tinylcm_protocol::api::ErrorResponse::new(error, None)).unwrap()
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
            classify(answer(500, &ours("internal server error")), "p1"),
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
    }

    /// sphere-lite's own refusals stay final.
    #[test]
    fn sphere_lites_own_refusals_are_final() {
        assert!(matches!(
            classify(answer(400, &ours("bad")), "p1"),
            Verdict::Invalid(e) if e.contains("bad")
        ));
        assert!(matches!(
            classify(answer(401, &ours("no token")), "p1"),
            Verdict::Unauthorized(_)
        ));
        assert!(matches!(
            classify(answer(403, &ours("revoked")), "p1"),
            Verdict::Unauthorized(_)
        ));
        assert!(matches!(
            classify(answer(413, &ours("request body too large")), "p1"),
            Verdict::TooLarge(_)
        ));
    }

    /// A refusal without sphere-lite's origin marker (nginx's HTML 413, a bare 400, an
    /// unmarked JSON error, a gateway's 401/403/502/504) keeps the package and names who
    /// answered. Fails before this change: any 400 moved the package aside, any 413 dropped
    /// it, whoever answered.
    #[test]
    fn refusals_that_are_not_sphere_lites_keep_the_package() {
        let nginx_413 = "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n\
            <body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n\
            <hr><center>nginx/1.24.0</center>\r\n</body>\r\n</html>\r\n";
        match classify(with_server(413, nginx_413, Some("nginx/1.24.0")), "p1") {
            Verdict::Foreign(f) => {
                assert_eq!(f.status, 413);
                assert_eq!(f.answered_by, "nginx/1.24.0 (not sphere-lite)");
                assert!(
                    f.text.contains("413 Request Entity Too Large"),
                    "{}",
                    f.text
                );
            }
            v => panic!("{v:?}"),
        }
        for (status, body) in [
            (400, ""),
            (400, "Bad Request"),
            (400, r#"{"error":"bad"}"#),
            (413, ""),
            (413, r#"{"error":"too large","origin":"nginx"}"#),
            (401, "Unauthorized"),
            (403, "<html>Forbidden</html>"),
            (502, "<html>Bad Gateway</html>"),
            (504, ""),
        ] {
            let v = classify(answer(status, body), "p1");
            assert!(
                matches!(&v, Verdict::Foreign(f) if f.status == status
                    && f.answered_by == "a server that is not sphere-lite"),
                "{status} {body:?}: {v:?}"
            );
        }
    }
}
