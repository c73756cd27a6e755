//! Every drift detector on seeded synthetic streams with known change points: bounded
//! detection delay, no false alarm on stationary input at the defaults, exactly one event per
//! onset, a second onset after recovery, false-alarm feedback, persistence and bad input.

mod drift_support;

use drift_support::{Stream, detector, feed, reference_len, stationary_len};
use tinylcm::drift::{DetectorKind, DetectorState, DriftError, LifecycleState, Observation, Phase};

/// Largest delay (samples after the change point) asserted per detector, for the drift
/// sizes of [`Stream`].
fn max_delay(kind: DetectorKind) -> u64 {
    match kind {
        DetectorKind::PageHinkleyDistance
        | DetectorKind::PageHinkleyConfidence
        | DetectorKind::Cusum
        | DetectorKind::EwmaConfidence => 40,
        DetectorKind::Embedding => 150,
        DetectorKind::Adwin | DetectorKind::Distribution => 300,
    }
}

/// Seeds per assertion (one under emulation, where qemu-aarch64 is ~20× slower).
const SEEDS: u64 = if cfg!(target_arch = "x86_64") { 3 } else { 1 };

#[test]
fn detects_the_change_within_the_stated_delay() {
    for kind in DetectorKind::ALL {
        for seed in 0..SEEDS {
            let mut d = detector(kind);
            let mut s = Stream::new(kind, seed);
            let before = reference_len() + 1000;
            assert!(feed(d.as_mut(), &mut s, false, before).is_empty(), "{kind}");
            assert_eq!(d.state(), Phase::Monitoring);
            let events = feed(d.as_mut(), &mut s, true, 1000);
            assert_eq!(events.len(), 1, "{kind} seed {seed}: {events:?}");
            let delay = events[0].at - before as u64;
            assert!(
                delay <= max_delay(kind),
                "{kind} seed {seed}: delay {delay} > {}",
                max_delay(kind)
            );
            let e = events[0];
            assert_eq!(e.detector, kind);
            assert!(e.statistic > e.threshold, "{e:?}");
            assert_eq!(e.sample_id, e.at, "ids follow the stream here");
        }
    }
}

#[test]
fn no_false_alarm_on_a_long_stationary_stream() {
    for kind in DetectorKind::ALL {
        for seed in 100..100 + SEEDS {
            let mut d = detector(kind);
            let mut s = Stream::new(kind, seed);
            let events = feed(
                d.as_mut(),
                &mut s,
                false,
                reference_len() + stationary_len(),
            );
            assert!(events.is_empty(), "{kind} seed {seed}: {events:?}");
        }
    }
}

#[test]
fn one_event_per_onset_while_drift_persists_and_again_after_recovery() {
    for kind in DetectorKind::ALL {
        let mut d = detector(kind);
        let mut s = Stream::new(kind, 7);
        feed(d.as_mut(), &mut s, false, reference_len() + 500);
        let first = feed(d.as_mut(), &mut s, true, 5000);
        assert_eq!(
            first.len(),
            1,
            "{kind}: persistent drift → one event: {first:?}"
        );
        assert_eq!(d.state(), Phase::Drift, "{kind}");
        assert!(feed(d.as_mut(), &mut s, false, 1500).is_empty(), "{kind}");
        assert_eq!(
            d.state(),
            Phase::Monitoring,
            "{kind}: left drift and cooldown"
        );
        let second = feed(d.as_mut(), &mut s, true, 1000);
        assert_eq!(second.len(), 1, "{kind}: second onset: {second:?}");
    }
}

