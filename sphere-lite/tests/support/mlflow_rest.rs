//! MLflow read as its UI reads it, over the same REST calls: a device's day runs and the
//! history of one metric, so tests see exactly the points a chart would draw.

// Each test binary uses a different part of this support module.
#![allow(dead_code)]

use serde_json::{Value, json};

/// `POST <url>/api/2.0/mlflow/<endpoint>` with `body`; the answer's JSON.
pub fn post(url: &str, endpoint: &str, body: Value) -> Value {
    let answer = ureq::post(&format!("{url}/api/2.0/mlflow/{endpoint}"))
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
        .unwrap_or_else(|e| panic!("{endpoint}: {e}"));
    serde_json::from_str(&answer.into_string().unwrap()).unwrap()
}

/// `GET <url>/api/2.0/mlflow/<endpoint>?<query>`; the answer's JSON.
pub fn get(url: &str, endpoint: &str, query: &[(&str, &str)]) -> Value {
    let mut r = ureq::get(&format!("{url}/api/2.0/mlflow/{endpoint}"));
    for (k, v) in query {
        r = r.query(k, v);
    }
    serde_json::from_str(&r.call().unwrap().into_string().unwrap()).unwrap()
}

/// The value of tag `key` of `run`.
pub fn tag<'a>(run: &'a Value, key: &str) -> Option<&'a str> {
    run["data"]["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
}

/// The metric runs of `device` in namespace `namespace` (one per UTC day, and any copy a
/// replica race left), oldest first.
pub fn day_runs(url: &str, namespace: &str, device: &str) -> Vec<Value> {
    let exp_name = format!("{namespace}/device/{device}");
    let exp = get(
        url,
        "experiments/get-by-name",
        &[("experiment_name", &exp_name)],
    );
    let exp_id = exp["experiment"]["experiment_id"].as_str().unwrap();
    let found = post(
        url,
        "runs/search",
        json!({"experiment_ids": [exp_id], "filter": "tags.`sphere.kind` = 'device-metrics'",
               "order_by": ["attributes.start_time ASC"]}),
    );
    found["runs"].as_array().cloned().unwrap_or_default()
}

/// Every point MLflow holds of metric `key` in `run`, as (step, timestamp, value), by step
/// then timestamp: a point stored twice appears twice.
pub fn history(url: &str, run: &Value, key: &str) -> Vec<(i64, i64, f64)> {
    let run_id = run["info"]["run_id"].as_str().unwrap();
    let got = get(
        url,
        "metrics/get-history",
        &[("run_id", run_id), ("metric_key", key)],
    );
    let mut points: Vec<(i64, i64, f64)> = got["metrics"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m["step"].as_i64().unwrap_or(0),
                m["timestamp"].as_i64().unwrap(),
                m["value"].as_f64().unwrap(),
            )
        })
        .collect();
    points.sort_by_key(|p| (p.0, p.1));
    points
}
