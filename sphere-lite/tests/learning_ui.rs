//! What devices learn, on the dashboard in a real headless Chromium (Debian's `chromium` +
//! `chromium-driver`, over WebDriver) against a real sphere-lite on 127.0.0.1:0, with the
//! device's side played through the real API: packages built with the protocol crate's
//! `PackageBuilder` and uploaded as a device uploads them, feedback fetched, acknowledged and
//! answered with the device's token. An admin reads a device's timeline and names its
//! proposed class on the device page and on the Data Hub (the same form, handler and feedback
//! item), sees each rename queued and then applied or refused as the device reports it, and
//! picks charts with the chooser and reads their incident and adaptation markers.
//!
//! Screenshots of the timeline and of the Data Hub's proposed classes go to
//! `$SPHERE_LITE_SCREENSHOTS` when that is set (the guide's pictures).

use fantoccini::Client;
use serde_json::{Value, json};
use sphere_lite::domain::now_unix_ms;
use sphere_lite::ports::Role;
use tinylcm_protocol::api::{FeedbackItem, FeedbackVerdict};
use tinylcm_protocol::learning::LEARNING_MEMBER;
use tinylcm_protocol::metric_keys::{FPS, LATENCY_P50_US};
use tinylcm_protocol::package::FileKind;
use tinylcm_protocol::paths;

#[path = "support/browser.rs"]
mod browser;
#[path = "support/server.rs"]
mod server;
#[path = "support/ui.rs"]
mod ui;

use browser::{
    Driver, checked, choose, click, screenshot, script, text_of, text_with, type_into, wait_for,
};
use ui::{Member, UiFixture};

/// The life of the device's state database its events carry.
const EPOCH: &str = "0123456789abcdef0123456789abcdef";

/// The browser tests' server with a read-only operator (`bob`) too.
struct Fixture {
    ui: UiFixture,
    reader: String,
}

impl std::ops::Deref for Fixture {
    type Target = UiFixture;
    fn deref(&self) -> &UiFixture {
        &self.ui
    }
}

impl Fixture {
    fn new() -> Fixture {
        let ui = UiFixture::new();
        let (reader, _) = ui
            .sphere
            .issue_operator_token("bob", Role::ReadOnly, None)
            .unwrap();
        Fixture { ui, reader }
    }

    /// The device's feedback queue, as it pulls it.
    fn feedback(&self, device: &str, token: &str) -> Vec<FeedbackItem> {
        let (status, body) = self.server.get(&paths::feedback(device), Some(token));
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body["items"].clone()).unwrap()
    }

    /// The device acknowledges item `id` and reports it `outcome` (`applied`, `refused`) with
    /// `reason`, as its sync client does after applying its inbox.
    fn report(&self, device: &str, token: &str, id: u64, outcome: &str, reason: Option<&str>) {
        let (status, body) = self.server.post(
            &paths::feedback_ack(device),
            Some(token),
            json!({"up_to": id}).to_string().as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
        let mut result = json!({"id": id, "outcome": outcome, "unix_ms": now_unix_ms()});
        if let Some(r) = reason {
            result["reason"] = json!(r);
        }
        let (status, body) = self.server.post(
            &paths::feedback_results(device),
            Some(token),
            json!({"results": [result]}).to_string().as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
    }

    /// A headless Chromium logged in as the admin, its window `size` (`1100,900`).
    async fn browser(&self, driver: &Driver, size: &str) -> Client {
        let client = driver
            .logged_in(
                &self.server.url("/ui/login"),
                &self.admin,
                &[&format!("--window-size={size}"), "--hide-scrollbars"],
            )
            .await;
        wait_for(&client, "nav").await;
        client
    }
}

/// A package member holding `value` as JSON.
fn json_member(name: &'static str, kind: FileKind, value: &Value) -> Member {
    (name.into(), kind, value.to_string().into_bytes())
}

/// One learning event as the runtime reports it in `learning.json`.
fn learnt(seq: u64, unix_ms: u64, event: Value) -> Value {
    json!({"event_seq": seq, "epoch": EPOCH, "unix_ms": unix_ms, "event": event})
}

/// A drift onset of incident `incident` at `unix_ms`.
fn onset(seq: u64, incident: u64, unix_ms: u64) -> Value {
    json!({
        "event_seq": seq, "epoch": EPOCH, "incident": incident, "detector": "adwin-distance",
        "statistic": 4.2, "threshold": 3.0, "magnitude": 0.8, "sample_id": 30 + seq,
        "unix_ms": unix_ms, "predicted": "star",
        "top_k": [{"class": "star", "score": 0.61}, {"class": "new-1", "score": 0.3}],
    })
}

/// A metrics file with the per-class counts the label chooser reads (`classes.<name>.total`).
fn class_counts(classes: &[&str]) -> Member {
    let mut counts = serde_json::Map::new();
    for c in classes {
        counts.insert((*c).into(), json!({"total": 10, "interval": 1}));
    }
    json_member(
        "metrics.json",
        FileKind::Metrics,
        &json!({ "classes": counts }),
    )
}

/// `[tl-kind, what]` of each timeline entry, top to bottom.
async fn timeline(client: &Client) -> Value {
    script(
        client,
        "return Array.prototype.map.call(document.querySelectorAll('ol.timeline li'), \
             function (l) { return [l.className, l.querySelector('.what').textContent]; });",
    )
    .await
}

/// The value of the first `name="csrf"` field of a page (every form of a page carries the
/// same session token).
fn csrf_of(html: &str) -> String {
    let field = r#"name="csrf" value=""#;
    let at = html.find(field).expect("a form with a CSRF token") + field.len();
    html[at..].split('"').next().unwrap().to_owned()
}

fn screenshot_dir() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("SPHERE_LITE_SCREENSHOTS").map(std::path::PathBuf::from)?;
    std::fs::create_dir_all(&dir).unwrap();
    Some(dir)
}

