//! A human's label must land: `tinylcm run` unpaced (hundreds of frames a second) with a
//! quarantine of 20 entries against a real sphere-lite. An operator validates a drift event
//! with a label only after the device's quarantine has turned over many times; the device
//! applies it (the event's sample was held for review; had the hold been released, through
//! the features the event carried) and sphere-lite shows every item of the decision `applied`.
//!
//! Fails before this change: the device logged `no such quarantine entry (evicted or
//! expired?)`, taught nothing, and sphere-lite could not tell.

use std::path::Path;

use serde_json::{Value, json};
use tinylcm::autonomy::{EventKind, RuntimeEvent};
use tinylcm::state::MAX_EVENTS_PER_READ;
use tinylcm_e2e::field::{FieldDevice, Settings};
use tinylcm_e2e::process::Harness;
use tinylcm_e2e::sphere::Sphere;

const LABEL: &str = "star";
const MAX_ENTRIES: u64 = 20;

/// The quarantine entry a sample key names (`…/<20-digit id>.jpg`).
fn quarantine_id(sample: &str) -> Option<u64> {
    Path::new(sample).file_stem()?.to_str()?.parse().ok()
}

/// The quarantine ids of the samples of `event`.
fn sample_ids(event: &Value) -> Vec<u64> {
    event["samples"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|k| k.as_str().and_then(quarantine_id))
                .collect()
        })
        .unwrap_or_default()
}

fn label_after_turnover(sphere: Sphere, work: &Path) {
    let key = sphere.enrollment_key_file(work);
    let mut settings = Settings::new(&sphere.url(), &key, None);
    settings.fps = 0.0;
    settings.extra =
        format!("[quarantine]\nmax-entries = {MAX_ENTRIES}\nper-class-cap = {MAX_ENTRIES}\n");
    let mut device = FieldDevice::new(&work.join("device"), &settings);
    let id = device.start_enrolled();

    // A drift event with a quarantined sample in the Drift Hub.
    let event = device.wait(120, "a drift event with a sample in the Drift Hub", |_| {
        sphere
            .drift_events(&id)
            .into_iter()
            .find(|e| !sample_ids(e).is_empty())
    });
    let qid = sample_ids(&event)[0];
    // The quarantine turns over: later events carry samples admitted more than twice its
    // size after this one.
    device.wait(180, "the quarantine to turn over", |_| {
        sphere
            .drift_events(&id)
            .iter()
            .flat_map(sample_ids)
            .any(|q| q > qid + 2 * MAX_ENTRIES)
            .then_some(())
    });

    // Meanwhile the device's status says samples wait for a human (before the quarantine
    // was part of the status report, nothing on the device said so).
    device.wait(60, "the status to show entries held for review", |d| {
        let q = d.report()?.autonomy?.quarantine?;
        (q.under_review >= 1 && q.evicted > 0).then_some(())
    });

    // Only now does the operator validate it, with a label.
    let (status, body) = sphere.call(
        "POST",
        &format!("/api/v2/drift-events/{}/validate", event["id"]),
        Some(&json!({"label": LABEL})),
    );
    assert_eq!(status, 200, "{body}");
    let items = body["feedback"].as_array().cloned().unwrap_or_default();
    assert!(
        items
            .iter()
            .any(|i| i["verdict"]["type"] == "sample" && i["verdict"]["id"] == qid),
        "the decision labels sample {qid}: {body}"
    );

    // sphere-lite shows every item of the decision applied, as the device reported it.
    let view = device.wait(90, "every item of the decision to be applied", |_| {
        let (status, view) = sphere.call(
            "GET",
            &format!("/api/v2/drift-events/{}", event["id"]),
            None,
        );
        assert_eq!(status, 200, "{view}");
        let feedback = view["feedback"].as_array()?.clone();
        assert!(
            feedback.iter().all(|i| i["progress"] != "refused"),
            "the device refused an item: {view:#}"
        );
        (!feedback.is_empty() && feedback.iter().all(|i| i["progress"] == "applied"))
            .then_some(view)
    });
    eprintln!(
        "the decision as sphere-lite shows it: {:#}",
        view["feedback"]
    );
    device.stop();

    // The KNN learnt the sample under the label.
    let store = device.open_store();
    let mut after = 0;
    let mut learnt = None;
    loop {
        let page: Vec<(u64, RuntimeEvent)> =
            store.events_after(after, MAX_EVENTS_PER_READ).unwrap();
        let Some((last, _)) = page.last() else {
            break;
        };
        after = *last;
        for (_, e) in page {
            if let EventKind::SampleFeedback {
                id,
                label,
                learnt: l,
            } = e.kind
            {
                if id == qid {
                    learnt = Some((label, l));
                }
            }
        }
    }
    assert_eq!(learnt, Some((Some(LABEL.to_string()), true)));
    assert!(
        !device.log().contains("no such quarantine entry"),
        "the verdict found its sample"
    );
}

#[test]
fn a_label_given_after_the_quarantine_turned_over_is_applied_and_shown_applied() {
    let work = tempfile::tempdir().unwrap();
    label_after_turnover(Sphere::embedded(None), work.path());
}

#[test]
fn a_label_given_after_the_quarantine_turned_over_is_applied_on_mlflow_and_s3() {
    let work = tempfile::tempdir().unwrap();
    let Some(sphere) = Sphere::mlflow("label-lands", None) else {
        return;
    };
    label_after_turnover(sphere, work.path());
}
