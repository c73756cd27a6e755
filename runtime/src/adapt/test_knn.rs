//! The small one-dimensional KNN the adaptation rules' unit tests reason on: labelled points
//! on a line, k = 3, so a test can say which samples are a point's neighbours by looking.

use crate::knn::{Knn, KnnConfig};

/// A 1-d KNN (k = 3, at most `max_samples`) holding `points` as `(x, label)`.
pub(super) fn line_knn(points: &[(f32, &str)], max_samples: usize) -> Knn {
    let mut knn = Knn::new(
        1,
        KnnConfig {
            k: 3,
            max_samples,
            ..KnnConfig::default()
        },
    )
    .unwrap();
    for &(x, label) in points {
        knn.add_named(label, &[x], 0).unwrap();
    }
    knn
}
