//! The OpenAPI 3.1 document of sphere-lite's HTTP API, served at `GET /api/v2/openapi.json`.
//!
//! Why generated here and not written as a file: the body schemas come from the same Rust
//! types serde reads and writes (`schemars` follows the serde attributes), so they cannot
//! drift from what the server does; the route table below is checked against the router by
//! `tests/openapi.rs` in both directions (every documented operation is routed, every routed
//! path is documented).

use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};
use tinylcm_protocol::{api, datahub};

use crate::domain::{
    DeviceList, DeviceUpdate, MetricKeys, MetricSeries, ReleaseList, ReleaseSummary,
};
use crate::ports::{DeviceSettings, Rollout};

/// Who may call an operation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// Anyone (the enrollment key travels in the body).
    Public,
    /// The device's own token (`Authorization: Bearer`).
    Device,
    /// An operator token.
    Operator,
}

/// A request or response body.
#[derive(Clone, Copy)]
enum Body {
    /// No body.
    Empty,
    /// JSON of a Rust type.
    Json(fn(&mut SchemaGenerator) -> Schema),
    /// Newline-delimited JSON: one object of a Rust type per line.
    Lines(fn(&mut SchemaGenerator) -> Schema),
    /// Another media type, described in words.
    Other(&'static str, &'static str),
}

fn json<T: JsonSchema>() -> Body {
    Body::Json(|g| g.subschema_for::<T>())
}

/// One documented operation.
struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: Auth,
    query: &'static [(&'static str, &'static str)],
    request: Body,
    ok: (u16, Body),
}

/// The path parameters of `path` (`{id}` segments).
fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

