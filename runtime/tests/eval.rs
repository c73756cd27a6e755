//! `tinylcm eval` end to end: a complete scorecard for a short synthetic scenario, the same
//! JSON from the same seeds, a user's replay folders (made with `tinylcm synth`) scored per
//! phase, and a clear refusal of a held-out folder without class sub-folders.

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use tinylcm::eval::{Confusion, Scorecard};

#[path = "support/cli.rs"]
mod support;

fn tinylcm(args: &[&str]) -> Output {
    support::tinylcm().args(args).output().expect("run tinylcm")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "tinylcm failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn phases(scorecard: &Value) -> Vec<(String, u64)> {
    scorecard["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["phase"].as_str().unwrap().to_string(),
                p["frames"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A short scenario gives a scorecard with every phase before and after, what learning did,
/// the raw counts and the spread; the same seeds give byte-identical JSON (the adaptation
/// plan is carried out at a fixed frame, so thread timing cannot change what is learnt).
#[test]
fn a_short_synthetic_scenario_gives_a_complete_and_reproducible_scorecard() {
    let dir = tempfile::tempdir().unwrap();
    let json = |name: &str| dir.path().join(name);
    // A quarter of the default scene's pixels: the same scenario, rendered in half the time.
    let config = dir.path().join("small.toml");
    std::fs::write(&config, "[source.synthetic]\nwidth = 160\nheight = 120\n").unwrap();
    let config = config.to_str().unwrap().to_string();
    let args = |file: &Path| {
        let file = file.to_str().unwrap().to_string();
        let config = config.clone();
        move || {
            tinylcm(&[
                "eval",
                "--config",
                &config,
                "--seeds",
                "1",
                "--order",
                "noise,unseen,lighting",
                "--phase-frames",
                "100",
                "--eval-frames",
                "30",
                "--json",
                &file,
            ])
        }
    };
    let stdout = ok(&args(&json("a.json"))());
    let report = read_json(&json("a.json"));

    assert_eq!(report["format"], 1);
    assert_eq!(
        report["known"],
        serde_json::json!(["empty", "ball", "box", "bar"])
    );
    assert_eq!(report["settings"]["source"], "synthetic");
    assert_eq!(report["settings"]["held_out_seed_offset"], 1000);
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run["seed"], 1);
    assert_eq!(run["held_out_seed"], 1001);
    assert_eq!(
        run["order"],
        serde_json::json!(["noise", "unseen", "lighting"])
    );
    // normal 300, then noise, unseen and lighting of 100 each with 200 normal frames after each.
    assert_eq!(run["learning"]["frames"], 1200);
    assert!(run["learning"]["knn_classes"]["ball"].as_u64().unwrap() > 0);
    let every_phase: Vec<(String, u64)> = ["normal", "lighting", "unseen", "noise"]
        .iter()
        .map(|p| (p.to_string(), 30))
        .collect();
    for side in ["before", "after"] {
        assert_eq!(phases(&run[side]), every_phase, "{side}");
        assert_eq!(run[side]["overall"]["frames"], 120, "{side}");
        assert!(run[side]["proposed"].is_array(), "{side}");
        assert!(run[side]["spurious"].is_u64(), "{side}");
        let counted: u64 = run[format!("{side}_counts")]["phases"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["counts"].as_object().unwrap().values())
            .flat_map(|row| row.as_object().unwrap().values())
            .map(|n| n.as_u64().unwrap())
            .sum();
        assert_eq!(counted, 120, "{side}");
    }
    // The unseen phase mostly shows the star, which the initial model cannot name.
    let unseen = &run["before"]["phases"][2];
    assert!(unseen["accuracy"].as_f64().unwrap() < 0.5, "{unseen}");
    let aggregate = &report["aggregate"];
    assert_eq!(aggregate["runs"], 1);
    assert_eq!(aggregate["phases"].as_array().unwrap().len(), 4);
    assert!(aggregate["phases"][0]["change"]["mean"].is_f64());
    for heading in [
        "before → after",
        "over 1 runs",
        "spurious classes:",
        "normal",
    ] {
        assert!(stdout.contains(heading), "{heading} missing:\n{stdout}");
    }

    ok(&args(&json("b.json"))());
    assert_eq!(
        std::fs::read(json("a.json")).unwrap(),
        std::fs::read(json("b.json")).unwrap(),
        "two runs of the same seeds scored differently"
    );
}

fn synth(out: &Path, phase: &str, seed: &str, classes: &str) {
    ok(&tinylcm(&[
        "synth",
        "--out",
        out.to_str().unwrap(),
        "--per-class",
        "6",
        "--seed",
        seed,
        "--phase",
        phase,
        "--classes",
        classes,
        "--width",
        "96",
        "--height",
        "72",
    ]));
}

/// A user's own folders: the learning stream replayed in file order, the held-out folder
/// scored per phase folder with the class folder names as the truth.
#[test]
fn replay_folders_are_scored_per_phase_folder() {
    let dir = tempfile::tempdir().unwrap();
    let learn = dir.path().join("learn");
    let held = dir.path().join("held-out");
    synth(&learn.join("a-normal"), "normal", "3", "empty,ball,box,bar");
    synth(&learn.join("b-noise"), "noise", "4", "empty,ball,box,bar");
    synth(&held.join("normal"), "normal", "5", "empty,ball,box,bar");
    synth(&held.join("unseen"), "unseen", "6", "star,ball");
    let file = dir.path().join("replay.json");
    let stdout = ok(&tinylcm(&[
        "eval",
        "--learn",
        learn.to_str().unwrap(),
        "--held-out",
        held.to_str().unwrap(),
        "--json",
        file.to_str().unwrap(),
    ]));
    let report = read_json(&file);
    assert_eq!(report["settings"]["source"], "replay");
    let run = &report["runs"][0];
    assert_eq!(run["learning"]["frames"], 48);
    assert_eq!(run["seed"], Value::Null);
    for side in ["before", "after"] {
        assert_eq!(
            phases(&run[side]),
            [("normal".to_string(), 24), ("unseen".to_string(), 12)],
            "{side}"
        );
    }
    // The truth is the folder name: the star cannot be named by a model that never saw one.
    let star = &run["before_counts"]["phases"][1]["counts"]["star"];
    assert_eq!(
        star.as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>(),
        6
    );
    assert!(stdout.contains("unseen"), "{stdout}");

    // Class folders straight under the held-out folder: one phase, "all".
    let flat = dir.path().join("flat.json");
    ok(&tinylcm(&[
        "eval",
        "--learn",
        learn.to_str().unwrap(),
        "--held-out",
        held.join("normal").to_str().unwrap(),
        "--json",
        flat.to_str().unwrap(),
    ]));
    let flat = read_json(&flat);
    assert_eq!(phases(&flat["runs"][0]["after"]), [("all".to_string(), 24)]);
}

/// A held-out folder of loose images has no truth: refused with the layout it needs, before
/// any learning run; `--learn` alone is a usage error.
#[test]
fn a_held_out_folder_without_class_folders_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let loose = dir.path().join("loose");
    synth(&dir.path().join("classes"), "normal", "1", "ball");
    std::fs::create_dir_all(&loose).unwrap();
    let one = std::fs::read_dir(dir.path().join("classes/ball"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(&one, loose.join("frame.png")).unwrap();
    let out = tinylcm(&[
        "eval",
        "--learn",
        dir.path().join("classes").to_str().unwrap(),
        "--held-out",
        loose.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no class sub-folders"), "{stderr}");
    assert!(stderr.contains("<held-out>/<class>/"), "{stderr}");
    assert!(stderr.contains("loose"), "{stderr}");

    let out = tinylcm(&["eval", "--learn", loose.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--held-out"));
}

/// The scoring rules through the public API: a proposed class standing for the new object
/// counts as right on that object's frames; a spurious one (a known object under a nuisance
/// shift) counts as wrong even on frames of its own majority object.
#[test]
fn scorecard_rules_on_hand_built_counts() {
    let known: Vec<String> = ["empty", "ball", "box", "bar"].map(String::from).to_vec();
    let mut c = Confusion::default();
    c.add("lighting", "empty", "new-1", 8);
    c.add("lighting", "empty", "empty", 2);
    c.add("unseen", "star", "new-2", 9);
    c.add("unseen", "star", "ball", 1);
    c.add("unseen", "box", "new-2", 1);
    let s = Scorecard::score(&c, &known, &[]);
    assert_eq!(s.spurious, 1);
    let lighting = s.phase("lighting").unwrap();
    assert_eq!((lighting.correct, lighting.frames), (2, 10));
    let unseen = s.phase("unseen").unwrap();
    assert_eq!((unseen.correct, unseen.frames), (9, 11));
    let new2 = s.proposed.iter().find(|p| p.label == "new-2").unwrap();
    assert_eq!(new2.majority.as_deref(), Some("star"));
    assert_eq!(new2.purity, Some(0.9));
    assert_eq!(new2.recall, Some(0.9));
    assert!(!new2.spurious);
}
