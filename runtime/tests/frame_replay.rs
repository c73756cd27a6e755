//! Directory replay: ordering, labels from folders, looping, bad files.

use std::path::{Path, PathBuf};

use tinylcm::frame::synthetic::{self, Phase};
use tinylcm::frame::{DirectoryConfig, DirectorySource, Frame, FrameError, FrameSource, OnError};

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tinylcm-frame-replay-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cfg(path: &Path) -> DirectoryConfig {
    DirectoryConfig {
        path: path.to_owned(),
        ..DirectoryConfig::default()
    }
}

fn drain(src: &mut DirectorySource) -> Vec<(Option<String>, u32, u32)> {
    let mut f = Frame::default();
    let mut out = Vec::new();
    while src.next_frame(&mut f).unwrap() {
        assert_eq!(f.sequence as usize, out.len());
        assert_eq!(f.data.len(), (f.width * f.height * 3) as usize);
        out.push((
            f.truth.as_ref().and_then(|t| t.label.clone()),
            f.width,
            f.height,
        ));
    }
    out
}

#[test]
fn labelled_folders_replay_in_name_order_with_labels() {
    let dir = tempdir("labelled");
    synthetic::export_dataset(&dir, 2, 1, 40, 30, Phase::Normal).unwrap();
    let mut src = DirectorySource::new(DirectoryConfig {
        labels_from_folders: true,
        ..cfg(&dir)
    })
    .unwrap();
    assert_eq!(src.len(), 8);
    let labels: Vec<String> = drain(&mut src)
        .into_iter()
        .map(|(l, w, h)| {
            assert_eq!((w, h), (40, 30));
            l.unwrap()
        })
        .collect();
    assert_eq!(
        labels,
        ["ball", "ball", "bar", "bar", "box", "box", "empty", "empty"]
    );
    assert!(src.describe().contains("8 images"));

    // Without labels-from-folders, the sub-folders are not searched.
    match DirectorySource::new(cfg(&dir)) {
        Err(FrameError::Open { reason, .. }) => {
            assert!(reason.contains("labels-from-folders"), "{reason}")
        }
        other => panic!("expected Open error, got {:?}", other.map(|s| s.len())),
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn flat_directory_has_no_labels_and_loops() {
    let dir = tempdir("flat");
    synthetic::export_dataset(&dir, 1, 1, 32, 32, Phase::Normal).unwrap();
    for class in ["ball", "box"] {
        std::fs::rename(
            dir.join(class).join("00000.png"),
            dir.join(format!("{class}.png")),
        )
        .unwrap();
    }
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
    let mut src = DirectorySource::new(DirectoryConfig {
        looping: true,
        ..cfg(&dir)
    })
    .unwrap();
    assert_eq!(src.len(), 2);
    let mut f = Frame::default();
    for i in 0..5 {
        assert!(src.next_frame(&mut f).unwrap());
        assert_eq!(f.sequence, i);
        assert!(f.truth.is_none());
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_or_empty_directory_is_an_open_error() {
    let missing = std::env::temp_dir().join("tinylcm-definitely-missing-dir");
    assert!(matches!(
        DirectorySource::new(cfg(&missing)),
        Err(FrameError::Open { .. })
    ));
    let empty = tempdir("empty");
    let err = DirectorySource::new(cfg(&empty)).err().unwrap();
    assert!(matches!(err, FrameError::Open { .. }));
    assert!(err.to_string().contains("no .jpg"), "{err}");
    assert!(matches!(
        DirectorySource::new(DirectoryConfig::default()),
        Err(FrameError::Open { .. })
    ));
    std::fs::remove_dir_all(empty).unwrap();
}

#[test]
fn corrupt_images_are_skipped_or_stop_with_the_file_name() {
    let dir = tempdir("corrupt");
    synthetic::export_classes(
        &dir,
        1,
        1,
        32,
        32,
        Phase::Normal,
        &[synthetic::SceneClass::Ball],
    )
    .unwrap();
    std::fs::rename(dir.join("ball/00000.png"), dir.join("b-good.png")).unwrap();
    std::fs::write(dir.join("a-bad.jpg"), b"\xFF\xD8\xFF\xE0 truncated").unwrap();
    std::fs::write(dir.join("c-bad.png"), b"\x89PNG\r\n\x1a\nnope").unwrap();

    let mut skip = DirectorySource::new(cfg(&dir)).unwrap();
    assert_eq!(drain(&mut skip).len(), 1);

    let mut stop = DirectorySource::new(DirectoryConfig {
        on_error: OnError::Stop,
        ..cfg(&dir)
    })
    .unwrap();
    let mut f = Frame::default();
    match stop.next_frame(&mut f) {
        Err(FrameError::Decode { what, .. }) => assert!(what.ends_with("a-bad.jpg"), "{what}"),
        other => panic!("expected Decode error, got {other:?}"),
    }
    assert!(stop.next_frame(&mut f).unwrap());
    assert!(
        matches!(stop.next_frame(&mut f), Err(FrameError::Decode { what, .. }) if what.ends_with("c-bad.png"))
    );
    assert!(!stop.next_frame(&mut f).unwrap());

    // A looping source whose every file is bad reports the error instead of spinning.
    std::fs::remove_file(dir.join("b-good.png")).unwrap();
    let mut all_bad = DirectorySource::new(DirectoryConfig {
        looping: true,
        ..cfg(&dir)
    })
    .unwrap();
    assert!(matches!(
        all_bad.next_frame(&mut f),
        Err(FrameError::Decode { .. })
    ));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn config_keys_are_kebab_case() {
    let c: DirectoryConfig = toml::from_str(
        "path = \"/data/frames\"\nlabels-from-folders = true\nloop = true\nfps = 5.0\non-error = \"stop\"\n",
    )
    .unwrap();
    assert!(c.labels_from_folders && c.looping);
    assert_eq!(c.on_error, OnError::Stop);
    assert_eq!(c.validate(), Ok(()));
    let bad = DirectoryConfig { fps: -1.0, ..c };
    assert_eq!(bad.validate().unwrap_err().key, "source.directory.fps");
    assert!(toml::from_str::<DirectoryConfig>("recursive = true").is_err());
}
