//! What a device learns, end to end: `tinylcm run` on the synthetic scene against the real
//! sphere-lite binary. Its drift events arrive with the class it predicted and the top-k; an
//! admin renames one of its classes on the device page (the form a proposed `new-N` class is
//! named with), the device renames it in its KNN, the page follows the rename to "applied",
//! and the device's own "class renamed" entry arrives on its timeline.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tinylcm::autonomy::{EventKind, RuntimeEvent};
use tinylcm::knn::KnnState;
use tinylcm::state::MAX_EVENTS_PER_READ;
use tinylcm_e2e::field::{FieldDevice, Settings};
use tinylcm_e2e::process::Harness;
use tinylcm_e2e::sphere::Sphere;

/// A class of the default model, and the name an operator gives it.
const FROM: &str = "ball";
const TO: &str = "sphere";

/// A dashboard session of `sphere`'s operator.
struct Session<'a> {
    sphere: &'a Sphere,
    agent: ureq::Agent,
    cookie: String,
}

impl<'a> Session<'a> {
    fn login(sphere: &'a Sphere) -> Self {
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(Duration::from_secs(30))
            .build();
        let r = agent
            .post(&format!("{}/ui/login", sphere.url()))
            .send_form(&[("token", sphere.operator.as_str())])
            .expect("login answered 303");
        assert_eq!(r.status(), 303);
        let cookie = r
            .header("set-cookie")
            .and_then(|c| c.split(';').next())
            .expect("a session cookie")
            .to_owned();
        Session {
            sphere,
            agent,
            cookie,
        }
    }

    fn page(&self, path: &str) -> String {
        self.agent
            .get(&format!("{}{path}", self.sphere.url()))
            .set("Cookie", &self.cookie)
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .into_string()
            .unwrap()
    }

    fn form(&self, path: &str, fields: &[(&str, &str)]) -> u16 {
        match self
            .agent
            .post(&format!("{}{path}", self.sphere.url()))
            .set("Cookie", &self.cookie)
            .send_form(fields)
        {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(s, r)) => {
                panic!("POST {path}: {s} {}", r.into_string().unwrap())
            }
            Err(e) => panic!("POST {path}: {e}"),
        }
    }
}

fn csrf_of(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("a CSRF field") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

fn run(sphere: Sphere, work: &Path) {
    let key = sphere.enrollment_key_file(work);
    let mut settings = Settings::new(&sphere.url(), &key, None);
    settings.fps = 0.0;
    let mut device = FieldDevice::new(&work.join("device"), &settings);
    let id = device.start_enrolled();

    // Drift events carry what the device predicted for their frame.
    let event = device.wait(120, "a drift event with a predicted class", |_| {
        sphere
            .drift_events(&id)
            .into_iter()
            .find(|e| e["predicted"].is_string())
    });
    let top: &Vec<Value> = event["top_k"].as_array().expect("a top-k");
    assert!(!top.is_empty() && top.len() <= 3, "{event:#}");
    assert!(
        top.iter()
            .all(|c| c["class"].is_string() && (0.0..=1.0).contains(&c["score"].as_f64().unwrap())),
        "{event:#}"
    );

    // The admin names the class on the device page, once the device reported it.
    let session = Session::login(&sphere);
    let path = format!("/ui/devices/{id}");
    let page = device.wait(60, "the device page to offer the class", |_| {
        let page = session.page(&path);
        page.contains(&format!(r#"<option value="{FROM}">"#))
            .then_some(page)
    });
    let status = session.form(
        &format!("{path}/classes"),
        &[("csrf", &csrf_of(&page)), ("from", FROM), ("to", TO)],
    );
    assert_eq!(status, 303);
    device.wait(90, "the rename to show as applied", |_| {
        let page = session.page(&path);
        (page.contains(&format!("rename {FROM} → {TO} asked by ops"))
            && page.contains("queued → delivered → applied"))
        .then_some(())
    });
    device.wait(90, "the device's own rename entry on its timeline", |_| {
        session
            .page(&path)
            .contains(&format!("class {FROM} renamed {TO} on the device"))
            .then_some(())
    });
    device.stop();

    // The device logged the rename with the samples it moved, and its KNN holds samples
    // under the new name. (The old name may come back: the model's head still calls frames
    // `ball`, and adaptation may learn them under that name; a proposed `new-N` class has no
    // such second source.)
    let store = device.open_store();
    let mut moved = None;
    let mut after = 0;
    loop {
        let page: Vec<(u64, RuntimeEvent)> =
            store.events_after(after, MAX_EVENTS_PER_READ).unwrap();
        let Some((last, _)) = page.last() else { break };
        after = *last;
        for (_, e) in page {
            if let EventKind::ClassRenamed { from, to, moved: n } = e.kind {
                if from == FROM && to == TO {
                    moved = Some(n);
                }
            }
        }
    }
    let moved = moved.expect("the device logged the rename");
    assert!(moved > 0, "the rename moved no sample");
    let knn: KnnState = store
        .get_state(tinylcm::autonomy::persist::KNN)
        .unwrap()
        .expect("the device saved its KNN");
    let to = knn
        .labels
        .iter()
        .position(|l| l == TO)
        .unwrap_or_else(|| panic!("the KNN has no class {TO}: {:?}", knn.labels));
    assert!(
        knn.sample_labels.iter().any(|&l| usize::from(l) == to),
        "the KNN holds no {TO} sample"
    );
}

/// Fails before this change: drift events had no predicted class, there was no rename form,
/// and the device never reported what it learnt.
#[test]
fn an_admin_renames_a_class_and_the_device_applies_it() {
    let work = tempfile::tempdir().unwrap();
    run(Sphere::embedded(None), work.path());
}
