//! What a device refuses without downloading it, end to end: `tinylcm run` as a process against
//! a real sphere-lite behind the counting proxy, observed through the proxy's request log (the
//! server side), the device's `status.json`, sphere-lite's metric series and
//! `tinylcm model status --json`.
//!
//! * a release larger than the device's `[models] max-bytes` is never downloaded, over many
//!   sync rounds, and the device reports the refusal (status, and the `sync.models_refused`
//!   series on the server);
//! * a release of an older security epoch, assigned after the device committed a newer one,
//!   is refused and not installed (nor downloaded), and the floor is in the store's record;
//! * a release signed by a key sphere-lite trusts and the device does not is refused before
//!   its download, and the Models page shows the device refused it, why (`untrusted key` and
//!   the device's message), also after the device restarted.

use std::time::Duration;

use tinylcm::modelstore::ActiveState;
use tinylcm_e2e::field::{BUILTIN_ORIGIN, FieldDevice, Settings};
use tinylcm_e2e::process::Harness;
use tinylcm_e2e::proxy::Proxy;
use tinylcm_e2e::release::{self, Model};
use tinylcm_e2e::sphere::Sphere;
use tinylcm_protocol::release::SigningKey;

/// A good release model (goldens from itself) under tag `tag`.
fn good(tag: u8) -> Model {
    let int8 = release::variant(&release::default_model("default_int8"), tag);
    release::with_goldens(&int8, &int8, 2)
}

/// Each test's world: an embedded sphere-lite trusting a fresh release key, the counting proxy
/// in front of it, and a device (not started) that enrolls and syncs through the proxy.
struct Rig {
    work: tempfile::TempDir,
    key: SigningKey,
    sphere: Sphere,
    proxy: Proxy,
    settings: Settings,
    device: FieldDevice,
}

impl Rig {
    fn new() -> Rig {
        let work = tempfile::tempdir().unwrap();
        let (key, trusted) = release::key(work.path(), "release");
        let sphere = Sphere::embedded(Some(&trusted));
        let proxy = Proxy::start(&sphere.addr);
        let enroll = sphere.enrollment_key_file(work.path());
        let settings = Settings::new(&proxy.url(), &enroll, Some(&trusted));
        let device = FieldDevice::new(&work.path().join("device"), &settings);
        Rig {
            work,
            key,
            sphere,
            proxy,
            settings,
            device,
        }
    }
}

