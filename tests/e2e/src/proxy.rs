//! A fault-injecting HTTP/1.1 proxy in front of sphere-lite, for the network-cut tests.
//!
//! Each client connection carries one request: the proxy reads the request head and body,
//! then, per the first matching [`Rule`], forwards it (with `Connection: close`) and copies the
//! answer back, or misbehaves: answers 500, answers garbage, answers late, cuts the connection
//! half-way through the upload, or forwards the request and then drops the server's answer
//! (the server accepted, the device never hears it). When the upstream is down the connection
//! is simply closed. Counters say what happened, so tests can check both sides.
//!
//! It can also answer as a real reverse proxy does in sphere-lite's place: with a body limit
//! ([`Proxy::limit_body`]) every request whose body is larger gets nginx's own `413 Request
//! Entity Too Large` HTML page (nginx's default `client_max_body_size` is 1 MiB, below the
//! device's 4 MiB packages), and [`Fault::Bare400`] is a `400 Bad Request` with no body.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward it.
    Pass,
    /// Answer 500 without forwarding.
    Status500,
    /// Answer 200 with a body that is not JSON.
    GarbageBody,
    /// Answer bytes that are not HTTP at all.
    GarbageBytes,
    /// Wait this long, then forward.
    Slow(Duration),
    /// Read half the body, then reset the connection.
    ResetMidUpload,
    /// Forward it, read the whole answer, then reset the connection without answering.
    DropResponse,
    /// Forward it and pass on only the first this many bytes of the answer, then reset (a
    /// download cut half-way).
    CutAnswer(usize),
    /// Answer `400 Bad Request` with an empty body, as a proxy does (not sphere-lite's JSON).
    Bare400,
}

/// nginx's `Server` header, sent with the proxy's own 413.
pub const NGINX_SERVER: &str = "nginx/1.24.0";

/// nginx's 413 page, byte for byte as nginx 1.24 sends it.
pub const NGINX_413_BODY: &str = "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n\
    <body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n\
    <hr><center>nginx/1.24.0</center>\r\n</body>\r\n</html>\r\n";

/// Apply `fault` to the next `times` requests whose path contains `path`.
#[derive(Debug, Clone)]
pub struct Rule {
    /// A substring of the request path.
    pub path: String,
    /// The fault.
    pub fault: Fault,
    /// How many more requests it applies to.
    pub times: u32,
}

/// What the proxy saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests read completely (or up to a mid-upload reset).
    pub requests: u64,
    /// Requests whose fault was not `Pass`.
    pub faults: u64,
    /// Upload requests (`/packages`) forwarded to the server.
    pub uploads_forwarded: u64,
    /// Requests that asked for a byte range (resumed downloads).
    pub range_requests: u64,
    /// The path of every request read, in order (to count the downloads of one file).
    pub paths: Vec<String>,
    /// Requests answered with the proxy's own 413 ([`Proxy::limit_body`]).
    pub too_large: u64,
}

impl Counts {
    /// Requests whose path contains `part`.
    pub fn to(&self, part: &str) -> usize {
        self.paths.iter().filter(|p| p.contains(part)).count()
    }
}

struct Shared {
    upstream: String,
    rules: Vec<Rule>,
    counts: Counts,
    /// Largest request body forwarded (nginx's `client_max_body_size`), if limited.
    max_body: Option<usize>,
}

