//! The Data Hub end to end: prediction samples indexed and listed by device, class and time;
//! a device's logs paged newest first; drift-sample embeddings exported with their labels; and
//! device text that cannot become markup on the pages. Each test runs on the embedded default
//! and again on MLflow + S3 when `SPHERE_TEST_MLFLOW_URL` and `SPHERE_TEST_S3_*` are set.

use serde_json::{Value, json};
use sphere_lite::domain::Sphere;
use tinylcm_protocol::api::{DriftEventQuery, ValidateRequest};
use tinylcm_protocol::datahub::{
    EmbeddingExportLine, LogLevel, LogQuery, MAX_LOG_FILE_BYTES, PredictionQuery, PredictionView,
};
use tinylcm_protocol::package::{FileKind, PackageBuilder};
use tinylcm_protocol::paths;

#[path = "support/backend.rs"]
mod backend;
#[path = "support/drift.rs"]
mod drift;
#[path = "support/server.rs"]
mod server;

use backend::each_backend;
use server::TestServer;

const T0: u64 = 1_764_147_600_000;

fn enroll(sphere: &Sphere) -> String {
    sphere_lite::test_support::enrolled(sphere, None).device_id
}

/// Accept and process `package` as the server does after a 200.
fn ingest(sphere: &Sphere, device: &str, id: &str, package: &[u8]) {
    sphere.accept_upload(device, package).unwrap();
    sphere.process(device, id).unwrap();
}

/// A package of prediction samples: one image per (file, class, unix_ms) and their metadata.
fn prediction_package(device: &str, id: &str, samples: &[(&str, &str, u64)]) -> Vec<u8> {
    let mut b = PackageBuilder::new(id, device, T0).unwrap();
    let mut meta = Vec::new();
    for (file, class, unix_ms) in samples {
        b.add(*file, FileKind::Prediction, vec![0xff, 0xd8, 0xff, 0xe0])
            .unwrap();
        meta.push(json!({"file": file, "class": class, "confidence": 0.75, "unix_ms": unix_ms}));
    }
    b.add(
        "predictions/predictions.json",
        FileKind::Prediction,
        Value::from(meta).to_string().into_bytes(),
    )
    .unwrap();
    b.finish().unwrap()
}

fn list(sphere: &Sphere, query: &PredictionQuery) -> (Vec<PredictionView>, Option<String>) {
    let page = sphere.list_predictions(query).unwrap();
    (page.predictions, page.next_after)
}

/// Every page of `query` with pages of `limit`, concatenated.
fn all_pages(sphere: &Sphere, query: &PredictionQuery, limit: usize) -> Vec<PredictionView> {
    let mut out = Vec::new();
    let mut q = PredictionQuery {
        limit: Some(limit),
        ..query.clone()
    };
    loop {
        let (page, next) = list(sphere, &q);
        assert!(page.len() <= limit);
        out.extend(page);
        match next {
            Some(n) => q.after = Some(n),
            None => return out,
        }
    }
}

fn files(samples: &[PredictionView]) -> Vec<String> {
    samples
        .iter()
        .map(|p| format!("{}:{}", p.device_id, p.file))
        .collect()
}

