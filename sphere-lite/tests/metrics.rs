//! Device metrics as time series, on the embedded default and again on MLflow + S3 when
//! `SPHERE_TEST_MLFLOW_URL` and `SPHERE_TEST_S3_*` are set (`./scripts/test sphere`): packages'
//! `metrics.json` files become points in time order, storing a package again adds nothing,
//! a malformed file or a hostile key is a problem of its package, never a failure.

use std::sync::Arc;

use serde_json::{Value, json};
use sphere_lite::domain::{DomainError, MetricQuery, Sphere};
use sphere_lite::ports::Tracking;
use tinylcm_protocol::api::UploadOutcome;
use tinylcm_protocol::package::{FileKind, PackageBuilder};

#[path = "support/backend.rs"]
mod backend;

use backend::{Backend, each_backend};

const T: u64 = 1_764_147_600_000;

/// A package created at `created` with one metrics file per entry of `files`.
fn package(device: &str, id: &str, created: u64, files: &[&[u8]]) -> Vec<u8> {
    let mut b = PackageBuilder::new(id, device, created).unwrap();
    for (i, bytes) in files.iter().enumerate() {
        b.add(
            format!("metrics-{i}.json"),
            FileKind::Metrics,
            bytes.to_vec(),
        )
        .unwrap();
    }
    b.finish().unwrap()
}

fn doc(fps: f64, p50: f64) -> Vec<u8> {
    json!({"fps": fps, "latency_ms": {"p50": p50}, "system": {"cpu_percent": 40.0},
           "model": "default", "running": true, "classes": [1, 2]})
    .to_string()
    .into_bytes()
}

/// The service on `backend` and a handle on the same tracking store, with one device.
fn setup(backend: &Backend) -> (Sphere, Arc<dyn Tracking>, String) {
    let tracking = backend.tracking();
    let sphere = Sphere::new(tracking.clone(), backend.blobs());
    let device = sphere_lite::test_support::enrolled(&sphere, Some("pi")).device_id;
    (sphere, tracking, device)
}

fn ingest(sphere: &Sphere, device: &str, id: &str, body: &[u8]) -> UploadOutcome {
    let outcome = sphere.accept_upload(device, body).unwrap().outcome;
    sphere.process(device, id).unwrap();
    outcome
}

fn series(
    sphere: &Sphere,
    device: &str,
    key: &str,
    since: Option<u64>,
    limit: Option<usize>,
) -> Vec<(u64, f64)> {
    sphere
        .metric_series(
            device,
            &MetricQuery {
                key: key.into(),
                since,
                until: None,
                limit,
            },
        )
        .unwrap()
        .points
        .iter()
        .map(|p| (p.unix_ms, p.value))
        .collect()
}

#[test]
fn metrics_files_become_series_in_time_order_once() {
    each_backend(
        "metrics_files_become_series_in_time_order_once",
        |backend| {
            let (sphere, tracking, dev) = setup(backend);
            // Uploaded out of time order: the series follows the packages' creation times.
            for (id, at, fps, p50) in [
                ("p3", T + 120_000, 3.0, 12.5),
                ("p1", T, 1.0, 11.5),
                ("p2", T + 60_000, 2.0, 12.0),
            ] {
                let outcome = ingest(&sphere, &dev, id, &package(&dev, id, at, &[&doc(fps, p50)]));
                assert_eq!(outcome, UploadOutcome::Accepted);
            }
            assert_eq!(
                sphere.metric_keys(&dev).unwrap().keys,
                ["fps", "latency_ms.p50", "system.cpu_percent"]
            );
            let fps = [(T, 1.0), (T + 60_000, 2.0), (T + 120_000, 3.0)];
            assert_eq!(series(&sphere, &dev, "fps", None, None), fps);
            assert_eq!(
                series(&sphere, &dev, "latency_ms.p50", Some(T + 1), None),
                [(T + 60_000, 12.0), (T + 120_000, 12.5)]
            );
            // Thinned evenly, the ends kept.
            assert_eq!(
                series(&sphere, &dev, "fps", None, Some(2)),
                [(T, 1.0), (T + 120_000, 3.0)]
            );
            let until = sphere
                .metric_series(
                    &dev,
                    &MetricQuery {
                        key: "fps".into(),
                        until: Some(T + 60_000),
                        ..MetricQuery::default()
                    },
                )
                .unwrap();
            assert_eq!(until.points.len(), 1);

            // A re-run of the store step after a crash, and a duplicate upload, add nothing.
            tracking
                .put_metrics(&dev, "p1", T, &[("fps".into(), 1.0)])
                .unwrap();
            let again = package(&dev, "p1", T, &[&doc(1.0, 11.5)]);
            assert_eq!(
                ingest(&sphere, &dev, "p1", &again),
                UploadOutcome::Duplicate
            );
            assert_eq!(series(&sphere, &dev, "fps", None, None), fps);
        },
    );
}