#[test]
fn false_alarm_feedback_stops_the_same_condition_firing_again() {
    for kind in DetectorKind::ALL {
        let count = |feedback: bool| {
            let mut d = detector(kind);
            let mut s = Stream::new(kind, 11);
            feed(d.as_mut(), &mut s, false, reference_len() + 500);
            let mut events = 0;
            for _ in 0..3 {
                for drifted in [true, false] {
                    for _ in 0..1000 {
                        let sample = s.sample(drifted);
                        if let Some(e) = d.update(&sample.obs()) {
                            events += 1;
                            if feedback {
                                d.false_alarm(&e);
                            }
                        }
                    }
                }
            }
            events
        };
        let without = count(false);
        let with = count(true);
        assert_eq!(without, 3, "{kind}: each replay fires without feedback");
        assert_eq!(
            with, 1,
            "{kind}: after a false alarm the condition is accepted"
        );
    }
}

#[test]
fn confirmed_keeps_the_reference() {
    for kind in DetectorKind::ALL {
        let mut d = detector(kind);
        let mut s = Stream::new(kind, 13);
        feed(d.as_mut(), &mut s, false, reference_len() + 500);
        let e = feed(d.as_mut(), &mut s, true, 1000);
        d.confirmed(&e[0]);
        feed(d.as_mut(), &mut s, false, 1500);
        assert_eq!(feed(d.as_mut(), &mut s, true, 1000).len(), 1, "{kind}");
    }
}

fn through_toml(state: &DetectorState) -> DetectorState {
    let text = toml::to_string(state).expect("state serialises");
    toml::from_str(&text).expect("state deserialises")
}

#[test]
fn state_round_trips_mid_stream_and_continues_identically() {
    for kind in DetectorKind::ALL {
        // Mid-reference, monitoring, in drift (only the last under emulation).
        let points: &[(usize, usize)] = if cfg!(target_arch = "x86_64") {
            &[(200, 0), (600, 0), (600, 150)]
        } else {
            &[(600, 150)]
        };
        for &(normal, drifted) in points {
            let mut a = detector(kind);
            let mut s = Stream::new(kind, 17);
            feed(a.as_mut(), &mut s, false, normal);
            feed(a.as_mut(), &mut s, true, drifted);
            let mut b = detector(kind);
            b.load(through_toml(&a.save())).unwrap();
            assert_eq!(a.save(), b.save(), "{kind}");
            for i in 0..3000 {
                let sample = s.sample((1000..2000).contains(&i));
                assert_eq!(
                    a.update(&sample.obs()),
                    b.update(&sample.obs()),
                    "{kind} {i}"
                );
                assert_eq!(a.statistic(), b.statistic(), "{kind} {i}");
            }
            assert_eq!(a.save(), b.save(), "{kind}");
        }
    }
}

fn life_mut(state: &mut DetectorState) -> &mut LifecycleState {
    match state {
        DetectorState::PageHinkleyDistance(s) | DetectorState::PageHinkleyConfidence(s) => {
            &mut s.life
        }
        DetectorState::EwmaConfidence(s) => &mut s.life,
        DetectorState::Cusum(s) => &mut s.life,
        DetectorState::Distribution(s) => &mut s.life,
        DetectorState::Embedding(s) => &mut s.life,
        DetectorState::Adwin(s) => &mut s.life,
    }
}

#[test]
fn corrupt_state_is_rejected_and_changes_nothing() {
    for kind in DetectorKind::ALL {
        let mut d = detector(kind);
        let mut s = Stream::new(kind, 19);
        feed(d.as_mut(), &mut s, false, reference_len() + 100);
        let good = d.save();

        let mut bad = good.clone();
        life_mut(&mut bad).version = 99;
        assert!(
            matches!(d.load(bad), Err(DriftError::Version { .. })),
            "{kind}"
        );

        let mut bad = good.clone();
        life_mut(&mut bad).threshold_factor = f64::NAN;
        assert!(
            matches!(d.load(bad), Err(DriftError::Invalid { .. })),
            "{kind}"
        );

        let mut bad = good.clone();
        life_mut(&mut bad).phase = Phase::Reference;
        life_mut(&mut bad).in_phase = 1_000_000_000;
        assert!(
            matches!(d.load(bad), Err(DriftError::Invalid { .. })),
            "{kind}"
        );

        let other = if kind == DetectorKind::Cusum {
            DetectorKind::Adwin
        } else {
            DetectorKind::Cusum
        };
        assert!(
            matches!(
                detector(other).load(good.clone()),
                Err(DriftError::Kind { .. })
            ),
            "{kind}"
        );
        assert_eq!(
            d.save(),
            good,
            "{kind}: a refused load leaves the state alone"
        );
    }
}