/// Fails before this change (the timeline and the rename form were only read as HTML, never
/// used in a browser; the page did not confirm a rename it sent): a device reports an
/// incident, a proposed class `new-1`, a round the guard kept and one it rolled back; in
/// Chromium the device page's timeline shows them newest first, the admin picks `new-1`,
/// types its name and sends it; the page confirms the rename queued, the device's feedback
/// queue holds it, and once the device reports it applied the page says so by itself.
#[test]
fn an_admin_names_a_proposed_class_on_the_device_timeline_in_headless_chromium() {
    if !browser::available() {
        return;
    }
    let f = Fixture::new();
    let (dev, token) = f.device("yard-cam");
    // Recent: the timeline shows the incidents of the last 30 days.
    let t0 = now_unix_ms() - 3_600_000;
    let events = json!([
        learnt(
            2,
            t0 + 10_000,
            json!({"kind": "new-class", "round": 1, "class": "new-1", "members": 6})
        ),
        learnt(
            3,
            t0 + 20_000,
            json!({"kind": "round-kept", "round": 1, "added": 6,
                   "confidence_before": 0.82, "confidence_after": 0.86})
        ),
        learnt(
            4,
            t0 + 30_000,
            json!({"kind": "round-rolled-back", "round": 2, "reason": "protected-samples",
                   "added": 4, "confidence_before": 0.86, "confidence_after": 0.61})
        ),
        learnt(
            5,
            t0 + 40_000,
            json!({"kind": "incident-closed", "incident": 7, "detectors": ["adwin-distance"]})
        ),
    ]);
    f.upload(
        &dev,
        &token,
        "pkg-learnt",
        t0,
        vec![
            class_counts(&["star", "ball", "new-1"]),
            json_member(
                "drift-events.json",
                FileKind::DriftEvents,
                &json!([onset(1, 7, t0)]),
            ),
            json_member(LEARNING_MEMBER, FileKind::Other, &events),
        ],
    );
    let driver = Driver::start();
    let shots = screenshot_dir();
    browser::run(async {
        let client = f.browser(&driver, "1100,900").await;
        client
            .goto(&f.server.url(&format!("/ui/devices/{dev}")))
            .await
            .unwrap();
        wait_for(&client, "ol.timeline").await;
        assert_eq!(
            timeline(&client).await,
            json!([
                ["tl-incident-closed", "incident 7 closed"],
                ["tl-rollback", "round 2 rolled back: protected-samples"],
                ["tl-round", "round 1 kept"],
                ["tl-proposed", "round 1: proposed class new-1"],
                ["tl-incident", "incident 7 opened"],
            ])
        );
        let rollback = text_of(&client, "ol.timeline li.tl-rollback .detail").await;
        assert_eq!(
            rollback,
            "4 samples removed again; mean confidence 0.86 → 0.61"
        );

        // The form offers the proposed class first, then the known ones.
        let options = script(
            &client,
            "return Array.prototype.map.call(document.querySelectorAll('#rename-from option'), \
                 function (o) { return o.textContent; });",
        )
        .await;
        assert_eq!(options, json!(["new-1 (proposed)", "ball", "star"]));
        choose(&client, "#rename-from", "new-1").await;
        type_into(&client, "#rename-to", "triangle").await;
        click(&client, "#rename-send").await;
        let sent = text_with(&client, "#rename-sent", "queued").await;
        assert_eq!(sent, "Sent to the device: rename new-1 → triangle, queued.");
        let url = client.current_url().await.unwrap();
        assert_eq!(url.path(), format!("/ui/devices/{dev}"));
        assert_eq!(url.fragment(), Some("timeline"));
        let top = timeline(&client).await;
        assert_eq!(
            top[0],
            json!(["tl-rename", "rename new-1 → triangle asked by alice"])
        );

        // The device's queue holds the rename.
        let items = f.feedback(&dev, &token);
        assert_eq!(
            items.iter().map(|i| i.verdict.clone()).collect::<Vec<_>>(),
            [FeedbackVerdict::Class {
                from: "new-1".into(),
                to: "triangle".into()
            }]
        );

        // The device applies it: the open page follows by itself (live refresh).
        f.report(&dev, &token, items[0].id, "applied", None);
        text_with(&client, "#rename-sent", "queued → delivered → applied").await;
        text_with(
            &client,
            "ol.timeline li.tl-rename .detail",
            "queued → delivered → applied",
        )
        .await;
        if let Some(dir) = &shots {
            screenshot(&client, "#learnt", &dir.join("learning-timeline.png")).await;
        }
        client.close().await.unwrap();
    });
}

