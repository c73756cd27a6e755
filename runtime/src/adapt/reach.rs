//! The open-set rule for the classes adaptation proposes: a proposed class is a neighbour
//! only near its own samples.
//!
//! A proposed class starts from a handful of representatives of one compact cluster. In a
//! plain k-NN vote it then wins every frame whose nearest samples happen to be its
//! representatives — also a noisy frame of a known object that fell into the empty region
//! between the known classes, where the new object's samples are the least far
//! (measured on the built-in scenario with the nuisance-trained model: the star's class
//! took 3–8 noisy `ball`/`bar` frames per held-out run). Open-set recognition bounds each
//! class's region instead of splitting the whole space among the classes; a distance
//! bound around the proposed class's samples is the k-NN form of it. Known classes stay
//! unbounded: the model was made with them and has no "other" to fall back on.
//!
//! The limit lives in the KNN ([`Knn::set_reach`]) but not in its saved state: whoever
//! loads or changes a KNN with proposed classes calls [`limit_proposed`] again.

use super::AdaptationConfig;
use super::Reference;
use crate::knn::{Knn, LabelId, ReferenceStats};

/// Whether `name` is a class adaptation proposed: the prefix and a number (`new-3`).
pub fn is_proposed(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Set the reach of every proposed class of `knn` to `proposed-reach` × the reference mean
/// distance (no limit when the key is 0 or the reference is unusable); other classes keep
/// theirs. Returns how many classes are limited.
pub fn limit_proposed(
    knn: &mut Knn,
    config: &AdaptationConfig,
    reference: &ReferenceStats,
) -> usize {
    let reach = match Reference::from_stats(reference) {
        Ok(r) if config.proposed_reach > 0.0 => Some((config.proposed_reach * r.mean()) as f32),
        _ => None,
    };
    let proposed: Vec<LabelId> = (0..knn.labels().len())
        .map(|i| LabelId(i as u16))
        .filter(|&l| {
            knn.labels()
                .name(l)
                .is_some_and(|n| is_proposed(n, &config.new_class_prefix))
        })
        .collect();
    for &l in &proposed {
        // The label exists, so this cannot fail.
        let _ = knn.set_reach(l, reach);
    }
    if reach.is_some() { proposed.len() } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapt::test_knn::line_knn;
    use crate::knn::{DistanceStats, KnnConfig, Metric, Prediction};

    fn knn() -> Knn {
        line_knn(
            &[
                (0.0, "ball"),
                (0.1, "ball"),
                (0.2, "ball"),
                (10.0, "new-1"),
                (10.1, "new-1"),
                (10.2, "new-1"),
            ],
            KnnConfig::default().max_samples,
        )
    }

    fn stats() -> ReferenceStats {
        ReferenceStats {
            k: 3,
            metric: Metric::Euclidean,
            overall: DistanceStats {
                mean: 1.0,
                std: 0.5,
                min: 0.5,
                max: 2.0,
                count: 6,
            },
            per_class: Vec::new(),
        }
    }

    fn label_of(knn: &Knn, x: f32) -> String {
        let mut out = Prediction::with_capacity(3);
        knn.predict(&[x], &mut out).unwrap();
        knn.labels().name(out.label.unwrap()).unwrap().to_string()
    }

    #[test]
    fn proposed_names_are_the_prefix_and_a_number() {
        assert!(is_proposed("new-1", "new-"));
        assert!(is_proposed("new-12", "new-"));
        assert!(!is_proposed("new-", "new-"));
        assert!(!is_proposed("new-york", "new-"));
        assert!(!is_proposed("ball", "new-"));
    }

    /// Fails before this change: a frame of a known object far from everything (here 7.0,
    /// 6.8 from `ball` and 3.0 from the proposed class) was the proposed class's.
    #[test]
    fn a_proposed_class_claims_only_frames_near_its_samples() {
        let mut k = knn();
        assert_eq!(label_of(&k, 7.0), "new-1");
        let off = AdaptationConfig {
            proposed_reach: 0.0,
            ..AdaptationConfig::default()
        };
        assert_eq!(limit_proposed(&mut k, &off, &stats()), 0);
        assert_eq!(label_of(&k, 7.0), "new-1");

        let on = AdaptationConfig {
            proposed_reach: 1.0,
            ..AdaptationConfig::default()
        };
        assert_eq!(limit_proposed(&mut k, &on, &stats()), 1);
        assert_eq!(k.reach(k.labels().get("new-1").unwrap()), Some(1.0));
        assert_eq!(k.reach(k.labels().get("ball").unwrap()), None);
        assert_eq!(label_of(&k, 7.0), "ball");
        // Within reach of its samples the proposed class still wins.
        assert_eq!(label_of(&k, 9.5), "new-1");
        // Known classes are never limited: a frame far beyond `ball` is still `ball`'s.
        assert_eq!(label_of(&k, -50.0), "ball");
        // A saved and loaded KNN has no limit until it is set again.
        let loaded = Knn::from_state(k.to_state()).unwrap();
        assert_eq!(label_of(&loaded, 7.0), "new-1");
    }
}
