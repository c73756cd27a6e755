//! Models from the dashboard against a real sphere-lite on 127.0.0.1:0: an admin publishes a
//! signed release through the models page's upload form and rolls it out to a group as a
//! canary in a real headless Chromium (Debian's `chromium` + `chromium-driver`, over
//! WebDriver), and sees each device's progress; a refused file is an error page with nothing
//! stored; a forged or read-only upload stores nothing either.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sphere_lite::domain::{DeviceUpdate, Sphere, now_unix_ms};
use sphere_lite::ports::Role;
use sphere_lite::server::open_embedded;
use tinylcm_protocol::device_json::metrics::{MODEL_MEMBER, RunningModel};
use tinylcm_protocol::device_json::refusal::{REFUSED_RELEASE_MEMBER, RefusalKind, ReleaseRefusal};
use tinylcm_protocol::package::{FileKind, PackageBuilder};
use tinylcm_protocol::paths;
use tinylcm_protocol::release::SigningKey;

#[path = "support/browser.rs"]
mod browser;
#[path = "support/release.rs"]
mod release;
#[path = "support/server.rs"]
mod server;

use browser::{BROWSER_WAIT, CHROMEDRIVER, CHROMIUM, Driver, text_with};
use server::TestServer;

/// A server trusting `signer`'s releases, its enrollment key and an admin token.
struct Fixture {
    // Field order: the server stops before the directory is removed.
    server: TestServer,
    sphere: Arc<Sphere>,
    dir: tempfile::TempDir,
    key: String,
    admin: String,
}

impl Fixture {
    fn new(signer: &SigningKey) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let sphere = Arc::new(
            open_embedded(&dir.path().join("data"))
                .unwrap()
                .with_release_keys(vec![signer.public()]),
        );
        let key = sphere.create_enrollment_key(20).unwrap();
        let admin = sphere.create_operator_token("alice").unwrap();
        Fixture {
            server: TestServer::start_shared(sphere.clone(), None),
            sphere,
            dir,
            key,
            admin,
        }
    }

    /// A file in the test's folder holding `bytes`; its absolute path.
    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// Names and versions of the stored releases.
    fn releases(&self) -> Vec<String> {
        let list = self.sphere.list_releases().unwrap();
        list.releases
            .iter()
            .map(|r| format!("{} {}", r.name, r.version))
            .collect()
    }

    /// Files under the blob store's `models/` (the stored model files).
    fn model_blobs(&self) -> usize {
        fn count(dir: &Path) -> usize {
            std::fs::read_dir(dir).map_or(0, |entries| {
                entries
                    .flatten()
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() { count(&p) } else { 1 }
                    })
                    .sum()
            })
        }
        walk_models(self.dir.path(), &count)
    }

    /// A device enrolled in `group`; (id, token).
    fn device(&self, group: &str) -> (String, String) {
        let (id, token) = self.server.enrolled(&self.key);
        self.sphere
            .update_device(
                &id,
                &DeviceUpdate {
                    group: Some(Some(group.into())),
                    ..DeviceUpdate::default()
                },
            )
            .unwrap();
        (id, token)
    }

    /// `device` sends a metrics package made now, as its runtime writes it: the model it runs,
    /// the release it refused (if any) and its sync counters.
    fn report(
        &self,
        device: &str,
        token: &str,
        id: &str,
        runs: (&str, &str, &str),
        refused: Option<&ReleaseRefusal>,
    ) {
        let doc = json!({
            MODEL_MEMBER: RunningModel {
                name: runs.0.into(),
                version: runs.1.into(),
                sha256: runs.2.into(),
            },
            REFUSED_RELEASE_MEMBER: refused,
            "sync": {"models_refused": u64::from(refused.is_some()), "models_installed": 0},
        });
        let mut b = PackageBuilder::new(id, device, now_unix_ms()).unwrap();
        b.add(
            "metrics.json",
            FileKind::Metrics,
            doc.to_string().into_bytes(),
        )
        .unwrap();
        let (status, body) =
            self.server
                .post(&paths::packages(device), Some(token), &b.finish().unwrap());
        assert_eq!(status, 200, "{body}");
    }

    /// Waits until `device`'s last package is processed (its report names a model).
    fn wait_reported(&self, device: &str) {
        let start = Instant::now();
        while self.sphere.reported(device).unwrap().model.is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the package of {device} was not processed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Counts the files of every `models` folder under `root` (the blob store's layout).
fn walk_models(root: &Path, count: &dyn Fn(&Path) -> usize) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| {
            if e.file_name() == "models" {
                count(&e.path())
            } else {
                walk_models(&e.path(), count)
            }
        })
        .sum()
}

