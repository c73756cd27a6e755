//! The door of `sphere-lite serve` against real sockets: slow and idle clients are cut off,
//! a slow body gets 408 and stores nothing, failed authentication is rate-limited per source,
//! and only allowed `Host` names are answered, on plain HTTP and native TLS alike.
//!
//! Every test here fails on the server before the door (warp's own loop, no timer, no
//! budget, no allow-list): the slow and idle sockets stay open, the trickled body is waited
//! for, the 401s never turn into a 429, any `Host` is served.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use sphere_lite::door::DoorSettings;
use tinylcm_protocol::package::{CONTENT_TYPE, FileKind, PackageBuilder};
use tinylcm_protocol::paths;

#[path = "door_support/mod.rs"]
mod door_support;

use door_support::{DoorServer, call, read_answer, trickle_until_closed, wait_closed};

/// Short deadlines so the tests wait seconds, not the defaults' minutes.
fn quick() -> DoorSettings {
    DoorSettings {
        header_read_timeout: Duration::from_secs(2),
        request_body_timeout: Duration::from_secs(2),
        auth_failure_burst: 3,
        auth_failure_refill: Duration::from_secs(3600),
        ..DoorSettings::default()
    }
}

/// How long a test waits for something the door must do within a few seconds.
const PATIENCE: Duration = Duration::from_secs(30);

/// A client without a connection pool: each call on a fresh connection.
fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .max_idle_connections(0)
        .redirects(0)
        .timeout(Duration::from_secs(20))
        .build()
}

fn package(id: &str) -> Vec<u8> {
    let mut b = PackageBuilder::new(id, "dev-1", 1_764_147_600_000).unwrap();
    b.add("metrics.json", FileKind::Metrics, br#"{"fps": 5}"#.to_vec())
        .unwrap();
    b.add("samples/s.jpg", FileKind::Sample, vec![0xff, 0xd8, 1, 2, 3])
        .unwrap();
    b.finish().unwrap()
}

/// Fails before this change: warp ran hyper without a timer, so a client sending one header
/// byte a second held its connection (and a task) for as long as it liked.
#[test]
fn a_slowloris_head_is_cut_off_at_the_header_timeout() {
    let server = DoorServer::start(quick(), None);
    let mut s = server.connect();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .unwrap();
    assert!(
        trickle_until_closed(&mut s, b'a', Duration::from_secs(1), PATIENCE),
        "a header byte per second kept the connection open for {PATIENCE:?}"
    );
}

/// Fails before this change: an idle keep-alive connection was never closed.
#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let server = DoorServer::start(quick(), None);
    let mut s = server.connect();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let answer = read_answer(&mut s, PATIENCE).expect("an answer to /healthz");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(!answer.head.contains("connection: close"), "{answer:?}");
    assert!(
        wait_closed(&mut s, PATIENCE),
        "an idle keep-alive connection stayed open for {PATIENCE:?}"
    );
}

/// Fails before this change: a body trickling slower than any deadline was waited for,
/// holding an upload slot; now it gets 408, the connection is closed and nothing is stored
/// (the same package uploaded afterwards is `accepted`, not a `duplicate`).
#[test]
fn a_trickling_body_gets_408_and_stores_nothing() {
    let server = DoorServer::start(quick(), None);
    let tar = package("pkg-slow");
    let mut s = server.connect();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n\r\n",
        paths::packages("dev-1"),
        server.device_token,
        tar.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let half = tar.len() / 2;
    s.write_all(&tar[..half]).unwrap();
    // The rest, a byte every 300 ms: far slower than the 2 s deadline allows.
    let mut answer = None;
    for byte in &tar[half..tar.len() - 1] {
        if let Some(a) = read_answer(&mut s, Duration::from_millis(300)) {
            answer = Some(a);
            break;
        }
        if s.write_all(&[*byte]).is_err() {
            answer = read_answer(&mut s, Duration::from_secs(1));
            break;
        }
    }
    let answer = answer.expect("no answer while the body trickled: the body has no deadline");
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(answer.head.contains("connection: close"), "{answer:?}");
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(body["origin"], "sphere-lite", "{body}");
    assert!(wait_closed(&mut s, PATIENCE), "the connection stayed open");

    let (status, _, text) = call(
        agent()
            .post(&server.url(&paths::packages("dev-1")))
            .set("Authorization", &format!("Bearer {}", server.device_token))
            .set("Content-Type", CONTENT_TYPE)
            .send_bytes(&tar),
    );
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("\"accepted\""),
        "the timed-out upload left something behind: {text}"
    );
}