/// Every operation of the v2 API, the original clients' API and the operations endpoints.
fn operations() -> Vec<Op> {
    use Auth::{Device, Operator, Public};
    let op = |method, path, summary, auth, request, ok| Op {
        method,
        path,
        summary,
        auth,
        query: &[],
        request,
        ok,
    };
    let tar = Body::Other(
        "application/x-tar",
        "a sync package (tinylcm_protocol::package)",
    );
    vec![
        op(
            "get",
            "/api/v2/status",
            "Service name, version and API version",
            Public,
            Body::Empty,
            (200, json::<api::StatusResponse>()),
        ),
        op(
            "post",
            "/api/v2/devices/enroll",
            "Trade an enrollment key for a device id and token",
            Public,
            json::<api::EnrollRequest>(),
            (200, json::<api::EnrollResponse>()),
        ),
        op(
            "get",
            "/api/v2/devices",
            "The fleet: every device with last-seen time and package count",
            Operator,
            Body::Empty,
            (200, json::<DeviceList>()),
        ),
        op(
            "post",
            "/api/v2/devices",
            "Add a device under an id the operator chooses (original clients)",
            Operator,
            json::<AddDevice>(),
            (201, json::<api::EnrollResponse>()),
        ),
        op(
            "post",
            "/api/v2/devices/{id}/packages",
            "Upload a sync package (idempotent per package id)",
            Device,
            tar,
            (200, json::<api::UploadResponse>()),
        ),
        Op {
            query: &[("after", "only items with a larger id")],
            ..op(
                "get",
                "/api/v2/devices/{id}/feedback",
                "Unacknowledged feedback, oldest first",
                Device,
                Body::Empty,
                (200, json::<api::FeedbackPage>()),
            )
        },
        op(
            "post",
            "/api/v2/devices/{id}/feedback/ack",
            "Acknowledge applied feedback up to an id",
            Device,
            json::<api::AckRequest>(),
            (200, json::<api::AckResponse>()),
        ),
        op(
            "post",
            "/api/v2/devices/{id}/feedback/results",
            "What became of feedback items on the device: applied, or refused with its reason",
            Device,
            json::<api::FeedbackResults>(),
            (200, json::<api::FeedbackResultsAnswer>()),
        ),
        op(
            "get",
            "/api/v2/devices/{id}/model",
            "The release this device should run (204 when none)",
            Device,
            Body::Empty,
            (200, json::<api::ModelAssignment>()),
        ),
        op(
            "get",
            "/api/v2/devices/{id}/models/{name}/{version}",
            "Download a release's model file (Range resumes)",
            Device,
            Body::Empty,
            (
                200,
                Body::Other("application/octet-stream", "the model file"),
            ),
        ),
        op(
            "get",
            "/api/v2/devices/{id}/settings",
            "The operator's settings of a device",
            Operator,
            Body::Empty,
            (200, json::<DeviceSettings>()),
        ),
        op(
            "patch",
            "/api/v2/devices/{id}/settings",
            "Rename, regroup, tag or locate a device",
            Operator,
            json::<DeviceUpdate>(),
            (200, json::<DeviceSettings>()),
        ),
        op(
            "post",
            "/api/v2/devices/{id}/token",
            "Rotate the device's token (the old one stops at once)",
            Operator,
            Body::Empty,
            (200, json::<api::EnrollResponse>()),
        ),
        op(
            "post",
            "/api/v2/devices/{id}/decommission",
            "Revoke the device's token and take it out of rollouts",
            Operator,
            Body::Empty,
            (200, json::<DeviceSettings>()),
        ),
        Op {
            query: &[
                ("key", "metric key (required)"),
                ("since", "Unix ms, inclusive"),
                ("until", "Unix ms, exclusive"),
                ("limit", "1..=2000 points"),
            ],
            ..op(
                "get",
                "/api/v2/devices/{id}/metrics",
                "A metric's time series",
                Operator,
                Body::Empty,
                (200, json::<MetricSeries>()),
            )
        },
        op(
            "get",
            "/api/v2/devices/{id}/metrics/keys",
            "The metric keys a device has sent",
            Operator,
            Body::Empty,
            (200, json::<MetricKeys>()),
        ),
        op(
            "get",
            "/api/v2/devices/{id}/config",
            "A device's configuration layers and whether it applied them",
            Operator,
            Body::Empty,
            (200, json::<api::DeviceConfigState>()),
        ),
        op(
            "put",
            "/api/v2/devices/{id}/config",
            "Set the device's own configuration layer",
            Operator,
            json::<api::ConfigRequest>(),
            (200, json::<api::DeviceConfigState>()),
        ),
        op(
            "post",
            "/api/v2/devices/{id}/config/refusal",
            "The device refused a remote configuration (never delivered to it again)",
            Device,
            json::<api::ConfigRefusal>(),
            (200, json::<api::ConfigRefused>()),
        ),
        op(
            "get",
            "/api/v2/config",
            "The fleet-wide and group configuration layers",
            Operator,
            Body::Empty,
            (200, json::<Vec<api::ConfigLayer>>()),
        ),
        op(
            "put",
            "/api/v2/config/{scope}",
            "Set the layer of `all` or a group and deliver it",
            Operator,
            json::<api::ConfigRequest>(),
            (200, json::<api::ScopeConfigResult>()),
        ),
        Op {
            query: &[
                ("device", "device id"),
                ("detector", "detector name"),
                ("status", "pending | validated | rejected"),
                ("since", "Unix ms"),
                ("until", "Unix ms"),
                ("after", "previous page's next_after"),
                ("limit", "1..=500"),
            ],
            ..op(
                "get",
                "/api/v2/drift-events",
                "Drift events, filtered and paginated",
                Operator,
                Body::Empty,
                (200, json::<api::DriftEventList>()),
            )
        },
        op(
            "get",
            "/api/v2/drift-events/{event}",
            "One drift event",
            Operator,
            Body::Empty,
            (200, json::<api::DriftEventView>()),
        ),
        op(
            "post",
            "/api/v2/drift-events/{event}/validate",
            "Validate a pending event (queues feedback)",
            Operator,
            json::<api::ValidateRequest>(),
            (200, json::<api::DriftEventView>()),
        ),
        op(
            "post",
            "/api/v2/drift-events/{event}/reject",
            "Reject a pending event as a false alarm",
            Operator,
            json::<api::RejectRequest>(),
            (200, json::<api::DriftEventView>()),
        ),
        Op {
            query: &[
                ("device", "device id"),
                ("class", "class name"),
                ("since", "Unix ms, device clock"),
                ("until", "Unix ms, device clock"),
                ("after", "previous page's next_after"),
                ("limit", "page size"),
            ],
            ..op(
                "get",
                "/api/v2/predictions",
                "Data Hub: prediction samples, newest first",
                Operator,
                Body::Empty,
                (200, json::<datahub::PredictionList>()),
            )
        },
        Op {
            query: &[
                ("level", "this level or more severe"),
                ("q", "text in message or target"),
                ("after", "previous page's next_after"),
                ("limit", "page size"),
            ],
            ..op(
                "get",
                "/api/v2/devices/{id}/logs",
                "A device's operational log lines, newest first",
                Operator,
                Body::Empty,
                (200, json::<datahub::LogPage>()),
            )
        },
        Op {
            query: &[
                ("status", "pending | validated | rejected"),
                ("device", "device id"),
                ("since", "Unix ms, device clock"),
            ],
            ..op(
                "get",
                "/api/v2/exports/embeddings",
                "Drift-sample embeddings for retraining, one JSON object per line",
                Operator,
                Body::Empty,
                (
                    200,
                    Body::Lines(|g| g.subschema_for::<datahub::EmbeddingExportLine>()),
                ),
            )
        },
        op(
            "post",
            "/api/v2/models",
            "Publish a signed release",
            Operator,
            Body::Other(
                "multipart/form-data",
                "parts `release` (SignedRelease JSON) and `model` (the file)",
            ),
            (201, json::<ReleaseSummary>()),
        ),
        op(
            "get",
            "/api/v2/models",
            "Releases and rollouts",
            Operator,
            Body::Empty,
            (200, json::<ReleaseList>()),
        ),
        op(
            "post",
            "/api/v2/models/{name}/{version}/rollout",
            "Assign a release to a device group (all or a canary)",
            Operator,
            json::<api::RolloutRequest>(),
            (200, json::<Rollout>()),
        ),
        op(
            "get",
            "/api/v2/openapi.json",
            "This document",
            Public,
            Body::Empty,
            (200, Body::Other("application/json", "OpenAPI 3.1")),
        ),
        op(
            "get",
            "/healthz",
            "Liveness: the process serves",
            Public,
            Body::Empty,
            (200, Body::Other("text/plain", "ok")),
        ),
        op(
            "get",
            "/readyz",
            "Readiness: both stores answer (503 otherwise)",
            Public,
            Body::Empty,
            (200, Body::Other("text/plain", "ready")),
        ),
        op(
            "get",
            "/metrics",
            "Prometheus metrics",
            Operator,
            Body::Empty,
            (
                200,
                Body::Other("application/openmetrics-text", "OpenMetrics text"),
            ),
        ),
        op(
            "get",
            "/api/status",
            "Original clients: server status",
            Public,
            Body::Empty,
            (
                200,
                Body::Other("application/json", "the original server's status object"),
            ),
        ),
        op(
            "post",
            "/api/devices/register",
            "Original clients: register (the device must have been added by an operator)",
            Device,
            Body::Other("application/json", "the original client's registration"),
            (
                200,
                Body::Other("application/json", "the original server's answer"),
            ),
        ),
        op(
            "post",
            "/api/packages/upload",
            "Original clients: upload a flat TAR (or .tar.gz) with its MD5",
            Device,
            Body::Other("multipart/form-data", "parts `package` and `metadata`"),
            (
                200,
                Body::Other("application/json", "the original server's answer"),
            ),
        ),
        op(
            "get",
            "/api/drift/validations/pending",
            "Original clients: pending validations",
            Device,
            Body::Empty,
            (200, Body::Other("application/json", "validations")),
        ),
        op(
            "post",
            "/api/drift/validations/acknowledge",
            "Original clients: acknowledge validations",
            Device,
            Body::Other("application/json", "validation ids"),
            (200, Body::Other("application/json", "per-id results")),
        ),
        op(
            "get",
            "/api/samples/validation-results/{id}",
            "Original clients: validation results of a device's samples",
            Device,
            Body::Empty,
            (200, Body::Other("application/json", "results")),
        ),
    ]
}