/// Uploads, for `dev`, a metrics file with its class counts (`star` known, `new-1`, `new-2`
/// proposed), the learning events that proposed the two, and three prediction samples: two
/// of `new-1`, one of `star`.
fn upload_proposals(f: &Fixture, dev: &str, token: &str) {
    let t0 = now_unix_ms() - 600_000;
    let events = json!([
        learnt(
            1,
            t0,
            json!({"kind": "new-class", "round": 1, "class": "new-1", "members": 6})
        ),
        learnt(
            2,
            t0 + 1_000,
            json!({"kind": "new-class", "round": 3, "class": "new-2", "members": 9})
        ),
    ]);
    let samples = [
        (
            "predictions/1.jpg",
            "new-1",
            &include_bytes!("support/samples/glare.jpg")[..],
        ),
        (
            "predictions/2.jpg",
            "new-1",
            &include_bytes!("support/samples/dimstar.jpg")[..],
        ),
        (
            "predictions/3.jpg",
            "star",
            &include_bytes!("support/samples/star.jpg")[..],
        ),
    ];
    let mut members = vec![
        class_counts(&["star", "new-1", "new-2"]),
        json_member(LEARNING_MEMBER, FileKind::Other, &events),
    ];
    let mut meta = Vec::new();
    for (i, (file, class, jpeg)) in samples.into_iter().enumerate() {
        members.push((file.into(), FileKind::Prediction, jpeg.to_vec()));
        meta.push(json!({"file": file, "class": class, "confidence": 0.7,
                         "unix_ms": t0 + 2_000 + i as u64}));
    }
    members.push(json_member(
        "predictions/predictions.json",
        FileKind::Prediction,
        &Value::from(meta),
    ));
    f.upload(dev, token, "pkg-proposals", t0, members);
}

