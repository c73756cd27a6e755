//! Per-frame cost of the KNN and the feature transform.
//!
//! The design budget for everything after inference is 1 ms per frame on a
//! Pi Zero 2 W class CPU; one search of 200 samples × 256-d must cost
//! microseconds. Run with `cargo bench -p tinylcm --bench knn`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tinylcm::features::{FeatureTransform, PcaArrays};
use tinylcm::knn::{Knn, KnnConfig, Metric, Prediction, Vote};

/// Deterministic pseudo-random values in [-1, 1) (xorshift).
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn search(c: &mut Criterion) {
    let (n, dim) = (200, 256);
    let mut group = c.benchmark_group("knn_search_200x256");
    for metric in [Metric::Euclidean, Metric::Manhattan, Metric::Cosine] {
        for vote in [Vote::Majority, Vote::DistanceWeighted] {
            let config = KnnConfig {
                k: 5,
                metric,
                max_samples: n,
                vote,
                ..KnnConfig::default()
            };
            let mut knn = Knn::new(dim, config).expect("config");
            let labels: Vec<_> = ["a", "b", "c", "d"]
                .iter()
                .map(|l| knn.intern_label(l).expect("label"))
                .collect();
            for i in 0..n {
                knn.add(labels[i % 4], &values(i as u64, dim), i as u64)
                    .expect("add");
            }
            let query = values(9999, dim);
            let mut out = Prediction::with_capacity(5);
            group.bench_function(
                BenchmarkId::new(format!("{metric:?}"), format!("{vote:?}")),
                |b| b.iter(|| knn.predict(black_box(&query), &mut out).expect("predict")),
            );
        }
    }
    group.finish();
}

fn transform(c: &mut Criterion) {
    let (n, m) = (1280, 256);
    let t = FeatureTransform::from_arrays(
        values(1, n),
        values(2, n).iter().map(|v| v.abs() + 0.5).collect(),
        Some(PcaArrays {
            mean: values(3, n),
            components: values(4, n * m),
            n_components: m,
            explained_variance: vec![],
        }),
    )
    .expect("arrays");
    let input = values(5, n);
    let mut out = vec![0.0; m];
    c.bench_function("features_1280_to_256", |b| {
        b.iter(|| t.apply(black_box(&input), &mut out).expect("apply"))
    });
}

criterion_group! {
    name = benches;
    // No plots: with plotters' font features unified into the build (the
    // report module), criterion's plot backend fails without system fonts.
    config = Criterion::default().without_plots();
    targets = search, transform
}
criterion_main!(benches);
