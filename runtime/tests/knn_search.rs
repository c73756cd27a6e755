//! KNN distances, neighbour order, tie rules, confidences, eviction and
//! add/remove.

use tinylcm::knn::distance::{cosine, euclidean, manhattan};
use tinylcm::knn::{
    Eviction, Knn, KnnConfig, KnnError, LabelId, Metric, Prediction, SampleId, Vote, WEIGHT_EPSILON,
};

fn knn(dim: usize, k: usize, max_samples: usize, eviction: Eviction) -> Knn {
    Knn::new(
        dim,
        KnnConfig {
            k,
            max_samples,
            eviction,
            ..KnnConfig::default()
        },
    )
    .unwrap()
}

fn close(a: f32, b: f64, tol: f64) -> bool {
    (f64::from(a) - b).abs() <= tol
}

#[test]
fn distances_match_reference_values() {
    let (a, b) = ([1.0, 2.0, 3.0], [4.0, 6.0, 8.0]);
    assert!(close(euclidean(&a, &b), 50f64.sqrt(), 1e-6));
    assert_eq!(manhattan(&a, &b), 12.0);
    let cos = 40.0 / (14f64.sqrt() * 116f64.sqrt());
    assert!(close(cosine(&a, &b), 1.0 - cos, 1e-6));
    assert_eq!(euclidean(&a, &a), 0.0);
    assert_eq!(manhattan(&a, &a), 0.0);
    // Rounding of the norms leaves a few ulps.
    assert!(close(cosine(&a, &a), 0.0, 1e-6));
    assert_eq!(Metric::Manhattan.distance(&a, &b), 12.0);
}

#[test]
fn distances_over_lanes_and_remainder_match_f64() {
    // 19 values: two full lanes of eight and a remainder of three.
    let a: Vec<f32> = (0..19).map(|i| (i as f32 * 0.37).sin()).collect();
    let b: Vec<f32> = (0..19).map(|i| (i as f32 * 0.91).cos()).collect();
    let pairs = || {
        a.iter()
            .zip(&b)
            .map(|(&x, &y)| (f64::from(x), f64::from(y)))
    };
    let e = pairs().map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
    let m = pairs().map(|(x, y)| (x - y).abs()).sum::<f64>();
    let dot = pairs().map(|(x, y)| x * y).sum::<f64>();
    let na = pairs().map(|(x, _)| x * x).sum::<f64>().sqrt();
    let nb = pairs().map(|(_, y)| y * y).sum::<f64>().sqrt();
    assert!(close(euclidean(&a, &b), e, 1e-5));
    assert!(close(manhattan(&a, &b), m, 1e-5));
    assert!(close(cosine(&a, &b), 1.0 - dot / (na * nb), 1e-5));
}

#[test]
fn cosine_edge_cases() {
    assert_eq!(cosine(&[0.0, 0.0], &[1.0, 2.0]), 1.0);
    assert_eq!(cosine(&[0.0, 0.0], &[0.0, 0.0]), 1.0);
    assert_eq!(cosine(&[1.0, 0.0], &[0.0, 3.0]), 1.0);
    assert_eq!(cosine(&[1.0, 1.0], &[-2.0, -2.0]), 2.0);
    assert_eq!(cosine(&[1.0, 1.0], &[3.0, 3.0]), 0.0);
}

#[test]
fn neighbours_sorted_with_tie_rules() {
    let mut m = knn(1, 4, 10, Eviction::Fifo);
    let a = m.intern_label("a").unwrap();
    let b = m.intern_label("b").unwrap();
    // Four samples at distance 1 from the query 0, one nearer.
    let s0 = m.add(a, &[1.0], 5).unwrap().id; // older
    let s1 = m.add(b, &[-1.0], 7).unwrap().id; // newest
    let s2 = m.add(a, &[1.0], 6).unwrap().id;
    let s3 = m.add(b, &[-1.0], 6).unwrap().id; // same time as s2, higher id
    let s4 = m.add(a, &[0.5], 0).unwrap().id;
    let mut p = Prediction::with_capacity(4);
    m.predict(&[0.0], &mut p).unwrap();
    let ids: Vec<SampleId> = p.neighbors.iter().map(|n| n.id).collect();
    // Nearest, then distance ties: newest first, then lower id; s0 drops out.
    assert_eq!(ids, vec![s4, s1, s2, s3]);
    assert!(!ids.contains(&s0));
    assert_eq!(p.neighbors[0].distance, 0.5);
    assert!(close(p.mean_distance, (0.5 + 3.0) / 4.0, 1e-6));
    // Votes 2:2: the class of the nearest neighbour wins.
    assert_eq!(p.label, Some(a));
    assert_eq!(p.vote_share, 0.5);
}

