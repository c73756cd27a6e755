//! Heuristic adaptation on synthetic feature vectors with known structure: two known
//! classes in the KNN, and quarantined samples that are a shifted copy of one of them, new
//! compact groups far from both, a smear, a group in between, or uniform noise.

mod drift_support;

use std::time::Instant;

use drift_support::Rng;
use tinylcm::adapt::{
    AdaptError, AdaptationConfig, Baseline, Decision, Deferred, EventKind, Evidence, Guard,
    MAX_POINTS, Plan, ProxyMetrics, Reference, RollbackReason, Sample, Scene, Verdict, Why, apply,
    plan, plan_round,
};
use tinylcm::knn::{InitialOptions, Knn, KnnConfig, LabelId, Metric, Prediction, build_initial};

const DIM: usize = 32;

/// The known world: class centres and the KNN built from them.
struct World {
    rng: Rng,
    a: Vec<f32>,
    b: Vec<f32>,
    knn: Knn,
    reference: Reference,
}

fn gaussian(rng: &mut Rng, centre: &[f32], sigma: f64) -> Vec<f32> {
    centre
        .iter()
        .map(|&c| c + (sigma * rng.normal()) as f32)
        .collect()
}

fn blob(rng: &mut Rng, centre: &[f32], sigma: f64, n: usize) -> Vec<Vec<f32>> {
    (0..n).map(|_| gaussian(rng, centre, sigma)).collect()
}

/// A random centre: N(0, 4²) per dimension, so two centres are ~32 apart while samples of
/// one class (σ = 1) are ~8 apart.
fn centre(rng: &mut Rng) -> Vec<f32> {
    gaussian(rng, &[0.0; DIM], 4.0)
}

/// `from` moved by `length` in a random direction.
fn shifted(rng: &mut Rng, from: &[f32], length: f64) -> Vec<f32> {
    let dir = gaussian(rng, &[0.0; DIM], 1.0);
    let norm = dir.iter().map(|x| x * x).sum::<f32>().sqrt();
    from.iter()
        .zip(&dir)
        .map(|(&f, &d)| f + length as f32 * d / norm)
        .collect()
}

fn world(seed: u64) -> World {
    let mut rng = Rng::new(seed);
    let a = centre(&mut rng);
    let b = centre(&mut rng);
    let mut samples = Vec::new();
    for (label, c) in [("a", &a), ("b", &b)] {
        for v in blob(&mut rng, c, 1.0, 60) {
            samples.push((label.to_string(), v));
        }
    }
    let options = InitialOptions {
        config: KnnConfig {
            k: 5,
            max_samples: 200,
            ..KnnConfig::default()
        },
        per_class: 40,
        timestamp: 0,
    };
    let initial = build_initial(samples, &options).unwrap();
    let reference = Reference::from_stats(&initial.reference).unwrap();
    World {
        rng,
        a,
        b,
        knn: initial.knn,
        reference,
    }
}

/// The defaults, with the near and compactness bounds this synthetic world was calibrated
/// for (its shifted copies sit at 0.65–0.79 reference, class-like clusters at 0.80–0.89);
/// the defaults (0.5, 1.5) are calibrated on the default model's standardised embeddings,
/// whose known classes themselves measure 1.1–1.2.
fn config() -> AdaptationConfig {
    AdaptationConfig {
        enabled: true,
        near_factor: 1.0,
        compactness: 1.0,
        ..AdaptationConfig::default()
    }
}

/// Number the vectors from `first` as pending samples.
fn pending(vectors: &[Vec<f32>], first: u64) -> Vec<(u64, &[f32])> {
    vectors
        .iter()
        .enumerate()
        .map(|(i, v)| (first + i as u64, v.as_slice()))
        .collect()
}

fn decisions(p: &Plan) -> Vec<&Decision> {
    p.clusters.iter().map(|c| &c.decision).collect()
}

fn pseudo(label: &str) -> Decision {
    Decision::PseudoLabel {
        label: label.into(),
    }
}

fn new_class(label: &str) -> Decision {
    Decision::NewClass {
        label: label.into(),
    }
}

