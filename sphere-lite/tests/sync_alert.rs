//! The dashboard shows a device's sync alert: when something that is not sphere-lite (a
//! reverse proxy with a body limit below the device's packages) answers the device's
//! requests, the device keeps its data and reports the answer's status in the metric
//! `sync.foreign_answer_status` of the small packages that still get through; the fleet list
//! and the device page show it until the device reports 0 again.
//!
//! Fails before this change: the pages showed nothing, so a fleet behind a misconfigured proxy
//! looked healthy (devices online, packages arriving) while the big packages never did.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sphere_lite::server::open_embedded;
use tinylcm_protocol::api::FOREIGN_ANSWER_METRIC;
use tinylcm_protocol::paths;

// Only its package builder: the fleet simulation is not used here.
#[allow(dead_code)]
#[path = "support/fleet.rs"]
mod fleet;
#[path = "support/server.rs"]
mod server;

use server::TestServer;

/// A package holding only a metrics file with the device's sync alert status.
fn metrics_package(device: &str, id: &str, at: u64, foreign_status: u16) -> Vec<u8> {
    let doc = json!({"sync": {"uploaded": 1, "foreign_answer_status": foreign_status}});
    fleet::metrics_package_of(device, id, at, &doc)
}

#[test]
fn a_devices_sync_alert_shows_on_the_fleet_list_and_its_page_until_it_clears() {
    assert_eq!(FOREIGN_ANSWER_METRIC, "sync.foreign_answer_status");
    let dir = tempfile::tempdir().unwrap();
    let sphere = open_embedded(dir.path()).unwrap();
    let key = sphere.create_enrollment_key(10).unwrap();
    let operator = sphere.create_operator_token("alice").unwrap();
    let server = TestServer::start(sphere);
    let (dev, token) = server.enrolled(&key);
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let login = agent
        .post(&server.url("/ui/login"))
        .set("Content-Type", "application/x-www-form-urlencoded")
        .send_string(&format!("token={operator}"));
    let login = match login {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(login.status(), 303);
    let session = login
        .header("set-cookie")
        .unwrap()
        .strip_prefix("sphere_session=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    let upload = |id: &str, at: u64, status: u16| {
        let (code, body) = server.post(
            &paths::packages(&dev),
            Some(&token),
            &metrics_package(&dev, id, at, status),
        );
        assert_eq!(code, 200, "{body}");
    };
    let wait_points = |n: usize| {
        let series = format!("/api/v2/devices/{dev}/metrics?key={FOREIGN_ANSWER_METRIC}");
        let start = Instant::now();
        loop {
            let (status, body): (u16, Value) = server.get(&series, Some(&operator));
            assert_eq!(status, 200, "{body}");
            if body["points"].as_array().unwrap().len() == n {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{body}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // No alert yet.
    upload("m0", 1_764_147_600_000, 0);
    wait_points(1);
    let (status, fleet) = server.page(&agent, "/ui/fleet", &session);
    assert_eq!(status, 200, "{fleet}");
    assert!(!fleet.contains("sync-alert"), "{fleet}");

    // A proxy's 413: both pages say so.
    upload("m1", 1_764_147_660_000, 413);
    wait_points(2);
    let (_, fleet) = server.page(&agent, "/ui/fleet", &session);
    assert!(
        fleet.contains("sync blocked: HTTP 413 not from sphere-lite"),
        "{fleet}"
    );
    let (status, device) = server.page(&agent, &format!("/ui/devices/{dev}"), &session);
    assert_eq!(status, 200, "{device}");
    assert!(device.contains("class=\"sync-alert\""), "{device}");
    assert!(
        device.contains("HTTP 413 from something that is not sphere-lite"),
        "{device}"
    );
    assert!(device.contains("client_max_body_size"), "{device}");

    // The device got through again: the alert is gone.
    upload("m2", 1_764_147_720_000, 0);
    wait_points(3);
    let (_, fleet) = server.page(&agent, "/ui/fleet", &session);
    assert!(!fleet.contains("sync-alert"), "{fleet}");
    let (_, device) = server.page(&agent, &format!("/ui/devices/{dev}"), &session);
    assert!(!device.contains("sync-alert"), "{device}");
}
