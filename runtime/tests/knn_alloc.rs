//! The per-frame path after inference (feature transform, KNN search) and
//! KNN updates at capacity allocate nothing, counted with a tracking
//! allocator.

use tinylcm::features::{FeaturePath, FeatureTransform, PcaArrays};
use tinylcm::knn::{Eviction, Knn, KnnConfig, Metric, Prediction, Vote};

#[path = "support/alloc.rs"]
mod alloc_support;

use alloc_support::allocations;

#[global_allocator]
static GLOBAL: alloc_support::Counting = alloc_support::Counting;

fn wave(seed: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7 + seed * 13) as f32 * 0.1).sin())
        .collect()
}

#[test]
fn features_and_search_allocate_nothing_per_frame() {
    let (d, m) = (300, 16);
    let transform = FeatureTransform::from_arrays(
        wave(1, d),
        vec![1.5; d],
        Some(PcaArrays {
            mean: wave(2, d),
            components: wave(3, d * m),
            n_components: m,
            explained_variance: vec![],
        }),
    )
    .unwrap();
    let path = FeaturePath::new(d, true, Some(transform)).unwrap();
    let embeddings: Vec<Vec<f32>> = (0..10).map(|s| wave(s + 10, d)).collect();
    let mut features = vec![0.0; m];
    for metric in [Metric::Euclidean, Metric::Manhattan, Metric::Cosine] {
        for vote in [Vote::Majority, Vote::DistanceWeighted] {
            for eviction in [Eviction::Fifo, Eviction::ClassBalanced] {
                let cfg = KnnConfig {
                    k: 5,
                    metric,
                    max_samples: 20,
                    eviction,
                    vote,
                };
                let mut knn = Knn::new(m, cfg).unwrap();
                let labels: Vec<_> = ["a", "b", "c"]
                    .iter()
                    .map(|l| knn.intern_label(l).unwrap())
                    .collect();
                let mut pred = Prediction::with_capacity(5);
                let n = allocations(|| {
                    for t in 0..60u64 {
                        path.apply(&embeddings[t as usize % 10], &mut features)
                            .unwrap();
                        knn.predict(&features, &mut pred).unwrap();
                        // Past 20 samples every add evicts first.
                        let added = knn.add(labels[t as usize % 3], &features, t).unwrap();
                        if t >= 20 {
                            assert!(added.evicted.is_some());
                            assert!(knn.remove(added.id));
                            knn.add(labels[0], &features, t).unwrap();
                        }
                    }
                });
                assert_eq!(n, 0, "{metric:?} {vote:?} {eviction:?}");
                assert_eq!(knn.len(), 20);
            }
        }
    }
}
