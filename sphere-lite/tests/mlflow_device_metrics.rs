//! Device metrics as a data scientist browses them in the MLflow UI, against a real MLflow
//! (`SPHERE_TEST_MLFLOW_URL`) and S3 (`SPHERE_TEST_S3_*`): the device's experiment
//! `<ns>/device/<id>` has one run per UTC day (`metrics-YYYY-MM-DD`), and each metric key is a
//! history with the points' own times as timestamps and the second of the day as step, read
//! here through the same REST calls the UI makes.

use serde_json::json;
use sphere_lite::domain::Sphere;
use tinylcm_protocol::package::{FileKind, PackageBuilder};

#[path = "support/backend.rs"]
mod backend;
#[path = "support/mlflow_rest.rs"]
mod mlflow_rest;

use backend::Backend;
use mlflow_rest::{day_runs, history, tag};

/// 2025-11-26 09:00:00 UTC.
const T: u64 = 1_764_147_600_000;
const DAY: u64 = 86_400_000;

fn package(device: &str, id: &str, created: u64, fps: f64) -> Vec<u8> {
    let mut b = PackageBuilder::new(id, device, created).unwrap();
    let doc = json!({"fps": fps, "latency_ms": {"p50": 12.5}});
    b.add(
        "metrics.json",
        FileKind::Metrics,
        doc.to_string().into_bytes(),
    )
    .unwrap();
    b.finish().unwrap()
}

/// Fails before this change: a device's points were only metrics of one run per package (one
/// point each, step 0, in `<ns>/packages`); its experiment had no run with a history to chart.
#[test]
fn a_device_has_one_mlflow_run_per_day_with_each_metric_as_a_history() {
    let Some(backend) = Backend::mlflow("mlflow_device_metrics") else {
        return;
    };
    let settings = backend.mlflow_settings().unwrap().clone();
    let sphere = Sphere::new(backend.tracking(), backend.blobs());
    let device = sphere_lite::test_support::enrolled(&sphere, Some("barn")).device_id;
    // Two packages on one day (one of them stored twice), one on the next.
    for (id, at, fps) in [
        ("p1", T, 10.0),
        ("p2", T + 60_000, 12.0),
        ("p3", T + DAY, 9.0),
    ] {
        let body = package(&device, id, at, fps);
        sphere.accept_upload(&device, &body).unwrap();
        sphere.process(&device, id).unwrap();
    }
    sphere
        .accept_upload(&device, &package(&device, "p2", T + 60_000, 12.0))
        .unwrap();
    sphere.process(&device, "p2").unwrap();

    let url = &settings.url;
    let runs = day_runs(url, &settings.namespace, &device);
    let names: Vec<&str> = runs
        .iter()
        .map(|r| r["info"]["run_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["metrics-2025-11-26", "metrics-2025-11-27"],
        "{runs:?}"
    );
    let first = &runs[0];
    assert_eq!(tag(first, "sphere.device"), Some(device.as_str()));
    assert_eq!(
        first["info"]["status"], "FINISHED",
        "a day is a closed span"
    );
    assert_eq!(
        first["info"]["start_time"].as_u64(),
        Some(T - 9 * 3_600_000)
    );

    // Step = second of the UTC day (09:00 = 32400), timestamp = the point's own time; the
    // package stored twice added nothing (MLflow keeps one copy of an identical point).
    assert_eq!(
        history(url, first, "fps"),
        [
            (32_400, T as i64, 10.0),
            (32_460, (T + 60_000) as i64, 12.0)
        ]
    );
    assert_eq!(
        history(url, first, "latency_ms.p50"),
        [
            (32_400, T as i64, 12.5),
            (32_460, (T + 60_000) as i64, 12.5)
        ]
    );
    assert_eq!(
        history(url, &runs[1], "fps"),
        [(32_400, (T + DAY) as i64, 9.0)]
    );
}