/// Fails before this change: 401 after 401, never a 429.
#[test]
fn bad_bearer_tokens_get_429_after_a_burst_and_successes_are_not_counted() {
    let server = DoorServer::start(quick(), None);
    let bad = |n: u32| {
        call(
            agent()
                .get(&server.url("/api/v2/devices"))
                .set("Authorization", &format!("Bearer wrong-{n}"))
                .call(),
        )
    };
    let good = || {
        call(
            agent()
                .get(&server.url(&paths::feedback("dev-1")))
                .set("Authorization", &format!("Bearer {}", server.device_token))
                .call(),
        )
    };
    assert_eq!(bad(1).0, 401);
    assert_eq!(bad(2).0, 401);
    // Many successes in between take nothing from the budget.
    for _ in 0..30 {
        let (status, _, text) = good();
        assert_eq!(status, 200, "{text}");
    }
    assert_eq!(bad(3).0, 401, "the third failure is still within the burst");
    let (status, retry_after, text) = bad(4);
    assert_eq!(status, 429, "{text}");
    let retry_after: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["origin"], "sphere-lite", "{body}");
    // Requests that carry no credential are still answered.
    assert_eq!(call(agent().get(&server.url("/healthz")).call()).0, 200);
}

/// Fails before this change: unknown enrollment keys were answered 401 without end.
#[test]
fn unknown_enrollment_keys_get_429_after_a_burst() {
    let server = DoorServer::start(quick(), None);
    let enroll = |n: u32| {
        call(
            agent()
                .post(&server.url(paths::ENROLL))
                .set("Content-Type", "application/json")
                .send_string(
                    &serde_json::json!({"enrollment_key": format!("guess-{n}")}).to_string(),
                ),
        )
    };
    for n in 0..3 {
        assert_eq!(enroll(n).0, 401);
    }
    let (status, retry_after, text) = enroll(3);
    assert_eq!(status, 429, "{text}");
    assert!(retry_after.is_some());
}

/// Fails before this change: the login form took any number of wrong tokens.
#[test]
fn wrong_login_tokens_get_429_after_a_burst() {
    let server = DoorServer::start(quick(), None);
    let origin = format!("http://{}", server.addr);
    let login = |n: u32| {
        call(
            agent()
                .post(&server.url("/ui/login"))
                .set("Origin", &origin)
                .send_form(&[("token", &format!("wrong-{n}"))]),
        )
    };
    for n in 0..3 {
        let (status, _, text) = login(n);
        assert_eq!(status, 401, "{text}");
    }
    let (status, retry_after, _) = login(3);
    assert_eq!(status, 429);
    assert!(retry_after.is_some());
}

/// Fails before this change (no 429 at all). `X-Forwarded-For` names the source only when the
/// peer is a trusted proxy; from anyone else, rotating it changes nothing.
#[test]
fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    let bad = |server: &DoorServer, client: &str| {
        call(
            agent()
                .get(&server.url("/api/v2/devices"))
                .set("Authorization", "Bearer wrong")
                .set("X-Forwarded-For", client)
                .call(),
        )
        .0
    };
    let untrusted = DoorServer::start(quick(), None);
    for n in 0..3 {
        assert_eq!(bad(&untrusted, &format!("203.0.113.{n}")), 401);
    }
    assert_eq!(bad(&untrusted, "203.0.113.99"), 429);

    let behind_proxy = DoorServer::start(
        DoorSettings {
            trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
            ..quick()
        },
        None,
    );
    for _ in 0..3 {
        assert_eq!(bad(&behind_proxy, "203.0.113.1"), 401);
    }
    assert_eq!(bad(&behind_proxy, "203.0.113.1"), 429);
    assert_eq!(
        bad(&behind_proxy, "203.0.113.2"),
        401,
        "another client behind the proxy has its own budget"
    );
}

