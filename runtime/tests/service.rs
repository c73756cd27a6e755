//! The field service's generations: a remote configuration applied while frames run takes
//! effect in the next generation without a restart, the frame limit counts over all
//! generations, a stop ends the service, and a remote fragment never keeps the device from
//! running: one that no longer fits is refused at start, and one whose generation fails is
//! refused and the next generation runs on the local file in the same process.

use std::path::Path;
use std::sync::Arc;

use tinylcm::pipeline::runner::{EndReason, FrameReport, Observer};
use tinylcm::service::{
    Control, GenerationEnd, RemoteConfig, Service, ServiceObserver, ServiceOptions,
};

const LOCAL: &str = "[source]\nkind = \"synthetic\"\n[source.synthetic]\nloop = true\n";

/// Records each generation and asks for things at given frames.
struct Script {
    control: Arc<Control>,
    remote: RemoteConfig,
    config_file: std::path::PathBuf,
    frames_in_generation: u64,
    generations: Vec<(u64, bool)>,
    reload_at: Option<u64>,
    stop_in_second_at: Option<u64>,
}

impl Observer for Script {
    fn on_frame(&mut self, _report: &FrameReport<'_>) {
        self.frames_in_generation += 1;
        let first = self.generations.is_empty();
        if first && self.reload_at == Some(self.frames_in_generation) {
            self.remote
                .apply(
                    Some(&self.config_file),
                    "0123456789abcdef",
                    "[autonomy]\nenabled = false\n",
                    1,
                )
                .unwrap();
            self.control
                .request_reload("remote configuration 0123456789abcdef");
        }
        if !first && self.stop_in_second_at == Some(self.frames_in_generation) {
            self.control.request_stop();
        }
    }
}

impl ServiceObserver for Script {
    fn on_generation_end(&mut self, end: GenerationEnd<'_>) {
        assert_eq!(end.summary.frames, self.frames_in_generation);
        self.generations
            .push((self.frames_in_generation, end.autonomy.is_some()));
        self.frames_in_generation = 0;
    }
}

fn setup(dir: &Path, max_frames: Option<u64>) -> (Service, Script) {
    let config_file = dir.join("tinylcm.toml");
    std::fs::write(&config_file, LOCAL).unwrap();
    let state = dir.join("state");
    let control = Control::new();
    let service = Service::new(
        ServiceOptions {
            config_file: Some(config_file.clone()),
            state_dir: Some(state.clone()),
            max_frames,
            ..ServiceOptions::default()
        },
        Arc::clone(&control),
    );
    let script = Script {
        control,
        remote: RemoteConfig::beside(&state.join("state.redb")),
        config_file,
        frames_in_generation: 0,
        generations: Vec::new(),
        reload_at: None,
        stop_in_second_at: None,
    };
    (service, script)
}

#[test]
fn a_remote_configuration_takes_effect_in_the_next_generation_and_a_stop_ends_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let (mut service, mut script) = setup(dir.path(), None);
    script.reload_at = Some(40);
    script.stop_in_second_at = Some(25);
    let summary = service.run(&mut script).unwrap();
    assert_eq!(summary.end, EndReason::Stopped);
    assert_eq!(summary.generations, 2);
    assert_eq!(script.generations, vec![(40, true), (25, false)]);
    assert_eq!(summary.frames, 65);
    // A restart runs on the stored fragment too.
    assert!(!service.config().unwrap().autonomy.enabled);
}

#[test]
fn the_frame_limit_counts_over_all_generations() {
    let dir = tempfile::tempdir().unwrap();
    let (mut service, mut script) = setup(dir.path(), Some(90));
    script.reload_at = Some(30);
    let summary = service.run(&mut script).unwrap();
    assert_eq!(summary.end, EndReason::FrameLimit);
    assert_eq!(script.generations, vec![(30, true), (60, false)]);
}

