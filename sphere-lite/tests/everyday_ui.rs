//! The operator's everyday pages in a real headless Chromium (Debian's `chromium` +
//! `chromium-driver`, over WebDriver) against a real sphere-lite on 127.0.0.1:0, the devices'
//! side played through the real API (packages built with the protocol crate's
//! `PackageBuilder`): devices' default and edited names, a device's logs, packages and
//! images in time order, the configuration page, and the favicon. On every page the browser
//! visits, its console (read from chromedriver) must hold no error and no
//! Content-Security-Policy violation.

use std::time::{Duration, Instant};

use fantoccini::Client;
use serde_json::{Value, json};
use tinylcm_protocol::package::FileKind;

#[path = "support/browser.rs"]
mod browser;
#[path = "support/server.rs"]
mod server;
#[path = "support/ui.rs"]
mod ui;

use browser::{Driver, click, script, text_of, text_with, type_into, wait_for};
use ui::UiFixture;

/// The device clock of the first package: 2025-11-26 09:00:00 UTC.
const T0: u64 = 1_764_147_600_000;

/// The package `id` a device uploads at `created` (device clock): a real JPEG `s/<id>.jpg`
/// and, when given, the log file `logs/run.jsonl`.
fn upload(f: &UiFixture, device: &str, token: &str, id: &str, created: u64, logs: Option<String>) {
    let jpeg = include_bytes!("support/samples/star.jpg").to_vec();
    let mut members = vec![(format!("s/{id}.jpg"), FileKind::Sample, jpeg)];
    if let Some(text) = logs {
        members.push(("logs/run.jsonl".into(), FileKind::Logs, text.into_bytes()));
    }
    f.upload(device, token, id, created, members);
}

/// `logs.jsonl` lines, one per (device clock, level, message).
fn log_lines(lines: &[(u64, &str, &str)]) -> String {
    lines
        .iter()
        .map(|(t, level, m)| {
            let line =
                json!({"unix_ms": t, "level": level, "target": "tinylcm::run", "message": m});
            format!("{line}\n")
        })
        .collect()
}

/// Opens `url`, waits for `css`, and fails on anything the console logged meanwhile.
async fn visit(driver: &Driver, client: &Client, url: &str, css: &str) {
    client.goto(url).await.unwrap();
    wait_for(client, css).await;
    clean_console(driver, client).await;
}

/// Fails on any console error or CSP violation since the last look.
async fn clean_console(driver: &Driver, client: &Client) {
    let errors = driver.console_errors(client).await;
    assert!(
        errors.is_empty(),
        "console errors at {:?}: {errors:#?}",
        client.current_url().await.map(|u| u.to_string())
    );
}

/// The text of each element matching `css`, in page order.
async fn texts(client: &Client, css: &str) -> Vec<String> {
    let js = format!(
        "return Array.prototype.map.call(document.querySelectorAll({}), \
         function (e) {{ return e.textContent.trim(); }});",
        json!(css)
    );
    serde_json::from_value(script(client, &js).await).unwrap()
}

/// Fails on the old pages: two devices from machines with the same host name were
/// both "vm" everywhere, and only the API could rename them.
async fn names_and_settings(f: &UiFixture, driver: &Driver, client: &Client, a: &str, b: &str) {
    let short = |id: &str| id.strip_prefix("dev-").unwrap()[..6].to_owned();
    visit(driver, client, &f.server.url("/ui/fleet"), "#devices").await;
    let row = |id: &str| format!("tr.device[data-device=\"{id}\"] td:nth-child(2) a");
    assert_eq!(text_of(client, &row(a)).await, format!("vm ({})", short(a)));
    assert_eq!(text_of(client, &row(b)).await, format!("vm ({})", short(b)));

    visit(
        driver,
        client,
        &f.server.url(&format!("/ui/devices/{a}")),
        "h1",
    )
    .await;
    click(client, "details.device-settings summary").await;
    type_into(client, "#edit-name", "Door camera").await;
    type_into(client, "#edit-group", "lobby").await;
    type_into(client, "#edit-lat", "52.52").await;
    type_into(client, "#edit-lon", "13.405").await;
    type_into(client, "#edit-tags", "outdoor, north-gate").await;
    type_into(client, "#edit-notes", "Above the main door").await;
    click(client, "form.device-edit button[type=submit]").await;
    text_with(client, "h1", "Door camera").await;
    clean_console(driver, client).await;
    assert!(
        client
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with(&format!("/ui/devices/{a}")),
        "redirected to the device page"
    );
    let facts = text_of(client, "dl.facts").await;
    for shown in ["lobby", "52.52", "13.405", "Above the main door"] {
        assert!(facts.contains(shown), "{shown:?} in {facts}");
    }
    assert_eq!(
        texts(client, "dd.tags .tag").await,
        ["outdoor", "north-gate"]
    );

    visit(driver, client, &f.server.url("/ui/fleet"), "#devices").await;
    assert_eq!(text_of(client, &row(a)).await, "Door camera");
    let cell = text_of(
        client,
        &format!("tr.device[data-device=\"{a}\"] td:nth-child(2)"),
    )
    .await;
    assert!(cell.contains("group lobby"), "{cell}");
    assert_eq!(text_of(client, &row(b)).await, format!("vm ({})", short(b)));
}