/// Fails before this change: the release was downloaded, refused as "later" by the service
/// (its file is over `max-bytes`), deleted and downloaded again at every round, for ever (41
/// downloads in 40 s), and the device said nothing of it.
#[test]
fn a_release_over_max_bytes_is_never_downloaded_and_reported_refused() {
    // Bound in this order so they drop in reverse, the device first.
    let Rig {
        work: _work,
        key,
        sphere,
        proxy,
        settings,
        mut device,
    } = Rig::new();
    let model = good(9);
    // One byte short of the release.
    let limit = model.bytes.len() - 1;
    let text = settings.toml();
    assert!(text.contains("[models]\n"), "{text}");
    std::fs::write(
        &device.config,
        text.replace("[models]\n", &format!("[models]\nmax-bytes = {limit}\n")),
    )
    .unwrap();
    let id = device.start_enrolled();

    release::publish_and_roll_out(&sphere, &model, &release::sign(&model, &key, "shapes", "9"));
    let report = device.wait_report(60, "status.json to report shapes 9 refused", |r| {
        r.sync.as_ref().is_some_and(|s| s.models_refused >= 1)
    });
    let sync = report.sync.unwrap();
    let why = sync.model_refusal.unwrap_or_default();
    assert!(
        why.contains("max-bytes") && why.contains(&limit.to_string()),
        "{why}"
    );
    // The server sees the refusal in the device's metrics.
    let series = device.wait(60, "sphere-lite to hold sync.models_refused", |_| {
        let (status, body) = sphere.call(
            "GET",
            &format!("/api/v2/devices/{id}/metrics?key=sync.models_refused"),
            None,
        );
        (status == 200
            && body["points"]
                .as_array()
                .is_some_and(|p| p.iter().any(|v| v["value"].as_f64() >= Some(1.0))))
        .then_some(body)
    });
    assert_eq!(series["key"], "sync.models_refused");
    // Many more sync rounds (one a second): never downloaded, refused once.
    let assignment = format!("/devices/{id}/model");
    let rounds = |c: &tinylcm_e2e::proxy::Counts| {
        c.paths.iter().filter(|p| p.ends_with(&assignment)).count()
    };
    let rounds_before = rounds(&proxy.counts());
    std::thread::sleep(Duration::from_secs(6));
    let counts = proxy.counts();
    assert!(
        rounds(&counts) >= rounds_before + 3,
        "the device stopped asking for its assignment: {:?}",
        counts.paths
    );
    assert_eq!(
        counts.to("/models/shapes/9"),
        0,
        "shapes 9 was downloaded: {:?}",
        counts.paths
    );
    let report = device.wait_origin(10, BUILTIN_ORIGIN);
    assert_eq!(report.sync.unwrap().models_refused, 1);
    device.stop();

    // The refusal is in the model store's history, with its reason.
    let status = device.model_status();
    let refusals: Vec<&serde_json::Value> = status["state"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["what"] == "refused")
        .collect();
    assert_eq!(refusals.len(), 1, "{status:#}");
    assert_eq!(refusals[0]["release"], "shapes 9", "{status:#}");
    assert!(
        refusals[0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("max-bytes"),
        "{status:#}"
    );
}

/// Fails before this change: releases had no security epoch and the device no floor, so the
/// older release, validly signed, was downloaded and installed over the newer one.
#[test]
fn an_older_epoch_release_after_a_newer_one_is_refused_and_not_installed() {
    // Bound in this order so they drop in reverse, the device first.
    let Rig {
        work: _work,
        key,
        sphere,
        proxy,
        settings: _,
        mut device,
    } = Rig::new();
    device.start_enrolled();

    // Epoch 2 is installed, tried and committed: the floor becomes 2.
    let newer = good(2);
    release::publish_and_roll_out(
        &sphere,
        &newer,
        &release::sign_at(&newer, &key, "shapes", "2", 2),
    );
    device.wait_report(90, "status.json to show shapes 2 committed", |r| {
        r.release
            .as_ref()
            .is_some_and(|m| m.version == "2" && m.state == ActiveState::Committed)
    });

    // An operator (or an attacker holding an old signed release) assigns epoch 1.
    let older = good(1);
    release::publish_and_roll_out(
        &sphere,
        &older,
        &release::sign_at(&older, &key, "shapes", "1", 1),
    );
    let report = device.wait_report(60, "status.json to report shapes 1 refused", |r| {
        r.sync.as_ref().is_some_and(|s| s.models_refused >= 1)
    });
    let why = report.sync.unwrap().model_refusal.unwrap_or_default();
    assert!(why.contains("below this device's floor 2"), "{why}");
    std::thread::sleep(Duration::from_secs(4));
    let running = device
        .wait_report(10, "status.json", |r| r.release.is_some())
        .release
        .unwrap();
    assert_eq!(
        (running.version.as_str(), running.state),
        ("2", ActiveState::Committed)
    );
    assert_eq!(
        proxy.counts().to("/models/shapes/1"),
        0,
        "the older release was downloaded"
    );
    device.stop();

    // A restart keeps the floor: still refused, still not installed.
    device.start();
    device.wait_report(60, "the restarted device to refuse shapes 1 again", |r| {
        r.release.as_ref().is_some_and(|m| m.version == "2") && r.frames > 0
    });
    std::thread::sleep(Duration::from_secs(4));
    device.stop();
    let status = device.model_status();
    let state = &status["state"];
    assert_eq!(state["epoch_floor"], 2, "{status:#}");
    assert_eq!(state["committed"]["version"], "2", "{status:#}");
    assert!(state["trial"].is_null(), "{status:#}");
    let history = state["history"].as_array().unwrap();
    assert_eq!(
        history.iter().filter(|h| h["what"] == "installed").count(),
        1,
        "{status:#}"
    );
    assert!(
        history.iter().any(|h| h["what"] == "refused"
            && h["release"] == "shapes 1"
            && h["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("security epoch 1")),
        "{status:#}"
    );
    assert_eq!(proxy.counts().to("/models/shapes/1"), 0);
}

/// The progress row of device `id` on the Models page `html`, up to its end.
fn progress_row<'a>(html: &'a str, id: &str) -> Option<&'a str> {
    let start = html.find(&format!("data-device=\"{id}\""))?;
    let row = &html[start..];
    Some(&row[..row.find("</tr>").unwrap_or(row.len())])
}

/// Waits until `sphere`'s Models page shows device `id` refusing its release for an untrusted
/// key, with the device's message; the row.
fn shown_refused(device: &mut FieldDevice, sphere: &Sphere, id: &str, what: &str) -> String {
    device.wait(60, what, |_| {
        let html = sphere.dashboard_page("/ui/models");
        progress_row(&html, id)
            .filter(|row| {
                row.contains("progress-refused")
                    && row.contains("data-kind=\"untrusted_key\"")
                    && row.contains("not among the trusted release keys")
            })
            .map(str::to_owned)
    })
}

/// Fails before this change: the Models page could only infer a refusal from the device's
/// refusal counter, with no reason, and the device forgot it at a restart. sphere-lite trusts
/// two keys, the device one of them; a release signed by the other is published and rolled
/// out. The device refuses it before downloading it, and the page shows `refused: untrusted
/// key` with the device's message; after the device restarted (its counter back at 0) the
/// packages it sends still say so. The device's page shows the refusal as well.
#[test]
fn a_release_signed_by_a_key_the_device_does_not_trust_is_shown_refused_with_the_reason() {
    let work = tempfile::tempdir().unwrap();
    let (device_key, trusted) = release::key(work.path(), "device");
    let foreign = SigningKey::generate().unwrap();
    let both = release::key_file(work.path(), "both.pub", &[&device_key, &foreign]);
    let sphere = Sphere::embedded(Some(&both));
    let enroll = sphere.enrollment_key_file(work.path());
    let settings = Settings::new(&sphere.url(), &enroll, Some(&trusted));
    let mut device = FieldDevice::new(&work.path().join("device"), &settings);
    let id = device.start_enrolled();

    let model = good(7);
    release::publish_and_roll_out(
        &sphere,
        &model,
        &release::sign(&model, &foreign, "shapes", "7"),
    );
    let report = device.wait_report(60, "status.json to report shapes 7 refused", |r| {
        r.sync.as_ref().is_some_and(|s| s.models_refused >= 1)
    });
    let why = report.sync.unwrap().model_refusal.unwrap_or_default();
    assert!(why.contains("not among the trusted release keys"), "{why}");
    let row = shown_refused(
        &mut device,
        &sphere,
        &id,
        "the Models page to show the refusal",
    );
    assert!(
        row.contains("shapes 7") && row.contains("untrusted key"),
        "{row}"
    );
    // The device's own page says it too, beside the model it runs.
    let page = sphere.dashboard_page(&format!("/ui/devices/{id}"));
    let refused = page
        .split("class=\"refused-release\"")
        .nth(1)
        .map(|r| &r[..r.find("</dd>").unwrap_or(r.len())])
        .unwrap_or_else(|| panic!("no refused release on the device page: {page}"));
    assert!(
        refused.contains("shapes 7")
            && refused.contains("data-kind=\"untrusted_key\"")
            && refused.contains("not among the trusted release keys"),
        "{refused}"
    );

    // A restart: the counter starts at 0 and the release is not judged again, but the device
    // still says it refused it in the packages it sends after the restart.
    device.stop();
    let packages = sphere.packages(&id);
    device.start();
    device.wait(60, "a package sent after the restart", |_| {
        (sphere.packages(&id) > packages).then_some(())
    });
    let report = device.wait_report(30, "status.json after the restart", |r| r.sync.is_some());
    assert_eq!(report.sync.unwrap().models_refused, 0);
    shown_refused(
        &mut device,
        &sphere,
        &id,
        "the Models page to still show the refusal after the restart",
    );
    device.stop();
}
