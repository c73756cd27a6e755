//! The synthetic scene: determinism, scenario phases, truth labels, export.

use tinylcm::frame::synthetic::{self, Phase, PhaseSpec, SceneClass, SyntheticConfig};
use tinylcm::frame::{Frame, FrameSource, SyntheticSource};

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn frames(cfg: SyntheticConfig, n: usize) -> Vec<Frame> {
    let mut src = SyntheticSource::new(cfg).unwrap();
    (0..n)
        .map(|_| {
            let mut f = Frame::default();
            assert!(src.next_frame(&mut f).unwrap());
            f
        })
        .collect()
}

fn all_phases(frames_each: u64) -> SyntheticConfig {
    SyntheticConfig {
        phases: Phase::ALL
            .iter()
            .map(|&phase| PhaseSpec {
                phase,
                frames: frames_each,
            })
            .collect(),
        ..SyntheticConfig::default()
    }
}

#[test]
fn same_seed_gives_identical_frames_and_other_seed_differs() {
    let a = frames(all_phases(3), 12);
    let b = frames(all_phases(3), 12);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.data, y.data);
        assert_eq!(x.truth, y.truth);
    }
    let c = frames(
        SyntheticConfig {
            seed: 2,
            ..all_phases(3)
        },
        12,
    );
    assert!(a.iter().zip(&c).all(|(x, y)| x.data != y.data));
}

/// Frames must be byte-identical on every platform (this test also runs under
/// qemu-aarch64). If the renderer changes on purpose, update the constant.
#[test]
fn golden_hash_is_platform_independent() {
    let mut h = 0u64;
    for f in frames(all_phases(2), 8) {
        h = h.rotate_left(5) ^ fnv1a(&f.data);
    }
    assert_eq!(h, GOLDEN, "golden hash changed: {h:#018x}");
}

const GOLDEN: u64 = 0x0726_d8a1_68ce_e98a;

#[test]
fn phases_and_truth_follow_the_scenario() {
    let cfg = SyntheticConfig {
        phases: vec![
            PhaseSpec {
                phase: Phase::Normal,
                frames: 40,
            },
            PhaseSpec {
                phase: Phase::Unseen,
                frames: 60,
            },
        ],
        width: 64,
        height: 48,
        ..SyntheticConfig::default()
    };
    let mut src = SyntheticSource::new(cfg).unwrap();
    let mut f = Frame::default();
    let mut stars = 0;
    let mut known = std::collections::HashSet::new();
    for i in 0..100u64 {
        assert!(src.next_frame(&mut f).unwrap());
        assert_eq!(f.sequence, i);
        assert_eq!((f.width, f.height, f.data.len()), (64, 48, 64 * 48 * 3));
        let t = f.truth.as_ref().unwrap();
        let label = t.label.as_deref().unwrap();
        let phase = t.phase.as_deref().unwrap();
        if i < 40 {
            assert_eq!(phase, "normal");
            assert_ne!(label, "star");
            known.insert(label.to_owned());
        } else {
            assert_eq!(phase, "unseen");
            stars += usize::from(label == "star");
        }
    }
    assert_eq!(known.len(), 4, "all known classes appear: {known:?}");
    assert!(
        (35..=58).contains(&stars),
        "most unseen frames show the star: {stars}"
    );
    assert!(!src.next_frame(&mut f).unwrap(), "a finite scenario ends");
}

#[test]
fn looping_scenario_never_ends() {
    let cfg = SyntheticConfig {
        phases: vec![PhaseSpec {
            phase: Phase::Noise,
            frames: 3,
        }],
        looping: true,
        width: 32,
        height: 32,
        ..SyntheticConfig::default()
    };
    let mut src = SyntheticSource::new(cfg).unwrap();
    let mut f = Frame::default();
    for _ in 0..10 {
        assert!(src.next_frame(&mut f).unwrap());
    }
    assert_eq!(f.sequence, 9);
}

#[test]
fn invalid_configs_are_refused_with_the_key() {
    let bad = [
        (
            SyntheticConfig {
                width: 0,
                ..Default::default()
            },
            "source.synthetic.width",
        ),
        (
            SyntheticConfig {
                height: 100_000,
                ..Default::default()
            },
            "source.synthetic.height",
        ),
        (
            SyntheticConfig {
                fps: f64::NAN,
                ..Default::default()
            },
            "source.synthetic.fps",
        ),
        (
            SyntheticConfig {
                phases: vec![],
                ..Default::default()
            },
            "source.synthetic.phases",
        ),
        (
            SyntheticConfig {
                phases: vec![PhaseSpec {
                    phase: Phase::Normal,
                    frames: 0,
                }],
                ..Default::default()
            },
            "source.synthetic.phases[0].frames",
        ),
    ];
    for (cfg, key) in bad {
        assert_eq!(cfg.validate().unwrap_err().key, key);
        assert!(SyntheticSource::new(cfg).is_err());
    }
    SyntheticConfig::default().validate().unwrap();
}

#[test]
fn config_parses_from_toml_kebab_case() {
    let cfg: SyntheticConfig = toml::from_str(
        r#"
        width = 160
        height = 120
        seed = 9
        fps = 15.0
        loop = true
        phases = [{ phase = "normal", frames = 10 }, { phase = "lighting", frames = 5 }]
        "#,
    )
    .unwrap();
    assert_eq!(
        (cfg.width, cfg.height, cfg.seed, cfg.fps),
        (160, 120, 9, 15.0)
    );
    assert!(cfg.looping);
    assert_eq!(cfg.phases[1].phase, Phase::Lighting);
    assert!(toml::from_str::<SyntheticConfig>("colour = 1").is_err());
}

#[test]
fn export_writes_class_folders_of_pngs() {
    let dir = tempdir("export");
    let s = synthetic::export_dataset(&dir, 3, 4, 48, 32, Phase::Normal).unwrap();
    assert_eq!(s.files, 12);
    assert_eq!(s.classes, SceneClass::KNOWN.to_vec());
    for class in ["empty", "ball", "box", "bar"] {
        for i in 0..3 {
            let p = dir.join(class).join(format!("{i:05}.png"));
            let img = image::open(&p).unwrap().to_rgb8();
            assert_eq!(img.dimensions(), (48, 32));
        }
    }
    assert!(!dir.join("star").exists());
    let unseen = tempdir("export-unseen");
    let s = synthetic::export_dataset(&unseen, 1, 4, 48, 32, Phase::Unseen).unwrap();
    assert_eq!(s.classes.len(), 5);
    // Same arguments, same pixels.
    let again = tempdir("export-again");
    synthetic::export_classes(&again, 3, 4, 48, 32, Phase::Normal, &[SceneClass::Ball]).unwrap();
    let a = image::open(dir.join("ball/00002.png")).unwrap().to_rgb8();
    let b = image::open(again.join("ball/00002.png")).unwrap().to_rgb8();
    assert_eq!(a, b);
    assert!(synthetic::export_dataset(&dir, 1, 4, 5, 32, Phase::Normal).is_err());
    assert!(synthetic::export_classes(&dir, 1, 4, 48, 32, Phase::Normal, &[]).is_err());
    for d in [dir, unseen, again] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "tinylcm-frame-synthetic-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}
