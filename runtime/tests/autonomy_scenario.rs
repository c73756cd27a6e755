//! The autonomy layer on the real default model and the synthetic camera: each drift phase
//! of the default scenario opens exactly one incident near its onset, nothing fires on
//! normal frames, and what the layer learns survives a restart through the state store.

use std::sync::Arc;

use tinylcm::assemble;
use tinylcm::autonomy::{Autonomy, EventKind, InitialState, RuntimeEvent, persist};
use tinylcm::config::Config;
use tinylcm::drift::Phase as DetectorPhase;
use tinylcm::frame::synthetic::PhaseSpec;
use tinylcm::frame::{Phase, SourceKind};
use tinylcm::pipeline::runner::{FrameReport, Observer, RunSummary};
use tinylcm::report::IncidentLog;
use tinylcm::state::Store;

#[path = "support/scenario.rs"]
mod scenario;

fn config(dir: &std::path::Path, phases: Option<Vec<PhaseSpec>>) -> Config {
    let mut config = Config::default();
    config.source.kind = SourceKind::Synthetic;
    if let Some(phases) = phases {
        config.source.synthetic.phases = phases;
    }
    assemble::state_in(&mut config, dir);
    config.validate().unwrap();
    config
}

fn run(config: &Config, observer: &mut dyn Observer) -> (RunSummary, Autonomy) {
    scenario::run(config, |_| {}, observer)
}

/// The first frame of each phase, from the scenario.
fn phase_starts(phases: &[PhaseSpec]) -> Vec<(Phase, u64)> {
    let mut start = 1;
    phases
        .iter()
        .map(|p| {
            let s = (p.phase, start);
            start += p.frames;
            s
        })
        .collect()
}

#[test]
fn each_drift_phase_of_the_default_scenario_is_one_incident_at_its_onset() {
    if !cfg!(target_arch = "x86_64") {
        eprintln!("skipped under emulation: 2 800 frames take minutes with qemu");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), None);
    let phases = config.source.synthetic.phases.clone();
    let mut log = IncidentLog::default();
    let (summary, autonomy) = run(&config, &mut log);
    assert_eq!(summary.frames, phases.iter().map(|p| p.frames).sum::<u64>());

    let drifts: Vec<(Phase, u64)> = phase_starts(&phases)
        .into_iter()
        .filter(|(p, _)| *p != Phase::Normal)
        .collect();
    let table: Vec<String> = log
        .incidents
        .iter()
        .map(|r| {
            format!(
                "#{} {:?} {}..{:?} {}",
                r.id, r.phase, r.opened_at, r.closed_at, r.first.detector
            )
        })
        .collect();
    assert_eq!(log.incidents.len(), drifts.len(), "{table:#?}");
    for (record, (phase, start)) in log.incidents.iter().zip(&drifts) {
        assert_eq!(record.phase.as_deref(), Some(phase.as_str()), "{table:#?}");
        let delay = record.opened_at - start;
        assert!(
            delay <= 120,
            "{phase:?} detected {delay} frames late: {table:#?}"
        );
        assert!(
            record.closed_at.is_some(),
            "{phase:?} never recovered: {table:#?}"
        );
    }
    assert_eq!(autonomy.counts().incidents, drifts.len() as u64);
    // The model's accuracy on normal frames is not harmed by reporting the KNN's class.
    let (correct, total) = summary.outcomes.phase_accuracy("normal").unwrap();
    assert!(correct as f64 / total as f64 > 0.95, "{correct}/{total}");
}

/// Counts frames the KNN and the model agree on.
#[derive(Default)]
struct Agreement {
    same: u64,
    frames: u64,
}

impl Observer for Agreement {
    fn on_frame(&mut self, report: &FrameReport<'_>) {
        self.frames += 1;
        self.same += u64::from(report.label == report.prediction.label);
    }
}

fn normal(frames: u64) -> Option<Vec<PhaseSpec>> {
    Some(vec![PhaseSpec {
        phase: Phase::Normal,
        frames,
    }])
}

