//! The service's side of the A/B model store: which model a generation loads, the health
//! window that decides a trial, and the worker that takes hand-overs off the inference thread.
//!
//! The store ([`crate::modelstore`]) knows how to install, commit and roll back safely; what it
//! cannot know is when the service starts, what frames look like and when to rebuild the
//! pipeline. That is decided here:
//!
//! * [`Models::choose`]: the first generation of a process asks [`ModelStore::boot`] (which
//!   counts trial starts, so a model that crashes the process is rolled back after
//!   `max-trial-starts`); later generations (reloads) load whatever the store says is active
//!   without counting a start.
//! * [`HealthObserver`]: feeds the trial's [`HealthWindow`] per frame, commits the model when
//!   the window passes, rolls it back and asks for a reload when it fails.
//! * [`IncomingWorker`]: processes `<models dir>/incoming/` (what `tinylcm model install|
//!   activate|rollback` hand over while the service holds the database) every second on its
//!   own thread (an install runs the smoke test), and asks for a reload when the model to run
//!   changed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::control::Control;
use crate::config::Config;
use crate::modelstore::{
    ActiveModel, ActiveState, BootChoice, HealthWindow, ModelStore, ModelStoreError, Verdict,
    process_incoming,
};
use crate::pipeline::runner::{FrameReport, Observer};
use crate::state::Store;

/// How often the hand-over folder is looked at.
const INCOMING_POLL: Duration = Duration::from_secs(1);

/// The model store as the service uses it.
pub struct Models {
    store: Arc<ModelStore>,
    booted: bool,
}

impl Models {
    /// The store configured by `config` (`[models]`), its state in `store`.
    pub fn open(config: &Config, store: Arc<Store>) -> Result<Models, ModelStoreError> {
        let dir = config.models.dir(&config.state.path);
        Ok(Models {
            store: Arc::new(ModelStore::open(
                &config.models,
                dir,
                config.engine.clone(),
                store,
            )?),
            booted: false,
        })
    }

    /// The store, for the sync client's installs and the incoming worker.
    pub fn store(&self) -> &Arc<ModelStore> {
        &self.store
    }

    /// Point `config` at the model this generation runs; `None`: the configured model.
    pub fn choose(&mut self, config: &mut Config) -> Result<Option<ActiveModel>, ModelStoreError> {
        let active = if self.booted {
            self.store.active()?
        } else {
            let boot = self.store.boot()?;
            self.booted = true;
            if let Some(why) = &boot.rolled_back {
                tracing::warn!("model rolled back at start: {why}");
            }
            match boot.choice {
                BootChoice::Installed { identity, .. } => Some(identity),
                BootChoice::Configured => None,
            }
        };
        if let Some(model) = &active {
            let layout = self.store.layout();
            config.model.path = Some(layout.model(model.slot));
            config.model.manifest = Some(layout.manifest(model.slot));
            // The configured model's initial state and output overrides belong to that model:
            // a release brings its own manifest, and the KNN state is bound to the model's hash.
            config.model.initial_state = None;
            config.model.scores = None;
            config.model.embedding = None;
        }
        Ok(active)
    }

    /// The health window of the model on trial, if one is.
    pub fn health(
        &self,
        control: &Arc<Control>,
    ) -> Result<Option<HealthObserver>, ModelStoreError> {
        Ok(self.store.health_window()?.map(|window| HealthObserver {
            window,
            store: Arc::clone(&self.store),
            control: Arc::clone(control),
            decided: false,
        }))
    }

    /// A model on trial failed to start or to run: roll it back so the next generation runs
    /// the previous one. `Ok(false)` when nothing was on trial (the failure is not the model's).
    pub fn roll_back_trial(&self, reason: &str) -> Result<bool, ModelStoreError> {
        match self.store.active()? {
            Some(active) if active.state == ActiveState::Trial => {
                self.store.rollback(reason)?;
                tracing::error!(
                    "model {} {} rolled back: {reason}",
                    active.name,
                    active.version
                );
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// Decides a trial from the frames it runs; watches the inference loop.
pub struct HealthObserver {
    window: HealthWindow,
    store: Arc<ModelStore>,
    control: Arc<Control>,
    decided: bool,
}

impl Observer for HealthObserver {
    fn on_frame(&mut self, report: &FrameReport<'_>) {
        if self.decided {
            return;
        }
        let confidence = report.prediction.confidence;
        match self
            .window
            .on_frame(confidence.is_finite(), Some(confidence))
        {
            Verdict::Pending => {}
            // Once per trial: the flush here is the one disk wait this observer ever makes.
            Verdict::Commit => {
                self.decided = true;
                if let Err(e) = self.store.commit(self.window.summary()) {
                    tracing::error!("cannot commit the model on trial: {e}");
                }
            }
            Verdict::Rollback(reason) => {
                self.decided = true;
                match self.store.rollback(&reason) {
                    Ok(_) => self
                        .control
                        .request_reload(format!("model rolled back: {reason}")),
                    Err(e) => tracing::error!("cannot roll back the model on trial: {e}"),
                }
            }
        }
    }
}

/// Processes model hand-overs on its own thread while the service runs.
pub struct IncomingWorker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl IncomingWorker {
    /// Start watching `store`'s hand-over folder; reloads are asked of `control`.
    pub fn start(store: Arc<ModelStore>, control: Arc<Control>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("tinylcm-models".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    process_once(&store, &control);
                    std::thread::sleep(INCOMING_POLL);
                }
            })?;
        Ok(IncomingWorker {
            stop,
            thread: Some(thread),
        })
    }
}

fn process_once(store: &ModelStore, control: &Control) {
    match process_incoming(store) {
        Ok(processed) => {
            for p in processed {
                match p.result {
                    Ok(outcome) if outcome.changes_active_model() => {
                        control.request_reload(format!("model request {}", p.request.display()));
                    }
                    Ok(_) => tracing::info!("model request {} done", p.request.display()),
                    Err(e) => tracing::error!("model request {} refused: {e}", p.request.display()),
                }
            }
        }
        Err(e) => tracing::warn!("cannot read the model hand-over folder: {e}"),
    }
}

impl Drop for IncomingWorker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
