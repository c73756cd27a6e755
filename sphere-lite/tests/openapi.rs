//! The OpenAPI document (`GET /api/v2/openapi.json`) against the real router: it is a
//! well-formed OpenAPI 3.1 document whose references all resolve, every operation it lists is
//! routed (never "no such route" or 405), and every route in the HTTP layer's source is in it,
//! so a route cannot be added without documenting it.

use std::collections::BTreeSet;

use serde_json::Value;
use sphere_lite::http::openapi::documented_routes;
use sphere_lite::server::open_embedded;

#[path = "support/server.rs"]
mod server;

/// Every `"$ref"` value in `v`.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// `/a/{x}/b` and `/a/" / String / "b` both become `/a/*/b`.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|s| if s.starts_with('{') { "*" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// The paths of every `warp::path!(...)` in the HTTP layer's source.
fn routed_paths() -> BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for (_, rest) in text
            .match_indices("warp::path!(")
            .map(|(i, _)| ((), &text[i + 12..]))
        {
            let inner = &rest[..rest.find(')').unwrap()];
            let segments: Vec<String> = inner
                .split('/')
                .map(|s| {
                    let s = s.trim();
                    match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                        Some(literal) => literal.to_owned(),
                        None => "*".to_owned(),
                    }
                })
                .collect();
            out.insert(format!("/{}", segments.join("/")));
        }
    }
    out
}

#[test]
fn the_document_is_well_formed_and_its_references_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let server = server::TestServer::start(open_embedded(dir.path()).unwrap());
    let (status, doc) = server.get("/api/v2/openapi.json", None);
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "EnrollRequest",
        "FeedbackPage",
        "FeedbackVerdict",
        "ModelAssignment",
        "SignedRelease",
        "ErrorResponse",
    ] {
        assert!(schemas.contains_key(name), "{name} missing from components");
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("reference outside the components: {r}"));
        assert!(schemas.contains_key(name), "dangling reference {r}");
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["responses"].is_object(),
                "{method} {path} has no responses"
            );
            assert!(
                op["security"].is_array(),
                "{method} {path} does not say who may call it"
            );
        }
    }
    // A closed enum keeps its closed values.
    let verdict = serde_json::to_string(&schemas["FeedbackVerdict"]).unwrap();
    for tag in ["drift", "sample", "class", "config"] {
        assert!(verdict.contains(&format!("\"{tag}\"")), "{verdict}");
    }
}

#[test]
fn every_documented_operation_is_routed_and_every_route_is_documented() {
    let dir = tempfile::tempdir().unwrap();
    let server = server::TestServer::start(open_embedded(dir.path()).unwrap());
    for (method, path) in documented_routes() {
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "1" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let response = ureq::request(&method.to_uppercase(), &server.url(&concrete)).call();
        let (status, body) = match response {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
            Err(e) => panic!("{method} {concrete}: {e}"),
        };
        assert_ne!(status, 405, "{method} {path}: method not routed");
        assert!(
            !(status == 404 && body.contains("no such route")),
            "{method} {path}: not routed"
        );
    }
    let documented: BTreeSet<String> = documented_routes().iter().map(|(_, p)| shape(p)).collect();
    let undocumented: Vec<String> = routed_paths()
        .into_iter()
        .filter(|p| !documented.contains(p))
        .collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the OpenAPI document: {undocumented:?}"
    );
}
