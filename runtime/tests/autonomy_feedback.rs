//! Human feedback measured on a replayed stream: a lighting change that the detectors
//! report is marked a false alarm, and replaying the same change afterwards raises no
//! incident — while a device that got no feedback reports it again.

use tinylcm::assemble;
use tinylcm::autonomy::feedback::{Item, Verdict};
use tinylcm::autonomy::{Autonomy, EventKind, RuntimeEvent};
use tinylcm::config::Config;
use tinylcm::frame::synthetic::PhaseSpec;
use tinylcm::frame::{Phase, SourceKind};
use tinylcm::report::IncidentLog;
use tinylcm::state::Store;

#[path = "support/scenario.rs"]
mod scenario;

fn spec(phase: Phase, frames: u64) -> PhaseSpec {
    PhaseSpec { phase, frames }
}

fn config(dir: &std::path::Path, phases: Vec<PhaseSpec>, seed: u64) -> Config {
    let mut config = Config::default();
    config.source.kind = SourceKind::Synthetic;
    config.source.synthetic.phases = phases;
    config.source.synthetic.seed = seed;
    // Only the detectors matter here: no adaptation changing the KNN between runs.
    config.adaptation.enabled = false;
    assemble::state_in(&mut config, dir);
    config.validate().unwrap();
    config
}

/// Run `config` from the state in its folder; `before` may change the layer first.
fn run(config: &Config, before: impl FnOnce(&mut Autonomy)) -> IncidentLog {
    let mut log = IncidentLog::default();
    scenario::run(config, before, &mut log);
    log
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn a_false_alarm_verdict_silences_the_same_condition_on_replay() {
    if !cfg!(target_arch = "x86_64") {
        eprintln!("skipped under emulation: 2 400 frames take minutes with qemu");
        return;
    }
    let device = tempfile::tempdir().unwrap();
    let control = tempfile::tempdir().unwrap();
    let first = config(
        device.path(),
        vec![
            spec(Phase::Normal, 600),
            spec(Phase::Lighting, 200),
            spec(Phase::Normal, 400),
        ],
        1,
    );
    let log = run(&first, |_| {});
    assert_eq!(log.incidents.len(), 1, "{:?}", log.incidents);
    assert_eq!(log.incidents[0].phase.as_deref(), Some("lighting"));
    copy_dir(device.path(), control.path());

    // The incident's events, as the inbox would resolve `tinylcm feedback incident 1`.
    let store = Store::open(&first.state.path, first.state.policy()).unwrap();
    let events: Vec<(u64, RuntimeEvent)> = store.events_after(0, 1000).unwrap();
    drop(store);
    let verdicts: Vec<Item> = events
        .iter()
        .filter_map(|(_, e)| match e.kind {
            EventKind::Drift { incident: 1, event } => Some(Item::Drift {
                event,
                verdict: Verdict::FalseAlarm,
            }),
            _ => None,
        })
        .collect();
    assert!(!verdicts.is_empty());

    // The same condition again (another seed: other frames, same kind of change).
    let replay = vec![spec(Phase::Lighting, 200), spec(Phase::Normal, 400)];
    let with_feedback = run(&config(device.path(), replay.clone(), 2), |a| {
        for v in &verdicts {
            a.apply_feedback(v);
        }
        assert_eq!(a.counts().feedback, verdicts.len() as u64);
    });
    let without = run(&config(control.path(), replay, 2), |_| {});
    eprintln!(
        "incidents on the replayed lighting change: {} without feedback, {} after the false-alarm verdict",
        without.incidents.len(),
        with_feedback.incidents.len()
    );
    assert_eq!(without.incidents.len(), 1, "{:?}", without.incidents);
    assert_eq!(
        with_feedback.incidents.len(),
        0,
        "{:?}",
        with_feedback.incidents
    );
}
