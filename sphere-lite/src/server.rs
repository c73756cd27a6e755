//! Wiring of the stores (embedded default, S3 blobs, MLflow tracking) and the serve loop: open the stores, finish pending
//! packages, process new ones in the background, serve (plain HTTP or TLS, both through the
//! door's accept loop, [`crate::door`]) until shutdown.
//!
//! Why: `main` and the integration tests start the server the same way, so the tests exercise
//! the real startup recovery and shutdown path.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedSender;

use crate::adapters::{
    DirBlobs, MlflowSettings, MlflowTracking, RedbTracking, S3Blobs, S3Settings,
};
use crate::domain::{DomainError, Sphere};
use crate::door::DoorSettings;
use crate::http::{self, ProcessJob};
use crate::ports::{Blobs, StoreError, Tracking};
use crate::tls::ServerTls;

/// How often pending packages are retried after a processing failure, and, with replicas,
/// how often packages another replica left pending are looked for.
pub const RETRY_SWEEP: Duration = Duration::from_secs(30);

/// With replicas: how long a package may stay pending before any replica processes it (the
/// accepting one normally has within moments).
pub const STALE_PENDING: Duration = Duration::from_secs(60);

/// How often stored packages past `[storage] retention_days` are pruned (also at startup).
pub const RETENTION_SWEEP: Duration = Duration::from_secs(3600);

/// Open the embedded stores in `data` (`sphere.redb`, `blobs/`), creating them if needed.
pub fn open_embedded(data: &Path) -> Result<Sphere, DomainError> {
    open_stores(data, None, None)
}

/// Open the stores:
///
/// * no `mlflow`: tracking in `data/sphere.redb`, blobs in S3 when `s3` is given, else in
///   `data/blobs/` (`data` is created if needed);
/// * `mlflow` (needs `s3`): tracking in MLflow and blobs in S3. Nothing is kept locally:
///   `data` is neither created nor read, so several replicas can serve one fleet.
///
/// MLflow without S3 is refused: the blobs would be the only local state.
pub fn open_stores(
    data: &Path,
    s3: Option<&S3Settings>,
    mlflow: Option<&MlflowSettings>,
) -> Result<Sphere, DomainError> {
    if let Some(mlflow) = mlflow {
        let Some(s3) = s3 else {
            return Err(StoreError::new(
                "config",
                "MLflow tracking needs S3 blobs (the server keeps no local state then)",
            )
            .into());
        };
        let blobs: Arc<dyn Blobs> = Arc::new(S3Blobs::open(s3)?);
        // Release model files are logged as artifacts of their MLflow runs from the blobs.
        let tracking = MlflowTracking::open_with_s3(mlflow, s3)?.with_release_files(blobs.clone());
        return Ok(Sphere::new(Arc::new(tracking), blobs));
    }
    std::fs::create_dir_all(data)
        .map_err(|e| StoreError::new("data", format!("create {}: {e}", data.display())))?;
    let tracking: Arc<dyn Tracking> = Arc::new(RedbTracking::open(&data.join("sphere.redb"))?);
    let blobs: Arc<dyn Blobs> = match s3 {
        Some(settings) => Arc::new(S3Blobs::open(settings)?),
        None => Arc::new(DirBlobs::open(&data.join("blobs"))?),
    };
    // Upload bodies are spooled beside the data (the database lock makes the folder ours).
    let spool = crate::domain::prepare_spool_dir(&data.join("spool"))?;
    Ok(Sphere::new(tracking, blobs).with_spool_dir(spool))
}