#[test]
fn class_tie_goes_to_the_nearer_then_newer_class() {
    let mut m = knn(1, 2, 10, Eviction::Fifo);
    let a = m.intern_label("a").unwrap();
    let b = m.intern_label("b").unwrap();
    m.add(a, &[2.0], 9).unwrap();
    m.add(b, &[-2.0], 10).unwrap();
    let mut p = Prediction::with_capacity(2);
    m.predict(&[0.0], &mut p).unwrap();
    assert_eq!(p.label, Some(b), "equal distance: the newer sample's class");
    m.predict(&[0.1], &mut p).unwrap();
    assert_eq!(p.label, Some(a), "nearer class wins a vote tie");
}

#[test]
fn vote_share_divides_by_neighbours_found() {
    let mut m = knn(1, 5, 10, Eviction::Fifo);
    let a = m.intern_label("a").unwrap();
    let b = m.intern_label("b").unwrap();
    m.add(a, &[1.0], 0).unwrap();
    m.add(b, &[3.0], 0).unwrap();
    let mut p = Prediction::with_capacity(5);
    m.predict(&[0.0], &mut p).unwrap();
    assert_eq!(p.k_effective(), 2);
    assert_eq!(p.label, Some(a));
    assert_eq!(p.vote_share, 0.5, "1 of 2 neighbours, not 1 of k = 5");
    assert_eq!(p.confidence, p.vote_share);
    let (wa, wb) = (1.0 / (1.0 + WEIGHT_EPSILON), 1.0 / (3.0 + WEIGHT_EPSILON));
    assert!(close(p.weighted_share, f64::from(wa / (wa + wb)), 1e-6));
    assert!(close(p.weighted_share, 0.75, 1e-5));
    assert_eq!(p.mean_distance, 2.0);
}

#[test]
fn distance_weighted_vote_can_overrule_the_majority() {
    let mut m = Knn::new(
        1,
        KnnConfig {
            k: 3,
            vote: Vote::DistanceWeighted,
            ..KnnConfig::default()
        },
    )
    .unwrap();
    let a = m.intern_label("a").unwrap();
    let b = m.intern_label("b").unwrap();
    m.add(a, &[0.1], 0).unwrap();
    m.add(b, &[5.0], 0).unwrap();
    m.add(b, &[5.0], 0).unwrap();
    let mut p = Prediction::with_capacity(3);
    m.predict(&[0.0], &mut p).unwrap();
    assert_eq!(p.label, Some(a));
    assert!(close(p.vote_share, 1.0 / 3.0, 1e-6));
    let (wa, wb) = (1.0 / (0.1 + 1e-6), 1.0 / (5.0 + 1e-6));
    assert!(close(p.weighted_share, wa / (wa + 2.0 * wb), 1e-5));
    assert_eq!(p.confidence, p.weighted_share);
    // An exact match weighs 1/ε, finitely.
    m.predict(&[0.1], &mut p).unwrap();
    assert!(p.weighted_share.is_finite() && p.weighted_share > 0.99);
}

#[test]
fn fifo_evicts_the_oldest() {
    let mut m = knn(1, 1, 3, Eviction::Fifo);
    let a = m.intern_label("a").unwrap();
    let b = m.intern_label("b").unwrap();
    let s0 = m.add(a, &[0.0], 10).unwrap().id;
    let s1 = m.add(a, &[1.0], 5).unwrap().id; // oldest timestamp
    let s2 = m.add(b, &[2.0], 10).unwrap().id;
    let r = m.add(b, &[3.0], 11).unwrap();
    assert_eq!(r.evicted, Some(s1));
    // Timestamps 10, 10, 11: equal times go by lower id.
    assert_eq!(m.add(b, &[4.0], 12).unwrap().evicted, Some(s0));
    assert_eq!(m.add(b, &[5.0], 13).unwrap().evicted, Some(s2));
    assert_eq!(m.len(), 3);
    assert_eq!(m.class_count(a), 0);
    assert_eq!(m.class_count(b), 3);
}

#[test]
fn class_balanced_evicts_oldest_of_the_largest_class() {
    let mut m = knn(1, 1, 4, Eviction::ClassBalanced);
    let a = m.intern_label("a").unwrap();
    let b = m.intern_label("b").unwrap();
    let c = m.intern_label("c").unwrap();
    let a0 = m.add(a, &[0.0], 0).unwrap().id;
    let a1 = m.add(a, &[0.0], 1).unwrap().id;
    let b0 = m.add(b, &[0.0], 0).unwrap().id; // older than a1, but b is smaller
    let _a2 = m.add(a, &[0.0], 3).unwrap().id;
    // a has 3: its oldest goes, even though b0 is as old.
    assert_eq!(m.add(b, &[0.0], 4).unwrap().evicted, Some(a0));
    // a 2, b 2: tie between classes goes to the one holding the oldest (b0).
    assert_eq!(m.add(c, &[0.0], 5).unwrap().evicted, Some(b0));
    // a 2, b 1, c 1: a's oldest.
    assert_eq!(m.add(c, &[0.0], 6).unwrap().evicted, Some(a1));
    assert_eq!(
        [m.class_count(a), m.class_count(b), m.class_count(c)],
        [1, 1, 2]
    );
}

