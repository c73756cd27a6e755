//! `tinylcm run` as a field service: the pipeline runs in *generations*, and the device moves
//! from one to the next by itself when its configuration or its model changes.
//!
//! A camera left alone for months gets new settings and models from sphere-lite, and a signal
//! from systemd now and then. Restarting the process for each would lose the frames in between
//! and make every change a small crash; keeping one pipeline forever would mean settings that
//! never take effect. So the service is a loop:
//!
//! ```text
//! loop {
//!     config     = defaults < file < remote fragment (remote.rs) < environment
//!     generation = model, engine, source, autonomy (state restored from the store), status
//!     run frames until the source ends, a frame limit, or Control (control.rs) interrupts:
//!         stop   -> save the state, leave the loop
//!         reload -> save the state, go round again with what changed
//! }
//! ```
//!
//! The state store stays open across generations (only its owner may write it), so what the
//! autonomy layer learnt is saved by one generation and restored by the next. A configuration
//! that does not load at a reload keeps the previous one running. A remote fragment never
//! takes the device off the air: one that no longer passes (allow-list, schema) is refused
//! before a generation is built, and when a generation fails to start or run while a remote
//! fragment is in force, the fragment is refused (set aside with the reason, reported to
//! sphere-lite by the sync client, never applied again) and the next generation runs on the
//! local file in the same process. Only a generation that fails on the local file alone ends
//! the service.

pub mod button;
pub mod control;
pub mod frames;
pub mod host;
pub mod models;
mod observers;
pub mod remote;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use button::{ButtonObserver, LONG_PRESS};
pub use control::{Control, Request};
pub use frames::{LedObserver, PredictionFeeder, SignalForwarder};
pub use host::ServiceHost;
pub use models::{HealthObserver, IncomingWorker, Models};
pub use remote::{Applied, Refused, RemoteConfig, RemoteError};

use crate::assemble::{self, AssembleError};
use crate::autonomy::Autonomy;
use crate::board::LedState;
use crate::config::Config;
use crate::config_error::ConfigError;
use crate::modelstore::ModelStoreError;
use crate::pipeline::runner::{self, EndReason, Observer, RunError, RunOptions, RunSummary};
use crate::rauc::RaucClient;
use crate::signals::Signals;
use crate::state::{StateError, Store};
use crate::status::StatusExtras;
use crate::sync::{SyncClient, SyncSetup};
use crate::systemd::{Notifier, WatchdogObserver, watchdog_from_env};

/// How the service was started (the command line of `tinylcm run`).
#[derive(Debug, Clone, Default)]
pub struct ServiceOptions {
    /// The configuration file; `None`: the built-in defaults.
    pub config_file: Option<PathBuf>,
    /// Keep the state in this folder instead of the configured paths.
    pub state_dir: Option<PathBuf>,
    /// Stop after this many frames in all (overrides `run.max-frames`).
    pub max_frames: Option<u64>,
    /// Run the sync client (`[sync]`; it idles until the device is enrolled).
    pub sync: bool,
    /// Talk to systemd (`NOTIFY_SOCKET`: READY, STATUS, WATCHDOG, RELOADING, STOPPING).
    pub notify: bool,
}

