//! KNN state round trip and rejection of corrupt state; the initial state
//! builder and its leave-one-out reference statistics.

use tinylcm::knn::{
    Eviction, InitialOptions, Knn, KnnConfig, KnnError, KnnState, Metric, Prediction,
    STATE_VERSION, SampleId, Vote, build_initial, build_initial_from_folder,
};

fn sample_knn() -> Knn {
    let mut m = Knn::new(
        3,
        KnnConfig {
            k: 3,
            metric: Metric::Cosine,
            max_samples: 6,
            eviction: Eviction::Fifo,
            vote: Vote::DistanceWeighted,
        },
    )
    .unwrap();
    for i in 0..8u64 {
        let v = [i as f32, 1.0 - i as f32 * 0.5, 0.25];
        m.add_named(["a", "b", "c"][i as usize % 3], &v, 100 + i)
            .unwrap();
    }
    m.remove(SampleId(4));
    m
}

#[test]
fn state_round_trips_through_serde() {
    let m = sample_knn();
    let text = toml::to_string(&m.to_state()).unwrap();
    let state: KnnState = toml::from_str(&text).unwrap();
    assert_eq!(state.version, STATE_VERSION);
    let mut back = Knn::from_state(state).unwrap();
    assert_eq!(back, m);
    let (mut p, mut q) = (Prediction::default(), Prediction::default());
    m.predict(&[1.0, 0.0, 0.5], &mut p).unwrap();
    back.predict(&[1.0, 0.0, 0.5], &mut q).unwrap();
    assert_eq!(p, q);
    // Ids continue after a reload.
    assert_eq!(back.add_named("a", &[0.0; 3], 0).unwrap().id, SampleId(8));
}

fn rejected(edit: impl FnOnce(&mut KnnState)) -> String {
    let mut state = sample_knn().to_state();
    edit(&mut state);
    match Knn::from_state(state) {
        Err(e @ (KnnError::InvalidState(_) | KnnError::Config(_) | KnnError::Label(_))) => {
            e.to_string()
        }
        other => panic!("accepted or wrong error: {other:?}"),
    }
}

#[test]
fn corrupt_state_is_rejected() {
    assert!(rejected(|s| s.version = 2).contains("version 2"));
    assert!(rejected(|s| s.config.k = 0).contains("k = 0"));
    assert!(rejected(|s| s.dim = 0).contains("dimensionality"));
    assert!(
        rejected(|s| {
            s.features.pop();
        })
        .contains("feature values")
    );
    assert!(
        rejected(|s| {
            s.timestamps.pop();
        })
        .contains("lengths must match")
    );
    assert!(
        rejected(|s| {
            s.sample_labels.push(0);
        })
        .contains("lengths must match")
    );
    assert!(rejected(|s| s.features[4] = f32::NAN).contains("NaN"));
    assert!(rejected(|s| s.features[0] = f32::INFINITY).contains("inf"));
    assert!(rejected(|s| s.sample_labels[0] = 3).contains("label index 3"));
    assert!(rejected(|s| s.sample_ids[1] = s.sample_ids[0]).contains("duplicate"));
    assert!(rejected(|s| s.next_id = 3).contains("next-id"));
    assert!(rejected(|s| s.config.max_samples = 2).contains("max-samples"));
    assert!(rejected(|s| s.labels[1] = s.labels[0].clone()).contains("twice"));
}

#[test]
fn state_round_trips_through_postcard() {
    // The state store's binary encoding.
    let m = sample_knn();
    let bytes = postcard::to_stdvec(&m.to_state()).unwrap();
    let state: KnnState = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(Knn::from_state(state).unwrap(), m);
    assert!(postcard::from_bytes::<KnnState>(&bytes[..bytes.len() / 2]).is_err());
}

#[test]
fn unknown_fields_are_rejected() {
    let text = toml::to_string(&sample_knn().to_state()).unwrap();
    let extra = format!("surprise = 1\n{text}");
    assert!(toml::from_str::<KnnState>(&extra).is_err());
}

/// 1-d samples of a class at the given positions.
fn class(label: &str, xs: &[f32]) -> Vec<(String, Vec<f32>)> {
    xs.iter().map(|&x| (label.to_string(), vec![x])).collect()
}

fn options(k: usize, max_samples: usize, per_class: usize) -> InitialOptions {
    InitialOptions {
        config: KnnConfig {
            k,
            max_samples,
            ..KnnConfig::default()
        },
        per_class,
        timestamp: 0,
    }
}