#[test]
fn shifted_cluster_is_pseudo_labelled_with_its_class() {
    let mut w = world(1);
    let centre = shifted(&mut w.rng, &w.a, 2.0);
    let samples = blob(&mut w.rng, &centre, 0.8, 40);
    let p = plan(&pending(&samples, 100), &w.knn, &w.reference, &config()).unwrap();
    assert_eq!(decisions(&p), vec![&pseudo("a")], "{p:#?}");
    let c = &p.clusters[0];
    assert!(c.members.len() + p.unclustered.len() == 40);
    assert!(c.members.len() >= 36, "{} members", c.members.len());
    assert_eq!(c.representatives.len(), 8);
    assert!(c.compactness < 1.0);
    let nearest = c.nearest.as_ref().unwrap();
    assert_eq!(nearest.label, "a");
    assert!(nearest.distance <= 1.0, "{nearest:?}");
    // Representatives are distinct members.
    let mut reps: Vec<u64> = c.representatives.iter().map(|r| r.sample).collect();
    reps.sort_unstable();
    reps.dedup();
    assert_eq!(reps.len(), 8);
    assert!(reps.iter().all(|r| c.members.contains(r)));
}

#[test]
fn far_clusters_become_new_classes_numbered_in_order() {
    let mut w = world(2);
    let (f1, f2) = (centre(&mut w.rng), centre(&mut w.rng));
    let mut samples = blob(&mut w.rng, &f1, 1.0, 40);
    samples.extend(blob(&mut w.rng, &f2, 1.0, 30));
    let p = plan(&pending(&samples, 0), &w.knn, &w.reference, &config()).unwrap();
    assert_eq!(
        decisions(&p),
        vec![&new_class("new-1"), &new_class("new-2")],
        "{p:#?}"
    );
    assert!(p.clusters[0].members.iter().all(|&id| id < 40));
    assert!(p.clusters[1].members.iter().all(|&id| id >= 40));
    for c in &p.clusters {
        assert!(c.nearest.as_ref().unwrap().distance > 2.0);
    }
    assert!(p.has_changes());
}

#[test]
fn one_new_object_split_in_two_clusters_is_one_new_class() {
    // Two tight groups 1.5 reference distances apart: DBSCAN keeps them apart, but the
    // second is near the class the first just proposed.
    let mut w = world(3);
    let f1 = centre(&mut w.rng);
    let f2 = shifted(&mut w.rng, &f1, 1.5 * w.reference.mean());
    let mut samples = blob(&mut w.rng, &f1, 0.3, 20);
    samples.extend(blob(&mut w.rng, &f2, 0.3, 20));
    let c = AdaptationConfig {
        near_factor: 1.9,
        far_factor: 2.0,
        ..config()
    };
    let p = plan(&pending(&samples, 0), &w.knn, &w.reference, &c).unwrap();
    assert_eq!(
        decisions(&p),
        vec![&new_class("new-1"), &pseudo("new-1")],
        "{p:#?}"
    );
    let mut knn = w.knn.clone();
    let applied = apply(&p, &mut knn, 1, 10, &ProxyMetrics::new(2)).unwrap();
    assert_eq!(applied.added.len(), 16);
    assert_eq!(knn.labels().len(), 3);
}

#[test]
fn taken_names_are_skipped_and_held_new_classes_count_against_the_limit() {
    let mut w = world(4);
    let far = centre(&mut w.rng);
    let elsewhere = centre(&mut w.rng);
    let first = gaussian(&mut w.rng, &elsewhere, 1.0);
    w.knn.add_named("new-1", &first, 1).unwrap();
    let samples = blob(&mut w.rng, &far, 1.0, 40);
    let p = plan(&pending(&samples, 0), &w.knn, &w.reference, &config()).unwrap();
    assert_eq!(decisions(&p), vec![&new_class("new-2")], "{p:#?}");

    let one = AdaptationConfig {
        max_new_classes: 1,
        ..config()
    };
    let p = plan(&pending(&samples, 0), &w.knn, &w.reference, &one).unwrap();
    assert_eq!(
        decisions(&p),
        vec![&Decision::Leave {
            why: Why::NewClassLimit { max: 1 }
        }]
    );
    assert!(!p.has_changes());
}

#[test]
fn max_new_classes_bounds_one_round() {
    let mut w = world(5);
    let (f1, f2) = (centre(&mut w.rng), centre(&mut w.rng));
    let mut samples = blob(&mut w.rng, &f1, 1.0, 30);
    samples.extend(blob(&mut w.rng, &f2, 1.0, 30));
    let c = AdaptationConfig {
        max_new_classes: 1,
        ..config()
    };
    let p = plan(&pending(&samples, 0), &w.knn, &w.reference, &c).unwrap();
    assert_eq!(
        decisions(&p),
        vec![
            &new_class("new-1"),
            &Decision::Leave {
                why: Why::NewClassLimit { max: 1 }
            }
        ]
    );
}

