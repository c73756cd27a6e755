//! TinyLCM edge runtime: a camera's frames through a TFLite model, and everything the device
//! does on its own after the model — drift detection, quarantine, guarded learning, durable
//! state, over-the-air models, sync with sphere-lite — under one [`config::Config`].
//!
//! The map, in the order a frame meets the modules (the `tinylcm` binary in `bin/tinylcm/` is
//! the CLI over them, one module per subcommand):
//!
//! **The frame path**
//! * [`frame`]: where frames come from — a V4L2 camera, a folder of images, the synthetic scene.
//! * [`preprocess`]: a frame into the model's input tensor (resize, channel order, quantise).
//! * [`engine`]: inference behind one trait; TFLite C or LiteRT, loaded at run time and pinned.
//! * [`pipeline`]: one frame through preprocess → invoke → outputs, timed per stage; the loop.
//! * [`model`]: a model's manifest (labels, input spec, output roles, goldens); the default model.
//! * [`assemble`]: the one place that builds engine, pipeline and source from a configuration.
//!
//! **After the model: the autonomous part**
//! * [`autonomy`]: `Autonomy::step`, everything per frame after the model, and what it keeps.
//! * [`features`]: the embedding into the feature vector (normalise, standardise, PCA; SIMD).
//! * [`knn`]: label-free classification and the distance to everything known.
//! * [`drift`]: the seven drift detectors, one event per onset.
//! * [`quarantine`]: the unusual frames kept for learning and for a human's label.
//! * [`adapt`]: the pure decisions of a learning round (plan, protect, apply, guard).
//!
//! **Keeping what it learns**
//! * [`state`]: the redb state database, one writer thread, migrations, snapshots.
//! * [`files`]: files written so a power cut leaves the old or the whole new one.
//! * [`modelstore`]: the A/B store of over-the-air models: verify, smoke-test, trial, roll back.
//!
//! **Living in the field**
//! * [`service`]: `tinylcm run` — generations of the pipeline, reloads, remote settings, models.
//! * [`sync`]: the sync client to sphere-lite on its own thread, with an outbox in the state.
//! * [`status`]: `status.json` for `tinylcm status` and the health gate.
//! * [`systemd`]: readiness, status lines, the watchdog, the boot health gate.
//! * [`signals`]: stop and reload requests from signals.
//! * [`rauc`]: the A/B OS slots over D-Bus.
//! * [`board`]: the status LED, the button, and the data partition's space budget.
//! * [`config`]: the one TOML file, environment overrides and a remote fragment, validated.
//! * [`config_error`]: the error every section's validation reports (imports nothing of ours).
//! * [`utc`]: wall-clock time, shared with the server.
//!
//! **Measuring**
//! * [`stats`]: per-stage latency, outcomes, peak memory.
//! * [`bench`], [`bench_autonomy`]: what the pipeline and the autonomy layer cost beyond invoke.
//! * [`report`]: a run drawn as PNG and SVG.
//! * [`eval`]: what the device learnt, scored against the truth on held-out frames.

pub mod adapt;
pub mod assemble;
pub mod autonomy;
pub mod bench;
pub mod bench_autonomy;
pub mod board;
pub mod config;
pub mod config_error;
pub mod drift;
pub mod engine;
pub mod eval;
pub mod features;
pub mod files;
pub mod frame;
pub mod knn;
pub mod model;
pub mod modelstore;
pub mod pipeline;
pub mod preprocess;
pub mod quarantine;
pub mod rauc;
pub mod report;
pub mod service;
pub mod signals;
pub mod state;
pub mod stats;
pub mod status;
pub mod sync;
pub mod systemd;
/// Wall-clock time (shared with the server through the protocol crate).
pub use tinylcm_protocol::time as utc;
