//! The HTTP side: one `reqwest` client (rustls with ring, an optional private CA), timeouts on
//! connect and on whole requests, and answer bodies read with a hard bound: `Content-Length` is
//! never trusted, a server (or anything in the middle) sending more than expected gets cut off
//! instead of filling memory.
//!
//! It also tells who answered. Only an error body carrying sphere-lite's origin marker
//! ([`tinylcm_protocol::api::ErrorResponse`]'s origin contract) is sphere-lite's decision;
//! any other error answer ([`Answer::is_foreign`]: a reverse proxy's HTML 413, a bare 400, a
//! gateway's 502) is noted on the calling thread ([`take_foreign`]) so the sync client can
//! raise an alert whichever request met it. Per thread because the sync client runs all its
//! requests on its one thread; passing a recorder through every request's code would touch
//! each of them for a concern none of them acts on.

use std::cell::RefCell;
use std::path::Path;
use std::time::Duration;

use super::config::SyncConfig;
use super::error::SyncError;

/// Largest JSON answer read (feedback pages with configurations are the largest, ~0.5 MiB).
pub const MAX_JSON_BYTES: usize = 4 << 20;
/// Largest CA file read.
const MAX_CA_BYTES: u64 = 1 << 20;

/// A request that got no usable HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum Transport {
    /// Connecting, sending or receiving failed (including timeouts).
    #[error("{0}")]
    Network(String),
    /// The answer body was longer than the bound.
    #[error("the answer exceeded {max} bytes")]
    TooLarge {
        /// The bound.
        max: usize,
    },
}

/// Longest `Server` header value kept (it is shown to users).
const MAX_SERVER_CHARS: usize = 80;

/// A complete HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// The body (at most the bound asked for).
    pub body: Vec<u8>,
    /// The `Server` header, cleaned and shortened, if the answer had one (e.g. `nginx/1.24.0`):
    /// says who answered when it was not sphere-lite.
    pub server: Option<String>,
}

/// An error answer that did not come from sphere-lite, as users see it in the sync status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Foreign {
    /// Its HTTP status.
    pub status: u16,
    /// Who answered (see [`Answer::answered_by`]).
    pub answered_by: String,
    /// The error text ([`Answer::error_text`]).
    pub text: String,
}

thread_local! {
    /// The last foreign error answer seen on this thread, until [`take_foreign`].
    static FOREIGN: RefCell<Option<Foreign>> = const { RefCell::new(None) };
}

/// The last error answer on this thread that did not come from sphere-lite since the last
/// call, if any (the sync client drains it after each round to raise its alert).
pub fn take_foreign() -> Option<Foreign> {
    FOREIGN.with(|f| f.borrow_mut().take())
}

