//! What the door tests share: a real server on 127.0.0.1:0 with chosen door settings, and raw
//! sockets to talk to it byte by byte (slow and idle clients need them; an HTTP client library
//! would hide exactly what is tested).

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sphere_lite::door::DoorSettings;
use sphere_lite::tls::ServerTls;

/// A server on its own thread and runtime; stopped gracefully on drop.
pub struct DoorServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its data directory (kept for the server's life).
    pub dir: tempfile::TempDir,
    /// The token of device `dev-1`.
    pub device_token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl DoorServer {
    /// A server with `settings`, over TLS when `tls` is given, with one device `dev-1`.
    pub fn start(settings: DoorSettings, tls: Option<ServerTls>) -> DoorServer {
        let dir = tempfile::tempdir().unwrap();
        let sphere = sphere_lite::server::open_embedded(dir.path()).unwrap();
        let device_token = sphere.add_device("dev-1", None).unwrap().token;
        let sphere = Arc::new(sphere);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                sphere_lite::server::serve_door(sphere, listener, tls, &settings, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        DoorServer {
            addr,
            dir,
            device_token,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A raw connection.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        s
    }
}

impl Drop for DoorServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether the peer has closed `stream` (EOF or reset); bytes it sent first (an error answer)
/// are read and dropped. `false` while it is open and silent.
pub fn closed<S: Read>(stream: &mut S) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// Sends one byte every `every` until the peer closes the connection; `true` if it did within
/// `limit`, `false` if it was still open then.
pub fn trickle_until_closed<S: Read + Write>(
    stream: &mut S,
    byte: u8,
    every: Duration,
    limit: Duration,
) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if closed(stream) {
            return true;
        }
        if stream
            .write_all(&[byte])
            .and_then(|()| stream.flush())
            .is_err()
        {
            return true;
        }
        std::thread::sleep(every);
    }
    false
}

/// Waits without sending until the peer closes; `true` if it did within `limit`.
pub fn wait_closed<S: Read>(stream: &mut S, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if closed(stream) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// An HTTP/1.1 response read off a raw stream.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// The head, lower-cased.
    pub head: String,
    /// The body (by `Content-Length`).
    pub body: Vec<u8>,
}

/// Reads one response (head, then a `Content-Length` body) within `limit`; `None` if none came.
pub fn read_answer<S: Read>(stream: &mut S, limit: Duration) -> Option<Answer> {
    let start = Instant::now();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let mut head_end = None;
    loop {
        if let Some(end) = head_end {
            let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if bytes.len() >= end + length {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                return Some(Answer {
                    status,
                    body: bytes[end..end + length].to_vec(),
                    head,
                });
            }
        }
        if start.elapsed() > limit {
            return None;
        }
        match stream.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => {
                bytes.extend_from_slice(&buf[..n]);
                head_end = bytes
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|p| p + 4);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return None,
        }
    }
}

/// Status, `Retry-After` and body of a ureq call, also for error statuses.
pub fn call(result: Result<ureq::Response, ureq::Error>) -> (u16, Option<String>, String) {
    match result {
        Ok(r) => (
            r.status(),
            r.header("retry-after").map(str::to_owned),
            r.into_string().unwrap(),
        ),
        Err(ureq::Error::Status(code, r)) => (
            code,
            r.header("retry-after").map(str::to_owned),
            r.into_string().unwrap(),
        ),
        Err(e) => panic!("transport error: {e}"),
    }
}