/// `POST /api/v2/devices` body (the route parses its own private type of the same shape).
#[derive(JsonSchema)]
#[allow(dead_code)]
struct AddDevice {
    /// 1 to 64 characters of `A-Z a-z 0-9 _ -`.
    device_id: String,
    /// Display name.
    name: Option<String>,
}

fn content(body: Body, g: &mut SchemaGenerator) -> Option<Value> {
    match body {
        Body::Empty => None,
        Body::Json(schema) => Some(json!({"application/json": {"schema": schema(g)}})),
        Body::Lines(schema) => Some(json!({"application/x-ndjson": {"schema": schema(g)}})),
        Body::Other(media, what) => Some(json!({ media: {"schema": {"description": what}} })),
    }
}

fn operation(op: &Op, g: &mut SchemaGenerator) -> Value {
    let mut parameters: Vec<Value> = path_params(op.path)
        .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    parameters.extend(op.query.iter().map(|(name, what)| {
        json!({"name": name, "in": "query", "required": false, "description": what,
               "schema": {"type": "string"}})
    }));
    let error = json!({"description": "refused; the body says why and what to do",
        "content": {"application/json": {"schema": g.subschema_for::<api::ErrorResponse>()}}});
    let mut ok = json!({"description": "success"});
    if let Some(c) = content(op.ok.1, g) {
        ok["content"] = c;
    }
    let mut responses = Map::new();
    responses.insert(op.ok.0.to_string(), ok);
    responses.insert("4XX".into(), error.clone());
    responses.insert("5XX".into(), error);
    let mut out = json!({
        "summary": op.summary,
        "operationId": format!("{} {}", op.method, op.path),
        "parameters": parameters,
        "responses": responses,
    });
    match op.auth {
        Auth::Public => out["security"] = json!([]),
        Auth::Device => out["security"] = json!([{"deviceToken": []}]),
        Auth::Operator => out["security"] = json!([{"operatorToken": []}]),
    }
    if let Some(c) = content(op.request, g) {
        out["requestBody"] = json!({"required": true, "content": c});
    }
    out
}

/// The whole document.
pub fn document() -> Value {
    let mut g = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let mut paths = Map::new();
    for op in operations() {
        let item = paths
            .entry(op.path)
            .or_insert_with(|| Value::Object(Map::new()));
        item[op.method] = operation(&op, &mut g);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "sphere-lite",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The TinyLCM fleet server: devices enroll, sync packages and pull feedback, configuration and model releases; operators run the fleet. Errors are JSON {error, fix?}.",
            "license": {"name": "MIT OR Apache-2.0", "identifier": "MIT OR Apache-2.0"},
        },
        "paths": paths,
        "components": {
            "schemas": g.take_definitions(true),
            "securitySchemes": {
                "deviceToken": {"type": "http", "scheme": "bearer", "description": "the device's own token (from enrollment); a device can only act as itself"},
                "operatorToken": {"type": "http", "scheme": "bearer", "description": "an operator token (`sphere-lite token create`)"},
            },
        },
    })
}

/// Every documented (method, path template), for the coverage test.
pub fn documented_routes() -> Vec<(&'static str, &'static str)> {
    operations().iter().map(|o| (o.method, o.path)).collect()
}