/// Fails on the old pages: times wrapped over several lines, levels had no colour,
/// repeated lines were one row each, packages and images came in random-id order.
async fn logs_packages_and_files(f: &UiFixture, driver: &Driver, client: &Client, a: &str) {
    visit(
        driver,
        client,
        &f.server.url(&format!("/ui/logs?device={a}")),
        "#log-lines",
    )
    .await;
    // [time text, lines it renders on, level text, level class, level colour, message, fold].
    let rows = script(
        client,
        "return Array.prototype.map.call(document.querySelectorAll('#log-lines tbody tr'), \
         function (r) { \
           var when = r.querySelector('td.when'), level = r.querySelector('.level'); \
           var range = document.createRange(); range.selectNodeContents(when); \
           var repeat = r.querySelector('.repeat'); \
           return [when.textContent, range.getClientRects().length, level.textContent, \
                   level.className, getComputedStyle(level).color, \
                   r.querySelector('td.message').firstChild.textContent.trim(), \
                   repeat ? repeat.textContent : null]; });",
    )
    .await;
    let rows = rows.as_array().unwrap();
    assert_eq!(
        rows.len(),
        5,
        "one row per distinct run of lines: {rows:#?}"
    );
    for r in rows {
        let when = r[0].as_str().unwrap();
        assert!(
            when.len() == 23 && when.starts_with("2025-11-26 09:0") && !when.contains("UTC"),
            "one UTC time (the header says UTC): {r}"
        );
        assert_eq!(r[1], 1, "the time on one line: {r}");
        assert_eq!(
            r[3],
            format!("level level-{}", r[2].as_str().unwrap()),
            "{r}"
        );
    }
    let colour = |level: &str| {
        rows.iter()
            .find(|r| r[2] == level)
            .map(|r| r[4].clone())
            .unwrap_or_else(|| panic!("no {level} row"))
    };
    assert_eq!(colour("error"), "rgb(180, 35, 24)");
    assert_eq!(colour("warn"), "rgb(180, 83, 9)");
    assert_ne!(colour("info"), colour("error"));
    let slow: Vec<&Value> = rows.iter().filter(|r| r[5] == "slow frame").collect();
    assert_eq!(slow.len(), 1, "three identical lines folded: {rows:#?}");
    assert_eq!(slow[0][6], "× 3");
    assert!(
        rows.iter()
            .filter(|r| r[5] != "slow frame")
            .all(|r| r[6].is_null())
    );

    // Packages c, a, b uploaded (and built) in that order: newest first is b, a, c, neither
    // order of their ids.
    visit(
        driver,
        client,
        &f.server.url(&format!("/ui/devices/{a}")),
        "#packages",
    )
    .await;
    assert_eq!(
        texts(client, "#packages tbody tr td:first-child code").await,
        ["p-b", "p-a", "p-c"]
    );
    visit(
        driver,
        client,
        &f.server.url(&format!("/ui/data/files?device={a}")),
        "ul.gallery img",
    )
    .await;
    let images = script(
        client,
        "var imgs = document.querySelectorAll('ul.gallery img'); \
         return Array.prototype.map.call(imgs, function (i) { return i.alt; });",
    )
    .await;
    assert_eq!(images, json!(["s/p-b.jpg", "s/p-a.jpg", "s/p-c.jpg"]));
    // Every image loads: fails when earlier pages' live streams, kept open for Back, use up
    // the browser's connections to the server (the images then wait for a minute).
    let start = Instant::now();
    while script(
        client,
        "return Array.prototype.every.call(document.querySelectorAll('ul.gallery img'), \
         function (i) { return i.complete && i.naturalWidth > 0; });",
    )
    .await
        != true
    {
        assert!(start.elapsed() < browser::BROWSER_WAIT, "the images load");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    clean_console(driver, client).await;
}

/// Fails on the old page: it said "Set by never set" and showed no device's
/// effective configuration.
async fn configuration(f: &UiFixture, driver: &Driver, client: &Client, a: &str, b: &str) {
    let page = f.server.url("/ui/config");
    visit(driver, client, &page, "#fleet-set").await;
    let hint = text_of(client, "#fleet-set").await;
    assert!(hint.starts_with("Not set"), "{hint}");
    let effective = |id: &str| format!("tr.device-config[data-device=\"{id}\"] td:last-child");
    for id in [a, b] {
        assert_eq!(
            text_of(client, &effective(id)).await,
            "none: its own file only"
        );
    }
    let body = text_of(client, "main").await;
    assert!(!body.to_lowercase().contains("never"), "{body}");

    // The group layer of device a, through the "another group" form.
    let form = "form.config:has(input[name=device])";
    type_into(client, &format!("{form} input[name=scope]"), "lobby").await;
    type_into(client, &format!("{form} textarea"), "[knn]\nk = 7").await;
    click(client, &format!("{form} button[type=submit]")).await;
    let set = text_with(
        client,
        "form.config:has(input[name=scope][value=lobby]) .hint",
        "Set by alice",
    )
    .await;
    assert!(!set.contains("never"), "{set}");
    clean_console(driver, client).await;
    click(client, &format!("{} summary", effective(a))).await;
    text_with(client, &format!("{} pre.effective", effective(a)), "k = 7").await;
    assert_eq!(
        text_of(client, &effective(b)).await,
        "none: its own file only"
    );
    assert_eq!(text_of(client, "#fleet-set").await, hint);
}

/// The favicon every page links loads as an image, with nothing in the console.
async fn favicon(f: &UiFixture, driver: &Driver, client: &Client) {
    let href = script(
        client,
        "return document.querySelector('link[rel=icon]').href;",
    )
    .await;
    assert_eq!(href, json!(f.server.url("/ui/static/favicon.svg")));
    for path in ["/favicon.ico", "/ui/static/favicon.svg"] {
        visit(driver, client, &f.server.url(path), "svg").await;
        assert_eq!(
            script(client, "return document.contentType;").await,
            "image/svg+xml",
            "{path}"
        );
    }
}

#[test]
fn everyday_pages_work_in_headless_chromium_with_a_clean_console() {
    if !browser::available() {
        return;
    }
    let f = UiFixture::new();
    let (a, token) = f.device("vm");
    let (b, _) = f.device("vm");
    upload(
        &f,
        &a,
        &token,
        "p-c",
        T0,
        Some(log_lines(&[(T0 + 1, "info", "booted")])),
    );
    upload(&f, &a, &token, "p-a", T0 + 60_000, None);
    let long = "frame 1 of a long message that fills the row, as device logs do";
    upload(
        &f,
        &a,
        &token,
        "p-b",
        T0 + 120_000,
        Some(log_lines(&[
            (T0 + 120_001, "info", long),
            (T0 + 122_001, "warn", "slow frame"),
            (T0 + 123_002, "warn", "slow frame"),
            (T0 + 124_003, "warn", "slow frame"),
            (T0 + 125_004, "error", "camera lost"),
            (T0 + 126_005, "debug", "tick"),
        ])),
    );

    let driver = Driver::start();
    browser::run(async {
        // Narrow, so a time allowed to wrap would.
        let client = driver
            .logged_in(
                &f.server.url("/ui/login"),
                &f.admin,
                &["--window-size=720,900"],
            )
            .await;
        wait_for(&client, "nav").await;
        clean_console(&driver, &client).await;
        names_and_settings(&f, &driver, &client, &a, &b).await;
        logs_packages_and_files(&f, &driver, &client, &a).await;
        configuration(&f, &driver, &client, &a, &b).await;
        favicon(&f, &driver, &client).await;
        client.close().await.unwrap();
    });
}