/// Fails before this change (proposed classes could be named on the device page only): on
/// the Data Hub, with a device chosen, an admin sees the classes that device proposed (not
/// another device's), opens a proposed class's samples, names it with the form there (the
/// class chosen already), returns to the Data Hub with the rename confirmed queued, the
/// device gets the same feedback item the device page's form queues, and when the device
/// refuses it the list says so with the device's reason.
#[test]
fn an_admin_names_a_proposed_class_from_the_data_hub_in_headless_chromium() {
    if !browser::available() {
        return;
    }
    let f = Fixture::new();
    let (dev, token) = f.device("gate-cam");
    upload_proposals(&f, &dev, &token);
    let (other, other_token) = f.device("yard-cam");
    f.upload(
        &other,
        &other_token,
        "pkg-other",
        now_unix_ms(),
        vec![class_counts(&["new-5"])],
    );
    let driver = Driver::start();
    let shots = screenshot_dir();
    browser::run(async {
        let client = f.browser(&driver, "1100,1300").await;
        client.goto(&f.server.url("/ui/data")).await.unwrap();
        // No device chosen: no classes to name.
        wait_for(&client, "#predictions").await;
        assert_eq!(
            script(&client, "return document.querySelector('#classes');").await,
            Value::Null
        );
        choose(&client, "form.filters select[name=device]", &dev).await;
        click(&client, "form.filters button").await;
        wait_for(&client, "#proposed").await;
        let rows = script(
            &client,
            "return Array.prototype.map.call(document.querySelectorAll('#proposed tbody tr'), \
                 function (r) { return Array.prototype.map.call(r.cells, \
                 function (c) { return c.textContent; }); });",
        )
        .await;
        assert_eq!(
            rows,
            json!([
                ["new-1", "round 1, 6 samples", "not yet"],
                ["new-2", "round 3, 9 samples", "not yet"],
            ])
        );

        // new-1's samples: the gallery filtered to them, the form with new-1 chosen.
        click(&client, "#proposed tr[data-class=\"new-1\"] a").await;
        wait_for(&client, "#proposed a[aria-current]").await;
        let gallery = script(
            &client,
            "return Array.prototype.map.call(document.querySelectorAll('#predictions li'), \
                 function (l) { return [l.querySelector('.class').textContent, \
                 l.querySelector('img').complete && l.querySelector('img').naturalWidth > 0]; });",
        )
        .await;
        assert_eq!(gallery, json!([["new-1", true], ["new-1", true]]));
        let chosen = script(
            &client,
            "return document.querySelector('#rename-from').value;",
        )
        .await;
        assert_eq!(chosen, json!("new-1"));
        type_into(&client, "#rename-to", "glare").await;
        click(&client, "#rename-send").await;
        let sent = text_with(&client, "#rename-sent", "queued").await;
        assert_eq!(sent, "Sent to the device: rename new-1 → glare, queued.");
        let url = client.current_url().await.unwrap();
        assert_eq!(url.path(), "/ui/data");
        assert_eq!(url.fragment(), Some("classes"));
        // Back to the gallery as it was filtered, not to all the device's samples.
        assert!(
            url.query_pairs().any(|(k, v)| k == "class" && v == "new-1"),
            "{url}"
        );
        text_with(
            &client,
            "#proposed tr[data-class=\"new-1\"] td.named",
            "new-1 → glare: queued",
        )
        .await;

        // The same feedback item as from the device page; nothing for the other device.
        let items = f.feedback(&dev, &token);
        assert_eq!(
            items.iter().map(|i| i.verdict.clone()).collect::<Vec<_>>(),
            [FeedbackVerdict::Class {
                from: "new-1".into(),
                to: "glare".into()
            }]
        );
        assert!(f.feedback(&other, &other_token).is_empty());

        // The device refuses it: the Data Hub shows why, by itself.
        f.report(
            &dev,
            &token,
            items[0].id,
            "refused",
            Some("the device has no class new-1"),
        );
        let named = text_with(
            &client,
            "#proposed tr[data-class=\"new-1\"] td.named",
            "refused",
        )
        .await;
        assert_eq!(
            named,
            "new-1 → glare: queued → delivered → refused (the device has no class new-1)"
        );
        text_with(&client, "#rename-sent", "refused").await;
        if let Some(dir) = &shots {
            screenshot(&client, "main", &dir.join("datahub-classes.png")).await;
        }
        client.close().await.unwrap();
    });
    // The device page's timeline shows the rename asked from the Data Hub too.
    let session = f.server.login(&f.admin);
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let (status, page) = f
        .server
        .page(&agent, &format!("/ui/devices/{dev}"), &session);
    assert_eq!(status, 200);
    assert!(
        page.contains("rename new-1 → glare asked by alice"),
        "{page}"
    );
}