/// The proxy, on its own thread and runtime, stopped on drop.
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Proxy {
        let shared = Arc::new(Mutex::new(Shared {
            upstream: upstream.to_string(),
            rules: Vec::new(),
            counts: Counts::default(),
            max_body: None,
        }));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let s2 = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stopped => return,
                        accepted = listener.accept() => {
                            if let Ok((conn, _)) = accepted {
                                tokio::spawn(handle(conn, Arc::clone(&s2)));
                            }
                        }
                    }
                }
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Proxy {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Points it at another upstream (a restarted server on a new port).
    pub fn set_upstream(&self, upstream: &str) {
        self.shared.lock().unwrap().upstream = upstream.to_string();
    }

    /// Adds a rule (rules are tried in the order added).
    pub fn inject(&self, path: &str, fault: Fault, times: u32) {
        self.shared.lock().unwrap().rules.push(Rule {
            path: path.to_string(),
            fault,
            times,
        });
    }

    /// Answers every request whose body is larger than `max` bytes with nginx's own 413 page
    /// instead of forwarding it, as nginx with `client_max_body_size` does; `None` lifts the
    /// limit.
    pub fn limit_body(&self, max: Option<usize>) {
        self.shared.lock().unwrap().max_body = max;
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.shared.lock().unwrap().rules.clear();
    }

    /// Rules with uses left.
    pub fn pending_rules(&self) -> u32 {
        self.shared
            .lock()
            .unwrap()
            .rules
            .iter()
            .map(|r| r.times)
            .sum()
    }

    /// What it saw so far.
    pub fn counts(&self) -> Counts {
        self.shared.lock().unwrap().counts.clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The request head (up to the blank line) and its body length.
async fn read_head(conn: &mut TcpStream) -> Option<(Vec<u8>, usize)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).await.ok()? == 0 || head.len() > 64 << 10 {
            return None;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Some((head, len))
}

/// The head with `Connection: close` instead of whatever the client asked.
fn closing(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in text.split("\r\n") {
        if line.is_empty() || line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

fn reset(conn: TcpStream) {
    // Linger 0: close with RST, as a crashed peer or a middlebox would.
    if let Ok(std) = conn.into_std() {
        let sock: std::net::TcpStream = std;
        let _ = socket_linger_zero(&sock);
        drop(sock);
    }
}

fn socket_linger_zero(sock: &std::net::TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket we own with a correctly sized linger struct.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A whole answer with `status` and a JSON-typed `body` (which may be anything).
fn answer_with(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn handle(mut conn: TcpStream, shared: Arc<Mutex<Shared>>) {
    let Some((head, len)) = read_head(&mut conn).await else {
        return;
    };
    let path = String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    let (fault, upstream, too_large) = {
        let mut s = shared.lock().unwrap();
        let too_large = s.max_body.is_some_and(|max| len > max);
        let fault = match s
            .rules
            .iter_mut()
            .find(|r| r.times > 0 && path.contains(&r.path))
        {
            Some(r) => {
                r.times -= 1;
                r.fault
            }
            None => Fault::Pass,
        };
        s.counts.requests += 1;
        s.counts.paths.push(path.clone());
        if fault != Fault::Pass {
            s.counts.faults += 1;
        }
        if too_large {
            s.counts.too_large += 1;
        }
        (fault, s.upstream.clone(), too_large)
    };
    if fault == Fault::ResetMidUpload {
        let mut part = vec![0u8; len / 2];
        let _ = conn.read_exact(&mut part).await;
        reset(conn);
        return;
    }
    let mut body = vec![0u8; len];
    if conn.read_exact(&mut body).await.is_err() {
        return;
    }
    if too_large {
        // nginx refuses on the Content-Length and then reads the body away before it closes
        // (lingering close), so the client gets the answer rather than a reset.
        let _ = conn
            .write_all(
                format!(
                    "HTTP/1.1 413 Request Entity Too Large\r\nServer: {NGINX_SERVER}\r\n\
                     Content-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n\
                     {NGINX_413_BODY}",
                    NGINX_413_BODY.len()
                )
                .as_bytes(),
            )
            .await;
        return;
    }
    match fault {
        Fault::Bare400 => {
            let _ = conn
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            return;
        }
        Fault::Status500 => {
            let _ = conn
                .write_all(&answer_with(
                    "500 Internal Server Error",
                    "{\"error\":\"injected fault\"}",
                ))
                .await;
            return;
        }
        Fault::GarbageBody => {
            let _ = conn
                .write_all(&answer_with("200 OK", "<html>oops</ht"))
                .await;
            return;
        }
        Fault::GarbageBytes => {
            let _ = conn
                .write_all(b"\x00\xff\x13garbage, not HTTP\r\n\r\n")
                .await;
            return;
        }
        Fault::Slow(d) => tokio::time::sleep(d).await,
        _ => {}
    }
    let Ok(mut up) = TcpStream::connect(&upstream).await else {
        // The server is down: the device sees the connection close.
        return;
    };
    if up.write_all(&closing(&head)).await.is_err() || up.write_all(&body).await.is_err() {
        return;
    }
    {
        let mut s = shared.lock().unwrap();
        if path.contains("/packages") {
            s.counts.uploads_forwarded += 1;
        }
        if String::from_utf8_lossy(&head)
            .to_ascii_lowercase()
            .contains("\r\nrange: bytes=")
        {
            s.counts.range_requests += 1;
        }
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), up.read_to_end(&mut answer)).await;
    if fault == Fault::DropResponse {
        reset(conn);
        return;
    }
    if let Fault::CutAnswer(n) = fault {
        let _ = conn.write_all(&answer[..n.min(answer.len())]).await;
        let _ = conn.flush().await;
        reset(conn);
        return;
    }
    let _ = conn.write_all(&answer).await;
    let _ = conn.shutdown().await;
}