#[test]
fn uniform_noise_never_becomes_a_class() {
    for seed in 0..5 {
        let mut w = world(10 + seed);
        let samples: Vec<Vec<f32>> = (0..MAX_POINTS / 4)
            .map(|_| {
                (0..DIM)
                    .map(|_| (30.0 * w.rng.uniform() - 15.0) as f32)
                    .collect()
            })
            .collect();
        let p = plan(&pending(&samples, 0), &w.knn, &w.reference, &config()).unwrap();
        assert!(!p.has_changes(), "seed {seed}: {:#?}", decisions(&p));
        let clustered: usize = p.clusters.iter().map(|c| c.members.len()).sum();
        assert_eq!(clustered + p.unclustered.len(), samples.len());
    }
}

#[test]
fn a_smear_is_not_compact() {
    // Samples along a line from class a outwards (a gradual drift): neighbours link them
    // into one cluster, which is far too spread out to be a class.
    let mut w = world(6);
    let end = shifted(&mut w.rng, &w.a, 10.0 * w.reference.mean());
    let samples: Vec<Vec<f32>> = (0..80)
        .map(|i| {
            let t = i as f32 / 79.0;
            let point: Vec<f32> = w.a.iter().zip(&end).map(|(a, e)| a + t * (e - a)).collect();
            gaussian(&mut w.rng, &point, 0.3)
        })
        .collect();
    let p = plan(&pending(&samples, 0), &w.knn, &w.reference, &config()).unwrap();
    assert!(!p.has_changes(), "{p:#?}");
    assert!(
        p.clusters.iter().any(|c| matches!(
            c.decision,
            Decision::Leave {
                why: Why::NotCompact { .. }
            }
        )),
        "{:#?}",
        decisions(&p)
    );
}

#[test]
fn a_cluster_between_near_and_far_is_left() {
    let mut w = world(7);
    let centre = shifted(&mut w.rng, &w.b, 1.2 * w.reference.mean());
    let samples = blob(&mut w.rng, &centre, 0.8, 40);
    let p = plan(&pending(&samples, 0), &w.knn, &w.reference, &config()).unwrap();
    assert_eq!(p.clusters.len(), 1, "{p:#?}");
    let c = &p.clusters[0];
    let d = c.nearest.as_ref().unwrap().distance;
    assert_eq!(c.nearest.as_ref().unwrap().label, "b");
    assert_eq!(
        c.decision,
        Decision::Leave {
            why: Why::Ambiguous {
                distance: d,
                near: 1.0,
                far: 2.0
            }
        }
    );
}

#[test]
fn too_few_samples_change_nothing() {
    let mut w = world(8);
    let far = centre(&mut w.rng);
    // A tight group of 8 (below min-cluster-size 12) among scattered samples.
    let mut samples = blob(&mut w.rng, &far, 1.0, 8);
    samples.extend((0..24).map(|_| {
        let c = centre(&mut w.rng);
        gaussian(&mut w.rng, &c, 1.0)
    }));
    let p = plan(&pending(&samples, 0), &w.knn, &w.reference, &config()).unwrap();
    assert_eq!(
        decisions(&p),
        vec![&Decision::Leave {
            why: Why::TooSmall { size: 8, min: 12 }
        }],
        "{p:#?}"
    );
    assert_eq!(p.unclustered.len(), 24);

    // Fewer pending samples than min-pending: no round at all.
    let p = plan(&pending(&samples[..20], 0), &w.knn, &w.reference, &config()).unwrap();
    assert_eq!(
        p.deferred,
        Some(Deferred::TooFewPending {
            pending: 20,
            min: 30
        })
    );
    assert!(p.clusters.is_empty());
    assert_eq!(p.unclustered.len(), 20);

    let off = AdaptationConfig {
        enabled: false,
        ..AdaptationConfig::default()
    };
    let p = plan(&pending(&samples, 0), &w.knn, &w.reference, &off).unwrap();
    assert_eq!(p.deferred, Some(Deferred::Disabled));
}

/// Everything at once: a shifted copy of `a`, two new objects, noise.
fn mixed(w: &mut World) -> Vec<Vec<f32>> {
    let near = shifted(&mut w.rng, &w.a, 2.0);
    let (f1, f2) = (centre(&mut w.rng), centre(&mut w.rng));
    let mut groups = [
        blob(&mut w.rng, &near, 0.8, 40),
        blob(&mut w.rng, &f1, 1.0, 40),
        blob(&mut w.rng, &f2, 1.0, 40),
        (0..40)
            .map(|_| {
                (0..DIM)
                    .map(|_| (30.0 * w.rng.uniform() - 15.0) as f32)
                    .collect()
            })
            .collect(),
    ];
    // Interleave, as a quarantine would fill.
    let mut out = Vec::new();
    for i in 0..40 {
        for g in groups.iter_mut() {
            out.push(std::mem::take(&mut g[i]));
        }
    }
    out
}