/// Fails before this change (the Data Hub listed no classes): the list is everyone's, the
/// form an admin's; the form's answer can only return to the device page or the Data Hub, and
/// a post without the session's CSRF token or from a read-only session queues nothing.
#[test]
fn the_data_hub_lists_proposed_classes_to_all_and_the_form_to_admins() {
    let f = Fixture::new();
    let (dev, token) = f.device("gate-cam");
    upload_proposals(&f, &dev, &token);
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let path = format!("/ui/data?device={dev}");
    let admin = f.server.login(&f.admin);
    let reader = f.server.login(&f.reader);

    let (status, page) = f.server.page(&agent, &path, &reader);
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(r#"<tr data-class="new-1">"#), "{page}");
    assert!(page.contains(r#"<tr data-class="new-2">"#), "{page}");
    assert!(!page.contains(r#"<tr data-class="star">"#), "{page}");
    assert!(!page.contains("class-rename"), "{page}");

    let (status, page) = f.server.page(&agent, &path, &admin);
    assert_eq!(status, 200, "{page}");
    let action = format!(r#"action="/ui/devices/{dev}/classes""#);
    assert!(page.contains(&action), "{page}");
    assert!(
        page.contains(r#"<input type="hidden" name="back" value="data">"#),
        "{page}"
    );
    let csrf = csrf_of(&page);
    let post = |session: &str, body: &str| -> (u16, Option<String>) {
        let r = agent
            .post(&f.server.url(&format!("/ui/devices/{dev}/classes")))
            .set("Cookie", &format!("sphere_session={session}"))
            .set("Content-Type", "application/x-www-form-urlencoded")
            .send_string(body);
        let r = match r {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        };
        (r.status(), r.header("location").map(str::to_owned))
    };
    assert_eq!(post(&admin, "from=new-1&to=glare&back=data").0, 403);
    assert_eq!(
        post(
            &admin,
            &format!("csrf={csrf}&from=new-1&to=glare&back=https%3A%2F%2Fevil.example")
        )
        .0,
        400
    );
    assert_eq!(
        post(
            &reader,
            &format!(
                "csrf={}&from=new-1&to=glare&back=data",
                csrf_of(&f.server.page(&agent, &path, &reader).1)
            )
        )
        .0,
        403
    );
    assert!(f.feedback(&dev, &token).is_empty());
    let (status, location) = post(&admin, &format!("csrf={csrf}&from=new-2&to=bird&back=data"));
    assert_eq!(status, 303);
    let item = f.feedback(&dev, &token)[0].id;
    assert_eq!(
        location.as_deref(),
        Some(format!("/ui/data?device={dev}&renamed={item}#classes").as_str())
    );
    // From a filtered gallery the form carries the filter, and the answer keeps it; a filter
    // that is not the gallery's is refused and queues nothing.
    let (_, page) = f
        .server
        .page(&agent, &format!("{path}&class=new-1"), &admin);
    assert!(
        page.contains(r#"<input type="hidden" name="filter" value="class=new-1">"#),
        "{page}"
    );
    let bad = format!("csrf={csrf}&from=new-1&to=glare&back=data&filter=device%3Dother");
    assert_eq!(post(&admin, &bad).0, 400);
    assert_eq!(f.feedback(&dev, &token).len(), 1);
    let (status, location) = post(
        &admin,
        &format!("csrf={csrf}&from=new-1&to=glare&back=data&filter=class%3Dnew-1"),
    );
    assert_eq!(status, 303);
    let item = f.feedback(&dev, &token)[1].id;
    assert_eq!(
        location.as_deref(),
        Some(format!("/ui/data?device={dev}&class=new-1&renamed={item}#classes").as_str())
    );
    // A device that is not (or no longer) enrolled: its gallery, no classes.
    let (status, page) = f.server.page(&agent, "/ui/data?device=gone-cam", &admin);
    assert_eq!(status, 200, "{page}");
    assert!(!page.contains("id=\"classes\""), "{page}");
    // A malformed confirmation parameter is a 400 page, never echoed.
    let (status, _) = f.server.page(&agent, &format!("{path}&renamed=x"), &admin);
    assert_eq!(status, 400);
}

/// A metrics file with the two default charts' keys and `memory.rss_mib`, a key charted only
/// when chosen.
fn metrics_point(i: u64) -> Member {
    json_member(
        "metrics.json",
        FileKind::Metrics,
        &json!({
            "latency": {"total": {"p50_us": 12_000 + 100 * i}},
            "fps_interval": 15.0,
            "memory": {"rss_mib": 40 + 2 * i},
        }),
    )
}

/// The `[key, markers, line]` of each chart on the page, each marker `[class, x, title]`, the
/// line its polyline's points.
async fn charts(client: &Client) -> Value {
    script(
        client,
        "return Array.prototype.map.call(document.querySelectorAll('figure.chart'), \
             function (f) { return [f.querySelector('figcaption code').textContent, \
             Array.prototype.map.call(f.querySelectorAll('line.chart-marker'), function (m) { \
             return [m.getAttribute('class'), m.getAttribute('x1'), \
             m.querySelector('title').textContent]; }), \
             f.querySelector('polyline.chart-line').getAttribute('points')]; });",
    )
    .await
}

/// Fails before this change (the chooser and the markers were only read as HTML): a device
/// sends a metrics file a minute for ten minutes, an incident three minutes in, a round the
/// guard kept at five and one it rolled back at seven. In Chromium each default chart marks
/// the three where they happened (a tenth of the plot's width a minute); the admin unticks
/// the default charts, finds `memory.rss_mib` with the chooser's search, ticks it and shows
/// it: the page then charts that key alone, its own line, with the same markers.
#[test]
fn the_chart_chooser_and_markers_work_in_headless_chromium() {
    if !browser::available() {
        return;
    }
    let f = Fixture::new();
    let (dev, token) = f.device("dock-cam");
    // Whole minutes, so the markers' places are exact.
    let t0 = (now_unix_ms() - 3_600_000) / 60_000 * 60_000;
    for i in 0..=10u64 {
        let mut members = vec![metrics_point(i)];
        match i {
            3 => members.push(json_member(
                "drift-events.json",
                FileKind::DriftEvents,
                &json!([onset(1, 4, t0 + 3 * 60_000)]),
            )),
            7 => members.push(json_member(
                LEARNING_MEMBER,
                FileKind::Other,
                &json!([
                    learnt(
                        2,
                        t0 + 5 * 60_000,
                        json!({"kind": "round-kept", "round": 1, "added": 8})
                    ),
                    learnt(
                        3,
                        t0 + 7 * 60_000,
                        json!({"kind": "round-rolled-back", "round": 2,
                               "reason": "confidence-collapse", "added": 5})
                    ),
                ]),
            )),
            _ => {}
        }
        f.upload(&dev, &token, &format!("m{i}"), t0 + i * 60_000, members);
    }
    // The plot runs from x = 70 to 944: 87.4 a minute.
    let markers = json!([
        ["chart-marker incident", "332.2", "incident 4"],
        [
            "chart-marker adaptation",
            "507.0",
            "adaptation round 1 kept (8 samples added)"
        ],
        [
            "chart-marker rollback",
            "681.8",
            "adaptation round 2 rolled back: confidence-collapse"
        ],
    ]);
    let driver = Driver::start();
    browser::run(async {
        let client = f.browser(&driver, "1100,900").await;
        client
            .goto(&f.server.url(&format!("/ui/devices/{dev}")))
            .await
            .unwrap();
        wait_for(&client, "figure.chart").await;
        let before = charts(&client).await;
        let keys: Vec<&Value> = before.as_array().unwrap().iter().map(|c| &c[0]).collect();
        assert_eq!(keys, [LATENCY_P50_US, FPS]);
        for chart in before.as_array().unwrap() {
            assert_eq!(chart[1], markers, "{chart}");
        }
        let legend = text_of(&client, "figure.chart figcaption").await;
        assert!(
            legend.contains("drift incident")
                && legend.contains("adaptation kept")
                && legend.contains("adaptation rolled back"),
            "{legend}"
        );

        // The chooser: the default charts are ticked; untick them, find rss, tick it.
        click(&client, "form.metric-choice > details > summary").await;
        for key in [LATENCY_P50_US, FPS] {
            let tick = format!("input[name=key][value=\"{key}\"]");
            assert!(checked(&client, &tick).await, "{key} charted");
            click(&client, &tick).await;
        }
        type_into(&client, "input[data-filter=metric-groups]", "rss").await;
        let shown = script(
            &client,
            "return Array.prototype.filter.call(\
                 document.querySelectorAll('#metric-groups label[data-key]'), \
                 function (l) { return l.offsetParent !== null; }).map(\
                 function (l) { return l.getAttribute('data-key'); });",
        )
        .await;
        assert_eq!(shown, json!(["memory.rss_mib"]));
        let rss = "input[name=key][value=\"memory.rss_mib\"]";
        click(&client, rss).await;
        click(&client, "form.metric-choice button[type=submit]").await;
        text_with(&client, "figure.chart figcaption code", "memory.rss_mib").await;
        let url = client.current_url().await.unwrap();
        assert_eq!(url.query(), Some("key=memory.rss_mib"));
        let after = charts(&client).await;
        assert_eq!(after.as_array().unwrap().len(), 1, "{after}");
        assert_eq!(after[0][0], "memory.rss_mib");
        assert_eq!(after[0][1], markers);
        assert_ne!(after[0][2], before[0][2], "its own line");
        let caption = text_of(&client, "figure.chart figcaption").await;
        assert!(
            caption.contains("latest 60 · min 40 · max 60 · 11 point(s)"),
            "{caption}"
        );
        assert!(checked(&client, rss).await, "the chosen key stays ticked");
        client.close().await.unwrap();
    });
}