impl Answer {
    /// An answer as received: `status`, the `Server` header of `headers`, and `body`. An
    /// error answer that is not sphere-lite's is noted for [`take_foreign`].
    pub fn new(status: u16, headers: &reqwest::header::HeaderMap, body: Vec<u8>) -> Answer {
        let server = headers
            .get(reqwest::header::SERVER)
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_SERVER_CHARS)
                    .collect::<String>()
            })
            .filter(|s| !s.trim().is_empty());
        let answer = Answer {
            status,
            body,
            server,
        };
        if answer.is_foreign() {
            let seen = Foreign {
                status,
                answered_by: answer.answered_by(),
                text: answer.error_text(),
            };
            FOREIGN.with(|f| *f.borrow_mut() = Some(seen));
        }
        answer
    }

    /// Whether sphere-lite itself gave this answer's error: its body carries the origin marker
    /// (see [`tinylcm_protocol::api::ErrorResponse`]). Only such an error may be taken as
    /// final.
    pub fn from_sphere_lite(&self) -> bool {
        tinylcm_protocol::api::is_sphere_lite_error(&self.body)
    }

    /// An error status (4xx/5xx) that sphere-lite did not give: something in between (a
    /// reverse proxy, a gateway, a captive portal) answered in its place.
    pub fn is_foreign(&self) -> bool {
        self.status >= 400 && !self.from_sphere_lite()
    }

    /// Who answered, for users: `sphere-lite`, or what the `Server` header names with
    /// `(not sphere-lite)`, or `a server that is not sphere-lite`.
    pub fn answered_by(&self) -> String {
        if self.from_sphere_lite() {
            return tinylcm_protocol::api::ERROR_ORIGIN.to_owned();
        }
        match &self.server {
            Some(s) => format!("{s} (not sphere-lite)"),
            None => "a server that is not sphere-lite".to_owned(),
        }
    }

    /// The body as JSON of type `T`, or why not.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.body).map_err(|e| {
            let start: String = String::from_utf8_lossy(&self.body[..self.body.len().min(120)])
                .chars()
                .filter(|c| !c.is_control())
                .collect();
            format!(
                "HTTP {}: answer does not parse ({e}): {start:?}",
                self.status
            )
        })
    }

    /// The server's error text (`{error, fix}`) or the first bytes of the body; an error that
    /// is not sphere-lite's says who answered instead.
    pub fn error_text(&self) -> String {
        let from = if self.is_foreign() {
            format!(" from {}", self.answered_by())
        } else {
            String::new()
        };
        match serde_json::from_slice::<tinylcm_protocol::api::ErrorResponse>(&self.body) {
            Ok(e) => match e.fix {
                Some(fix) => format!("HTTP {}{from}: {} ({fix})", self.status, e.error),
                None => format!("HTTP {}{from}: {}", self.status, e.error),
            },
            Err(_) => {
                let text: String = String::from_utf8_lossy(&self.body[..self.body.len().min(200)])
                    .chars()
                    .filter(|c| !c.is_control())
                    .collect();
                format!("HTTP {}{from}: {text:?}", self.status)
            }
        }
    }
}