/// With `mlflow_metric_keys` narrowed, MLflow holds only the keys named and the ones the
/// dashboard reads itself; the device's classes are still known (from its report), and the
/// package's metrics file keeps every figure. Fails with every key logged.
#[test]
fn mlflow_logs_only_the_chosen_metric_keys() {
    use sphere_lite::adapters::mlflow::KeptKeys;
    use tinylcm_protocol::metric_keys::{FPS, LATENCY_P50_US};
    let test = "mlflow_logs_only_the_chosen_metric_keys";
    let Some(backend) = Backend::mlflow(test) else {
        return;
    };
    let backend = backend.keeping_metric_keys(KeptKeys::parse(&["latency.*"]).unwrap());
    let (sphere, _, dev) = setup(&backend);
    let metrics = json!({
        "fps_interval": 9.5,
        "latency": {"total": {"p50_us": 1200.0}, "infer": {"p50_us": 800.0}},
        "system": {"rss_mib": 61.0},
        "classes": {"cat": {"total": 10, "mean_confidence": 0.9}, "new-1": {"total": 2}},
    })
    .to_string()
    .into_bytes();
    let outcome = ingest(&sphere, &dev, "p1", &package(&dev, "p1", T, &[&metrics]));
    assert_eq!(outcome, UploadOutcome::Accepted);
    assert_eq!(
        sphere.metric_keys(&dev).unwrap().keys,
        [FPS, "latency.infer.p50_us", LATENCY_P50_US]
    );
    assert_eq!(
        series(&sphere, &dev, "latency.infer.p50_us", None, None),
        [(T, 800.0)]
    );
    assert_eq!(series(&sphere, &dev, FPS, None, None), [(T, 9.5)]);
    assert!(series(&sphere, &dev, "classes.cat.total", None, None).is_empty());
    assert!(series(&sphere, &dev, "system.rss_mib", None, None).is_empty());
    assert_eq!(
        sphere.device_classes(&dev).unwrap(),
        (vec!["cat".to_owned()], vec!["new-1".to_owned()])
    );
    let file = backend
        .blob_keys()
        .into_iter()
        .find(|k| k.contains(&dev) && k.ends_with("metrics-0.json"))
        .expect("the package's metrics file is stored");
    let kept: Value = serde_json::from_slice(&backend.blob(&file).unwrap()).unwrap();
    assert_eq!(kept["system"]["rss_mib"], json!(61.0));
}

#[test]
fn bad_metrics_are_problems_and_hostile_keys_are_refused() {
    each_backend(
        "bad_metrics_are_problems_and_hostile_keys_are_refused",
        |backend| {
            let (sphere, _tracking, dev) = setup(backend);
            let hostile: Value = json!({
                "<script>alert(1)</script>": 1, "a b": 2, "sphere.id": 3, "x\"y": 4,
                "ok": {"value": 5, "é": 6}, &"k".repeat(200): 7,
            });
            let hostile = hostile.to_string().into_bytes();
            ingest(
                &sphere,
                &dev,
                "bad",
                &package(&dev, "bad", T, &[b"{not json", b"[1, 2]", &hostile]),
            );
            let record = sphere.package_record(&dev, "bad").unwrap().unwrap();
            assert_eq!(
                record.failed, None,
                "a bad metrics file does not fail its package"
            );
            assert!(record.processed_unix_ms.is_some());
            assert_eq!(record.problems.len(), 3, "{:?}", record.problems);
            assert!(record.problems[0].contains("is not JSON"));
            assert!(record.problems[1].contains("not a JSON object"));
            assert!(record.problems[2].contains("6 key(s) with invalid names"));
            assert_eq!(sphere.metric_keys(&dev).unwrap().keys, ["ok.value"]);
            assert_eq!(series(&sphere, &dev, "ok.value", None, None), [(T, 5.0)]);

            // A clock far ahead is pulled back to the accept time.
            let future = T * 2;
            ingest(
                &sphere,
                &dev,
                "fut",
                &package(&dev, "fut", future, &[br#"{"fps": 9}"#]),
            );
            let accepted = sphere
                .package_record(&dev, "fut")
                .unwrap()
                .unwrap()
                .accepted_unix_ms;
            assert_eq!(series(&sphere, &dev, "fps", None, None), [(accepted, 9.0)]);

            // Queries are checked.
            let bad_key = MetricQuery {
                key: "<script>".into(),
                ..MetricQuery::default()
            };
            assert!(matches!(
                sphere.metric_series(&dev, &bad_key),
                Err(DomainError::BadRequest { .. })
            ));
            let too_many = MetricQuery {
                key: "fps".into(),
                limit: Some(100_000),
                ..MetricQuery::default()
            };
            assert!(matches!(
                sphere.metric_series(&dev, &too_many),
                Err(DomainError::BadRequest { .. })
            ));
            assert!(matches!(
                sphere.metric_keys("dev-unknown"),
                Err(DomainError::NotFound { .. })
            ));
        },
    );
}