/// Process pending packages, then serve plain HTTP on `listener` until `shutdown` resolves;
/// in-flight requests are finished first.
pub async fn serve(
    sphere: Arc<Sphere>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DomainError> {
    serve_with(sphere, listener, None, shutdown).await
}

/// As [`serve`], over TLS when `tls` is given: the same routes, startup recovery and graceful
/// shutdown, only the transport differs. The door runs with its defaults.
pub async fn serve_with(
    sphere: Arc<Sphere>,
    listener: TcpListener,
    tls: Option<ServerTls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DomainError> {
    serve_door(sphere, listener, tls, &DoorSettings::default(), shutdown).await
}

/// As [`serve_with`], with the door's timeouts, connection cap, host allow-list and
/// failed-authentication budget from `door` (the config file's `[server]` section).
pub async fn serve_door(
    sphere: Arc<Sphere>,
    listener: TcpListener,
    tls: Option<ServerTls>,
    door: &DoorSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DomainError> {
    let s = sphere.clone();
    let recovered = tokio::task::spawn_blocking(move || s.process_pending())
        .await
        .map_err(|e| StoreError::new("startup", e))??;
    if recovered > 0 {
        tracing::info!(recovered, "processed packages left pending by the last run");
    }

    let (jobs, worker) = process_in_background(sphere.clone());
    let sweeper = tokio::spawn(sweep_retention(sphere.clone()));
    // Open dashboard live streams never end by themselves: close them when shutdown starts,
    // or the graceful shutdown would wait for them forever.
    let live = sphere.clone();
    let shutdown = async move {
        shutdown.await;
        live.close_live();
    };
    let routes = http::routes(sphere, jobs);
    crate::door::accept::serve(routes, listener, tls, door, shutdown).await;
    sweeper.abort();
    // The routes (and with them the job sender) are gone: let the worker drain the queue.
    let _ = worker.await;
    Ok(())
}

/// Prune stored packages past their retention now and every [`RETENTION_SWEEP`]; a failed
/// sweep is logged and tried again at the next.
async fn sweep_retention(sphere: Arc<Sphere>) {
    let mut every = tokio::time::interval(RETENTION_SWEEP);
    loop {
        every.tick().await;
        let s = sphere.clone();
        match tokio::task::spawn_blocking(move || s.sweep_retention(crate::domain::now_unix_ms()))
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "retention sweep failed; retried later"),
            Err(e) => tracing::error!(error = %e, "retention sweep task failed"),
        }
    }
}

/// The background processing of uploaded packages: the routes send jobs, the worker runs them
/// until every sender is gone.
fn process_in_background(
    sphere: Arc<Sphere>,
) -> (UnboundedSender<ProcessJob>, tokio::task::JoinHandle<()>) {
    let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<ProcessJob>();
    let worker = tokio::spawn(async move {
        // One batch at a time: processing is disk-bound, and the server runs on small hosts.
        // A batch is whatever queued meanwhile (up to PROCESS_BATCH), made durable by one
        // sync and one commit. A package whose processing failed on storage stays pending; a
        // sweep retries pending packages every RETRY_SWEEP while any failure is outstanding.
        // With replicas, a replica that stopped between accept and process leaves packages
        // pending that nobody else queues: the sweep also runs for those.
        let shared = sphere.shares_its_stores();
        let mut retry_needed = false;
        let mut sweep = tokio::time::interval(RETRY_SWEEP);
        sweep.tick().await;
        loop {
            tokio::select! {
                job = queue.recv() => {
                    let Some(job) = job else { break };
                    // While a storm of uploads is being accepted, processing waits (bounded).
                    let waiting = std::time::Instant::now();
                    while let Some(wait) = sphere.processing_wait(waiting.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                    let mut jobs = vec![job];
                    while jobs.len() < crate::domain::PROCESS_BATCH {
                        match queue.try_recv() {
                            Ok(job) => jobs.push(job),
                            Err(_) => break,
                        }
                    }
                    let s = sphere.clone();
                    match tokio::task::spawn_blocking(move || s.process_batch(&jobs)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "processing failed; will retry");
                            retry_needed = true;
                        }
                        Err(e) => tracing::error!(error = %e, "processing task failed"),
                    }
                }
                _ = sweep.tick(), if retry_needed || shared => {
                    let s = sphere.clone();
                    if retry_needed {
                        retry_needed = !matches!(
                            tokio::task::spawn_blocking(move || {
                                s.process_pending()?;
                                s.pending_count()
                            })
                            .await,
                            Ok(Ok(0))
                        );
                    } else {
                        sweep_stale_pending(s).await;
                    }
                }
            }
        }
    });
    (jobs, worker)
}

/// Process what another replica left pending for longer than [`STALE_PENDING`]; a failure is
/// logged and tried again at the next sweep.
async fn sweep_stale_pending(sphere: Arc<Sphere>) {
    let stale = tokio::task::spawn_blocking(move || {
        let age = STALE_PENDING.as_millis() as u64;
        sphere.process_stale_pending(age, crate::domain::now_unix_ms())
    })
    .await;
    match stale {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::info!(
            processed = n,
            "processed packages another replica left pending"
        ),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "looking for packages left pending failed; retried later")
        }
        Err(e) => tracing::error!(error = %e, "pending sweep task failed"),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