#[test]
fn add_and_remove_by_id() {
    let mut m = knn(2, 3, 10, Eviction::Fifo);
    let ids: Vec<SampleId> = (0..4)
        .map(|i| {
            m.add_named(if i % 2 == 0 { "x" } else { "y" }, &[i as f32, 0.0], i)
                .unwrap()
                .id
        })
        .collect();
    assert!(m.remove(ids[1]));
    assert!(!m.remove(ids[1]), "already removed");
    assert!(!m.remove(SampleId(99)));
    assert_eq!(m.len(), 3);
    assert!(m.sample(ids[1]).is_none());
    // The last row moved into the hole; it is intact.
    let s3 = m.sample(ids[3]).unwrap();
    assert_eq!(s3.features, &[3.0, 0.0]);
    assert_eq!(m.labels().name(s3.label), Some("y"));
    let mut p = Prediction::with_capacity(3);
    m.predict(&[1.0, 0.0], &mut p).unwrap();
    assert!(p.neighbors.iter().all(|n| n.id != ids[1]));
    let y = m.labels().get("y").unwrap();
    assert_eq!(m.class_count(y), 1);
    // Ids are never reused.
    assert_eq!(m.add(y, &[9.0, 9.0], 9).unwrap().id, SampleId(4));
    m.clear();
    assert!(m.is_empty());
    assert_eq!(m.class_count(y), 0);
}

#[test]
fn empty_knn_predicts_nothing() {
    let m = knn(3, 5, 10, Eviction::Fifo);
    let mut p = Prediction::with_capacity(5);
    m.predict(&[1.0, 2.0, 3.0], &mut p).unwrap();
    assert_eq!(p.label, None);
    assert_eq!(
        (p.confidence, p.mean_distance, p.k_effective()),
        (0.0, 0.0, 0)
    );
}

#[test]
fn bad_input_is_an_error() {
    let mut m = knn(3, 5, 10, Eviction::Fifo);
    let a = m.intern_label("a").unwrap();
    let mut p = Prediction::default();
    assert!(matches!(
        m.predict(&[1.0, 2.0], &mut p),
        Err(KnnError::Dimension {
            expected: 3,
            got: 2
        })
    ));
    assert!(matches!(
        m.predict(&[1.0, f32::NAN, 0.0], &mut p),
        Err(KnnError::NonFinite { index: 1 })
    ));
    assert!(m.add(a, &[f32::INFINITY, 0.0, 0.0], 0).is_err());
    assert!(matches!(
        m.add(LabelId(7), &[0.0; 3], 0),
        Err(KnnError::UnknownLabel(7))
    ));
    assert!(m.intern_label("").is_err());
    assert!(m.add_named(&"x".repeat(500), &[0.0; 3], 0).is_err());
    assert!(m.is_empty());
    for (k, max, dim) in [
        (0, 10, 3),
        (300, 10, 3),
        (5, 0, 3),
        (5, 10, 0),
        (5, 100_000, 8192),
    ] {
        let cfg = KnnConfig {
            k,
            max_samples: max,
            ..KnnConfig::default()
        };
        assert!(matches!(Knn::new(dim, cfg), Err(KnnError::Config(_))));
    }
}

#[test]
fn searches_reuse_the_result_buffer() {
    for metric in [Metric::Euclidean, Metric::Manhattan, Metric::Cosine] {
        let cfg = KnnConfig {
            k: 5,
            metric,
            max_samples: 50,
            ..KnnConfig::default()
        };
        let mut m = Knn::new(4, cfg).unwrap();
        for i in 0..50 {
            let v = [i as f32, (i % 7) as f32, 1.0, -(i as f32)];
            m.add_named(["p", "q", "r"][i % 3], &v, i as u64).unwrap();
        }
        let mut p = Prediction::with_capacity(5);
        let ptr = p.neighbors.as_ptr();
        for i in 0..20 {
            m.predict(&[i as f32, 1.0, 1.0, 0.5], &mut p).unwrap();
            assert_eq!(p.k_effective(), 5);
            assert!(
                p.neighbors
                    .windows(2)
                    .all(|w| w[0].distance <= w[1].distance)
            );
        }
        assert_eq!(ptr, p.neighbors.as_ptr(), "no reallocation across queries");
        // The distances reported are the metric's.
        let q = [3.0, 1.0, 1.0, 0.5];
        m.predict(&q, &mut p).unwrap();
        for n in &p.neighbors {
            let s = m.sample(n.id).unwrap();
            assert_eq!(n.distance, metric.distance(&q, s.features));
        }
    }
}