#[test]
fn prediction_samples_are_indexed_and_filtered_by_device_class_and_time() {
    each_backend(
        "prediction_samples_are_indexed_and_filtered_by_device_class_and_time",
        |b| {
            let sphere = b.open();
            let (a, c) = (enroll(&sphere), enroll(&sphere));
            // Two samples share one millisecond: the order is still total (then by key).
            let pkg = prediction_package(
                &a,
                "p1",
                &[
                    ("predictions/1.jpg", "cat", T0 + 1),
                    ("predictions/2.jpg", "dog", T0 + 2),
                    ("predictions/3.jpg", "cat", T0 + 3),
                    ("predictions/4.jpg", "cat", T0 + 3),
                    ("predictions/5.png", "dog", T0 + 5),
                ],
            );
            ingest(&sphere, &a, "p1", &pkg);
            // Processing again (a crash before it was marked) indexes nothing twice.
            let pkg2 = prediction_package(&c, "p2", &[("x/1.jpg", "cat", T0 + 4)]);
            ingest(&sphere, &c, "p2", &pkg2);

            let everything = all_pages(&sphere, &PredictionQuery::default(), 2);
            let a_ = |f: &str| format!("{a}:{f}");
            assert_eq!(
                files(&everything),
                [
                    a_("predictions/5.png"),
                    format!("{c}:x/1.jpg"),
                    a_("predictions/4.jpg"),
                    a_("predictions/3.jpg"),
                    a_("predictions/2.jpg"),
                    a_("predictions/1.jpg"),
                ],
                "{}",
                b.name()
            );
            assert_eq!(everything[0].class, "dog");
            assert_eq!(everything[0].confidence, 0.75);
            assert_eq!(
                everything[0].key,
                format!("devices/{a}/packages/p1/predictions/5.png")
            );
            // Pages of 1 across the tie give the same sequence.
            assert_eq!(
                files(&all_pages(&sphere, &PredictionQuery::default(), 1)),
                files(&everything)
            );

            let cats = PredictionQuery {
                class: Some("cat".into()),
                ..Default::default()
            };
            assert_eq!(all_pages(&sphere, &cats, 2).len(), 4);
            let a_cats = PredictionQuery {
                device: Some(a.clone()),
                ..cats.clone()
            };
            assert_eq!(
                files(&all_pages(&sphere, &a_cats, 2)),
                [
                    a_("predictions/4.jpg"),
                    a_("predictions/3.jpg"),
                    a_("predictions/1.jpg")
                ]
            );
            // since ≤ t < until.
            let window = PredictionQuery {
                since: Some(T0 + 2),
                until: Some(T0 + 4),
                ..Default::default()
            };
            assert_eq!(
                files(&all_pages(&sphere, &window, 10)),
                [
                    a_("predictions/4.jpg"),
                    a_("predictions/3.jpg"),
                    a_("predictions/2.jpg")
                ]
            );
            let none = PredictionQuery {
                class: Some("bird".into()),
                ..Default::default()
            };
            assert!(list(&sphere, &none).0.is_empty());
            // A full last page still says where to go on; the next one is empty and final.
            let (page, next) = list(
                &sphere,
                &PredictionQuery {
                    device: Some(c.clone()),
                    limit: Some(1),
                    ..Default::default()
                },
            );
            assert_eq!(page.len(), 1);
            let (page, next) = list(
                &sphere,
                &PredictionQuery {
                    device: Some(c.clone()),
                    after: next,
                    limit: Some(1),
                    ..Default::default()
                },
            );
            assert!(page.is_empty() && next.is_none());
            drop(sphere);

            // The same over HTTP, with the operator token.
            let operator = b.open().create_operator_token("alice").unwrap();
            let server = TestServer::start(b.open());
            let (status, body) = server.get(
                &format!("{}?class=dog&limit=1", paths::PREDICTIONS),
                Some(&operator),
            );
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["predictions"][0]["file"], "predictions/5.png");
            let next = body["next_after"].as_str().unwrap().to_owned();
            let (status, body) = server.get(
                &format!(
                    "{}?class=dog&limit=1&after={}",
                    paths::PREDICTIONS,
                    enc(&next)
                ),
                Some(&operator),
            );
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["predictions"][0]["file"], "predictions/2.jpg");
            for bad in [
                "class=%3Cscript%3E",
                "after=junk",
                "device=..%2Fx",
                "limit=0",
                "nope=1",
            ] {
                let (status, body) =
                    server.get(&format!("{}?{bad}", paths::PREDICTIONS), Some(&operator));
                assert_eq!(status, 400, "{bad}: {body}");
            }
            let (status, _) = server.get(paths::PREDICTIONS, None);
            assert_eq!(status, 401);
        },
    );
}

fn enc(s: &str) -> String {
    form_urlencoded_lite(s)
}

