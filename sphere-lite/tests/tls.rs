//! Native TLS end to end: a test CA and a server certificate generated at test time, the
//! server on 127.0.0.1:0 with `--tls-cert/--tls-key` semantics, and a ureq client that trusts
//! only the test CA. Checks the routes over HTTPS, the `Secure` login cookie, that plain HTTP,
//! garbage and a stalled handshake on the TLS port harm nobody else, graceful shutdown with an
//! open live stream, and the binary's flags and errors.

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sphere_lite::server::open_embedded;
use sphere_lite::tls::ServerTls;
use tinylcm_protocol::paths;

#[path = "support/server.rs"]
mod server;

use server::TestServer;

const BIN: &str = env!("CARGO_BIN_EXE_sphere-lite");

/// A test CA and a server certificate for 127.0.0.1 and localhost, written as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca: rustls::pki_types::CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sphere-lite test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();

        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();

        let dir = tempfile::tempdir().unwrap();
        // The chain as servers are given it: server certificate first, then the issuer.
        std::fs::write(dir.path().join("cert.pem"), cert.pem() + &ca.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.path().join("other-key.pem"), other.serialize_pem()).unwrap();
        Pki {
            dir,
            ca: ca.der().clone(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server_tls(&self) -> ServerTls {
        ServerTls::load(&self.path("cert.pem"), &self.path("key.pem")).unwrap()
    }

    /// A client that trusts the test CA only, and does not follow redirects.
    fn agent(&self) -> ureq::Agent {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        ureq::AgentBuilder::new()
            .tls_config(Arc::new(config))
            .redirects(0)
            .timeout(Duration::from_secs(10))
            .build()
    }
}

fn https(server: &TestServer, path: &str) -> String {
    format!("https://{}{path}", server.addr)
}

/// Status and body of a call, also for error statuses.
fn answer(result: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    match result {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
        Err(e) => panic!("transport error: {e}"),
    }
}

#[test]
fn the_routes_answer_over_https() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let sphere = open_embedded(dir.path()).unwrap();
    let key = sphere.create_enrollment_key(1).unwrap();
    let operator = sphere.create_operator_token("ops").unwrap();
    let server = TestServer::start_with(sphere, Some(pki.server_tls()));
    let agent = pki.agent();

    assert_eq!(answer(agent.get(&https(&server, "/healthz")).call()).0, 200);
    let (status, body) = answer(
        agent
            .post(&https(&server, paths::ENROLL))
            .send_string(&json!({"enrollment_key": key}).to_string()),
    );
    assert_eq!(status, 200, "{body}");
    let enrolled: Value = serde_json::from_str(&body).unwrap();
    let (status, body) = answer(
        agent
            .get(&https(&server, "/api/v2/devices"))
            .set("Authorization", &format!("Bearer {operator}"))
            .call(),
    );
    assert_eq!(status, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["devices"][0]["device_id"], enrolled["device_id"]);
    // Authentication is unchanged by the transport.
    let (status, _) = answer(agent.get(&https(&server, "/api/v2/devices")).call());
    assert_eq!(status, 401);
}

#[test]
fn the_login_cookie_is_secure_over_native_tls() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let sphere = open_embedded(dir.path()).unwrap();
    let operator = sphere.create_operator_token("ops").unwrap();
    let server = TestServer::start_with(sphere, Some(pki.server_tls()));
    let response = pki
        .agent()
        .post(&https(&server, "/ui/login"))
        .set("Content-Type", "application/x-www-form-urlencoded")
        .send_string(&format!("token={operator}"))
        .unwrap();
    assert_eq!(response.status(), 303);
    let cookie = response.header("set-cookie").unwrap();
    for attr in ["; Secure", "HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
}