#[test]
fn corrupt_buffers_are_rejected() {
    let mut d = detector(DetectorKind::Distribution);
    let mut s = Stream::new(DetectorKind::Distribution, 23);
    feed(d.as_mut(), &mut s, false, reference_len() + 10);
    let DetectorState::Distribution(mut st) = d.save() else {
        unreachable!()
    };
    st.counts[0] += 1;
    assert!(d.load(DetectorState::Distribution(st.clone())).is_err());
    st.counts[0] -= 1;
    st.window.truncate(5);
    assert!(d.load(DetectorState::Distribution(st)).is_err());

    let mut d = detector(DetectorKind::Embedding);
    let mut s = Stream::new(DetectorKind::Embedding, 23);
    feed(d.as_mut(), &mut s, false, reference_len() + 10);
    let DetectorState::Embedding(mut st) = d.save() else {
        unreachable!()
    };
    st.ewma.pop();
    assert!(d.load(DetectorState::Embedding(st)).is_err());

    let mut d = detector(DetectorKind::Adwin);
    let mut s = Stream::new(DetectorKind::Adwin, 23);
    feed(d.as_mut(), &mut s, false, reference_len() + 100);
    let DetectorState::Adwin(mut st) = d.save() else {
        unreachable!()
    };
    st.window.n += 1;
    assert!(d.load(DetectorState::Adwin(st)).is_err());
}

#[test]
fn bad_input_is_ignored_without_panic() {
    let short = [1.0f32; 3];
    let nan_emb = [f32::NAN; drift_support::DIM];
    for kind in DetectorKind::ALL {
        let mut d = detector(kind);
        let mut s = Stream::new(kind, 29);
        feed(d.as_mut(), &mut s, false, reference_len() + 100);
        let bad = [
            Observation {
                sample_id: 1,
                predicted: 9,
                num_classes: 4,
                confidence: f32::NAN,
                knn_distance: Some(f32::INFINITY),
                embedding: Some(&short),
            },
            Observation {
                sample_id: 2,
                predicted: 0,
                num_classes: 0,
                confidence: f32::NEG_INFINITY,
                knn_distance: None,
                embedding: Some(&nan_emb),
            },
            Observation {
                sample_id: 3,
                predicted: usize::MAX,
                num_classes: usize::MAX,
                confidence: f32::NAN,
                knn_distance: Some(f32::NAN),
                embedding: None,
            },
        ];
        let before = d.ignored();
        for o in &bad {
            assert_eq!(d.update(o), None, "{kind}");
        }
        assert_eq!(d.ignored(), before + 3, "{kind}");
        assert_eq!(d.state(), Phase::Monitoring, "{kind}");
        assert!(feed(d.as_mut(), &mut s, false, 500).is_empty(), "{kind}");
    }
}

#[test]
fn reset_clears_drift_and_cooldown() {
    for kind in DetectorKind::ALL {
        let mut d = detector(kind);
        let mut s = Stream::new(kind, 31);
        feed(d.as_mut(), &mut s, false, reference_len() + 200);
        assert_eq!(feed(d.as_mut(), &mut s, true, 500).len(), 1);
        d.reset();
        assert_eq!(d.state(), Phase::Reference, "{kind}");
        feed(d.as_mut(), &mut s, false, reference_len() + 200);
        assert_eq!(d.state(), Phase::Monitoring, "{kind}");
        assert_eq!(feed(d.as_mut(), &mut s, true, 1000).len(), 1, "{kind}");
    }
}