#[test]
fn planning_is_deterministic() {
    let mut w = world(9);
    let samples = mixed(&mut w);
    let input = pending(&samples, 1000);
    let first = plan(&input, &w.knn, &w.reference, &config()).unwrap();
    let second = plan(&input, &w.knn, &w.reference, &config()).unwrap();
    assert_eq!(first, second);
    // A fresh world from the same seed gives the same plan too.
    let mut again = world(9);
    let samples_again = mixed(&mut again);
    let third = plan(
        &pending(&samples_again, 1000),
        &again.knn,
        &again.reference,
        &config(),
    )
    .unwrap();
    assert_eq!(first, third);
    assert_eq!(
        decisions(&first),
        vec![&pseudo("a"), &new_class("new-1"), &new_class("new-2")],
        "{first:#?}"
    );
}

#[test]
fn after_applying_the_knn_predicts_the_new_class() {
    let mut w = world(11);
    let far = centre(&mut w.rng);
    let samples = blob(&mut w.rng, &far, 1.0, 40);
    let p = plan(&pending(&samples, 500), &w.knn, &w.reference, &config()).unwrap();
    assert_eq!(decisions(&p), vec![&new_class("new-1")]);

    let mut knn = w.knn.clone();
    let before = ProxyMetrics::new(2);
    let applied = apply(&p, &mut knn, 7, 99, &before).unwrap();
    assert_eq!(applied.added.len(), 8);
    assert_eq!(knn.len(), w.knn.len() + 8);
    let new = knn.labels().get("new-1").unwrap();
    assert_eq!(knn.class_count(new), 8);
    for a in &applied.added {
        assert_eq!(a.label, "new-1");
        assert!((500..540).contains(&a.sample));
        assert_eq!(knn.sample(a.id).unwrap().timestamp, 99);
    }
    let [event] = applied.events.as_slice() else {
        panic!("one event per changed cluster: {:?}", applied.events);
    };
    assert_eq!((event.id, event.kind), (7, EventKind::NewClass));
    assert_eq!(event.label.as_deref(), Some("new-1"));
    assert_eq!(event.member_count, p.clusters[0].members.len());
    assert_eq!(event.added.len(), 8);
    assert!(event.after.is_none());

    let mut out = Prediction::with_capacity(5);
    for v in blob(&mut w.rng, &far, 1.0, 50) {
        knn.predict(&v, &mut out).unwrap();
        assert_eq!(out.label, Some(new));
    }
    // The known classes are still predicted.
    for (centre, name) in [(&w.a, "a"), (&w.b, "b")] {
        let v = gaussian(&mut w.rng, centre, 1.0);
        knn.predict(&v, &mut out).unwrap();
        assert_eq!(out.label, knn.labels().get(name));
    }
}

#[test]
fn pseudo_labels_grow_the_known_class() {
    let mut w = world(12);
    let near = shifted(&mut w.rng, &w.a, 2.0);
    let samples = blob(&mut w.rng, &near, 0.8, 40);
    let p = plan(&pending(&samples, 0), &w.knn, &w.reference, &config()).unwrap();
    let mut knn = w.knn.clone();
    let a = knn.labels().get("a").unwrap();
    let count = knn.class_count(a);
    let applied = apply(&p, &mut knn, 1, 5, &ProxyMetrics::new(2)).unwrap();
    assert_eq!(knn.class_count(a), count + 8);
    assert_eq!(applied.events[0].kind, EventKind::PseudoLabel);
}

#[test]
fn apply_refuses_a_stale_or_foreign_plan_and_changes_nothing() {
    let mut w = world(13);
    let far = centre(&mut w.rng);
    let samples = blob(&mut w.rng, &far, 1.0, 40);
    let p = plan(&pending(&samples, 0), &w.knn, &w.reference, &config()).unwrap();
    let mut knn = w.knn.clone();
    knn.add_named("new-1", &samples[0], 1).unwrap();
    let snapshot = knn.clone();
    let err = apply(&p, &mut knn, 1, 5, &ProxyMetrics::new(2)).unwrap_err();
    assert_eq!(err, AdaptError::LabelTaken("new-1".into()));
    assert_eq!(knn, snapshot);

    let mut other = Knn::new(DIM + 1, KnnConfig::default()).unwrap();
    let err = apply(&p, &mut other, 1, 5, &ProxyMetrics::new(2)).unwrap_err();
    assert!(matches!(err, AdaptError::Plan(_)), "{err}");

    let mut bad = p.clone();
    bad.clusters[0].representatives[3].features[2] = f32::NAN;
    let mut knn = w.knn.clone();
    let err = apply(&bad, &mut knn, 1, 5, &ProxyMetrics::new(2)).unwrap_err();
    assert!(
        matches!(err, AdaptError::NonFinite { index: 2, .. }),
        "{err}"
    );
    assert_eq!(knn, w.knn);
}