/// Percent-encode everything but unreserved characters.
fn form_urlencoded_lite(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn malformed_prediction_metadata_is_a_problem_and_hostile_classes_are_refused() {
    each_backend(
        "malformed_prediction_metadata_is_a_problem_and_hostile_classes_are_refused",
        |b| {
            let sphere = b.open();
            let dev = enroll(&sphere);
            let mut p = PackageBuilder::new("bad", &dev, T0).unwrap();
            p.add("p/ok.jpg", FileKind::Prediction, vec![1]).unwrap();
            p.add("p/evil.jpg", FileKind::Prediction, vec![2]).unwrap();
            p.add("metrics.json", FileKind::Metrics, b"{}".to_vec())
                .unwrap();
            let meta = json!([
                {"file": "p/ok.jpg", "class": "cube", "confidence": 0.5, "unix_ms": T0},
                {"file": "p/evil.jpg", "class": "<script>alert(1)</script>", "confidence": 0.5, "unix_ms": T0},
                {"file": "p/evil.jpg", "class": "a b", "confidence": 0.5, "unix_ms": T0},
                {"file": "../../etc/passwd", "class": "cube", "confidence": 0.5, "unix_ms": T0},
                {"file": "metrics.json", "class": "cube", "confidence": 0.5, "unix_ms": T0}
            ]);
            p.add(
                "p/predictions.json",
                FileKind::Prediction,
                meta.to_string().into_bytes(),
            )
            .unwrap();
            p.add(
                "q/predictions.json",
                FileKind::Prediction,
                b"[{\"file\": 3".to_vec(),
            )
            .unwrap();
            p.add(
                "r/predictions.json",
                FileKind::Prediction,
                b"{\"not\": \"a list\"}".to_vec(),
            )
            .unwrap();
            ingest(&sphere, &dev, "bad", &p.finish().unwrap());

            let record = sphere.package_record(&dev, "bad").unwrap().unwrap();
            assert!(record.processed_unix_ms.is_some());
            assert_eq!(record.failed, None, "{}", b.name());
            assert_eq!(record.problems.len(), 6, "{:?}", record.problems);
            assert!(
                record
                    .problems
                    .iter()
                    .any(|p| p.contains("q/predictions.json"))
            );
            // The package's files are all kept.
            assert!(
                b.blob(&format!("devices/{dev}/packages/bad/metrics.json"))
                    .is_some()
            );
            let (samples, _) = list(&sphere, &PredictionQuery::default());
            assert_eq!(files(&samples), [format!("{dev}:p/ok.jpg")]);
            for class in ["<script>", "a b", "", ".x", &"x".repeat(65)] {
                let q = PredictionQuery {
                    class: Some(class.to_owned()),
                    ..Default::default()
                };
                assert!(sphere.list_predictions(&q).is_err(), "{class:?}");
            }
        },
    );
}

/// A `logs` member of `n` JSON lines numbered from `first`; every 10th is a warning, every
/// 25th an error, and one line is not JSON.
fn log_lines(first: u64, n: u64) -> Vec<u8> {
    let mut out = String::new();
    for i in first..first + n {
        let level = if i % 25 == 0 {
            "error"
        } else if i % 10 == 0 {
            "warn"
        } else {
            "info"
        };
        out.push_str(
            &json!({"unix_ms": T0 + i, "level": level, "target": "tinylcm::sync", "message": format!("line {i}")})
                .to_string(),
        );
        out.push('\n');
        if i == first {
            out.push_str("plain text, not JSON\n\n");
        }
    }
    out.into_bytes()
}

#[test]
fn logs_are_paged_newest_first_across_packages_and_filtered() {
    each_backend(
        "logs_are_paged_newest_first_across_packages_and_filtered",
        |b| {
            let sphere = b.open();
            let dev = enroll(&sphere);
            // Packages built at T0+1 and T0+2; the older one arrives last.
            let mut p2 = PackageBuilder::new("logs-2", &dev, T0 + 2).unwrap();
            p2.add("logs/a.jsonl", FileKind::Logs, log_lines(100, 60))
                .unwrap();
            p2.add("logs/b.jsonl", FileKind::Logs, log_lines(160, 40))
                .unwrap();
            ingest(&sphere, &dev, "logs-2", &p2.finish().unwrap());
            let mut p1 = PackageBuilder::new("logs-1", &dev, T0 + 1).unwrap();
            p1.add("logs/a.jsonl", FileKind::Logs, log_lines(0, 100))
                .unwrap();
            // Over the viewer's per-file cap: stored, not shown, a problem.
            p1.add(
                "logs/huge.jsonl",
                FileKind::Logs,
                vec![b'x'; MAX_LOG_FILE_BYTES + 1],
            )
            .unwrap();
            ingest(&sphere, &dev, "logs-1", &p1.finish().unwrap());
            let record = sphere.package_record(&dev, "logs-1").unwrap().unwrap();
            assert_eq!(record.problems.len(), 1, "{:?}", record.problems);
            assert!(
                b.blob(&format!("devices/{dev}/packages/logs-1/logs/huge.jsonl"))
                    .is_some()
            );

            // Every line once, newest first, in pages of 45.
            let mut seen = Vec::new();
            let mut query = LogQuery {
                limit: Some(45),
                ..Default::default()
            };
            loop {
                let page = sphere.device_logs(&dev, &query).unwrap();
                assert!(page.lines.len() <= 45);
                seen.extend(page.lines);
                match page.next_after {
                    Some(n) => query.after = Some(n),
                    None => break,
                }
            }
            let numbered: Vec<String> = seen.iter().map(|l| l.message.clone()).collect();
            assert_eq!(seen.len(), 200 + 3, "{}", b.name());
            assert_eq!(numbered[0], "line 199");
            assert_eq!(numbered[38], "line 161");
            assert_eq!(numbered[40], "line 160");
            assert_eq!(numbered[41], "line 159");
            let raw = seen.iter().filter(|l| l.level.is_none()).count();
            assert_eq!(raw, 3, "the non-JSON lines are shown raw");
            assert_eq!(numbered.last().unwrap(), "line 0");
            assert!(seen.iter().all(|l| l.file != "logs/huge.jsonl"));

            // Level filter: warn means warnings and errors.
            let warn = sphere
                .device_logs(
                    &dev,
                    &LogQuery {
                        level: Some(LogLevel::Warn),
                        limit: Some(500),
                        ..Default::default()
                    },
                )
                .unwrap();
            assert_eq!(warn.lines.len(), 20 + 8 - 4);
            assert!(warn.lines.iter().all(|l| l.level <= Some(LogLevel::Warn)));
            let errors = sphere
                .device_logs(
                    &dev,
                    &LogQuery {
                        level: Some(LogLevel::Error),
                        q: Some("LINE 1".into()),
                        ..Default::default()
                    },
                )
                .unwrap();
            assert_eq!(
                errors
                    .lines
                    .iter()
                    .map(|l| l.message.as_str())
                    .collect::<Vec<_>>(),
                ["line 175", "line 150", "line 125", "line 100"]
            );
            assert!(
                sphere
                    .device_logs(
                        &dev,
                        &LogQuery {
                            after: Some("../x".into()),
                            ..Default::default()
                        }
                    )
                    .is_err()
            );
            assert!(
                sphere
                    .device_logs("dev-nobody", &LogQuery::default())
                    .is_err()
            );
        },
    );
}

#[test]
fn the_embedding_export_carries_labels_and_filters_by_status() {
    each_backend(
        "the_embedding_export_carries_labels_and_filters_by_status",
        |b| {
            let (dev, operator) = {
                let sphere = b.open();
                let dev = enroll(&sphere);
                let thumb = "samples/00000000000000000012.jpg";
                let with = |seq: u64, v: Value| {
                    let mut r = drift::report(seq, "adwin", T0 + seq, &[thumb]);
                    r["embedding"] = v;
                    r
                };
                let events = json!([
                    with(1, json!([0.5, -1.25, 3.0])),
                    with(2, json!([1.0, 2.0])),
                    with(3, json!([])),
                    drift::report(4, "cusum", T0 + 4, &[]),
                ]);
                ingest(
                    &sphere,
                    &dev,
                    "d1",
                    &drift::drift_package(&dev, "d1", &events, &[thumb]),
                );
                let record = sphere.package_record(&dev, "d1").unwrap().unwrap();
                assert_eq!(record.problems.len(), 1, "{:?}", record.problems);
                let listed = sphere
                    .list_drift_events(&DriftEventQuery::default())
                    .unwrap();
                assert_eq!(
                    listed.events.len(),
                    4,
                    "an event with a bad embedding is kept"
                );
                let first = listed.events.iter().find(|e| e.event_seq == 1).unwrap();
                sphere
                    .validate_drift_event(
                        first.id,
                        "alice",
                        &ValidateRequest {
                            label: Some("red-cube".into()),
                            note: None,
                        },
                    )
                    .unwrap();
                (dev, sphere.create_operator_token("alice").unwrap())
            };
            let server = TestServer::start(b.open());
            let export = |query: &str| -> Vec<EmbeddingExportLine> {
                let response =
                    ureq::get(&server.url(&format!("{}{query}", paths::EMBEDDINGS_EXPORT)))
                        .set("Authorization", &format!("Bearer {operator}"))
                        .call()
                        .unwrap();
                assert_eq!(response.content_type(), "application/x-ndjson");
                response
                    .into_string()
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect()
            };
            let validated = export("?status=validated");
            assert_eq!(validated.len(), 1, "{validated:?}");
            assert_eq!(validated[0].label.as_deref(), Some("red-cube"));
            assert_eq!(validated[0].embedding, [0.5, -1.25, 3.0]);
            assert_eq!(validated[0].device_id, dev);
            assert_eq!(validated[0].detector, "adwin");
            let url = validated[0].sample_url.as_deref().unwrap();
            assert!(url.contains("00000000000000000012.jpg"), "{url}");
            // A script fetches the sample with the operator token it exported with (a server
            // path on the embedded backend; a presigned URL needs no token).
            let absolute = if url.starts_with('/') {
                server.url(url)
            } else {
                url.to_owned()
            };
            let mut fetch = ureq::get(&absolute);
            if url.starts_with('/') {
                fetch = fetch.set("Authorization", &format!("Bearer {operator}"));
            }
            assert_eq!(fetch.call().unwrap().status(), 200);
            if url.starts_with('/') {
                let refused = |auth: Option<&str>| {
                    let mut r = ureq::get(&absolute);
                    if let Some(a) = auth {
                        r = r.set("Authorization", a);
                    }
                    match r.call() {
                        Err(ureq::Error::Status(code, _)) => code,
                        other => panic!("{other:?}"),
                    }
                };
                assert_eq!(refused(None), 401);
                assert_eq!(refused(Some("Bearer not-a-token")), 401);
            }
            let pending = export(&format!("?status=pending&device={dev}"));
            assert_eq!(pending.len(), 1);
            assert_eq!(pending[0].label, None);
            assert_eq!(pending[0].embedding, [1.0, 2.0]);
            assert_eq!(export("").len(), 2);
            assert!(export(&format!("?since={}", T0 + 2)).len() == 1);
            let (status, _) = server.get(
                &format!("{}?status=maybe", paths::EMBEDDINGS_EXPORT),
                Some(&operator),
            );
            assert_eq!(status, 400);
            let (status, _) = server.get(paths::EMBEDDINGS_EXPORT, None);
            assert_eq!(status, 401);
            // The dashboard's download: the same export behind the session cookie.
            let session = server.login(&operator);
            let download = ureq::get(&server.url("/ui/exports/embeddings?status=validated"))
                .set("Cookie", &format!("sphere_session={session}"))
                .call()
                .unwrap();
            assert!(
                download
                    .header("content-disposition")
                    .unwrap()
                    .starts_with("attachment")
            );
            assert_eq!(download.into_string().unwrap().lines().count(), 1);
        },
    );
}

/// Fails before this change: a device's packages were listed by their random package id,
/// so the newest package could be on any page. Now newest accepted first, on both backends,
/// and walking the pages sees every package once.
#[test]
fn a_devices_packages_are_paged_newest_first_without_gaps_or_repeats() {
    each_backend(
        "a_devices_packages_are_paged_newest_first_without_gaps_or_repeats",
        |b| {
            let sphere = b.open();
            let dev = enroll(&sphere);
            let other = enroll(&sphere);
            // Ids whose alphabetical order is not their upload order.
            let ids: Vec<String> = (0..11u64)
                .map(|i| format!("p{:02}", (i * 7) % 11))
                .collect();
            for id in &ids {
                let p = PackageBuilder::new(id, &dev, T0).unwrap().finish().unwrap();
                sphere.accept_upload(&dev, &p).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(3));
            }
            let p = PackageBuilder::new("zz", &other, T0)
                .unwrap()
                .finish()
                .unwrap();
            sphere.accept_upload(&other, &p).unwrap();
            let newest_first: Vec<String> = ids.iter().rev().cloned().collect();

            let (mut seen, mut after) = (Vec::new(), None::<String>);
            loop {
                let page = sphere.device_packages(&dev, after.as_deref(), 3).unwrap();
                assert!(page.packages.len() <= 3);
                seen.extend(page.packages.iter().map(|p| p.package_id.clone()));
                match page.next_after {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            assert_eq!(seen, newest_first);
            let bad = sphere.device_packages(&dev, Some("p01"), 3).unwrap_err();
            assert!(bad.to_string().contains("cursor"), "{bad}");
        },
    );
}

/// A package `id` of `device` with one image per name (quarantine-style samples).
fn image_package(device: &str, id: &str, names: &[&str]) -> Vec<u8> {
    let mut p = PackageBuilder::new(id, device, T0).unwrap();
    for n in names {
        p.add(*n, FileKind::Sample, vec![0xff, 0xd8, 0xff, 0xe0])
            .unwrap();
    }
    p.finish().unwrap()
}

/// Fails before this change: a device's package images were listed by blob key, i.e. by
/// random package id, so the newest samples could be on any page. Now newest package first
/// (by name within a package), on both backends, and the pages, whose ends fall inside
/// packages too, show every image once.
#[test]
fn a_devices_images_are_paged_newest_package_first_without_gaps_or_repeats() {
    each_backend(
        "a_devices_images_are_paged_newest_package_first_without_gaps_or_repeats",
        |b| {
            let sphere = b.open();
            let dev = enroll(&sphere);
            let other = enroll(&sphere);
            let packages: [(&str, &[&str]); 5] = [
                ("m", &["s/a.jpg", "s/b.jpg", "s/c.jpg"]),
                ("c", &["s/x.jpg"]),
                ("z", &[]),
                ("a", &["s/q.png", "s/r.jpg"]),
                ("k", &["s/k.jpg"]),
            ];
            for (id, names) in packages {
                ingest(&sphere, &dev, id, &image_package(&dev, id, names));
                std::thread::sleep(std::time::Duration::from_millis(3));
            }
            ingest(
                &sphere,
                &other,
                "b",
                &image_package(&other, "b", &["s/o.jpg"]),
            );
            let expected: Vec<String> = packages
                .iter()
                .rev()
                .flat_map(|(id, names)| names.iter().map(move |n| format!("{id}/{n}")))
                .collect();

            let (mut seen, mut after) = (Vec::new(), None::<String>);
            for _ in 0..10 {
                let page = sphere
                    .device_images_newest_first(&dev, after.as_deref(), 2)
                    .unwrap();
                assert!(page.images.len() <= 2);
                seen.extend(
                    page.images
                        .iter()
                        .map(|i| format!("{}/{}", i.package_id, i.name)),
                );
                match page.next_after {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            assert_eq!(seen, expected);
            assert!(
                sphere
                    .device_images_newest_first(&dev, Some("devices/x/packages/p/a.jpg"), 2)
                    .is_err()
            );

            let operator = sphere.create_operator_token("alice").unwrap();
            drop(sphere);
            let server = TestServer::start(b.open());
            let session = server.login(&operator);
            let (status, body) = server.page(
                &ureq::agent(),
                &format!("/ui/data/files?device={dev}"),
                &session,
            );
            assert_eq!(status, 200, "{body}");
            assert!(body.contains("newest package first"), "{body}");
            let at = |name: &str| body.find(&format!("alt=\"{name}\"")).unwrap_or(usize::MAX);
            let order = [
                "s/k.jpg", "s/q.png", "s/r.jpg", "s/x.jpg", "s/a.jpg", "s/c.jpg",
            ];
            for pair in order.windows(2) {
                assert!(at(pair[0]) < at(pair[1]), "{pair:?} in {body}");
            }
            assert_eq!(at("s/o.jpg"), usize::MAX, "another device's image: {body}");
        },
    );
}

/// Fails before this change: the log table showed every line as its own row with a
/// `… UTC` time that wrapped, and the level as plain text with no class to colour it.
#[test]
fn the_log_table_folds_repeated_lines_and_colours_levels() {
    each_backend(
        "the_log_table_folds_repeated_lines_and_colours_levels",
        |b| {
            let (dev, operator) = {
                let sphere = b.open();
                let dev = enroll(&sphere);
                let mut p = PackageBuilder::new("r1", &dev, T0).unwrap();
                let lines = [
                    (T0 + 1, "info", "started"),
                    (T0 + 2_001, "warn", "slow frame"),
                    (T0 + 3_002, "warn", "slow frame"),
                    (T0 + 4_003, "warn", "slow frame"),
                    (T0 + 5_004, "error", "camera lost"),
                    (T0 + 6_005, "debug", "tick"),
                ];
                let text: String = lines
                .iter()
                .map(|(t, level, m)| {
                    format!("{}\n", json!({"unix_ms": t, "level": level, "target": "tinylcm::run", "message": m}))
                })
                .collect();
                p.add("logs/r.jsonl", FileKind::Logs, text.into_bytes())
                    .unwrap();
                ingest(&sphere, &dev, "r1", &p.finish().unwrap());
                (dev, sphere.create_operator_token("alice").unwrap())
            };
            let server = TestServer::start(b.open());
            let session = server.login(&operator);
            let (status, body) =
                server.page(&ureq::agent(), &format!("/ui/logs?device={dev}"), &session);
            assert_eq!(status, 200, "{body}");
            assert_eq!(
                body.matches("slow frame").count(),
                1,
                "one row for three lines: {body}"
            );
            assert!(body.contains("× 3"), "{body}");
            assert!(
                body.contains("first 2025-11-26 09:00:02.001, last 2025-11-26 09:00:04.003"),
                "{body}"
            );
            assert!(
                body.contains(r#"<td class="when">2025-11-26 09:00:05.004</td>"#),
                "{body}"
            );
            assert!(!body.contains("09:00:05 UTC"), "{body}");
            for (class, level) in [
                ("level-error", "error"),
                ("level-warn", "warn"),
                ("level-info", "info"),
                ("level-debug", "debug"),
            ] {
                assert!(
                    body.contains(&format!(r#"<span class="level {class}">{level}</span>"#)),
                    "{class}: {body}"
                );
            }
            assert!(
                !body.contains("style="),
                "no inline styles under the CSP: {body}"
            );
        },
    );
}

#[test]
fn device_text_cannot_inject_markup_into_the_data_hub_pages() {
    each_backend(
        "device_text_cannot_inject_markup_into_the_data_hub_pages",
        |b| {
            let (dev, operator) = {
                let sphere = b.open();
                let dev = enroll(&sphere);
                let mut p = PackageBuilder::new("x1", &dev, T0).unwrap();
                let evil = [
                    json!({"unix_ms": T0, "level": "error", "target": "<b onmouseover=alert(1)>", "message": "<script>alert(1)</script>"}),
                    json!({"unix_ms": T0, "level": "info", "message": "\"><img src=x onerror=alert(2)>"}),
                ];
                let text: String = evil.iter().map(|l| format!("{l}\n")).collect::<String>()
                    + "<script>alert(3)</script>\n";
                p.add("logs/x.jsonl", FileKind::Logs, text.into_bytes())
                    .unwrap();
                p.add("p/a.jpg", FileKind::Prediction, vec![1]).unwrap();
                p.add(
                    "p/predictions.json",
                    FileKind::Prediction,
                    json!([
                        {"file": "p/a.jpg", "class": "<script>alert(4)</script>", "confidence": 0.5, "unix_ms": T0},
                        {"file": "p/a.jpg", "class": "cube", "confidence": 0.5, "unix_ms": T0}
                    ])
                    .to_string()
                    .into_bytes(),
                )
                .unwrap();
                ingest(&sphere, &dev, "x1", &p.finish().unwrap());
                (dev, sphere.create_operator_token("alice").unwrap())
            };
            let server = TestServer::start(b.open());
            let session = server.login(&operator);
            let page = |path: &str| server.page(&ureq::agent(), path, &session);
            for (path, status, escaped) in [
                (
                    format!("/ui/logs?device={dev}"),
                    200,
                    "&#60;script&#62;alert(1)&#60;/script&#62;",
                ),
                (
                    format!("/ui/logs?device={dev}&level=info"),
                    200,
                    "&#60;img src=x",
                ),
                (format!("/ui/data?device={dev}"), 200, "cube"),
                (
                    "/ui/data?class=%3Cscript%3Ealert(5)%3C%2Fscript%3E".to_owned(),
                    400,
                    "",
                ),
                (
                    format!("/ui/logs?device={dev}&q=%3Cscript%3Ealert(6)"),
                    200,
                    "&#60;script&#62;alert(6)",
                ),
                ("/ui/data/files".to_owned(), 200, "p/a.jpg"),
            ] {
                let (got, body) = page(&path);
                assert_eq!(got, status, "{path}: {body}");
                assert!(
                    body.contains(escaped),
                    "{path}: {escaped} missing in {body}"
                );
                for raw in ["<script>alert", "<img src=x", "<b onmouseover"] {
                    assert!(!body.contains(raw), "{path} contains raw {raw:?}");
                }
                assert_eq!(body.matches("<script").count(), 1, "{path}");
            }
            let (status, body) = page("/ui/logs?device=dev-nobody");
            assert_eq!(status, 404, "{body}");
        },
    );
}