#[test]
fn plain_http_garbage_and_stalled_handshakes_do_not_stop_the_server() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(open_embedded(dir.path()).unwrap(), Some(pki.server_tls()));
    let agent = pki.agent();

    // A client that connects and says nothing holds only its own connection.
    let stalled = TcpStream::connect(server.addr).unwrap();

    // Plain HTTP to the TLS port fails for that client...
    let plain = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build()
        .get(&format!("http://{}/healthz", server.addr))
        .call();
    assert!(
        !matches!(plain, Ok(ref r) if r.status() == 200),
        "plain HTTP got an answer"
    );
    // ... as does garbage ...
    let mut garbage = TcpStream::connect(server.addr).unwrap();
    garbage
        .write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0, 1, 2, 3])
        .unwrap();
    garbage
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = garbage.read_to_end(&mut rest);

    // ... and HTTPS keeps working, while the stalled client still waits.
    for _ in 0..3 {
        assert_eq!(answer(agent.get(&https(&server, "/healthz")).call()).0, 200);
    }
    drop(stalled);
}

#[test]
fn shutdown_closes_live_streams_and_stops_over_tls() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let sphere = open_embedded(dir.path()).unwrap();
    let operator = sphere.create_operator_token("ops").unwrap();
    let server = TestServer::start_with(sphere, Some(pki.server_tls()));
    let agent = pki.agent();
    let login = agent
        .post(&https(&server, "/ui/login"))
        .set("Content-Type", "application/x-www-form-urlencoded")
        .send_string(&format!("token={operator}"))
        .unwrap();
    let session = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let live = agent
        .get(&https(&server, "/ui/events"))
        .set("Cookie", &session)
        .call()
        .unwrap();
    assert_eq!(live.header("content-type"), Some("text/event-stream"));

    // Stop the server while the stream is open: the drop returns once the server has stopped.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(server);
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("graceful shutdown over TLS did not finish with a live stream open");
    // The stream was ended by the server, not cut: it reads to its end.
    let mut rest = String::new();
    let _ = BufReader::new(live.into_reader()).read_to_string(&mut rest);
}

/// `sphere-lite serve` with `extra` arguments; its stderr until the `serving` line, or the
/// whole output when it exits first.
fn start_binary(data: &Path, extra: &[&str]) -> (std::process::Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--data", data.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .env("SPHERE_LITE_LOG", "info")
        .env_remove("SPHERE_LITE_CONFIG")
        .env_remove("SPHERE_LITE_TLS_CERT")
        .env_remove("SPHERE_LITE_TLS_KEY")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        if line.contains("serving") {
            // Keep draining stderr so the server never blocks on a full pipe.
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut stderr, &mut std::io::sink());
            });
            break;
        }
    }
    (child, seen)
}

#[test]
fn the_binary_serves_https_with_tls_flags_and_names_bad_files() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let cert = pki.path("cert.pem");
    let key = pki.path("key.pem");
    let (mut child, startup) = start_binary(
        data.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(startup.contains("scheme=\"https\""), "{startup}");
    let addr = startup
        .split_whitespace()
        .find_map(|w| w.strip_prefix("listen="))
        .unwrap()
        .to_owned();
    let (status, _) = answer(pki.agent().get(&format!("https://{addr}/healthz")).call());
    assert_eq!(status, 200);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());

    // Refusals name the key or the file, with a fix, before anything is served.
    let other_key = pki.path("other-key.pem");
    let missing = pki.path("missing.pem");
    for (args, named) in [
        (vec!["--tls-cert", cert.to_str().unwrap()], "tls_key"),
        (vec!["--tls-key", key.to_str().unwrap()], "tls_cert"),
        (
            vec![
                "--tls-cert",
                cert.to_str().unwrap(),
                "--tls-key",
                other_key.to_str().unwrap(),
            ],
            "other-key.pem",
        ),
        (
            vec![
                "--tls-cert",
                missing.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
            ],
            "missing.pem",
        ),
    ] {
        let (mut child, output) = start_binary(data.path(), &args);
        let status = child.wait().unwrap();
        assert!(!status.success(), "{args:?} served: {output}");
        assert!(
            output.contains(named) && output.contains("Fix"),
            "{args:?}: {output}"
        );
    }
}
