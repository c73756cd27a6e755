//! The metric-key contract end to end: `tinylcm run` (its real status report, flattened by the
//! runtime's metrics builder into `metrics.json`) syncing to a real sphere-lite, whose device
//! page charts [`DEFAULT_CHARTS`] by default and whose fleet and Models pages read
//! [`SYNC_KEYS`]. Every one of these keys must have points on the server, so renaming a status
//! field, a key in the builder or a key the server reads fails here instead of leaving a chart
//! empty or a page guessing.
//!
//! Fails before this change: the dashboard's defaults were `latency_ms.p50`,
//! `latency_ms.p99`, `fps`, `confidence.mean`, `system.cpu_percent` and
//! `system.temperature_c`, of which the runtime sent only `fps` and `confidence.mean`.

use serde_json::Value;
use tinylcm_e2e::field::{FieldDevice, Settings};
use tinylcm_e2e::sphere::Sphere;
use tinylcm_e2e::wait_for;
use tinylcm_protocol::metric_keys::{DEFAULT_CHARTS, SOC_TEMPERATURE_C, SYNC_KEYS};

/// Whether this machine has a thermal zone the runtime can read (VMs and containers often
/// have none; a Raspberry Pi always has one).
fn has_thermal_zone() -> bool {
    std::fs::read_dir("/sys/class/thermal").is_ok_and(|dir| {
        dir.flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with("thermal_zone")
                && std::fs::read_to_string(e.path().join("temp")).is_ok()
        })
    })
}

/// How many points sphere-lite holds for `key` of `device`.
fn points(sphere: &Sphere, device: &str, key: &str) -> usize {
    let (status, body) = sphere.call(
        "GET",
        &format!("/api/v2/devices/{device}/metrics?key={key}"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    body["points"].as_array().map_or(0, Vec::len)
}

#[test]
fn every_default_chart_key_of_a_real_device_has_points_on_the_server() {
    let work = tempfile::tempdir().unwrap();
    let sphere = Sphere::embedded(None);
    let key = sphere.enrollment_key_file(work.path());
    let mut settings = Settings::new(&sphere.url(), &key, None);
    // Paced: the contract needs a few status reports, not a busy CPU.
    settings.fps = 15.0;
    let mut device = FieldDevice::new(&work.path().join("device"), &settings);
    let id = device.start_enrolled();

    let thermal = has_thermal_zone();
    let expected: Vec<&str> = DEFAULT_CHARTS
        .iter()
        .chain(&SYNC_KEYS)
        .copied()
        .filter(|k| thermal || *k != SOC_TEMPERATURE_C)
        .collect();
    let missing = |sphere: &Sphere| -> Vec<&str> {
        expected
            .iter()
            .copied()
            .filter(|k| points(sphere, &id, k) == 0)
            .collect()
    };
    let last_missing = std::cell::RefCell::new(Vec::new());
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(
            90,
            "a point of every default chart key and sync key",
            || {
                let m = missing(&sphere);
                let done = m.is_empty();
                *last_missing.borrow_mut() = m;
                done.then_some(())
            },
        )
    }));
    if found.is_err() {
        let (_, keys) = sphere.call("GET", &format!("/api/v2/devices/{id}/metrics/keys"), None);
        panic!(
            "default chart and sync keys without points: {:?}; the server has {}",
            last_missing.borrow(),
            keys.get("keys").unwrap_or(&Value::Null)
        );
    }

    if !thermal {
        // No sensor, no series: the chart is absent because the device has no figure, not
        // because the keys disagree.
        let report = device.report().expect("the device writes status.json");
        assert_eq!(report.system.soc_temperature_c, None);
        eprintln!(
            "note: no /sys/class/thermal/thermal_zone*/temp on this machine, so \
             {SOC_TEMPERATURE_C} is checked by the runtime's unit test only"
        );
    }
    device.stop();
}