#[test]
fn late_false_alarm_accepts_the_recorded_condition() {
    for kind in DetectorKind::ALL {
        let mut d = detector(kind);
        let mut s = Stream::new(kind, 41);
        feed(d.as_mut(), &mut s, false, reference_len() + 500);
        let e = feed(d.as_mut(), &mut s, true, 1000);
        assert_eq!(e.len(), 1, "{kind}");
        feed(d.as_mut(), &mut s, false, 1500);
        assert_eq!(d.state(), Phase::Monitoring, "{kind}");
        // The verdict arrives long after the event (e.g. from the server).
        d.false_alarm(&e[0]);
        let again = feed(d.as_mut(), &mut s, true, 1000);
        assert!(again.is_empty(), "{kind}: {again:?}");
        assert!(feed(d.as_mut(), &mut s, false, 1000).is_empty(), "{kind}");
    }
}

#[test]
fn threshold_raises_stay_within_the_configured_bound() {
    for kind in DetectorKind::ALL {
        let mut d = detector(kind);
        let (_, base) = d.statistic();
        let mut s = Stream::new(kind, 43);
        feed(d.as_mut(), &mut s, false, reference_len() + 500);
        let e = feed(d.as_mut(), &mut s, true, 1000);
        for _ in 0..20 {
            d.false_alarm(&e[0]);
        }
        let (_, raised) = d.statistic();
        let max = tinylcm::drift::DriftConfig::default().max_threshold_factor;
        assert!(
            (raised - base * max).abs() < 1e-9,
            "{kind}: {base} → {raised}"
        );
        // Feedback for another detector's event changes nothing.
        let mut other = e[0];
        other.detector = if kind == DetectorKind::Cusum {
            DetectorKind::Adwin
        } else {
            DetectorKind::Cusum
        };
        let before = d.save();
        d.false_alarm(&other);
        assert_eq!(d.save(), before, "{kind}");
    }
}

#[test]
fn warm_up_samples_are_ignored_and_rolling_reference_follows_slow_change() {
    let config = tinylcm::drift::DriftConfig {
        warm_up: 50,
        reference_beta: 0.5,
        reference_interval: 50,
        ..Default::default()
    };
    let mut d = drift_support::detector_with(DetectorKind::PageHinkleyDistance, &config);
    assert_eq!(d.state(), Phase::WarmUp);
    let mut s = Stream::new(DetectorKind::PageHinkleyDistance, 47);
    feed(d.as_mut(), &mut s, false, 50);
    assert_eq!(d.state(), Phase::Reference);
    feed(d.as_mut(), &mut s, false, reference_len());
    assert_eq!(d.state(), Phase::Monitoring);
    // A slow ramp of +4 σ over 4 000 samples: the rolling reference (β 0.5 every 50
    // samples) follows it; a fixed reference would fire.
    let ramp = |d: &mut dyn tinylcm::drift::Detector, s: &mut Stream| {
        let mut events = 0;
        for i in 0..4000 {
            let mut x = s.sample(false);
            x.distance += (4.0 * i as f64 / 4000.0) as f32;
            events += usize::from(d.update(&x.obs()).is_some());
        }
        events
    };
    assert_eq!(ramp(d.as_mut(), &mut s), 0);
    // A step of +3 σ on top: one event, and the rolling update is paused in drift, so the
    // reference does not follow the drift away.
    let mut events = 0;
    for _ in 0..3000 {
        let mut x = s.sample(false);
        x.distance += 7.0;
        events += usize::from(d.update(&x.obs()).is_some());
    }
    assert_eq!(events, 1);
    assert_eq!(d.state(), Phase::Drift);
    let mut fixed = detector(DetectorKind::PageHinkleyDistance);
    let mut s = Stream::new(DetectorKind::PageHinkleyDistance, 47);
    feed(fixed.as_mut(), &mut s, false, reference_len());
    assert_eq!(ramp(fixed.as_mut(), &mut s), 1);
}