/// Chooses `model` and `release` (absolute paths) in the publish form and submits it; the
/// text of the page that answers (the models page, or an error page).
async fn publish(client: &fantoccini::Client, base: &str, model: &str, release: &str) -> String {
    use fantoccini::Locator;
    client.goto(&format!("{base}/ui/models")).await.unwrap();
    client
        .wait()
        .at_most(BROWSER_WAIT)
        .for_element(Locator::Css("#publish-model"))
        .await
        .unwrap()
        .send_keys(model)
        .await
        .unwrap();
    client
        .find(Locator::Css("#publish-release"))
        .await
        .unwrap()
        .send_keys(release)
        .await
        .unwrap();
    let old = client.find(Locator::Css("main")).await.unwrap();
    client
        .find(Locator::Css("#publish-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The old page's element goes stale once the answer replaced it.
    let start = Instant::now();
    while old.text().await.is_ok() {
        assert!(start.elapsed() < BROWSER_WAIT, "no answer to the upload");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client
        .wait()
        .at_most(BROWSER_WAIT)
        .for_element(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The text of the progress row of `device` under the rollout of `group`.
async fn progress_row(client: &fantoccini::Client, group: &str, device: &str) -> String {
    use fantoccini::Locator;
    client
        .find(Locator::Css(&format!(
            "section.rollout[data-group=\"{group}\"] tr.progress[data-device=\"{device}\"]"
        )))
        .await
        .unwrap_or_else(|e| panic!("no progress row of {device} under {group}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Fails before this change: the models page only listed releases and said to publish through
/// the API. In headless Chromium an admin publishes two signed releases through the upload
/// form (each then listed), rolls the first out to group `lab` and the second to it as a 50 %
/// canary through the rollout form, and reads each device's progress: the release it is
/// assigned and the model it reports, `running` for a device that runs its release,
/// `downloading or waiting` for one that asked since the rollout, `pending` for one not heard
/// from, `refused` with the reason's kind and message for one that reports refusing its
/// release. A release signed by an unknown key and a file that is no signed release are each
/// an error page saying why, with nothing stored.
#[test]
fn an_admin_publishes_and_rolls_out_a_release_in_headless_chromium() {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        tinylcm_protocol::test_support::missing(
            &format!("{CHROMIUM} or {CHROMEDRIVER}"),
            "apt-get install chromium chromium-driver (./scripts/test sphere installs them)",
        );
        return;
    }
    let signer = SigningKey::generate().unwrap();
    let f = Fixture::new(&signer);
    let v1 = release::model_bytes("1");
    let v2 = release::model_bytes("2");
    let v1_model = f.file("shapes-1.tflite", &v1);
    let v1_release = f.file(
        "shapes-1.release.json",
        &release::signed(&signer, "shapes", "1", &v1),
    );
    let v2_model = f.file("shapes-2.tflite", &v2);
    let v2_release = f.file(
        "shapes-2.release.json",
        &release::signed(&signer, "shapes", "2", &v2),
    );
    let stranger = SigningKey::generate().unwrap();
    let untrusted = f.file(
        "shapes-3.release.json",
        &release::signed(&stranger, "shapes", "3", &v2),
    );
    let devices: Vec<(String, String)> = (0..4).map(|_| f.device("lab")).collect();
    let base = f.server.url("");
    let driver = Driver::start();
    let shots = std::env::var_os("SPHERE_LITE_SCREENSHOTS").map(std::path::PathBuf::from);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use fantoccini::Locator;
        let client = driver
            .logged_in(
                &format!("{base}/ui/models"),
                &f.admin,
                &["--window-size=1400,1200"],
            )
            .await;

        // Refusals first: nothing is stored.
        let page = publish(&client, &base, &v2_model, &untrusted).await;
        assert!(page.contains("400"), "{page}");
        assert!(page.contains("--release-keys"), "{page}");
        let page = publish(&client, &base, &v2_model, &v2_model).await;
        assert!(page.contains("is not a signed release"), "{page}");
        assert!(f.releases().is_empty());
        assert_eq!(f.model_blobs(), 0, "a refused upload left a model file");

        for (model, release) in [(&v1_model, &v1_release), (&v2_model, &v2_release)] {
            publish(&client, &base, model, release).await;
        }
        assert_eq!(f.releases(), ["shapes 1", "shapes 2"]);
        let listed = client
            .find(Locator::Css("main"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(listed.contains("shapes 1"), "{listed}");
        assert!(listed.contains("shapes 2"), "{listed}");

        // Roll out: v1 to the whole group, then v2 to half of it.
        for (release, percent) in [("shapes/1", "100"), ("shapes/2", "50")] {
            client.goto(&format!("{base}/ui/models")).await.unwrap();
            client
                .wait()
                .at_most(BROWSER_WAIT)
                .for_element(Locator::Css(&format!(
                    "#rollout-release option[value=\"{release}\"]"
                )))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            let group = client.find(Locator::Css("#rollout-group")).await.unwrap();
            group.clear().await.unwrap();
            group.send_keys("lab").await.unwrap();
            let share = client.find(Locator::Css("#rollout-percent")).await.unwrap();
            share.clear().await.unwrap();
            share.send_keys(percent).await.unwrap();
            client
                .find(Locator::Css("#rollout-submit"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            // The answer's page shows this rollout (the first one's section is already there
            // before the second is sent, so waiting for the section alone races the post).
            text_with(
                &client,
                "section.rollout[data-group=\"lab\"] h4",
                &format!("lab: {}", release.replace('/', " ")),
            )
            .await;
        }
        let rollouts = f.sphere.list_releases().unwrap().rollouts;
        assert_eq!(rollouts.len(), 1);
        let lab = &rollouts[0];
        assert_eq!(
            (
                lab.group.as_str(),
                lab.name.as_str(),
                lab.version.as_str(),
                lab.percent
            ),
            ("lab", "shapes", "2", 50)
        );
        assert_eq!(lab.previous, Some(("shapes".into(), "1".into())));

        // Every device is assigned one of the two; what each says decides its stage.
        let assigned: Vec<(String, String)> = devices
            .iter()
            .map(|(id, _)| {
                let a = f
                    .sphere
                    .model_for_device(id)
                    .unwrap()
                    .expect("an assignment");
                (a.version, a.sha256)
            })
            .collect();
        let [runner, asker, silent, refuser] = [0, 1, 2, 3].map(|i| &devices[i]);
        f.report(
            &runner.0,
            &runner.1,
            "pkg-run",
            ("shapes", &assigned[0].0, &assigned[0].1),
            None,
        );
        // Asks which release to run, still runs a model of its own.
        let (status, _) = f.server.get(&paths::model(&asker.0), Some(&asker.1));
        assert_eq!(status, 200);
        let refusal = ReleaseRefusal::new(
            "shapes",
            &assigned[3].0,
            &assigned[3].1,
            RefusalKind::BelowEpochFloor,
            "release has security epoch 0, below this device's floor 2; refused",
        );
        f.report(
            &refuser.0,
            &refuser.1,
            "pkg-ref",
            ("factory", "0", &"cd".repeat(32)),
            Some(&refusal),
        );
        f.wait_reported(&runner.0);
        f.wait_reported(&refuser.0);

        client.goto(&format!("{base}/ui/models")).await.unwrap();
        client
            .wait()
            .at_most(BROWSER_WAIT)
            .for_element(Locator::Css("#progress"))
            .await
            .unwrap();
        let row = progress_row(&client, "lab", &runner.0).await;
        assert!(
            row.contains(&format!("shapes {}", assigned[0].0)) && row.ends_with("running"),
            "{row}"
        );
        let row = progress_row(&client, "lab", &asker.0).await;
        assert!(
            row.contains(&format!("shapes {}", assigned[1].0))
                && row.contains("not reported")
                && row.ends_with("downloading or waiting"),
            "{row}"
        );
        let row = progress_row(&client, "lab", &silent.0).await;
        assert!(row.ends_with("pending"), "{row}");
        let row = progress_row(&client, "lab", &refuser.0).await;
        assert!(
            row.contains("factory 0")
                && row.contains("refused: below the epoch floor")
                && row.ends_with("below this device's floor 2; refused"),
            "{row}"
        );
        let counts = client
            .find(Locator::Css("section.rollout[data-group=\"lab\"] h4"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            counts.contains("1 running, 1 downloading or waiting, 1 pending, 1 refused"),
            "{counts}"
        );
        let table = client
            .find(Locator::Css("main"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(table.contains("50 %"), "{table}");
        if let Some(dir) = &shots {
            let png = client
                .find(Locator::Css("main"))
                .await
                .unwrap()
                .screenshot()
                .await
                .unwrap();
            std::fs::write(dir.join("models-rollout.png"), png).unwrap();
        }
        client.close().await.unwrap();
    });
}

/// A multipart body of `parts` (name, file name, bytes); (content type, body).
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    const BOUNDARY: &str = "----models-ui-test-Zx81";
    let mut body = Vec::new();
    for (name, file, data) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let disposition = match file {
            Some(f) => {
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\r\n")
            }
            None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

/// POSTs `body` to `path` with the session cookie; (status, page).
fn post_as(
    f: &Fixture,
    path: &str,
    session: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let r = agent
        .post(&f.server.url(path))
        .set("Cookie", &format!("sphere_session={session}"))
        .set("Content-Type", content_type)
        .send_bytes(body);
    match r {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{e}"),
    }
}

/// Fails before this change: there was no upload form to guard. A publish without the
/// session's CSRF token, with the token after the files, with a foreign origin, from a
/// read-only operator or with an undeclared part stores nothing; a rollout without the token
/// or with a share outside 1..=100 sets nothing. With the token first the same upload
/// publishes, and read-only operators see no forms.
#[test]
fn uploads_and_rollouts_need_an_admin_session_and_the_csrf_token() {
    let signer = SigningKey::generate().unwrap();
    let f = Fixture::new(&signer);
    let model = release::model_bytes("5");
    let signed = release::signed(&signer, "shapes", "5", &model);
    let session = f.server.login(&f.admin);
    let csrf = sphere_lite::web::csrf_token(&session);
    let (reader_token, _) = f
        .sphere
        .issue_operator_token("bob", Role::ReadOnly, None)
        .unwrap();
    let reader = f.server.login(&reader_token);
    let reader_csrf = sphere_lite::web::csrf_token(&reader);

    let files: [(&str, Option<&str>, &[u8]); 2] = [
        ("model", Some("m.tflite"), &model),
        ("release", Some("m.release.json"), &signed),
    ];
    let with = |first: &[(&str, Option<&str>, &[u8])], last: &[(&str, Option<&str>, &[u8])]| {
        let mut parts = first.to_vec();
        parts.extend_from_slice(&files);
        parts.extend_from_slice(last);
        multipart(&parts)
    };
    let wrong = "0".repeat(64);
    for (what, session, (ct, body), want) in [
        ("no token", session.as_str(), with(&[], &[]), 403),
        (
            "a wrong token",
            session.as_str(),
            with(&[("csrf", None, wrong.as_bytes())], &[]),
            403,
        ),
        (
            "the token after the files",
            session.as_str(),
            with(&[], &[("csrf", None, csrf.as_bytes())]),
            403,
        ),
        (
            "an undeclared part",
            session.as_str(),
            with(
                &[("csrf", None, csrf.as_bytes())],
                &[("extra", None, b"x".as_slice())],
            ),
            400,
        ),
        (
            "a read-only operator",
            reader.as_str(),
            with(&[("csrf", None, reader_csrf.as_bytes())], &[]),
            403,
        ),
    ] {
        let (status, page) = post_as(&f, "/ui/models/publish", session, &ct, &body);
        assert_eq!(status, want, "{what}: {page}");
        assert!(f.releases().is_empty(), "{what} published");
    }
    assert_eq!(f.model_blobs(), 0);
    // A foreign origin.
    let (ct, body) = with(&[("csrf", None, csrf.as_bytes())], &[]);
    let r = ureq::post(&f.server.url("/ui/models/publish"))
        .set("Cookie", &format!("sphere_session={session}"))
        .set("Origin", "http://evil.example")
        .set("Content-Type", &ct)
        .send_bytes(&body);
    // Refused from the headers; the server reads the rest of the body afterwards, so the
    // client, which sends it all before reading, gets the 403 rather than a broken pipe.
    assert!(matches!(r, Err(ureq::Error::Status(403, _))), "{r:?}");
    assert!(f.releases().is_empty());

    let (status, page) = post_as(&f, "/ui/models/publish", &session, &ct, &body);
    assert_eq!(status, 303, "{page}");
    assert_eq!(f.releases(), ["shapes 5"]);

    let form = "application/x-www-form-urlencoded";
    for (what, body, want) in [
        (
            "no token",
            "release=shapes%2F5&group=all&percent=100".to_owned(),
            403,
        ),
        (
            "a share of 0",
            format!("csrf={csrf}&release=shapes%2F5&group=all&percent=0"),
            400,
        ),
        (
            "an unknown release",
            format!("csrf={csrf}&release=shapes%2F9&group=all&percent=100"),
            404,
        ),
    ] {
        let (status, page) = post_as(&f, "/ui/models/rollout", &session, form, body.as_bytes());
        assert_eq!(status, want, "{what}: {page}");
        assert!(
            f.sphere.list_releases().unwrap().rollouts.is_empty(),
            "{what}"
        );
    }
    let (status, page) = post_as(
        &f,
        "/ui/models/rollout",
        &session,
        form,
        format!("csrf={csrf}&release=shapes%2F5&group=all&percent=20").as_bytes(),
    );
    assert_eq!(status, 303, "{page}");
    let rollouts = f.sphere.list_releases().unwrap().rollouts;
    assert_eq!(
        (rollouts[0].group.as_str(), rollouts[0].percent),
        ("all", 20)
    );

    // Read-only operators see the page without its forms.
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let (status, page) = f.server.page(&agent, "/ui/models", &reader);
    assert_eq!(status, 200);
    assert!(!page.contains("/ui/models/publish"), "{page}");
    let (_, page) = f.server.page(&agent, "/ui/models", &session);
    assert!(page.contains("action=\"/ui/models/publish\""), "{page}");
}