#[test]
fn reference_excludes_self_matches() {
    // Two samples per class, 1 apart; with k = 1 each sample's nearest
    // other sample is its partner. With self-matches the mean would be 0.
    let mut samples = class("a", &[0.0, 1.0]);
    samples.extend(class("b", &[100.0, 102.0]));
    let init = build_initial(samples, &options(1, 10, 10)).unwrap();
    assert_eq!(init.knn.len(), 4);
    let r = &init.reference;
    assert_eq!((r.k, r.metric), (1, Metric::Euclidean));
    assert_eq!(r.overall.count, 4);
    assert_eq!(r.overall.mean, 1.5);
    assert_eq!((r.overall.min, r.overall.max), (1.0, 2.0));
    assert_eq!(r.overall.std, 0.5);
    let b = &r.per_class[1];
    assert_eq!((b.label.as_str(), b.stored), ("b", 2));
    assert_eq!(
        (b.distance.mean, b.distance.std, b.distance.count),
        (2.0, 0.0, 2)
    );
}

#[test]
fn selection_is_class_balanced_and_evenly_spaced() {
    let xs: Vec<f32> = (0..10).map(|i| i as f32).collect();
    let mut samples = class("many", &xs);
    samples.extend(class("few", &[50.0, 51.0]));
    let init = build_initial(samples, &options(1, 100, 5)).unwrap();
    let knn = &init.knn;
    let many = knn.labels().get("many").unwrap();
    let few = knn.labels().get("few").unwrap();
    assert_eq!((knn.class_count(many), knn.class_count(few)), (5, 2));
    let mut kept: Vec<f32> = knn
        .samples()
        .filter(|s| s.label == many)
        .map(|s| s.features[0])
        .collect();
    kept.sort_by(f32::total_cmp);
    assert_eq!(kept, vec![0.0, 2.0, 4.0, 6.0, 8.0]);
    // Every input is measured: stored ones leave-one-out (nearest other
    // stored sample 2 away), the others normally (1 away).
    let s = &init.reference.per_class[0].distance;
    assert_eq!(s.count, 10);
    assert_eq!(s.mean, (5.0 * 2.0 + 5.0 * 1.0) / 10.0);
    // The cap shrinks so all classes fit into max_samples.
    let mut samples = class("x", &xs);
    samples.extend(class("y", &xs));
    let init = build_initial(samples, &options(3, 6, 10)).unwrap();
    assert_eq!(init.knn.len(), 6);
}

#[test]
fn initial_state_errors() {
    assert!(matches!(
        build_initial(Vec::new(), &options(1, 10, 5)),
        Err(KnnError::Initial(_))
    ));
    let mixed = vec![
        ("a".to_string(), vec![0.0]),
        ("a".to_string(), vec![0.0, 1.0]),
    ];
    assert!(matches!(
        build_initial(mixed, &options(1, 10, 5)),
        Err(KnnError::Dimension { .. })
    ));
    assert!(matches!(
        build_initial(class("a", &[0.0, 1.0]), &options(1, 10, 0)),
        Err(KnnError::Initial(_))
    ));
    let mut three = class("a", &[0.0]);
    three.extend(class("b", &[0.0]));
    three.extend(class("c", &[0.0]));
    assert!(matches!(
        build_initial(three, &options(1, 2, 5)),
        Err(KnnError::Initial(_))
    ));
}

#[test]
fn initial_state_from_a_labelled_folder() {
    let dir = tempfile::tempdir().unwrap();
    for (label, shades) in [("dark", [10u8, 20, 30]), ("light", [200, 220, 240])] {
        std::fs::create_dir(dir.path().join(label)).unwrap();
        for (i, s) in shades.iter().enumerate() {
            let img = image::RgbImage::from_pixel(4, 4, image::Rgb([*s, *s, *s]));
            img.save(dir.path().join(label).join(format!("{i}.png")))
                .unwrap();
        }
    }
    // An image outside a class folder is skipped.
    image::RgbImage::new(4, 4)
        .save(dir.path().join("loose.png"))
        .unwrap();
    let embed = |f: &tinylcm::frame::Frame| -> Result<Vec<f32>, String> {
        Ok(vec![
            f.data.iter().map(|&b| f32::from(b)).sum::<f32>() / f.data.len() as f32,
        ])
    };
    let init = build_initial_from_folder(dir.path(), &options(1, 10, 10), embed).unwrap();
    assert_eq!(init.knn.len(), 6);
    let names: Vec<&str> = init
        .reference
        .per_class
        .iter()
        .map(|c| c.label.as_str())
        .collect();
    assert_eq!(names, ["dark", "light"]);
    assert_eq!(init.reference.per_class[0].distance.mean, 10.0);
    assert!((init.reference.per_class[1].distance.mean - 20.0).abs() < 1e-9);
    // The embedding function's error is passed on.
    let failing = |_: &tinylcm::frame::Frame| -> Result<Vec<f32>, String> { Err("boom".into()) };
    let err = build_initial_from_folder(dir.path(), &options(1, 10, 10), failing).unwrap_err();
    assert!(err.to_string().contains("boom"), "{err}");
}
