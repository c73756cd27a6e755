//! Headless Chromium for the dashboard's browser tests: chromedriver on a free port and a
//! logged-in WebDriver session. Included by the tests that drive the dashboard with
//! `#[path = "support/browser.rs"] mod browser;`.

// Each test binary uses a different part of this support module.
#![allow(dead_code)]

use std::future::Future;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

/// The browser the tests drive.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Its WebDriver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long the browser tests wait for a page element.
pub const BROWSER_WAIT: Duration = Duration::from_secs(15);

/// Whether Chromium and chromedriver are installed; when not, the test's dependency is missing
/// (a failure under `TINYLCM_TEST_REQUIRE_ALL`, else a printed skip) and the test returns.
pub fn available() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    tinylcm_protocol::test_support::missing(
        &format!("{CHROMIUM} or {CHROMEDRIVER}"),
        "apt-get install chromium chromium-driver (./scripts/test sphere installs them)",
    );
    false
}

/// Runs a browser session's steps to completion on a runtime of their own.
pub fn run<F: Future>(steps: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(steps)
}

/// The text of the first element matching `css`, once it contains `wanted` (the page may be
/// replaced meanwhile: a live refresh, a form's answer); panics with the text it had after
/// [`BROWSER_WAIT`].
pub async fn text_with(client: &fantoccini::Client, css: &str, wanted: &str) -> String {
    let start = Instant::now();
    loop {
        let text = match client.find(fantoccini::Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(wanted) {
            return text;
        }
        assert!(
            start.elapsed() < BROWSER_WAIT,
            "no {wanted:?} in {css} (it says {text:?}) at {:?}",
            client.current_url().await.map(|u| u.to_string())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first element matching `css`, once there (waiting up to [`BROWSER_WAIT`]).
pub async fn wait_for(client: &fantoccini::Client, css: &str) -> fantoccini::elements::Element {
    match client
        .wait()
        .at_most(BROWSER_WAIT)
        .for_element(fantoccini::Locator::Css(css))
        .await
    {
        Ok(e) => e,
        Err(e) => panic!(
            "{e}: no {css} at {:?}",
            client.current_url().await.map(|u| u.to_string())
        ),
    }
}

/// The element matching `css` (there now).
async fn element(client: &fantoccini::Client, css: &str) -> fantoccini::elements::Element {
    match client.find(fantoccini::Locator::Css(css)).await {
        Ok(e) => e,
        Err(e) => panic!("{e}: no {css}"),
    }
}

/// Clicks the element matching `css`.
pub async fn click(client: &fantoccini::Client, css: &str) {
    element(client, css).await.click().await.unwrap();
}

/// Types `text` into the field matching `css`.
pub async fn type_into(client: &fantoccini::Client, css: &str, text: &str) {
    element(client, css).await.send_keys(text).await.unwrap();
}

/// Chooses the option `value` of the menu matching `css`.
pub async fn choose(client: &fantoccini::Client, css: &str, value: &str) {
    element(client, css)
        .await
        .select_by_value(value)
        .await
        .unwrap();
}

/// The text of the element matching `css`.
pub async fn text_of(client: &fantoccini::Client, css: &str) -> String {
    element(client, css).await.text().await.unwrap()
}

/// Whether the box matching `css` is ticked.
pub async fn checked(client: &fantoccini::Client, css: &str) -> bool {
    element(client, css)
        .await
        .prop("checked")
        .await
        .unwrap()
        .as_deref()
        == Some("true")
}

/// What the script `js` returns (it runs as a function body).
pub async fn script(client: &fantoccini::Client, js: &str) -> serde_json::Value {
    client.execute(js, vec![]).await.unwrap()
}

/// Writes a PNG of the element matching `css` to `path`.
pub async fn screenshot(client: &fantoccini::Client, css: &str, path: &Path) {
    let png = element(client, css).await.screenshot().await.unwrap();
    std::fs::write(path, png).unwrap();
}

/// chromedriver on a free port, killed on drop.
pub struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    /// Starts chromedriver and waits until it listens.
    pub fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, port }
    }

    /// A headless Chromium session (with `window` arguments such as its size) that opens
    /// `start`, which must show the login form, and logs in with `operator`'s token.
    pub async fn logged_in(
        &self,
        start: &str,
        operator: &str,
        window: &[&str],
    ) -> fantoccini::Client {
        use fantoccini::{ClientBuilder, Locator};
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ];
        args.extend_from_slice(window);
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM, "args": args }),
        );
        // Keeps the console (errors, CSP violations) for [`Driver::console_errors`].
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a WebDriver session with chromium");
        client.goto(start).await.unwrap();
        client
            .wait()
            .at_most(BROWSER_WAIT)
            .for_element(Locator::Css("#token"))
            .await
            .unwrap()
            .send_keys(operator)
            .await
            .unwrap();
        client
            .find(Locator::Css("#login"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        client
    }
}

impl Driver {
    /// The errors the browser's console logged since the last call (chromedriver hands each
    /// entry out once): its `SEVERE` entries, which include failed loads, script errors and
    /// Content-Security-Policy violations, and any other entry naming the policy.
    pub async fn console_errors(&self, client: &fantoccini::Client) -> Vec<String> {
        let session = client.session_id().await.unwrap().expect("a session");
        let url = format!("http://127.0.0.1:{}/session/{session}/se/log", self.port);
        let reply = ureq::post(&url)
            .set("Content-Type", "application/json")
            .send_string(&json!({ "type": "browser" }).to_string())
            .expect("chromedriver's browser log");
        let log: serde_json::Value = serde_json::from_reader(reply.into_reader()).unwrap();
        log["value"]
            .as_array()
            .expect("log entries")
            .iter()
            .filter(|e| {
                let message = e["message"].as_str().unwrap_or_default();
                e["level"] == "SEVERE" || message.contains("Content Security Policy")
            })
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
