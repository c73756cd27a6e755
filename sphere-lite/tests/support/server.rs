//! A real sphere-lite on 127.0.0.1:0 for the integration tests, with a plain HTTP client.

// Each test binary uses a different part of this support module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};
use sphere_lite::domain::Sphere;
use sphere_lite::server::serve_with;
use sphere_lite::tls::ServerTls;
use tinylcm_protocol::paths;

/// A server running on its own thread and runtime; stopped (gracefully) on drop.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start(sphere: Sphere) -> TestServer {
        Self::start_with(sphere, None)
    }

    /// Started over TLS when `tls` is given (then `url` still says `http`: use `addr`).
    pub fn start_with(sphere: Sphere, tls: Option<ServerTls>) -> TestServer {
        Self::start_shared(Arc::new(sphere), tls)
    }

    /// Started on a service the test keeps a handle on (to change it while serving).
    pub fn start_shared(sphere: Arc<Sphere>, tls: Option<ServerTls>) -> TestServer {
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
                serve_with(sphere, listener, tls, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        TestServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = ureq::get(&self.url(path));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        reply(req.call())
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &[u8]) -> (u16, Value) {
        let mut req = ureq::post(&self.url(path));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        reply(req.send_bytes(body))
    }

    pub fn patch(&self, path: &str, token: Option<&str>, body: &[u8]) -> (u16, Value) {
        self.send("PATCH", path, token, body)
    }

    pub fn put(&self, path: &str, token: Option<&str>, body: &[u8]) -> (u16, Value) {
        self.send("PUT", path, token, body)
    }

    fn send(&self, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, Value) {
        let mut req = ureq::request(method, &self.url(path));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        reply(req.send_bytes(body))
    }

    /// `POST` a `multipart/form-data` body of `parts`: (field name, file name if a file, bytes).
    pub fn post_multipart(
        &self,
        path: &str,
        token: Option<&str>,
        parts: &[(&str, Option<&str>, &[u8])],
    ) -> (u16, Value) {
        const BOUNDARY: &str = "----sphere-lite-test-7MA4YWxkTrZu0gW";
        let mut body = Vec::new();
        for (name, file, data) in parts {
            body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
            let disposition = match file {
                Some(f) => format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                ),
                None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
            };
            body.extend_from_slice(disposition.as_bytes());
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        let mut req = ureq::post(&self.url(path)).set(
            "Content-Type",
            &format!("multipart/form-data; boundary={BOUNDARY}"),
        );
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        reply(req.send_bytes(&body))
    }

    pub fn enroll(&self, key: &str) -> (u16, Value) {
        self.post(
            paths::ENROLL,
            None,
            json!({"enrollment_key": key, "name": "pi", "hardware": "zero2w"})
                .to_string()
                .as_bytes(),
        )
    }

    /// Add device `id` through the operator route (`POST /api/v2/devices`); its token.
    pub fn add_device(&self, operator: &str, id: &str) -> String {
        let (status, body) = self.post(
            "/api/v2/devices",
            Some(operator),
            json!({"device_id": id}).to_string().as_bytes(),
        );
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["device_id"], id);
        body["token"].as_str().unwrap().to_owned()
    }

    /// Enroll with `key` and return (device id, token).
    pub fn enrolled(&self, key: &str) -> (String, String) {
        let (status, body) = self.enroll(key);
        assert_eq!(status, 200, "{body}");
        (
            body["device_id"].as_str().unwrap().to_owned(),
            body["token"].as_str().unwrap().to_owned(),
        )
    }
}

impl TestServer {
    /// Log in to the dashboard with `operator`'s token: the session cookie's value (a session
    /// id, not the token).
    pub fn login(&self, operator: &str) -> String {
        let agent = ureq::AgentBuilder::new().redirects(0).build();
        let r = agent
            .post(&self.url("/ui/login"))
            .set("Content-Type", "application/x-www-form-urlencoded")
            .send_string(&format!("token={operator}"));
        let r = match r {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(r.status(), 303, "login refused");
        r.header("set-cookie")
            .expect("a session cookie")
            .strip_prefix("sphere_session=")
            .expect("the session cookie")
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    }

    /// GET the page `path` through `agent` as the operator logged in with session cookie
    /// `session`: (status, body), whatever the status.
    pub fn page(&self, agent: &ureq::Agent, path: &str, session: &str) -> (u16, String) {
        let r = self.get_with_session(agent, path, session);
        (r.status(), r.into_string().unwrap())
    }

    /// The answer to a GET of `path` through `agent` with session cookie `session`, whatever
    /// its status.
    pub fn get_with_session(
        &self,
        agent: &ureq::Agent,
        path: &str,
        session: &str,
    ) -> ureq::Response {
        match agent
            .get(&self.url(path))
            .set("Cookie", &format!("sphere_session={session}"))
            .call()
        {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub fn reply(result: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, body)
}
