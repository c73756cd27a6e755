//! The HTTP side: one `reqwest` client (rustls with ring, an optional private CA), timeouts on
//! connect and on whole requests, and answer bodies read with a hard bound: `Content-Length` is
//! never trusted, a server (or anything in the middle) sending more than expected gets cut off
//! instead of filling memory.

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

/// A complete HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// The body (at most the bound asked for).
    pub body: Vec<u8>,
}

impl Answer {
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

    /// The server's error text (`{error, fix}`) or the first bytes of the body.
    pub fn error_text(&self) -> String {
        match serde_json::from_slice::<tinylcm_protocol::api::ErrorResponse>(&self.body) {
            Ok(e) => match e.fix {
                Some(fix) => format!("HTTP {}: {} ({fix})", self.status, e.error),
                None => format!("HTTP {}: {}", self.status, e.error),
            },
            Err(_) => {
                let text: String = String::from_utf8_lossy(&self.body[..self.body.len().min(200)])
                    .chars()
                    .filter(|c| !c.is_control())
                    .collect();
                format!("HTTP {}: {text:?}", self.status)
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
    let body = read_bounded(&mut response, max).await?;
    Ok(Answer { status, body })
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

    #[test]
    fn error_text_prefers_the_servers_json_and_cleans_garbage() {
        let a = Answer {
            status: 400,
            body: br#"{"error":"bad package","fix":"rebuild it"}"#.to_vec(),
        };
        assert_eq!(a.error_text(), "HTTP 400: bad package (rebuild it)");
        let a = Answer {
            status: 502,
            body: b"<html>\x1b[31mgateway\n".to_vec(),
        };
        assert_eq!(a.error_text(), "HTTP 502: \"<html>[31mgateway\"");
        assert!(a.json::<serde_json::Value>().is_err());
        assert_eq!(join("http://h:1/", "/api"), "http://h:1/api");
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
