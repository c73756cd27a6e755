//! `tinylcm model status|install|activate|rollback`: the device side of over-the-air models.
//!
//! With the service stopped these work on the state database directly. A running service
//! holds the database (one process at a time), so then `install`, `activate` and `rollback`
//! hand their request to the service through `<models dir>/incoming/`, and `status` shows
//! what the slot files say instead of failing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;
use tinylcm::config::Config;
use tinylcm::modelstore::{
    self, Layout, ModelStore, ModelsState, Request, RolledBack, Slot, incoming,
};
use tinylcm::state::{StateError, Store};

use crate::status::StatePlace;
use crate::status_show::utc;

/// The device-side subcommands.
#[derive(clap::Subcommand)]
pub enum StoreCommand {
    /// Which model runs (committed or on trial), what is installed, refused or rolled back.
    Status {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Verify FILE against its signed release, smoke-test it and install it in the free slot.
    Install {
        /// The model file (.tflite).
        file: PathBuf,
        /// Its signed release (`tinylcm model sign` writes FILE.release.json).
        #[arg(long)]
        release: PathBuf,
        /// Activate it right away (on trial until its health window passes).
        #[arg(long)]
        activate: bool,
    },
    /// Put the installed model on trial; it runs from the next start of the service.
    Activate,
    /// Drop the model on trial, or go back to the previously committed model.
    Rollback {
        /// Why (kept in the history).
        #[arg(long, default_value = "operator request")]
        reason: String,
    },
}

/// The store opened, or the sign that the service holds it.
enum Opened {
    Store(Box<ModelStore>),
    Locked(Layout),
}

fn layout(config: &Config) -> Layout {
    Layout::new(config.models.dir(&config.state.path))
}

fn open(config: &Config) -> anyhow::Result<Opened> {
    match Store::open(&config.state.path, config.state.policy()) {
        Ok(store) => Ok(Opened::Store(Box::new(
            ModelStore::open(
                &config.models,
                config.models.dir(&config.state.path),
                config.engine.clone(),
                Arc::new(store),
            )
            .context("cannot open the model store")?,
        ))),
        Err(StateError::Locked { .. }) => Ok(Opened::Locked(layout(config))),
        Err(e) => Err(e).context("cannot open the state database"),
    }
}

const HANDED_OVER: &str = "the service runs and holds the state database, so the request was \
                           handed over";

/// Run a device-side subcommand.
pub fn run(command: StoreCommand, place: &StatePlace) -> anyhow::Result<()> {
    let config = place.config()?;
    match command {
        StoreCommand::Status { json } => status(&config, json),
        StoreCommand::Install {
            file,
            release,
            activate,
        } => match open(&config)? {
            Opened::Store(store) => {
                let installed = store.install_files(&file, &release, activate)?;
                println!(
                    "{} installed in slot {} ({} golden check(s) passed){}",
                    installed.record.label(),
                    installed.record.slot,
                    installed.smoke.goldens,
                    if activate {
                        "; activated: it runs on trial from the next service start"
                    } else {
                        "; activate it with `tinylcm model activate`"
                    }
                );
                Ok(())
            }
            Opened::Locked(layout) => {
                let path = incoming::hand_over_install(
                    &layout,
                    &file,
                    &release,
                    config.models.max_bytes,
                    activate,
                )?;
                println!(
                    "{HANDED_OVER}: {}. The service verifies, smoke-tests{} and installs it; \
                     see `tinylcm model status` once it has",
                    path.display(),
                    if activate { ", activates" } else { "" }
                );
                Ok(())
            }
        },
        StoreCommand::Activate => match open(&config)? {
            Opened::Store(store) => {
                let record = store.activate()?;
                println!(
                    "{} in slot {} is on trial: it runs from the next service start and is \
                     committed after its health window",
                    record.label(),
                    record.slot
                );
                Ok(())
            }
            Opened::Locked(layout) => handed_over(&layout, &Request::Activate),
        },
        StoreCommand::Rollback { reason } => match open(&config)? {
            Opened::Store(store) => {
                let text = match store.rollback(&reason)? {
                    RolledBack::Trial(r) => format!("{} (on trial) rolled back", r.label()),
                    RolledBack::ToPrevious { from, to } => {
                        format!("{} rolled back to {}", from.label(), to.label())
                    }
                    RolledBack::ToConfigured(r) => format!(
                        "{} rolled back: the configured model runs from the next start",
                        r.label()
                    ),
                };
                println!("{text}");
                Ok(())
            }
            Opened::Locked(layout) => handed_over(&layout, &Request::Rollback { reason }),
        },
    }
}

fn handed_over(layout: &Layout, request: &Request) -> anyhow::Result<()> {
    let path = modelstore::hand_over(layout, request)?;
    println!("{HANDED_OVER}: {}", path.display());
    Ok(())
}

/// What a slot's release file says (not verified: for display while the service runs).
#[derive(Debug, Serialize)]
struct SlotFiles {
    slot: Slot,
    release: Option<String>,
}

/// `tinylcm model status --json`.
#[derive(Debug, Serialize)]
struct StatusView {
    dir: PathBuf,
    service_holds_database: bool,
    state: Option<ModelsState>,
    active: Option<modelstore::ActiveModel>,
    slots: Vec<SlotFiles>,
    pending_hand_overs: Vec<PathBuf>,
}

fn slot_files(layout: &Layout) -> Vec<SlotFiles> {
    [Slot::A, Slot::B]
        .into_iter()
        .map(|slot| SlotFiles {
            slot,
            release: release_label(&layout.release(slot)),
        })
        .collect()
}

/// `name version` from a slot's release file, if it reads.
fn release_label(path: &Path) -> Option<String> {
    let bytes = tinylcm::model::read_bounded(path, 1024 * 1024).ok()?;
    let signed: tinylcm_protocol::release::SignedRelease = serde_json::from_slice(&bytes).ok()?;
    let manifest: tinylcm_protocol::release::ReleaseManifest =
        serde_json::from_str(&signed.manifest).ok()?;
    Some(format!("{} {}", manifest.name, manifest.version))
}

fn status(config: &Config, json: bool) -> anyhow::Result<()> {
    let layout = layout(config);
    let (state, locked) = if config.state.path.is_file() {
        match open(config)? {
            Opened::Store(store) => (Some(store.state()?), false),
            Opened::Locked(_) => (None, true),
        }
    } else {
        (None, false)
    };
    let view = StatusView {
        dir: layout.dir().to_path_buf(),
        service_holds_database: locked,
        active: state.as_ref().and_then(ModelsState::active),
        state,
        slots: slot_files(&layout),
        pending_hand_overs: incoming::pending(&layout)?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    print!("{}", render(&view, config));
    Ok(())
}

fn render(view: &StatusView, config: &Config) -> String {
    let mut out = format!("model store {}\n", view.dir.display());
    if view.service_holds_database {
        out.push_str(
            "the service runs and holds the state database: the running model's identity is in \
             `tinylcm status`; the slot files say:\n",
        );
    }
    match (&view.state, &view.active) {
        (_, Some(a)) => out.push_str(&format!(
            "active: {} {} (slot {}, {}, key {}, SHA-256 {})\n",
            a.name,
            a.version,
            a.slot,
            a.state.as_str(),
            a.key_id,
            &a.sha256[..16.min(a.sha256.len())]
        )),
        (Some(_), None) | (None, None) if !view.service_holds_database => {
            out.push_str("active: the configured model (nothing installed is in use)\n")
        }
        _ => {}
    }
    if let Some(s) = &view.state {
        if let Some(t) = &s.trial {
            out.push_str(&format!(
                "on trial: {} (started {} of at most {} times)\n",
                t.record.label(),
                t.starts,
                config.models.max_trial_starts
            ));
        }
        for (what, record) in [
            ("committed", &s.committed),
            ("installed, not active", &s.staged),
            ("previous", &s.previous),
        ] {
            if let Some(r) = record {
                out.push_str(&format!(
                    "{what}: {} (slot {}, security epoch {})\n",
                    r.label(),
                    r.slot,
                    r.epoch
                ));
            }
        }
        if s.epoch_floor > 0 {
            out.push_str(&format!(
                "security epoch floor: {} (releases below it are refused)\n",
                s.epoch_floor
            ));
        }
        if let Some(r) = &s.last_refusal {
            out.push_str(&format!("last refusal: {} {}\n", utc(r.unix_ms), r.reason));
        }
        if !s.history.is_empty() {
            out.push_str("history:\n");
            for h in &s.history {
                out.push_str(&format!(
                    "  {} {} {}: {}\n",
                    utc(h.unix_ms),
                    h.what.as_str(),
                    h.release,
                    h.detail
                ));
            }
        }
    }
    for s in &view.slots {
        out.push_str(&format!(
            "slot {}: {}\n",
            s.slot,
            s.release.as_deref().unwrap_or("empty")
        ));
    }
    if !view.pending_hand_overs.is_empty() {
        out.push_str(&format!(
            "{} hand-over request(s) wait for the service in {}\n",
            view.pending_hand_overs.len(),
            view.dir.join(modelstore::layout::INCOMING_DIR).display()
        ));
    }
    out
}