#[test]
fn bad_input_is_a_clear_error() {
    let w = world(14);
    let c = config();
    let good = vec![0.0f32; DIM];
    let short = vec![0.0f32; DIM - 1];
    let mut nan = vec![0.0f32; DIM];
    nan[5] = f32::NAN;
    let inf = vec![f32::INFINITY; DIM];

    let err = plan(&[], &w.knn, &w.reference, &c).unwrap_err();
    assert_eq!(err, AdaptError::Empty);
    let err = plan(&[(1, &good), (2, &short)], &w.knn, &w.reference, &c).unwrap_err();
    assert_eq!(
        err,
        AdaptError::Dimension {
            sample: 2,
            expected: DIM,
            got: DIM - 1
        }
    );
    assert!(err.to_string().contains("sample 2"), "{err}");
    let err = plan(&[(1, &good), (9, &nan)], &w.knn, &w.reference, &c).unwrap_err();
    assert_eq!(
        err,
        AdaptError::NonFinite {
            sample: 9,
            index: 5
        }
    );
    let err = plan(&[(3, &inf)], &w.knn, &w.reference, &c).unwrap_err();
    assert_eq!(
        err,
        AdaptError::NonFinite {
            sample: 3,
            index: 0
        }
    );
    let err = plan(&[(4, &good), (4, &good)], &w.knn, &w.reference, &c).unwrap_err();
    assert_eq!(err, AdaptError::DuplicateSample(4));
    let many: Vec<(u64, &[f32])> = (0..=MAX_POINTS as u64).map(|i| (i, &good[..])).collect();
    let err = plan(&many, &w.knn, &w.reference, &c).unwrap_err();
    assert_eq!(
        err,
        AdaptError::TooMany {
            got: MAX_POINTS + 1,
            max: MAX_POINTS
        }
    );

    let cosine = Reference::new(0.5, 0.1, Metric::Cosine).unwrap();
    let err = plan(&[(1, &good)], &w.knn, &cosine, &c).unwrap_err();
    assert!(matches!(err, AdaptError::MetricMismatch { .. }), "{err}");

    let broken = AdaptationConfig {
        far_factor: 0.5,
        ..config()
    };
    let err = plan(&[(1, &good)], &w.knn, &w.reference, &broken).unwrap_err();
    assert!(err.to_string().contains("adaptation.far-factor"), "{err}");

    assert!(Reference::new(f64::NAN, 1.0, Metric::Euclidean).is_err());
    assert!(Reference::new(0.0, 1.0, Metric::Euclidean).is_err());
}

/// Proxy-metric streams: before the adaptation confidence ~ N(0.9, 0.03), distance ~ the
/// reference, classes 0 and 1 alternating.
fn stream(rng: &mut Rng, reference: &Reference, confidence: f64, sigmas: f64) -> (f32, f32) {
    let c = (confidence + 0.03 * rng.normal()).clamp(0.0, 1.0) as f32;
    let d = (reference.mean() + reference.sigma() * (sigmas + rng.normal())).max(0.0) as f32;
    (c, d)
}

fn guarded(w: &mut World, confidence: f64, sigmas: f64, class: impl Fn(usize) -> usize) -> Verdict {
    let c = config();
    let mut baseline = Baseline::new(2, c.guard_frames);
    for i in 0..300 {
        let (conf, d) = stream(&mut w.rng, &w.reference, 0.9, 0.0);
        baseline.observe(conf, Some(d), i % 2);
    }
    let mut guard = Guard::new(baseline.metrics(), 3, &w.reference, &c).unwrap();
    for i in 0..c.guard_frames as usize - 1 {
        let (conf, d) = stream(&mut w.rng, &w.reference, confidence, sigmas);
        assert_eq!(guard.observe(conf, Some(d), class(i)), &Verdict::Pending);
    }
    let (conf, d) = stream(&mut w.rng, &w.reference, confidence, sigmas);
    let last = c.guard_frames as usize - 1;
    guard.observe(conf, Some(d), class(last)).clone()
}

