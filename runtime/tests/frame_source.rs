//! `[source]` configuration and `frame::open`, including the camera's error
//! paths (this machine has no camera).

use tinylcm::frame::{
    self, CameraConfig, Frame, FrameError, PixelFormat, SourceConfig, SourceKind,
};

#[test]
fn default_source_is_the_synthetic_scene() {
    let cfg = SourceConfig::default();
    assert_eq!(cfg.kind, SourceKind::Synthetic);
    cfg.validate().unwrap();
    let mut src = frame::open(&cfg).unwrap();
    let mut f = Frame::default();
    assert!(src.next_frame(&mut f).unwrap());
    assert_eq!((f.width, f.height), (320, 240));
    assert!(src.describe().starts_with("synthetic 320x240"));
}

#[test]
fn full_section_parses_from_toml() {
    let cfg: SourceConfig = toml::from_str(
        r#"
        kind = "camera"
        [synthetic]
        seed = 3
        [camera]
        device = "/dev/video2"
        width = 320
        height = 240
        fps = 15
        formats = ["mjpeg", "rgb24"]
        timeout-ms = 500
        buffers = 3
        reopen-attempts = 2
        reopen-backoff-ms = 100
        [directory]
        path = "/data/frames"
        labels-from-folders = true
        "#,
    )
    .unwrap();
    assert_eq!(cfg.kind, SourceKind::Camera);
    assert_eq!(cfg.camera.formats, [PixelFormat::Mjpeg, PixelFormat::Rgb24]);
    assert_eq!(cfg.camera.timeout_ms, 500);
    assert_eq!(cfg.synthetic.seed, 3);
    cfg.validate().unwrap();
    // Round trip through TOML.
    let text = toml::to_string(&cfg).unwrap();
    assert_eq!(toml::from_str::<SourceConfig>(&text).unwrap(), cfg);
    assert!(toml::from_str::<SourceConfig>("kind = \"webcam\"").is_err());
    assert!(toml::from_str::<SourceConfig>("[camera]\nfrmat = 1").is_err());
}

#[test]
fn only_the_selected_section_is_validated() {
    let mut cfg = SourceConfig::default();
    cfg.directory.path = Default::default(); // unused: fine
    cfg.validate().unwrap();
    cfg.kind = SourceKind::Directory;
    assert_eq!(cfg.validate().unwrap_err().key, "source.directory.path");
}

#[test]
fn camera_validation_names_the_key() {
    let cases: Vec<(CameraConfig, &str)> = vec![
        (
            CameraConfig {
                fps: 0,
                ..Default::default()
            },
            "source.camera.fps",
        ),
        (
            CameraConfig {
                width: 5,
                ..Default::default()
            },
            "source.camera.width",
        ),
        (
            CameraConfig {
                formats: vec![],
                ..Default::default()
            },
            "source.camera.formats",
        ),
        (
            CameraConfig {
                formats: vec![PixelFormat::Yuyv, PixelFormat::Yuyv],
                ..Default::default()
            },
            "source.camera.formats",
        ),
        (
            CameraConfig {
                timeout_ms: 0,
                ..Default::default()
            },
            "source.camera.timeout-ms",
        ),
        (
            CameraConfig {
                buffers: 1,
                ..Default::default()
            },
            "source.camera.buffers",
        ),
        (
            CameraConfig {
                reopen_attempts: 5000,
                ..Default::default()
            },
            "source.camera.reopen-attempts",
        ),
        (
            CameraConfig {
                reopen_backoff_ms: 0,
                ..Default::default()
            },
            "source.camera.reopen-backoff-ms",
        ),
        (
            CameraConfig {
                device: Default::default(),
                ..Default::default()
            },
            "source.camera.device",
        ),
    ];
    for (cfg, key) in cases {
        assert_eq!(cfg.validate().unwrap_err().key, key);
    }
    CameraConfig::default().validate().unwrap();
}

#[test]
fn missing_camera_is_a_clear_open_error() {
    let cfg = SourceConfig {
        kind: SourceKind::Camera,
        camera: CameraConfig {
            device: "/dev/video99".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    match frame::open(&cfg) {
        Err(FrameError::Open { what, reason }) => {
            assert_eq!(what, "/dev/video99");
            assert!(!reason.is_empty());
        }
        Err(e) => panic!("expected Open, got {e}"),
        Ok(_) => panic!("a camera appeared at /dev/video99"),
    }
}

#[test]
fn a_file_that_is_not_a_camera_is_an_open_error() {
    let cfg = SourceConfig {
        kind: SourceKind::Camera,
        camera: CameraConfig {
            device: "/dev/null".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    match frame::open(&cfg) {
        Err(FrameError::Open { what, reason }) => {
            assert_eq!(what, "/dev/null");
            assert!(reason.contains("not a V4L2 device"), "{reason}");
        }
        Err(e) => panic!("expected Open, got {e}"),
        Ok(_) => panic!("/dev/null opened as a camera"),
    }
}

#[test]
fn directory_kind_opens_through_frame_open() {
    let mut cfg = SourceConfig {
        kind: SourceKind::Directory,
        ..Default::default()
    };
    cfg.directory.path = std::env::temp_dir().join("tinylcm-frame-source-missing-dir");
    assert!(matches!(frame::open(&cfg), Err(FrameError::Open { .. })));
    let dir = std::env::temp_dir().join(format!("tinylcm-frame-source-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    tinylcm::frame::synthetic::export_dataset(&dir, 1, 2, 32, 24, tinylcm::frame::Phase::Normal)
        .unwrap();
    cfg.directory.path = dir.clone();
    cfg.directory.labels_from_folders = true;
    let mut src = frame::open(&cfg).unwrap();
    let mut f = Frame::default();
    let mut n = 0;
    while src.next_frame(&mut f).unwrap() {
        assert!(f.truth.as_ref().unwrap().label.is_some());
        n += 1;
    }
    assert_eq!(n, 4);
    std::fs::remove_dir_all(dir).unwrap();
}
