//! The sync client: the device's side of sphere-lite, off the inference thread.
//!
//! Why it exists: a field device must report drift, metrics and logs, take human feedback,
//! remote configuration and model releases, and do all of it over a network that comes and
//! goes, without ever making the camera loop wait and without losing or duplicating anything
//! when the network, the server or the device itself fails at any instant.
//!
//! # How
//!
//! * [`SyncClient::start`] owns one thread running a tokio current-thread runtime. Every
//!   `interval-seconds` it [`collect`]s what is new (drift events with their quarantine
//!   thumbnails and embeddings, `status.json` metrics, JSON log lines, snapshot metadata,
//!   prediction samples) into **one package built once** with a random package id, and puts it
//!   into the **outbox** in the state database; then it uploads the outbox oldest first and pulls
//!   feedback, configuration and the model assignment.
//! * **Outbox** ([`outbox`]): records in the state store's `outbox` table. A package holds its
//!   bytes in its record (bounded by `max-package-kib`, far below
//!   [`crate::state::MAX_VALUE_BYTES`]) rather than in a file beside the database: then the
//!   record, the cursors of the data it holds (table `sync`) and the drops it causes commit in
//!   **one transaction**, so a crash between "packaged" and "cursor moved" cannot exist, and
//!   there are no orphan files to reconcile. Packages are small (thumbnails are 64 px JPEGs,
//!   logs at most 1 MiB), so redb's copy-on-write costs little.
//! * **Exactly once**: a record is deleted only after the server answered `accepted` or
//!   `duplicate` for its package id (the server's idempotency key), and that delete is flushed
//!   before the next upload. A lost answer means a retry that the server answers `duplicate`:
//!   never lost, never stored twice.
//! * **Bounded disk** ([`SyncConfig::max_outbox_mib`], [`SyncConfig::max_outbox_packages`]):
//!   before a new package is queued, the oldest *routine* packages (metrics, logs, predictions,
//!   snapshot metadata) are dropped first, packages holding drift events last; each drop is
//!   logged at warn and counted (`sync.dropped`), in the same commit as the new record.
//! * **Upload** ([`upload`]): exponential backoff with full jitter ([`backoff`]). A refusal is
//!   final only when sphere-lite itself gave it (its error body carries `"origin":
//!   "sphere-lite"`, the contract of [`tinylcm_protocol::api::ErrorResponse`]): its 400 → the
//!   package is moved aside to `<state dir>/sync/rejected/` and counted; its 401/403 → the
//!   status asks for a new enrollment; its 413 → dropped by policy. The same statuses from
//!   anything else (a reverse proxy's HTML 413 for a body over its limit, a bare 400, a
//!   gateway's 502) keep the package (a 4xx skips it so smaller packages behind it still go),
//!   back off, and raise [`status::ForeignAnswerAlert`] naming who answered. 5xx, network
//!   errors and answers that do not parse → retried. Every answer body is read with a bound
//!   ([`http`]).
//! * **Transport security** ([`config`]): `[sync] server` must be `https://` except to a
//!   loopback address or with `allow-insecure-http = true`; so must the server recorded with
//!   the credentials.
//! * **Pull** ([`pull`]): feedback verdicts become one inbox file (fsynced) before they are
//!   acknowledged; configuration items go to [`SyncHost::apply_config`]; a model assignment that
//!   differs from [`SyncHost::active_model`] is downloaded with resume to
//!   `<state dir>/downloads/` and handed to [`SyncHost::install_release`]; a refused release is
//!   remembered by SHA-256 so it is not downloaded again.
//! * **Enrollment** ([`credentials`]): the device id and token live in a 0600 file
//!   `<state dir>/sync/credentials.json`, not in the database: restoring a snapshot replaces the
//!   component states and must not take the device's identity with it, and deleting that one
//!   file is how an operator forces a new enrollment. The token is never logged.
//! * **Logs** ([`logs`]): a `tracing` layer appends bounded JSON lines to rotating files under
//!   `<state dir>/sync/logs/`; packages carry what was written since the last one.
//! * **Status** ([`SyncStatus`]): counters for `status.json` and the metrics.

pub mod backoff;
pub mod client;
pub mod collect;
pub mod config;
pub mod credentials;
pub mod download;
pub mod error;
pub mod host;
pub mod http;
pub mod logs;
pub mod metrics;
pub mod outbox;
pub mod predictions;
pub mod pull;
pub mod results;
pub mod status;
pub mod upload;

pub use client::{SyncClient, SyncSetup};
pub use config::SyncConfig;
pub use credentials::{Credentials, enroll};
pub use error::{PullError, RoundError, SyncError};
pub use host::{InstallError, ModelIdentity, SyncHost};
pub use logs::{LogLayer, log_layer};
pub use predictions::PredictionSampler;
pub use status::{SyncStatus, SyncStatusView};
