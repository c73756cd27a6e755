//! An operator's class rename (`[[class]] from, to`, sphere-lite's `class` feedback item) on
//! the real model and KNN: naming a class renames its samples in the KNN, naming it after a
//! class that exists merges the two, both survive a restart (the KNN state is saved with
//! them), and a rename of a class the KNN has no sample of is refused with a reason the
//! dashboard shows instead of being reported applied.

use tinylcm::assemble;
use tinylcm::autonomy::feedback::{ClassVerdict, Item, Outcome};
use tinylcm::config::Config;
use tinylcm::frame::synthetic::PhaseSpec;
use tinylcm::frame::{Phase, SourceKind};
use tinylcm::knn::Knn;
use tinylcm::report::IncidentLog;

#[path = "support/scenario.rs"]
mod scenario;

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.source.kind = SourceKind::Synthetic;
    config.source.synthetic.phases = vec![PhaseSpec {
        phase: Phase::Normal,
        frames: 3,
    }];
    config.adaptation.enabled = false;
    assemble::state_in(&mut config, dir);
    config.validate().unwrap();
    config
}

fn count(knn: &Knn, class: &str) -> usize {
    knn.labels().get(class).map_or(0, |l| knn.class_count(l))
}

fn rename(from: &str, to: &str) -> Item {
    Item::Class(ClassVerdict {
        from: from.into(),
        to: to.into(),
    })
}

/// Fails before this change: a rename of a class the KNN has no sample of was reported
/// applied (0 samples moved), so the dashboard showed a name as taken that the device never
/// used.
#[test]
fn a_class_is_renamed_then_merged_and_both_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let mut outcomes = Vec::new();
    let mut before = (Vec::new(), 0);
    scenario::run(
        &config,
        |a| {
            let knn = a.knn().expect("the default model has an initial state");
            let mut classes: Vec<(String, usize)> = knn
                .labels()
                .names()
                .iter()
                .map(|name| (name.clone(), count(knn, name)))
                .filter(|(_, n)| *n > 0)
                .collect();
            classes.sort();
            assert!(classes.len() >= 2, "{classes:?}");
            let total = knn.len();
            let (first, n_first) = classes[0].clone();
            let (second, n_second) = classes[1].clone();
            // Rename the first class "star", then merge "star" into the second.
            outcomes.push(a.apply_feedback(&rename(&first, "star")));
            let knn = a.knn().unwrap();
            assert_eq!((count(knn, &first), count(knn, "star")), (0, n_first));
            outcomes.push(a.apply_feedback(&rename("star", &second)));
            let knn = a.knn().unwrap();
            assert_eq!(count(knn, "star"), 0);
            assert_eq!(count(knn, &second), n_first + n_second);
            assert_eq!(knn.len(), total, "a rename adds or drops no sample");
            outcomes.push(a.apply_feedback(&rename("new-9", "kite")));
            outcomes.push(a.apply_feedback(&rename(&first, "kite")));
            before = (vec![first, second], n_first + n_second);
        },
        &mut IncidentLog::default(),
    );
    let [renamed, merged, unknown, again] = &outcomes[..] else {
        panic!("{outcomes:?}");
    };
    assert!(
        matches!(renamed, Outcome::Applied(Some(how)) if how.contains("renamed star")),
        "{renamed:?}"
    );
    assert!(
        matches!(merged, Outcome::Applied(Some(how)) if how.contains("merged into")),
        "{merged:?}"
    );
    for refused in [unknown, again] {
        assert!(
            matches!(refused, Outcome::Refused(why) if why.contains("no sample of class")),
            "{refused:?}"
        );
    }

    // A restart continues from the saved KNN: the merge is still there.
    let (classes, merged_count) = before;
    scenario::run(
        &config,
        |a| {
            let knn = a.knn().unwrap();
            assert_eq!(count(knn, &classes[0]), 0);
            assert_eq!(count(knn, "star"), 0);
            assert_eq!(count(knn, &classes[1]), merged_count);
        },
        &mut IncidentLog::default(),
    );
}