#[test]
fn the_shipped_initial_state_agrees_with_the_model_and_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let frames = if cfg!(target_arch = "x86_64") {
        400
    } else {
        120
    };
    let mut config = config(dir.path(), normal(frames));
    config.drift.reference_samples = 100;
    let mut agreement = Agreement::default();
    let (_, first) = run(&config, &mut agreement);
    assert!(
        agreement.same as f64 / agreement.frames as f64 > 0.95,
        "KNN and model agree on {}/{} normal frames",
        agreement.same,
        agreement.frames
    );
    let detectors_learnt = first
        .detectors()
        .detectors()
        .iter()
        .all(|d| d.state() == DetectorPhase::Monitoring);
    assert!(detectors_learnt);
    drop(first);

    // What was saved: the states under their names, the frame counter, no drift.
    let store = Arc::new(Store::open(&config.state.path, config.state.policy()).unwrap());
    assert_eq!(store.counter(persist::FRAMES_COUNTER).unwrap(), frames);
    assert_eq!(store.counter(persist::DRIFT_COUNTER).unwrap(), 0);
    let names = store.state_names().unwrap();
    for name in [persist::KNN, persist::DRIFT, persist::META] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} missing from {names:?}"
        );
    }
    drop(store);

    // A restart continues with learnt references instead of learning them again.
    let model = assemble::load_model(&config.model).unwrap();
    let pipeline = assemble::pipeline(&config, &model).unwrap();
    let store = assemble::store(&config).unwrap();
    let again = assemble::autonomy(&config, &model, &pipeline, Some(store)).unwrap();
    assert!(
        again
            .detectors()
            .detectors()
            .iter()
            .all(|d| d.state() == DetectorPhase::Monitoring)
    );
    assert_eq!(again.knn().unwrap().len(), 200);
}

#[test]
fn drift_events_land_in_the_event_log_with_their_incident() {
    if !cfg!(target_arch = "x86_64") {
        eprintln!(
            "skipped under emulation: the scenario's frames take minutes with qemu \
             (./scripts/test runtime runs this on x86_64)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(
        dir.path(),
        Some(vec![
            PhaseSpec {
                phase: Phase::Normal,
                frames: 400,
            },
            PhaseSpec {
                phase: Phase::Unseen,
                frames: 200,
            },
            PhaseSpec {
                phase: Phase::Normal,
                frames: 300,
            },
        ]),
    );
    config.drift.reference_samples = 200;
    let mut log = IncidentLog::default();
    let (_, autonomy) = run(&config, &mut log);
    assert_eq!(log.incidents.len(), 1, "{:?}", log.incidents);
    let onsets = autonomy.counts().onsets;
    drop(autonomy);
    let store = Store::open(&config.state.path, config.state.policy()).unwrap();
    let events: Vec<(u64, RuntimeEvent)> = store.events_after(0, 100).unwrap();
    let drift: Vec<_> = events
        .iter()
        .filter_map(|(_, e)| match &e.kind {
            EventKind::Drift { incident, event } => Some((*incident, *event)),
            _ => None,
        })
        .collect();
    assert_eq!(drift.len() as u64, onsets);
    assert!(drift.iter().all(|(incident, _)| *incident == 1));
    assert!(drift.iter().all(|(_, e)| e.statistic >= e.threshold));
    assert!(
        events
            .iter()
            .any(|(_, e)| matches!(&e.kind, EventKind::IncidentClosed { incident: 1, .. }))
    );
    assert_eq!(store.counter(persist::INCIDENTS_COUNTER).unwrap(), 1);
}

#[test]
fn an_initial_state_for_another_model_or_a_damaged_one_is_refused_clearly() {
    let model = tinylcm::model::builtin(tinylcm::config::BuiltinVariant::Int8).unwrap();
    let state = tinylcm::autonomy::initial::builtin(tinylcm::config::BuiltinVariant::F32).unwrap();
    let err = state
        .check_model("f32.state", &model.manifest.sha256)
        .unwrap_err()
        .to_string();
    assert!(err.contains("tinylcm init-state"), "{err}");

    let mut bytes = state.to_bytes().unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let err = InitialState::from_bytes("x.state", &bytes)
        .unwrap_err()
        .to_string();
    assert!(err.contains("checksum"), "{err}");
    let err = InitialState::from_bytes("x.state", &bytes[..100])
        .unwrap_err()
        .to_string();
    assert!(err.contains("x.state"), "{err}");
    let foreign = [b"TLCMFEAT".as_slice(), &[0u8; 64]].concat();
    let err = InitialState::from_bytes("x.state", &foreign)
        .unwrap_err()
        .to_string();
    assert!(err.contains("magic"), "{err}");
}