#[test]
fn a_stored_fragment_that_no_longer_fits_is_ignored_and_the_device_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut service, mut script) = setup(dir.path(), Some(20));
    // Stored by an older runtime whose `[knn]` had a key this one no longer knows.
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    std::fs::write(
        script.remote.path(),
        r#"{"format": 1, "revision": "aaaa", "toml": "[knn]\nk = 9\nweighting = \"old\"\n", "applied_unix_ms": 1}"#,
    )
    .unwrap();
    assert!(script.remote.read().unwrap().is_some());
    let config = service.config().unwrap();
    assert_eq!(config.knn.k, tinylcm::knn::KnnConfig::default().k);
    let summary = service.run(&mut script).unwrap();
    assert_eq!((summary.end, summary.frames), (EndReason::FrameLimit, 20));
    // Set aside with the reason, for the sync client to report; not read again.
    assert_eq!(script.remote.read().unwrap(), None);
    let refused = script.remote.refused().unwrap().unwrap();
    assert_eq!(refused.revision, "aaaa");
    assert!(
        refused.reason.contains("knn.weighting"),
        "{}",
        refused.reason
    );
}

/// Fails before this change: the generation's error ended the service, and the stored
/// fragment was applied again at the next start (under systemd: a crash loop that also
/// stopped the sync client, so nothing could fix it remotely).
#[test]
fn a_generation_that_fails_with_a_remote_fragment_drops_it_and_runs_on_the_local_file() {
    let dir = tempfile::tempdir().unwrap();
    let (mut service, mut script) = setup(dir.path(), Some(30));
    // The local file keeps thumbnails off: their folder cannot be made here (a file is in
    // the way). Every key of the fragment is allowed and the schema is satisfied; only the
    // generation finds out.
    std::fs::write(
        &script.config_file,
        format!("{LOCAL}[quarantine]\nthumbnails = false\n"),
    )
    .unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("quarantine"), b"not a folder").unwrap();
    let revision = "00ff00ff00ff00ff";
    script
        .remote
        .apply(
            Some(&script.config_file),
            revision,
            "[quarantine]\nthumbnails = true\n",
            1,
        )
        .unwrap();

    let summary = service.run(&mut script).unwrap();
    assert_eq!((summary.end, summary.frames), (EndReason::FrameLimit, 30));
    assert_eq!(summary.generations, 2, "one failed, one ran");
    assert_eq!(script.generations, vec![(30, true)]);
    assert_eq!(script.remote.read().unwrap(), None);
    let refused = script.remote.refused().unwrap().unwrap();
    assert_eq!(refused.revision, revision);
    assert!(
        refused.reason.contains("failed to start or run") && refused.reason.contains("quarantine"),
        "{}",
        refused.reason
    );
    assert_eq!(
        script
            .remote
            .unreported_refusal()
            .map(|(r, _)| r)
            .as_deref(),
        Some(revision)
    );

    // A restart runs on the local file: the fragment is never applied again, and the same
    // revision delivered again is refused at once.
    drop(service);
    let (mut service, mut script) = setup_again(dir.path(), &script, Some(10));
    assert!(!service.config().unwrap().quarantine.thumbnails);
    let summary = service.run(&mut script).unwrap();
    assert_eq!((summary.generations, summary.frames), (1, 10));
    let again = script.remote.apply(
        Some(&script.config_file),
        revision,
        "[quarantine]\nthumbnails = true\n",
        2,
    );
    assert!(
        matches!(
            again,
            Err(tinylcm::service::RemoteError::RefusedBefore { .. })
        ),
        "{again:?}"
    );
}

/// A second service over the same folder and config file as `script`'s (a restart).
fn setup_again(dir: &Path, script: &Script, max_frames: Option<u64>) -> (Service, Script) {
    let control = Control::new();
    let service = Service::new(
        ServiceOptions {
            config_file: Some(script.config_file.clone()),
            state_dir: Some(dir.join("state")),
            max_frames,
            ..ServiceOptions::default()
        },
        Arc::clone(&control),
    );
    let script = Script {
        control,
        remote: script.remote.clone(),
        config_file: script.config_file.clone(),
        frames_in_generation: 0,
        generations: Vec::new(),
        reload_at: None,
        stop_in_second_at: None,
    };
    (service, script)
}