/// Fails before this change: any `Host` was served, so a DNS-rebinding page reached the
/// login page and the unauthenticated routes.
#[test]
fn only_allowed_hosts_are_answered() {
    let server = DoorServer::start(
        DoorSettings {
            allowed_hosts: vec!["sphere.example.net".to_owned()],
            ..quick()
        },
        None,
    );
    let port = server.addr.port();
    let get =
        |path: &str, host: &str| call(agent().get(&server.url(path)).set("Host", host).call());
    for path in ["/healthz", "/ui/login", "/api/v2/openapi.json"] {
        for host in [
            "rebind.evil.example",
            &format!("rebind.evil.example:{port}"),
        ] {
            let (status, _, text) = get(path, host);
            assert_eq!(status, 421, "{path} with Host {host}: {text}");
        }
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "sphere.example.net".to_owned(),
        format!("SPHERE.example.net:{port}"),
    ] {
        let (status, _, text) = get("/healthz", &host);
        assert_eq!(status, 200, "Host {host}: {text}");
    }
    let (status, _, text) = call(
        agent()
            .post(&server.url(paths::ENROLL))
            .set("Host", "rebind.evil.example")
            .set("Content-Type", "application/json")
            .send_string(r#"{"enrollment_key": "x"}"#),
    );
    assert_eq!(status, 421, "{text}");
}

/// A TLS client (trusting `cert`) over a raw socket, for byte-by-byte tests over TLS.
fn tls_client(
    server: &DoorServer,
    cert: &rustls::pki_types::CertificateDer<'static>,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Fails before this change: the TLS listener had its own loop with the same missing timer
/// and no allow-list. Now both listeners go through the one door.
#[test]
fn over_tls_slow_heads_are_cut_off_and_hosts_checked() {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    let tls = sphere_lite::tls::ServerTls::load(
        &dir.path().join("cert.pem"),
        &dir.path().join("key.pem"),
    )
    .unwrap();
    let server = DoorServer::start(quick(), Some(tls));

    let mut s = tls_client(&server, cert.der());
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: evil.example\r\n\r\n")
        .unwrap();
    let answer = read_answer(&mut s, PATIENCE).expect("an answer over TLS");
    assert_eq!(answer.status, 421, "{answer:?}");

    let mut s = tls_client(&server, cert.der());
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .unwrap();
    assert!(
        trickle_until_closed(&mut s, b'a', Duration::from_secs(1), PATIENCE),
        "over TLS, a header byte per second kept the connection open for {PATIENCE:?}"
    );
}

/// Fails before this change: the 401 was decided from the head and the connection closed with
/// the body unread, so a client sending its whole 32 MiB package before reading got a reset or
/// a broken pipe instead of the answer. Now the body is read and dropped after the answer,
/// and the connection serves the next request.
#[test]
fn a_client_refused_from_its_head_reads_the_answer_after_sending_its_body() {
    let server = DoorServer::start(quick(), None);
    let mut s = server.connect();
    let body = vec![b'x'; 32 << 20];
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer wrong\r\n\
         Content-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n\r\n",
        paths::packages("dev-1"),
        body.len()
    );
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body)
        .expect("the server reads the refused body instead of resetting the connection");
    let answer = read_answer(&mut s, PATIENCE).expect("an answer");
    assert_eq!(
        answer.status,
        401,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let next = read_answer(&mut s, PATIENCE).expect("the connection stays usable");
    assert_eq!(next.status, 200);
}