fn reason(v: &Verdict) -> Option<RollbackReason> {
    match v {
        Verdict::Rollback { reason, .. } => Some(*reason),
        _ => None,
    }
}

#[test]
fn guard_keeps_a_stable_stream() {
    for seed in 0..5 {
        let mut w = world(20 + seed);
        // Stable, and also a new class (2) taking a third of the frames.
        let v = guarded(&mut w, 0.9, 0.0, |i| i % 2);
        assert!(matches!(v, Verdict::Keep(_)), "{v:?}");
        let v = guarded(&mut w, 0.88, 0.2, |i| i % 3);
        assert!(
            matches!(v, Verdict::Keep(ref m) if m.class_counts[2] == 50),
            "{v:?}"
        );
    }
}

#[test]
fn guard_rolls_back_on_confidence_collapse() {
    let mut w = world(30);
    let v = guarded(&mut w, 0.55, 0.0, |i| i % 2);
    assert_eq!(
        reason(&v),
        Some(RollbackReason::ConfidenceCollapse),
        "{v:?}"
    );
}

#[test]
fn guard_rolls_back_on_distance_growth() {
    let mut w = world(31);
    let v = guarded(&mut w, 0.9, 3.0, |i| i % 2);
    assert_eq!(reason(&v), Some(RollbackReason::DistanceGrowth), "{v:?}");
}

#[test]
fn guard_rolls_back_on_class_mix_explosion() {
    let mut w = world(32);
    let v = guarded(&mut w, 0.9, 0.0, |i| if i % 10 == 0 { 0 } else { 2 });
    assert_eq!(reason(&v), Some(RollbackReason::ClassMixExplosion), "{v:?}");
}

#[test]
fn a_whole_round_records_its_verdict() {
    let mut w = world(33);
    let far = centre(&mut w.rng);
    let samples = blob(&mut w.rng, &far, 1.0, 40);
    let c = config();
    let p = plan(&pending(&samples, 0), &w.knn, &w.reference, &c).unwrap();
    let mut before = ProxyMetrics::new(2);
    for i in 0..150 {
        before.observe(0.9, Some(w.reference.mean() as f32), i % 2);
    }
    let mut knn = w.knn.clone();
    let applied = apply(&p, &mut knn, 42, 1000, &before).unwrap();
    let mut guard = Guard::new(before.clone(), knn.labels().len(), &w.reference, &c).unwrap();
    assert!(applied.verdict_event(guard.verdict(), 1001).is_none());
    for _ in 0..c.guard_frames {
        guard.observe(0.3, Some(w.reference.mean() as f32), 2);
    }
    let event = applied.verdict_event(guard.verdict(), 2000).unwrap();
    assert_eq!(event.kind, EventKind::Rollback);
    assert_eq!(event.id, 42);
    assert_eq!(event.reason, Some(RollbackReason::ConfidenceCollapse));
    assert_eq!(
        event.added,
        applied.added.iter().map(|a| a.id).collect::<Vec<_>>()
    );
    assert_eq!(event.before, before);
    assert_eq!(event.after.as_ref().unwrap().frames, 150);
    // Events are plain serde values.
    let json = as_text(&event);
    assert!(
        json.contains("rollback") && json.contains("confidence-collapse"),
        "{json}"
    );
}

/// A serde value as TOML text (the crate has no JSON dependency; any format shows the
/// names).
fn as_text<T: serde::Serialize>(value: &T) -> String {
    toml::to_string(value).unwrap()
}

#[test]
fn measure_planning_cost() {
    // Printed, not asserted: performance is measured, never a pass/fail wall-clock bound.
    let mut w = world(40);
    let centres: Vec<Vec<f32>> = (0..5).map(|_| centre(&mut w.rng)).collect();
    let samples: Vec<Vec<f32>> = (0..500)
        .map(|i| gaussian(&mut w.rng, &centres[i % 5], 1.0))
        .collect();
    let input = pending(&samples, 0);
    let start = Instant::now();
    let p = plan(&input, &w.knn, &w.reference, &config()).unwrap();
    let elapsed = start.elapsed();
    println!(
        "plan of 500 × {DIM}-d: {elapsed:?} ({} clusters, {} changes)",
        p.clusters.len(),
        p.changes().count()
    );
}

