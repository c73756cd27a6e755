//! Drift events and the packages that carry them, as a device builds them.

use serde_json::{Value, json};
use tinylcm_protocol::package::{FileKind, PackageBuilder};

/// A drift event report as the device writes it.
pub fn report(seq: u64, detector: &str, unix_ms: u64, samples: &[&str]) -> Value {
    json!({
        "event_seq": seq, "incident": 1, "detector": detector, "statistic": 3.5,
        "threshold": 2.0, "magnitude": 1.25, "sample_id": 900 + seq, "unix_ms": unix_ms,
        "samples": samples,
    })
}

/// A package with a metrics file, `drift-events.json` = `events`, and one JPEG-ish sample
/// per name in `thumbs`.
pub fn drift_package(device: &str, id: &str, events: &Value, thumbs: &[&str]) -> Vec<u8> {
    let mut b = PackageBuilder::new(id, device, 1_764_147_600_000).unwrap();
    b.add("metrics.json", FileKind::Metrics, b"{}".to_vec())
        .unwrap();
    b.add(
        "drift-events.json",
        FileKind::DriftEvents,
        events.to_string().into_bytes(),
    )
    .unwrap();
    for (i, thumb) in thumbs.iter().enumerate() {
        b.add(
            *thumb,
            FileKind::Sample,
            vec![0xff, 0xd8, 0xff, 0xe0, 1 + i as u8],
        )
        .unwrap();
    }
    b.finish().unwrap()
}
