//! Upload bodies against a real server: bounded while they stream, spooled to a file that no
//! path leaves behind, and a per-device bound on uploads in flight answered before a body is
//! read. Raw sockets, so a test controls exactly how much of a body is sent and when.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tinylcm_protocol::package::{FileKind, PackageBuilder};
use tinylcm_protocol::paths;

#[path = "support/backend.rs"]
mod backend;
#[path = "support/server.rs"]
mod server;

use server::TestServer;

/// The spool folder of the embedded default in `data`.
fn spool(data: &Path) -> PathBuf {
    data.join("spool")
}

/// Spool files now in `dir` (a missing folder holds none).
fn spooled(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Wait (at most 20 s) until `check` holds; false if it never did.
fn eventually(check: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// A connection that sent the headers of a package upload by `device` (`length` as its
/// `Content-Length`, or chunked when `None`) and nothing of the body yet.
fn start_upload(
    server: &TestServer,
    device: &str,
    token: &str,
    length: Option<usize>,
) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let framing = match length {
        Some(n) => format!("Content-Length: {n}"),
        None => "Transfer-Encoding: chunked".into(),
    };
    write!(
        s,
        "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/x-tar\r\n{framing}\r\n\r\n",
        paths::packages(device)
    )
    .unwrap();
    s.flush().unwrap();
    s
}

/// The status of the answer on `s` (0 if the connection closed without one).
fn status_of(s: &mut TcpStream) -> u16 {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A valid package of `device` whose files hold about `bytes` bytes.
fn package(device: &str, id: &str, bytes: usize) -> Vec<u8> {
    let mut b = PackageBuilder::new(id, device, 1).unwrap();
    let data: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
    b.add("blob.bin", FileKind::Other, data).unwrap();
    b.finish().unwrap()
}

fn upload(server: &TestServer, device: &str, token: &str, body: &[u8]) -> u16 {
    server.post(&paths::packages(device), Some(token), body).0
}

/// A body sent without `Content-Length` that grows past the cap is answered 413 once the cap
/// is passed, and its spool file is gone; a body within the cap still works, chunked too.
/// Fails before this change: a body without `Content-Length` was refused with 411 (bodies were
/// buffered, so they needed a declared length), and there was no spool folder at all.
#[test]
fn an_upload_over_the_cap_is_cut_off_while_streaming_and_leaves_no_spool_file() {
    let backend = backend::Backend::embedded();
    let sphere = backend.open().with_max_upload(256 * 1024);
    let op = sphere.create_operator_token("op").unwrap();
    let server = TestServer::start(sphere);
    let token = server.add_device(&op, "big");

    let mut s = start_upload(&server, "big", &token, None);
    let chunk = vec![7u8; 64 * 1024];
    // Up to 1 MiB in 64 KiB chunks; the server answers (and stops reading) after 256 KiB.
    for _ in 0..16 {
        let frame = [
            format!("{:x}\r\n", chunk.len()).into_bytes(),
            chunk.clone(),
            b"\r\n".to_vec(),
        ]
        .concat();
        if s.write_all(&frame).is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    assert_eq!(status_of(&mut s), 413);
    assert!(
        eventually(|| spooled(&spool(backend.dir())).is_empty()),
        "left behind: {:?}",
        spooled(&spool(backend.dir()))
    );
    assert!(
        spool(backend.dir()).is_dir(),
        "bodies are spooled in <data>/spool"
    );

    // Within the cap, chunked: accepted.
    let body = package("big", "p1", 100 * 1024);
    let mut s = start_upload(&server, "big", &token, None);
    s.write_all(format!("{:x}\r\n", body.len()).as_bytes())
        .unwrap();
    s.write_all(&body).unwrap();
    s.write_all(b"\r\n0\r\n\r\n").unwrap();
    assert_eq!(status_of(&mut s), 200);
    assert!(eventually(|| spooled(&spool(backend.dir())).is_empty()));
}

/// A client that goes away in the middle of its body leaves no spool file, and its places in
/// the gate are free again: after three aborted uploads (more than the per-device bound) the
/// device's next upload is accepted.
/// Fails before this change: the body was read into memory, so no spool file ever appeared
/// while the body arrived (the test waits for one).
#[test]
fn a_client_that_aborts_mid_body_leaves_no_spool_file() {
    let backend = backend::Backend::embedded();
    let sphere = backend.open();
    let op = sphere.create_operator_token("op").unwrap();
    let server = TestServer::start(sphere);
    let token = server.add_device(&op, "flaky");
    let dir = spool(backend.dir());

    for _ in 0..3 {
        let mut s = start_upload(&server, "flaky", &token, Some(4 << 20));
        s.write_all(&vec![1u8; 512 * 1024]).unwrap();
        s.flush().unwrap();
        assert!(
            eventually(|| !spooled(&dir).is_empty()),
            "the body is spooled to a file as it arrives"
        );
        drop(s);
        assert!(
            eventually(|| spooled(&dir).is_empty()),
            "left behind: {:?}",
            spooled(&dir)
        );
    }
    let body = package("flaky", "p1", 1000);
    assert_eq!(upload(&server, "flaky", &token, &body), 200);
    assert!(spooled(&dir).is_empty());
}

/// With two uploads of a device in flight, a third is answered 429 at once, before a byte of
/// its body is sent; another device's upload goes through meanwhile, and once the two are done
/// the device may upload again.
/// Fails before this change: there was no per-device bound, and a body was read before any
/// bound applied, so the third request got no answer without its body (the read times out).
#[test]
fn uploads_beyond_the_per_device_bound_get_429_without_their_bodies_being_read() {
    let backend = backend::Backend::embedded();
    let sphere = backend.open();
    let op = sphere.create_operator_token("op").unwrap();
    let server = TestServer::start(sphere);
    let token = server.add_device(&op, "busy");
    let other = server.add_device(&op, "calm");

    // Larger than what is read into memory, so each body shows as a spool file.
    let bodies = [package("busy", "a", 100_000), package("busy", "b", 100_000)];
    let mut held: Vec<TcpStream> = bodies
        .iter()
        .map(|body| {
            let mut s = start_upload(&server, "busy", &token, Some(body.len()));
            s.write_all(&body[..100]).unwrap();
            s
        })
        .collect();
    // Both have their place once the server spools their bodies.
    assert!(eventually(|| spooled(&spool(backend.dir())).len() == 2));

    let mut third = start_upload(&server, "busy", &token, Some(1000));
    assert_eq!(status_of(&mut third), 429, "answered without the body");

    assert_eq!(
        upload(&server, "calm", &other, &package("calm", "c", 1000)),
        200
    );

    for (s, body) in held.iter_mut().zip(&bodies) {
        s.write_all(&body[100..]).unwrap();
        assert_eq!(status_of(s), 200);
    }
    assert_eq!(
        upload(&server, "busy", &token, &package("busy", "d", 1000)),
        200
    );
}