/// Why the service could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The local configuration is invalid at start.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Model, engine, source, autonomy, store or status could not start.
    #[error(transparent)]
    Assemble(#[from] AssembleError),
    /// The A/B model store failed.
    #[error(transparent)]
    Models(#[from] ModelStoreError),
    /// A service thread could not be started.
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The pipeline failed while running.
    #[error("the pipeline stopped: {0}")]
    Run(#[from] RunError),
    /// What the generation learnt could not be saved.
    #[error("cannot save the state to {path}: {source}")]
    State {
        /// The database.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: StateError,
    },
}

/// What a generation ended with, for the caller's summary.
pub struct GenerationEnd<'a> {
    /// Its totals.
    pub summary: &'a RunSummary,
    /// Its autonomy layer, when it ran.
    pub autonomy: Option<&'a Autonomy>,
    /// What ran ([`assemble::describe`]).
    pub engine_line: &'a str,
    /// The state database.
    pub state_path: &'a Path,
}

/// Watches a service: every frame of every generation, and each generation's end.
pub trait ServiceObserver: Observer {
    /// A generation ended (the binary prints its summary here).
    fn on_generation_end(&mut self, end: GenerationEnd<'_>);
}

/// How the service ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceSummary {
    /// Generations run (1 + reloads).
    pub generations: u32,
    /// Frames over all generations.
    pub frames: u64,
    /// Why the last generation ended.
    pub end: EndReason,
}

/// The field service: configuration, store and generations.
pub struct Service {
    options: ServiceOptions,
    control: Arc<Control>,
    store: Option<Arc<Store>>,
    models: Option<Models>,
    incoming: Option<IncomingWorker>,
    sync: Option<SyncClient>,
    rauc: Option<Arc<std::sync::Mutex<RaucClient>>>,
    signals: Option<SignalForwarder>,
    led: Option<LedObserver>,
    button: Option<ButtonObserver>,
    /// The last configuration a generation ran with, and the remote fragment in it.
    last_good: Option<(Config, Option<Applied>)>,
    /// Remote revisions refused in this process: never run again, even when setting them
    /// aside on disk failed.
    refused: Vec<String>,
    frames: u64,
}

impl Service {
    /// A service started with `options`, interrupted through `control`.
    pub fn new(options: ServiceOptions, control: Arc<Control>) -> Service {
        Service {
            options,
            control,
            store: None,
            models: None,
            incoming: None,
            sync: None,
            rauc: None,
            signals: None,
            led: None,
            button: None,
            last_good: None,
            refused: Vec::new(),
            frames: 0,
        }
    }

    /// Take stop and reload requests from process signals (SIGTERM, SIGINT, SIGHUP).
    pub fn attach_signals(&mut self, signals: Signals) {
        self.signals = Some(SignalForwarder::new(signals, Arc::clone(&self.control)));
    }

    /// The sync client's counters, when it runs.
    pub fn sync(&self) -> Option<&SyncClient> {
        self.sync.as_ref()
    }

    /// The configuration to run now: file, remote fragment, environment, command line.
    ///
    /// A stored remote fragment that no longer passes the allow-list or no longer makes a
    /// valid configuration is refused (set aside, reported) and the local file runs; an
    /// invalid local file is an error at start, and keeps the previous configuration at a
    /// reload.
    pub fn config(&self) -> Result<Config, ConfigError> {
        self.resolve().map(|(config, _)| config)
    }

    /// [`Service::config`], and the remote fragment in force in it.
    fn resolve(&self) -> Result<(Config, Option<Applied>), ConfigError> {
        let file = self.options.config_file.as_deref();
        let local = match Config::load(file) {
            Ok(config) => self.with_options(config),
            Err(e) => match &self.last_good {
                Some((previous, remote))
                    if !remote
                        .as_ref()
                        .is_some_and(|a| self.refused.contains(&a.revision)) =>
                {
                    tracing::error!(
                        "the configuration does not load ({e}); keeping the one running"
                    );
                    return Ok((previous.clone(), remote.clone()));
                }
                _ => return Err(e),
            },
        };
        let remote = RemoteConfig::beside(&local.state.path);
        match remote.in_force(file, crate::utc::now_unix_ms()) {
            Some((applied, _)) if self.refused.contains(&applied.revision) => {
                tracing::error!(
                    revision = %applied.revision,
                    "the remote configuration was refused in this run; running on the local \
                     configuration"
                );
                Ok((local, None))
            }
            Some((applied, config)) => {
                tracing::info!(revision = %applied.revision, "remote configuration in force");
                Ok((self.with_options(config), Some(applied)))
            }
            None => Ok((local, None)),
        }
    }

    /// A generation with the remote fragment `applied` failed with `error`: refuse the
    /// fragment for good (in this process at once, on disk for the next ones and for the
    /// report to sphere-lite).
    fn refuse_remote(&mut self, config: &Config, applied: &Applied, error: &ServiceError) {
        let reason = format!(
            "a generation with it failed to start or run: {}",
            error_chain(error)
        );
        tracing::error!(
            revision = %applied.revision,
            "remote configuration refused, running on the local configuration: {reason}"
        );
        self.refused.push(applied.revision.clone());
        let remote = RemoteConfig::beside(&config.state.path);
        if let Err(e) = remote.refuse_stored(applied, &reason, crate::utc::now_unix_ms()) {
            tracing::error!(
                "cannot set the refused remote configuration aside ({e}); this run will not \
                 use it again"
            );
        }
    }

    fn with_options(&self, mut config: Config) -> Config {
        if let Some(dir) = &self.options.state_dir {
            assemble::state_in(&mut config, dir);
        }
        if let Some(frames) = self.options.max_frames {
            config.run.max_frames = frames;
        }
        config
    }

    /// The state store of `config`, opened once and kept across generations.
    pub fn store(&mut self, config: &Config) -> Result<Arc<Store>, AssembleError> {
        if let Some(store) = &self.store {
            if store.path() == config.state.path {
                return Ok(Arc::clone(store));
            }
            tracing::warn!(
                "state.path changed from {} to {}: reopening the store",
                store.path().display(),
                config.state.path.display()
            );
        }
        self.incoming = None;
        self.models = None;
        self.store = None;
        let store = assemble::store(config)?;
        self.store = Some(Arc::clone(&store));
        Ok(store)
    }

    /// The A/B model store (opened with the state store), and its hand-over worker.
    pub fn models(&mut self, config: &Config) -> Result<&mut Models, ServiceError> {
        let store = self.store(config)?;
        let models = match self.models.take() {
            Some(models) => models,
            None => {
                let models = Models::open(config, store)?;
                self.incoming = Some(
                    IncomingWorker::start(Arc::clone(models.store()), Arc::clone(&self.control))
                        .map_err(|source| ServiceError::Thread {
                            what: "model hand-over",
                            source,
                        })?,
                );
                models
            }
        };
        Ok(self.models.insert(models))
    }

    /// Start the sync client once, with the first generation's configuration. A sync that
    /// cannot start (bad `[sync]` settings) is logged and left off: the camera goes on.
    fn start_sync(&mut self, config: &Config, store: &Arc<Store>) {
        if !self.options.sync || self.sync.is_some() {
            return;
        }
        let Some(models) = &self.models else {
            return;
        };
        let host = ServiceHost::new(
            Arc::clone(&self.control),
            &config.state.path,
            self.options.config_file.clone(),
            Arc::clone(models.store()),
            config.models.max_bytes,
        );
        match SyncClient::start(
            SyncSetup::from_config(config),
            Arc::clone(store),
            Arc::new(host),
        ) {
            Ok(client) => self.sync = Some(client),
            Err(e) => tracing::error!("sync is off: {e}"),
        }
    }

    /// The status LED (`[board] led-pin`, opened once) shows that a generation starts; the
    /// button (`[board] button-pin`) is opened with it.
    fn show_starting(&mut self, config: &Config) {
        if self.led.is_none() {
            let led = crate::board::open_led(&config.board).unwrap_or_else(|e| {
                tracing::warn!("no status LED: {e}");
                Box::new(crate::board::NoLed::default())
            });
            self.led = Some(LedObserver::new(led));
        }
        if let Some(led) = self.led.as_mut() {
            led.show(LedState::Starting);
        }
        // The button, opened once too (its line stays claimed across generations).
        let inbox = crate::autonomy::feedback::inbox_dir(&config.state.path);
        match self.button.as_mut() {
            Some(button) => button.set_inbox(inbox),
            None if config.board.button_pin.is_some() => {
                match crate::board::open_button(&config.board) {
                    Ok(button) => self.button = Some(ButtonObserver::new(button, inbox)),
                    Err(e) => tracing::warn!("no button: {e}"),
                }
            }
            None => {}
        }
    }

    /// Connect to RAUC once when `[rauc] enabled`; a device without it still runs.
    fn connect_rauc(&mut self, config: &Config) {
        if !config.rauc.enabled || self.rauc.is_some() {
            return;
        }
        match RaucClient::connect(&config.rauc.bus) {
            Ok(client) => self.rauc = Some(Arc::new(std::sync::Mutex::new(client))),
            Err(e) => tracing::error!("RAUC status is not reported: {e}"),
        }
    }

    /// The model store's active release, the sync counters and the OS slots, added to each
    /// status report on its writer thread.
    fn status_extras(&self) -> StatusExtras {
        let models = self.models.as_ref().map(|m| Arc::clone(m.store()));
        let sync = self.sync.as_ref().map(SyncClient::status_handle);
        let rauc = self.rauc.clone();
        StatusExtras(Arc::new(move |report| {
            if let Some(models) = &models {
                report.release = models.active().unwrap_or_else(|e| {
                    tracing::warn!("cannot read the active model for the status: {e}");
                    None
                });
            }
            report.sync = sync.as_ref().map(|s| s.view());
            if let Some(rauc) = &rauc {
                let client = rauc
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                report.rauc = client
                    .status()
                    .map_err(|e| tracing::warn!("cannot read the RAUC status: {e}"))
                    .ok();
            }
        }))
    }

    /// Run generations until a stop, the end of the source or the frame limit.
    ///
    pub fn run(
        &mut self,
        observer: &mut dyn ServiceObserver,
    ) -> Result<ServiceSummary, ServiceError> {
        let result = self.generations(observer);
        if let (Err(_), Some(led)) = (&result, self.led.as_mut()) {
            led.show(LedState::Error);
        }
        if let Some(sync) = self.sync.take() {
            if !sync.stop() {
                tracing::warn!("the sync client did not stop in time; its outbox stays consistent");
            }
        }
        result
    }

    fn generations(
        &mut self,
        observer: &mut dyn ServiceObserver,
    ) -> Result<ServiceSummary, ServiceError> {
        let mut generations = 0;
        loop {
            if let Some(signals) = &self.signals {
                signals.forward();
            }
            let (config, remote) = self.resolve()?;
            generations += 1;
            let end = match self.generation(&config, observer) {
                Ok(end) => end,
                Err(e) => {
                    // A model on trial that cannot start or run is the model's fault: the next
                    // generation runs the previous one. Else a remote fragment in force is
                    // (the next generation runs on the local file). Anything else ends the
                    // service.
                    let rolled_back = match self.models.as_ref() {
                        Some(models) => models.roll_back_trial(&e.to_string())?,
                        None => false,
                    };
                    if rolled_back {
                        continue;
                    }
                    if let Some(applied) = &remote {
                        self.refuse_remote(&config, applied, &e);
                        continue;
                    }
                    return Err(e);
                }
            };
            self.last_good = Some((config, remote));
            if end != EndReason::Stopped {
                return Ok(self.summary(generations, end));
            }
            match self.control.take() {
                Some(Request::Reload(reasons)) => {
                    tracing::info!("reloading: {}", reasons.join("; "));
                }
                Some(Request::Stop) | None => {
                    return Ok(self.summary(generations, EndReason::Stopped));
                }
            }
        }
    }

    fn summary(&self, generations: u32, end: EndReason) -> ServiceSummary {
        ServiceSummary {
            generations,
            frames: self.frames,
            end,
        }
    }

    /// One generation: assemble everything from `config`, run, save.
    fn generation(
        &mut self,
        config: &Config,
        observer: &mut dyn ServiceObserver,
    ) -> Result<EndReason, ServiceError> {
        let remaining =
            (config.run.max_frames > 0).then(|| config.run.max_frames.saturating_sub(self.frames));
        if remaining == Some(0) {
            return Ok(EndReason::FrameLimit);
        }
        self.show_starting(config);
        let mut config = config.clone();
        let active = self.models(&config)?.choose(&mut config)?;
        let config = &config;
        let mut model = assemble::load_model(&config.model).map_err(AssembleError::from)?;
        if let Some(active) = &active {
            model.origin = format!(
                "release {} {} ({}, slot {})",
                active.name,
                active.version,
                active.state.as_str(),
                active.slot.dir_name()
            );
        }
        let mut pipeline = assemble::pipeline(config, &model)?;
        let mut source = assemble::source(config)?;
        // SIGTERM must not wait for a camera's reopen back-off (up to a minute, longer than
        // systemd's stop timeout). Reloads still wait: the camera may be back by then, and
        // a new generation without it could not start.
        if let Some(signals) = self.signals.as_ref() {
            source.interrupt_on(signals.stop_flag());
        }
        let source_line = source.describe();
        let engine_line = assemble::describe(&pipeline, &model.origin, &source_line);
        tracing::info!("{engine_line}");
        let store = self.store(config)?;
        let mut health = match &self.models {
            Some(models) => models.health(&self.control)?,
            None => None,
        };
        self.start_sync(config, &store);
        let mut feeder = self
            .sync
            .as_ref()
            .map(|sync| PredictionFeeder::new(sync.predictions()));
        let mut watchdog = self.options.notify.then(|| watchdog(&model.origin));
        let mut autonomy = if config.autonomy.enabled {
            Some(assemble::autonomy(
                config,
                &model,
                &pipeline,
                Some(Arc::clone(&store)),
            )?)
        } else {
            None
        };
        self.connect_rauc(config);
        let mut status = assemble::status(
            config,
            &model,
            &pipeline,
            &source_line,
            Some(Arc::clone(&store)),
            Some(self.status_extras()),
        )?;
        let options = RunOptions {
            max_frames: remaining,
            stop: Some(self.control.interrupt_flag()),
            capture_depth: config.run.capture_depth,
        };
        let result = runner::run_with(
            source.as_mut(),
            &mut pipeline,
            autonomy.as_mut(),
            &options,
            &mut observers::Observers {
                caller: &mut *observer,
                status: status.as_mut(),
                health: health.as_mut(),
                signals: self.signals.as_mut(),
                led: self.led.as_mut(),
                button: self.button.as_mut(),
                feeder: feeder.as_mut(),
                watchdog: watchdog.as_mut(),
            },
        );
        if let Some(w) = watchdog.as_mut() {
            let notifier = w.notifier_mut();
            let _ = if self.control.stopping() || result.is_err() {
                notifier.stopping()
            } else {
                notifier.reloading()
            };
        }
        if let Some(a) = autonomy.as_mut() {
            match a.finish() {
                Ok(()) => {}
                // A full disk at a reload: the store stays open across generations and its
                // writer keeps what is queued and retries, so the next generation goes on.
                // Ending the service here would lose that queue and crash-loop the device.
                Err(e @ (StateError::CommitsFailing { .. } | StateError::Reopening { .. }))
                    if !self.control.stopping() =>
                {
                    tracing::warn!("{e}; the next generation starts meanwhile");
                }
                Err(source) => {
                    return Err(ServiceError::State {
                        path: config.state.path.clone(),
                        source,
                    });
                }
            }
        }
        if let Some(s) = status {
            // The run's outcome matters more than its last status report: warn, do not fail.
            if let Err(e) = s.finish(result.as_ref().ok(), autonomy.as_ref()) {
                tracing::warn!("cannot write the final status report: {e}");
            }
        }
        let summary = result?;
        self.frames += summary.frames;
        observer.on_generation_end(GenerationEnd {
            summary: &summary,
            autonomy: autonomy.as_ref(),
            engine_line: &engine_line,
            state_path: &config.state.path,
        });
        Ok(summary.end)
    }
}

/// `error` and its sources, as one line ("a: b: c").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        // Transparent wrappers repeat their source's message.
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// The systemd watchdog observer of a generation running `model` (disabled without systemd).
fn watchdog(model: &str) -> WatchdogObserver {
    let notifier = Notifier::from_env().unwrap_or_else(|e| {
        tracing::warn!("cannot talk to systemd: {e}");
        Notifier::disabled()
    });
    let interval = watchdog_from_env().unwrap_or_else(|e| {
        tracing::warn!("ignoring the systemd watchdog setting: {e}");
        None
    });
    WatchdogObserver::new(notifier, interval, model)
}