/// Small xorshift for the randomised checks below.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn search_equals_a_full_sort_on_random_data() {
    // Values on a coarse grid, so distance ties are frequent; timestamps
    // repeat, so the id rule is exercised too.
    let mut rng = Rng(0x5eed);
    for round in 0..60 {
        let metric = [Metric::Euclidean, Metric::Manhattan, Metric::Cosine][round % 3];
        let k = 1 + rng.below(7) as usize;
        let cfg = KnnConfig {
            k,
            metric,
            max_samples: 40,
            eviction: Eviction::Fifo,
            ..KnnConfig::default()
        };
        let mut m = Knn::new(3, cfg).unwrap();
        let n = rng.below(30) as usize;
        for _ in 0..n {
            let v: Vec<f32> = (0..3).map(|_| rng.below(3) as f32).collect();
            let label = ["a", "b", "c"][rng.below(3) as usize];
            m.add_named(label, &v, rng.below(4)).unwrap();
        }
        let q: Vec<f32> = (0..3).map(|_| rng.below(3) as f32).collect();
        let mut expected: Vec<_> = m
            .samples()
            .map(|s| (metric.distance(&q, s.features), s.timestamp, s.id))
            .collect();
        expected.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        expected.truncate(k);
        let mut p = Prediction::with_capacity(k);
        m.predict(&q, &mut p).unwrap();
        let got: Vec<_> = p
            .neighbors
            .iter()
            .map(|n| (n.distance, n.timestamp, n.id))
            .collect();
        assert_eq!(got, expected, "round {round}");
        if let Some(label) = p.label {
            let votes = p.neighbors.iter().filter(|n| n.label == label).count();
            assert!(p.neighbors.iter().all(|other| {
                p.neighbors
                    .iter()
                    .filter(|n| n.label == other.label)
                    .count()
                    <= votes
            }));
            assert_eq!(p.vote_share, votes as f32 / p.k_effective() as f32);
        }
    }
}

/// Neighbours, their order and their reported distances are exactly those of a full sort by
/// the metric's distance, whatever the memory's size and the vectors' length (lengths that are
/// not a multiple of the distance kernels' lane width, a removal that moved rows, an excluded
/// sample): a guard for any faster search kernel.
#[test]
fn blocked_search_equals_a_full_sort_at_every_size() {
    let mut rng = Rng(0xb10c);
    for round in 0..90 {
        let metric = [Metric::Euclidean, Metric::Manhattan, Metric::Cosine][round % 3];
        let dim = [1, 5, 8, 13, 37, 64][round % 6];
        let n = 1 + rng.below(40) as usize;
        let k = 1 + rng.below(7) as usize;
        let cfg = KnnConfig {
            k,
            metric,
            max_samples: 64,
            eviction: Eviction::Fifo,
            ..KnnConfig::default()
        };
        let mut m = Knn::new(dim, cfg).unwrap();
        let mut value = || rng.below(5) as f32 - 2.0;
        let mut ids = Vec::new();
        for i in 0..n {
            let v: Vec<f32> = (0..dim).map(|_| value()).collect();
            ids.push(
                m.add_named(["a", "b", "c"][i % 3], &v, i as u64 % 5)
                    .unwrap()
                    .id,
            );
        }
        if n > 9 {
            assert!(m.remove(ids[3]));
        }
        let q: Vec<f32> = (0..dim).map(|_| value()).collect();
        let exclude = m.samples().nth(n / 2).map(|s| s.id);
        let mut expected: Vec<_> = m
            .samples()
            .filter(|s| Some(s.id) != exclude)
            .map(|s| (metric.distance(&q, s.features), s.timestamp, s.id))
            .collect();
        expected.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        expected.truncate(k);
        let mut p = Prediction::with_capacity(k);
        match exclude {
            Some(id) => m.predict_excluding(&q, id, &mut p).unwrap(),
            None => m.predict(&q, &mut p).unwrap(),
        }
        let got: Vec<_> = p
            .neighbors
            .iter()
            .map(|n| (n.distance, n.timestamp, n.id))
            .collect();
        let bits = |v: &[(f32, u64, SampleId)]| {
            v.iter()
                .map(|(d, t, id)| (d.to_bits(), *t, *id))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            bits(&got),
            bits(&expected),
            "round {round}: {metric:?} {n}x{dim}"
        );
    }
}