/// Prints the numbers quoted in the module doc of `tinylcm::adapt` ("Measured behaviour"):
/// compactness and nearest-class distance of a near, a far and an in-between cluster over
/// 40 worlds. `cargo test -p tinylcm --test adapt -- --ignored --nocapture measure_margins`
#[test]
#[ignore]
fn measure_margins() {
    for seed in 0..40 {
        let mut w = world(seed);
        let near = shifted(&mut w.rng, &w.a, 2.0);
        let s1 = blob(&mut w.rng, &near, 0.8, 40);
        let p1 = plan(&pending(&s1, 0), &w.knn, &w.reference, &config()).unwrap();
        let far = centre(&mut w.rng);
        let s2 = blob(&mut w.rng, &far, 1.0, 30);
        let p2 = plan(&pending(&s2, 0), &w.knn, &w.reference, &config()).unwrap();
        let mid = shifted(&mut w.rng, &w.b, 1.2 * w.reference.mean());
        let s3 = blob(&mut w.rng, &mid, 0.8, 40);
        let p3 = plan(&pending(&s3, 0), &w.knn, &w.reference, &config()).unwrap();
        let f = |p: &Plan| {
            p.clusters
                .iter()
                .map(|c| {
                    format!(
                        "{}m c{:.2} d{:.2} {:?}",
                        c.members.len(),
                        c.compactness,
                        c.nearest.as_ref().map_or(0.0, |n| n.distance),
                        c.target()
                    )
                })
                .collect::<Vec<_>>()
                .join(" | ")
        };
        println!(
            "seed {seed} ref {:.2}±{:.2}: near[{}] far[{}] mid[{}]",
            w.reference.mean(),
            w.reference.sigma(),
            f(&p1),
            f(&p2),
            f(&p3)
        );
    }
}

/// Evidence of a sample admitted while the whole stream had moved (2 reference means) and
/// which aligning neither brought closer nor pushed away: a round of such samples is judged
/// scene-wide. Its aligned vote is unanimous for `label`.
fn scene_wide_evidence(reference: &Reference, label: LabelId) -> Evidence {
    Evidence {
        distance: 1.0,
        aligned_distance: 1.0,
        aligned_label: Some(label),
        aligned_share: 1.0,
        group: 1,
        stream_shift: (2.0 * reference.mean()) as f32,
        model_label: Some(label),
    }
}

/// A scene-wide round that also shows a new object (the unseen star under a shifted stream:
/// the stream's mean follows the object, so aligning cannot tell it from a nuisance): with
/// `wide-far-factor` the object's dense place far from every class becomes one new class and
/// none of its samples is pseudo-labelled as a known class; the shifted known samples are
/// still pseudo-labelled. Fails before this change: a scene-wide round never proposed a
/// class, and the object's samples were pseudo-labelled `a` by their aligned vote (what the
/// `wide-far-factor = 0` half asserts).
#[test]
fn a_new_object_in_a_scene_wide_round_becomes_one_class_when_wide_far_factor_is_set() {
    let mut w = world(11);
    let a = w.knn.labels().get("a").unwrap();
    let object = centre(&mut w.rng);
    let near_a = shifted(&mut w.rng, &w.a, 2.0);
    let mut vectors = blob(&mut w.rng, &object, 1.0, 40);
    vectors.extend(blob(&mut w.rng, &near_a, 0.8, 30));
    let samples: Vec<Sample<'_>> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| Sample {
            id: i as u64,
            features: v,
            evidence: Some(scene_wide_evidence(&w.reference, a)),
        })
        .collect();
    let original = |l: LabelId| l == a;

    let off = AdaptationConfig {
        wide_far_factor: 0.0,
        ..config()
    };
    let p = plan_round(&samples, &w.knn, &w.reference, &off, original).unwrap();
    assert!(matches!(p.scenes[..], [(1, Scene::Wide { .. })]), "{p:#?}");
    assert!(
        !decisions(&p)
            .iter()
            .any(|d| matches!(d, Decision::NewClass { .. }))
    );

    let on = AdaptationConfig {
        wide_far_factor: 2.5,
        ..config()
    };
    let p = plan_round(&samples, &w.knn, &w.reference, &on, original).unwrap();
    let new: Vec<_> = p
        .clusters
        .iter()
        .filter(|c| matches!(c.decision, Decision::NewClass { .. }))
        .collect();
    assert_eq!(new.len(), 1, "{p:#?}");
    assert_eq!(new[0].decision, new_class("new-1"));
    assert!(new[0].members.iter().all(|&id| id < 40), "{p:#?}");
    assert!(
        new[0].members.len() >= 36,
        "{} members",
        new[0].members.len()
    );
    for c in p.clusters.iter().filter(|c| c.decision == pseudo("a")) {
        assert!(
            c.members.iter().all(|&id| id >= 40),
            "object samples pseudo-labelled: {c:#?}"
        );
    }
    assert!(
        p.clusters.iter().any(|c| c.decision == pseudo("a")),
        "{p:#?}"
    );
}

