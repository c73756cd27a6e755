//! Cost of the quarantine on the thread that admits samples.
//!
//! The per-frame budget after inference is 1 ms on a Pi Zero 2 W class CPU. Measured here:
//! shrinking a frame to a thumbnail (what the caller's thread does per admitted sample,
//! `thumbnail/downscale`), JPEG-encoding one (what the writer thread does, for comparison),
//! and `admit` of a full quarantine (500 entries, 256-d) that evicts, and that refuses.
//! Run with `cargo bench -p tinylcm --bench quarantine`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tinylcm::frame::Frame;
use tinylcm::quarantine::thumbnails::scale::downscale;
use tinylcm::quarantine::{Candidate, Quarantine, QuarantineConfig, ReasonRef, Status};
use tinylcm::state::{Batch, DurabilityPolicy, Store};

fn frame(w: u32, h: u32) -> Frame {
    let mut f = Frame::default();
    f.reshape(w, h);
    let mut x = 0x9e37_79b9u32;
    for v in &mut f.data {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *v = x as u8;
    }
    f
}

fn thumbnail(c: &mut Criterion) {
    let mut group = c.benchmark_group("thumbnail");
    let mut out = Vec::new();
    for (w, h) in [(640u32, 480u32), (1280, 720)] {
        let f = frame(w, h);
        group.bench_function(
            BenchmarkId::new("downscale_to_64", format!("{w}x{h}")),
            |b| b.iter(|| downscale(black_box(&f.data), w, h, 64, &mut out)),
        );
    }
    let f = frame(640, 480);
    downscale(&f.data, 640, 480, 64, &mut out).expect("frame");
    let mut jpeg = Vec::new();
    group.bench_function("jpeg_encode_64x48_q80", |b| {
        b.iter(|| {
            jpeg.clear();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
                .encode(black_box(&out), 64, 48, image::ExtendedColorType::Rgb8)
                .expect("encode")
        })
    });
    group.finish();
}

fn admit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = DurabilityPolicy {
        commit_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let store = Store::open(dir.path().join("s.redb"), policy).expect("store");
    let config = QuarantineConfig {
        thumbnails: false,
        thumbnail_dir: dir.path().join("t"),
        ..Default::default()
    };
    let n = config.max_entries as u64;
    let mut q = Quarantine::open(config, &store).expect("open");
    let features = vec![0.25f32; 256];
    let f = frame(640, 480);
    let classes = ["a", "b", "c", "d"];
    let candidate = |s: u64| Candidate {
        sample: s,
        reason: ReasonRef::Drift { detector: "ph" },
        predicted: classes[(s % 4) as usize],
        confidence: 0.3,
        knn_distance: Some(1.0),
        features: &features,
    };
    let mut batch = Batch::new();
    for s in 0..n {
        q.admit(candidate(s), &f, 0, &mut batch).expect("admit");
    }
    let mut group = c.benchmark_group("quarantine_admit_500x256");
    let mut s = n;
    group.bench_function("full_evicts_oldest_pending", |b| {
        b.iter(|| {
            s += 1;
            let mut batch = Batch::new();
            q.admit(candidate(s), &f, 0, &mut batch).expect("admit")
        })
    });
    // Every entry pseudo-labelled: a new sample is refused (the not-admitted path).
    let ids: Vec<u64> = q.iter().map(|e| e.id).collect();
    for id in ids {
        let label = "x".to_string();
        q.set_status(id, Status::PseudoLabelled { label }, &mut batch)
            .expect("status");
    }
    group.bench_function("full_refuses", |b| {
        b.iter(|| q.admit(candidate(1), &f, 0, &mut batch).expect("admit"))
    });
    group.finish();
}

criterion_group!(benches, thumbnail, admit);
criterion_main!(benches);
