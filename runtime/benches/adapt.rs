//! Cost of heuristic adaptation: planning a round (clustering the quarantine and deciding
//! per cluster) and the per-frame proxy-metric update.
//!
//! Planning is O(n²) distances and belongs off the inference thread; the guard runs per
//! frame and must cost nanoseconds. Run with `cargo bench -p tinylcm --bench adapt`.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tinylcm::adapt::{AdaptationConfig, ProxyMetrics, Reference, plan};
use tinylcm::knn::{InitialOptions, Knn, KnnConfig, build_initial};

/// Deterministic pseudo-random values in [-1, 1) (xorshift).
struct Values(u64);

impl Values {
    fn next(&mut self) -> f32 {
        let s = &mut self.0;
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        (*s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn around(&mut self, centre: &[f32]) -> Vec<f32> {
        centre.iter().map(|c| c + self.next()).collect()
    }

    fn centre(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| 4.0 * self.next()).collect()
    }
}

/// A KNN of 4 classes × 50 samples and `n` pending samples from `clusters` new groups.
fn setup(dim: usize, n: usize, clusters: usize) -> (Knn, Reference, Vec<Vec<f32>>) {
    let mut v = Values(0x9E37_79B9_7F4A_7C15);
    let mut samples = Vec::new();
    for class in 0..4 {
        let c = v.centre(dim);
        for _ in 0..60 {
            samples.push((format!("c{class}"), v.around(&c)));
        }
    }
    let options = InitialOptions {
        config: KnnConfig::default(),
        per_class: 50,
        timestamp: 0,
    };
    let initial = build_initial(samples, &options).expect("initial");
    let reference = Reference::from_stats(&initial.reference).expect("reference");
    let centres: Vec<Vec<f32>> = (0..clusters).map(|_| v.centre(dim)).collect();
    let pending = (0..n).map(|i| v.around(&centres[i % clusters])).collect();
    (initial.knn, reference, pending)
}

fn planning(c: &mut Criterion) {
    let config = AdaptationConfig {
        enabled: true,
        ..AdaptationConfig::default()
    };
    let mut group = c.benchmark_group("adapt_plan");
    group.sample_size(10);
    for (n, dim) in [(500, 32), (500, 256), (2000, 256)] {
        let (knn, reference, pending) = setup(dim, n, 5);
        let input: Vec<(u64, &[f32])> = pending
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u64, v.as_slice()))
            .collect();
        group.bench_function(format!("{n}x{dim}"), |b| {
            b.iter(|| plan(black_box(&input), &knn, &reference, &config).expect("plan"))
        });
    }
    group.finish();
}

fn observe(c: &mut Criterion) {
    // What the guard (and the baseline) do per frame; the guard adds one comparison.
    let mut metrics = ProxyMetrics::new(5);
    let mut i = 0usize;
    c.bench_function("adapt_proxy_observe", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            metrics.observe(black_box(0.8), black_box(Some(1.0)), i % 5);
        })
    });
    black_box(&metrics);
}

criterion_group!(benches, planning, observe);
criterion_main!(benches);
