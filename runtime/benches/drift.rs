//! Per-sample cost of every drift detector together (the `DetectorSet` at defaults) on a
//! 256-d embedding and 4 classes, in monitoring and in drift; and of each detector alone.
//! Part of the ≤ 1 ms per-frame budget after inference.
//! Run with `cargo bench -p tinylcm --bench drift`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tinylcm::drift::{DetectorKind, DetectorSet, DriftConfig, Observation};

const DIM: usize = 256;

/// Deterministic pseudo-random samples (no RNG dependency needed for a benchmark).
fn samples(n: usize, shift: f32) -> Vec<(usize, f32, f32, Vec<f32>)> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    (0..n)
        .map(|_| {
            let emb = (0..DIM).map(|_| next() * 2.0 + shift).collect();
            let class = ((next() + 0.5) * 4.0) as usize % 4;
            (
                class,
                0.8 + next() * 0.1 - shift * 0.1,
                10.0 + next() * 2.0 + shift,
                emb,
            )
        })
        .collect()
}

fn obs(i: usize, s: &(usize, f32, f32, Vec<f32>)) -> Observation<'_> {
    Observation {
        sample_id: i as u64,
        predicted: s.0,
        num_classes: 4,
        confidence: s.1,
        knn_distance: Some(s.2),
        embedding: Some(&s.3),
    }
}

fn only(kind: DetectorKind) -> DriftConfig {
    let mut c = DriftConfig::default();
    c.page_hinkley_distance.enabled = kind == DetectorKind::PageHinkleyDistance;
    c.ewma_confidence.enabled = kind == DetectorKind::EwmaConfidence;
    c.page_hinkley_confidence.enabled = kind == DetectorKind::PageHinkleyConfidence;
    c.cusum.enabled = kind == DetectorKind::Cusum;
    c.distribution.enabled = kind == DetectorKind::Distribution;
    c.embedding.enabled = kind == DetectorKind::Embedding;
    c.adwin.enabled = kind == DetectorKind::Adwin;
    c
}

fn bench_set(c: &mut Criterion, name: &str, config: &DriftConfig) {
    let warm = samples(2000, 0.0);
    let normal = samples(1024, 0.0);
    let drifted = samples(1024, 1.0);
    let mut group = c.benchmark_group("drift");
    for (phase, stream) in [("monitoring", &normal), ("drift", &drifted)] {
        let mut set = DetectorSet::from_config(config).expect("valid config");
        for (i, s) in warm.iter().enumerate() {
            set.update(&obs(i, s));
        }
        let mut i = 0;
        group.bench_function(BenchmarkId::new(name, phase), |b| {
            b.iter(|| {
                let s = &stream[i % stream.len()];
                i += 1;
                set.update(&obs(i, s)).len()
            })
        });
    }
    group.finish();
}

fn all(c: &mut Criterion) {
    bench_set(c, "all-7", &DriftConfig::default());
    for kind in DetectorKind::ALL {
        bench_set(c, kind.name(), &only(kind));
    }
}

criterion_group!(benches, all);
criterion_main!(benches);