/// Builds the client from `[sync]`.
pub fn client(config: &SyncConfig) -> Result<reqwest::Client, SyncError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(config.connect_timeout_seconds))
        .timeout(Duration::from_secs(config.request_timeout_seconds))
        .user_agent(concat!("tinylcm/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(3));
    if let Some(ca) = &config.ca_file {
        for cert in read_ca(ca)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| SyncError::Http(e.to_string()))
}

fn read_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, SyncError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| SyncError::io("reading", path, e))?;
    let mut pem = Vec::new();
    f.take(MAX_CA_BYTES + 1)
        .read_to_end(&mut pem)
        .map_err(|e| SyncError::io("reading", path, e))?;
    if pem.len() as u64 > MAX_CA_BYTES {
        return Err(SyncError::Config(format!(
            "sync.ca-file {}: larger than {MAX_CA_BYTES} bytes",
            path.display()
        )));
    }
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        SyncError::Config(format!(
            "sync.ca-file {}: not PEM certificates: {e}",
            path.display()
        ))
    })?;
    if certs.is_empty() {
        return Err(SyncError::Config(format!(
            "sync.ca-file {}: holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Sends `request` and reads the whole answer, at most `max` bytes of body.
pub async fn send(request: reqwest::RequestBuilder, max: usize) -> Result<Answer, Transport> {
    let mut response = request
        .send()
        .await
        .map_err(|e| Transport::Network(describe(&e)))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = read_bounded(&mut response, max).await?;
    Ok(Answer::new(status, &headers, body))
}

/// Reads a body chunk by chunk, failing as soon as it passes `max` bytes.
pub async fn read_bounded(
    response: &mut reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, Transport> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Transport::Network(describe(&e)))?
    {
        if body.len() + chunk.len() > max {
            return Err(Transport::TooLarge { max });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A reqwest error with its causes, which say what actually failed (refused, reset, timeout).
pub fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `base` + `path` without doubling the slash.
pub fn join(base: &str, path: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &[u8], server: Option<&str>) -> Answer {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(s) = server {
            headers.insert(reqwest::header::SERVER, s.parse().unwrap());
        }
        Answer::new(status, &headers, body.to_vec())
    }

    #[test]
    fn error_text_prefers_the_servers_json_and_cleans_garbage() {
        let a = answer(
            400,
            br#"{"error":"bad package","fix":"rebuild it","origin":"sphere-lite"}"#,
            None,
        );
        assert_eq!(a.error_text(), "HTTP 400: bad package (rebuild it)");
        let a = answer(502, b"<html>\x1b[31mgateway\n", None);
        assert_eq!(
            a.error_text(),
            "HTTP 502 from a server that is not sphere-lite: \"<html>[31mgateway\""
        );
        assert!(a.json::<serde_json::Value>().is_err());
        assert_eq!(join("http://h:1/", "/api"), "http://h:1/api");
    }

    /// Who answered is told apart by sphere-lite's origin marker, not by the status code,
    /// and every foreign error answer is noted for the sync status's alert. Fails before this
    /// change: an nginx 413 and sphere-lite's own 413 looked the same.
    #[test]
    fn foreign_error_answers_are_named_and_noted() {
        let _ = take_foreign();
        let ours = answer(
            413,
            br#"{"error":"too large","origin":"sphere-lite"}"#,
            None,
        );
        assert!(ours.from_sphere_lite() && !ours.is_foreign());
        assert_eq!(ours.answered_by(), "sphere-lite");
        assert_eq!(take_foreign(), None);
        let ok = answer(200, br#"{"package_id":"p"}"#, Some("nginx"));
        assert!(!ok.is_foreign());
        assert_eq!(take_foreign(), None);
        let nginx = answer(
            413,
            b"<html><head><title>413 Request Entity Too Large</title></head></html>",
            Some("nginx/1.24.0\t"),
        );
        assert!(nginx.is_foreign());
        assert_eq!(nginx.answered_by(), "nginx/1.24.0 (not sphere-lite)");
        assert!(
            nginx
                .error_text()
                .starts_with("HTTP 413 from nginx/1.24.0 (not sphere-lite): ")
        );
        let seen = take_foreign().unwrap();
        assert_eq!(
            (seen.status, seen.answered_by.as_str()),
            (413, "nginx/1.24.0 (not sphere-lite)")
        );
        assert_eq!(take_foreign(), None, "taken once");
        // A JSON error without the marker is not sphere-lite's either.
        let bare = answer(400, br#"{"error":"bad"}"#, None);
        assert!(bare.is_foreign());
        assert_eq!(
            take_foreign().unwrap().answered_by,
            "a server that is not sphere-lite"
        );
    }

    #[test]
    fn a_bad_ca_file_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not pem").unwrap();
        let config = SyncConfig {
            ca_file: Some(ca),
            ..Default::default()
        };
        let e = client(&config).unwrap_err().to_string();
        assert!(e.contains("sync.ca-file"), "{e}");
    }

    /// A server that promises a small body and sends a huge one is cut off at the bound.
    #[test]
    fn answers_are_read_with_a_bound() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                // Chunked: no Content-Length at all, 1 MiB of body.
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                );
                for _ in 0..16 {
                    let chunk = vec![b'x'; 65536];
                    let _ = s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
                    let _ = s.write_all(&chunk);
                    let _ = s.write_all(b"\r\n");
                }
                let _ = s.write_all(b"0\r\n\r\n");
            }
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let c = client(&SyncConfig::default()).unwrap();
        let url = format!("http://{addr}/");
        let r = rt.block_on(send(c.get(&url), 1000));
        assert!(matches!(r, Err(Transport::TooLarge { max: 1000 })), "{r:?}");
        let r = rt.block_on(send(c.get(&url), 2 << 20)).unwrap();
        assert_eq!(r.body.len(), 1 << 20);
        server.join().unwrap();
    }
}
