//! Operations routes: liveness, readiness and Prometheus metrics.
//!
//! Why: sphere-lite runs unattended behind a load balancer or a supervisor. `/healthz` says the
//! process serves; `/readyz` says both stores answer (a replica whose MLflow or S3 is gone is
//! taken out of rotation, not sent traffic it would fail); `/metrics` lets Prometheus alert on
//! error rates, a growing processing backlog or memory. Metric labels are coarse on purpose
//! (a route class, never a device id or a path), so the series count stays fixed.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::blocking;
use crate::domain::Sphere;

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// Route class (see [`route_class`]).
    route: &'static str,
    /// `2xx`, `4xx`, ...
    status: &'static str,
}

/// Labels of the package counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PackageLabels {
    /// `accepted` or `duplicate`.
    outcome: &'static str,
}

/// The server's metrics; cheap to clone (shared handles).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    packages: Family<PackageLabels, Counter>,
    devices: Gauge,
    pending: Gauge,
    rss_bytes: Gauge,
    uptime: Gauge,
    started: Instant,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics, all zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sphere_lite");
        let requests = Family::<RequestLabels, Counter>::default();
        let packages = Family::<PackageLabels, Counter>::default();
        let (devices, pending, rss_bytes, uptime) = Default::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route class and status class",
            requests.clone(),
        );
        registry.register(
            "packages",
            "Package uploads answered 200, by outcome",
            packages.clone(),
        );
        registry.register(
            "devices",
            "Devices known to the server",
            Gauge::clone(&devices),
        );
        registry.register(
            "pending_packages",
            "Packages accepted but not processed yet (the backlog)",
            Gauge::clone(&pending),
        );
        registry.register(
            "resident_memory_bytes",
            "Resident memory of the server process",
            Gauge::clone(&rss_bytes),
        );
        registry.register(
            "uptime_seconds",
            "Seconds since the server started",
            Gauge::clone(&uptime),
        );
        Metrics {
            registry: Arc::new(registry),
            requests,
            packages,
            devices,
            pending,
            rss_bytes,
            uptime,
            started: Instant::now(),
        }
    }

    /// Count one answered request.
    pub fn request(&self, path: &str, status: u16) {
        let status = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests
            .get_or_create(&RequestLabels {
                route: route_class(path),
                status,
            })
            .inc();
    }

    /// Count one upload answered 200 (`new`: accepted the first time; else a duplicate).
    pub fn package(&self, new: bool) {
        let outcome = if new { "accepted" } else { "duplicate" };
        self.packages
            .get_or_create(&PackageLabels { outcome })
            .inc();
    }

    fn encode(&self, sphere: &Sphere) -> Result<String, crate::domain::DomainError> {
        let (devices, pending) = sphere.fleet_gauges()?;
        self.devices.set(devices as i64);
        self.pending.set(pending as i64);
        if let Some(kib) = crate::rss::vm_rss_kib() {
            self.rss_bytes.set((kib * 1024) as i64);
        }
        self.uptime.set(self.started.elapsed().as_secs() as i64);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|e| crate::ports::StoreError::new("metrics", e))?;
        Ok(out)
    }
}

/// A fixed, small set of route classes for the request counter.
fn route_class(path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["api", "v2", "devices", "enroll"] => "enroll",
        ["api", "v2", "devices", _, "packages"] => "upload",
        ["api", "v2", "devices", _, "feedback", ..] => "feedback",
        ["api", "v2", "devices", ..] => "devices",
        ["api", "v2", "drift-events", ..] => "drift-events",
        ["api", "v2", ..] => "api-v2",
        ["api", "packages", "upload"] => "legacy-upload",
        ["api", ..] => "legacy",
        ["healthz"] | ["readyz"] | ["metrics"] => "ops",
        _ => "other",
    }
}

/// `/healthz`, `/readyz` (no token: load balancers probe them) and `/metrics` (operator
/// token: the figures describe the fleet).
pub fn routes(
    sphere: Arc<Sphere>,
    metrics: Metrics,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    let with_sphere = warp::any().map(move || sphere.clone());

    let health = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::with_status("ok\n", StatusCode::OK).into_response());

    let ready = warp::path!("readyz")
        .and(warp::get())
        .and(with_sphere.clone())
        .and_then(|sphere: Arc<Sphere>| async move {
            let reply = match blocking(move || sphere.check_ready()).await {
                Ok(()) => warp::reply::with_status("ready\n", StatusCode::OK).into_response(),
                Err(_) => warp::reply::with_status(
                    "not ready: a store does not answer (see the server log)\n",
                    StatusCode::SERVICE_UNAVAILABLE,
                )
                .into_response(),
            };
            Ok::<_, Rejection>(reply)
        });

    let scrape = warp::path!("metrics")
        .and(warp::get())
        .and(warp::header::optional::<String>("authorization"))
        .and(with_sphere)
        .and_then(move |auth: Option<String>, sphere: Arc<Sphere>| {
            let metrics = metrics.clone();
            async move {
                let text = blocking(move || {
                    sphere.authorize_operator(auth.as_deref())?;
                    metrics.encode(&sphere)
                })
                .await?;
                Ok::<_, Rejection>(
                    warp::reply::with_header(
                        text,
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )
                    .into_response(),
                )
            }
        });

    health.or(ready).unify().or(scrape).unify()
}

#[cfg(test)]
mod tests {
    use super::route_class;

    #[test]
    fn routes_fall_into_a_fixed_set_of_classes() {
        assert_eq!(route_class("/api/v2/devices/dev-1/packages"), "upload");
        assert_eq!(
            route_class("/api/v2/devices/dev-1/feedback/ack"),
            "feedback"
        );
        assert_eq!(route_class("/api/v2/devices/enroll"), "enroll");
        assert_eq!(route_class("/api/packages/upload"), "legacy-upload");
        assert_eq!(route_class("/api/drift/validations/pending"), "legacy");
        assert_eq!(route_class("/some/../random/path"), "other");
    }
}