/// A new object that aligning does not push away (the stream's mean follows it) looks like a
/// scene-wide change, and its samples' aligned votes name a known class — but the model's own
/// head names another one. With `scene-agreement` such a change is planned as local: the
/// object becomes one new class and none of it is pseudo-labelled by its vote, while a
/// change on which head and vote agree stays scene-wide. Fails before this change: there was
/// no second view, the round was judged scene-wide and the object's samples were
/// pseudo-labelled `a` (what the `scene-agreement = 0` half asserts).
#[test]
fn a_change_the_models_head_disputes_is_planned_as_local_when_scene_agreement_is_set() {
    let mut w = world(12);
    let a = w.knn.labels().get("a").unwrap();
    let b = w.knn.labels().get("b").unwrap();
    let object = centre(&mut w.rng);
    let vectors = blob(&mut w.rng, &object, 1.0, 40);
    // The aligned vote says `a` unanimously; the head says `b` for three samples in four.
    let evidence = |i: usize| Evidence {
        model_label: Some(if i.is_multiple_of(4) { a } else { b }),
        ..scene_wide_evidence(&w.reference, a)
    };
    let samples: Vec<Sample<'_>> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| Sample {
            id: i as u64,
            features: v,
            evidence: Some(evidence(i)),
        })
        .collect();
    let original = |l: LabelId| l == a || l == b;

    // Every other second view off, so only `scene-agreement` differs.
    let off = AdaptationConfig {
        scene_agreement: 0.0,
        pseudo_label_head_agreement: false,
        pseudo_label_displacement: false,
        wide_far_factor: 0.0,
        ..config()
    };
    let p = plan_round(&samples, &w.knn, &w.reference, &off, original).unwrap();
    assert!(matches!(p.scenes[..], [(1, Scene::Wide { .. })]), "{p:#?}");
    assert!(decisions(&p).contains(&&pseudo("a")), "{p:#?}");

    let on = AdaptationConfig {
        scene_agreement: 0.6,
        ..off.clone()
    };
    let p = plan_round(&samples, &w.knn, &w.reference, &on, original).unwrap();
    assert!(
        matches!(p.scenes[..], [(1, Scene::Disputed { agreement, .. })] if (agreement - 0.25).abs() < 1e-9),
        "{p:#?}"
    );
    // One class (a split object's second cluster joins it), nothing pseudo-labelled `a`.
    let ds = decisions(&p);
    assert!(ds.contains(&&new_class("new-1")), "{p:#?}");
    assert!(
        ds.iter().all(|d| **d == new_class("new-1")
            || **d == pseudo("new-1")
            || matches!(d, Decision::Leave { .. })),
        "{p:#?}"
    );

    // Head and vote agreeing on every sample: still scene-wide, still pseudo-labelled.
    let agreed: Vec<Sample<'_>> = samples
        .iter()
        .map(|s| Sample {
            evidence: Some(scene_wide_evidence(&w.reference, a)),
            ..*s
        })
        .collect();
    let p = plan_round(&agreed, &w.knn, &w.reference, &on, original).unwrap();
    assert!(matches!(p.scenes[..], [(1, Scene::Wide { .. })]), "{p:#?}");
    assert!(decisions(&p).contains(&&pseudo("a")), "{p:#?}");
}

/// A model without a class head (embedding only) gives no sample a head class: with
/// `pseudo-label-head-agreement` on (the default) its scene-wide rounds are still
/// pseudo-labelled by the aligned vote alone. Fails before this change: the head check left
/// out every sample without a head class, so such a model never learnt a nuisance.
#[test]
fn a_model_without_a_head_pseudo_labels_by_the_vote_alone() {
    let mut w = world(13);
    let a = w.knn.labels().get("a").unwrap();
    let near_a = shifted(&mut w.rng, &w.a, 0.5);
    let vectors = blob(&mut w.rng, &near_a, 0.8, 30);
    let samples: Vec<Sample<'_>> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| Sample {
            id: i as u64,
            features: v,
            evidence: Some(Evidence {
                model_label: None,
                ..scene_wide_evidence(&w.reference, a)
            }),
        })
        .collect();
    let config = config();
    assert!(config.pseudo_label_head_agreement);
    let p = plan_round(&samples, &w.knn, &w.reference, &config, |l| l == a).unwrap();
    assert!(decisions(&p).contains(&&pseudo("a")), "{p:#?}");
}
