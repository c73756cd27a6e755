//! The Drift Hub (`/ui/drift`): drift incidents (one card per incident, its events one per
//! detector onset) filtered by device, detector, status and time, and the operator's
//! decisions: on a whole incident, on one event, or on selected events in bulk. After a
//! decision the hub shows the incident just decided and how far its feedback got.

use std::collections::{HashMap, HashSet};

use tinylcm_protocol::api::{
    DEFAULT_DRIFT_EVENT_PAGE, DriftEventQuery, DriftEventStatus, DriftEventView, DriftVerdict,
    FeedbackItemState, FeedbackVerdict, MAX_DETECTOR_BYTES, RejectRequest, ValidateRequest,
};
use tinylcm_protocol::ids::valid_device_id;
use warp::http::StatusCode;

use super::fields::Fields;
use super::image::image_url;
use super::incident::{CARD_IMAGES, card, classes_by_device};
use super::names::{device_menu, with_selected};
use super::pages::{self, DriftPage, ErrorPage, EventRow};
use super::reply::{Page, bad_request, domain_error, error_page, html, redirect, run};
use super::session::{Ctx, post_guard, require};
use super::time;
use crate::domain::{DomainError, MAX_DASHBOARD_PAGE, Sphere, group_by_incident, is_image_key};
use crate::http::ApiError;

pub(super) fn event_row(e: &DriftEventView, names: &HashMap<String, String>) -> EventRow {
    EventRow {
        id: e.id,
        event_seq: e.event_seq,
        incident: e.incident,
        device_name: names
            .get(&e.device_id)
            .cloned()
            .unwrap_or_else(|| e.device_id.clone()),
        detector: e.detector.clone(),
        statistic: format!("{:.3}", e.statistic),
        threshold: format!("{:.3}", e.threshold),
        magnitude: format!("{:.3}", e.magnitude),
        when: time::format_utc(e.unix_ms),
        received: time::format_utc(e.received_unix_ms),
        images: e
            .samples
            .iter()
            .filter(|k| is_image_key(k))
            .map(|k| image_url(k))
            .collect(),
        status: e.status.as_str(),
        pending: e.status == DriftEventStatus::Pending,
        label: e.label.clone(),
        feedback: e.feedback.iter().map(feedback_row).collect(),
        note: e.note.clone(),
        decided_by: e.decided_by.clone().unwrap_or_default(),
        decided: e.decided_unix_ms.map(time::format_utc).unwrap_or_default(),
    }
}

/// A decision's feedback item in words (escaped by the template like all text).
pub(super) fn feedback_row(f: &FeedbackItemState) -> pages::FeedbackRow {
    let what = match &f.verdict {
        FeedbackVerdict::Drift { verdict, .. } => match verdict {
            DriftVerdict::Confirmed => "drift confirmed".to_string(),
            DriftVerdict::FalseAlarm => "false alarm".to_string(),
        },
        FeedbackVerdict::Sample {
            id, label: Some(l), ..
        } => format!("sample {id} is {l}"),
        FeedbackVerdict::Sample { id, .. } => format!("sample {id} rejected"),
        FeedbackVerdict::Class { from, to } => format!("class {from} → {to}"),
        FeedbackVerdict::Config { revision, .. } => format!("configuration {revision}"),
    };
    pages::FeedbackRow {
        id: f.id,
        what,
        progress: f.progress.as_str(),
        reason: f.reason.clone(),
    }
}

// --- Drift Hub filter ------------------------------------------------------------------------

/// The Drift Hub's filter (from its query string) and cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DriftFilter {
    device: Option<String>,
    detector: Option<String>,
    /// `None`: any status.
    status: Option<DriftEventStatus>,
    since: Option<u64>,
    until: Option<u64>,
    after: Option<u64>,
    /// The incident (id of its first event) decided just before: shown above the list. Not
    /// part of the filter's links.
    decided: Option<u64>,
}

impl Default for DriftFilter {
    fn default() -> Self {
        DriftFilter {
            device: None,
            detector: None,
            status: Some(DriftEventStatus::Pending),
            since: None,
            until: None,
            after: None,
            decided: None,
        }
    }
}

pub(super) const DRIFT_PARAMS: [&str; 7] = [
    "device", "detector", "status", "since", "until", "after", "decided",
];

impl DriftFilter {
    pub(super) fn parse(raw: &str) -> Result<DriftFilter, String> {
        let f = Fields::parse(raw, &DRIFT_PARAMS, None)?;
        let device = f.get("device").map(str::to_owned);
        if device.as_deref().is_some_and(|d| !valid_device_id(d)) {
            return Err("`device` is not a device id".into());
        }
        let detector = f.get("detector").map(str::to_owned);
        if detector
            .as_deref()
            .is_some_and(|d| d.len() > MAX_DETECTOR_BYTES)
        {
            return Err(format!(
                "`detector` is longer than {MAX_DETECTOR_BYTES} bytes"
            ));
        }
        let status = match f.get("status") {
            None | Some("pending") => Some(DriftEventStatus::Pending),
            Some("validated") => Some(DriftEventStatus::Validated),
            Some("rejected") => Some(DriftEventStatus::Rejected),
            Some("any") => None,
            Some(_) => return Err("`status` must be pending, validated, rejected or any".into()),
        };
        let after = f
            .get("after")
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| "`after` must be an event id".to_owned())
            })
            .transpose()?;
        let decided = f
            .get("decided")
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| "`decided` must be an event id".to_owned())
            })
            .transpose()?;
        Ok(DriftFilter {
            device,
            detector,
            status,
            since: f.time("since")?,
            until: f.time("until")?,
            after,
            decided,
        })
    }

    /// The filter as a query string, with `after` as the cursor.
    pub(super) fn query(&self, after: Option<u64>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(d) = &self.device {
            q.append_pair("device", d);
        }
        if let Some(d) = &self.detector {
            q.append_pair("detector", d);
        }
        q.append_pair("status", self.status.map_or("any", |s| s.as_str()));
        if let Some(t) = self.since {
            q.append_pair("since", &time::format_local_field(t));
        }
        if let Some(t) = self.until {
            q.append_pair("until", &time::format_local_field(t));
        }
        if let Some(a) = after {
            q.append_pair("after", &a.to_string());
        }
        q.finish()
    }

    fn link(&self, after: Option<u64>) -> String {
        format!("/ui/drift?{}", self.query(after))
    }
}

pub(super) async fn drift(ctx: Ctx, raw: String) -> Page {
    let session = require(&ctx).await?;
    let nav = session.nav();
    let filter =
        DriftFilter::parse(&raw).map_err(|e| bad_request(Some(nav.clone()), e, "/ui/drift"))?;
    let sphere = ctx.sphere.clone();
    let f = filter.clone();
    let (menu, list, decided, classes) = run(move || {
        let menu = device_menu(&sphere, f.device.as_deref())?;
        let list = sphere.list_drift_events(&DriftEventQuery {
            device: f.device.clone(),
            detector: f.detector.clone(),
            status: f.status,
            since: f.since,
            until: f.until,
            after: f.after,
            limit: Some(DEFAULT_DRIFT_EVENT_PAGE),
        })?;
        let decided = match f.decided.map(|id| sphere.drift_incident(id)).transpose() {
            Ok(d) => d,
            // Gone since (retention): nothing to confirm.
            Err(DomainError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let classes =
            classes_by_device(&sphere, list.events.iter().chain(decided.iter().flatten()))?;
        Ok((menu, list, decided, classes))
    })
    .await
    .map_err(|e| domain_error(Some(nav.clone()), e, "/ui/drift"))?;
    let names: HashMap<String, String> = menu.iter().cloned().collect();
    let statuses = ["pending", "validated", "rejected", "any"]
        .into_iter()
        .map(|s| (s, filter.status.map_or("any", |st| st.as_str()) == s))
        .collect();
    let incidents = group_by_incident(list.events)
        .iter()
        .filter_map(|events| card(events, &names, &classes, CARD_IMAGES))
        .collect();
    Ok(html(
        StatusCode::OK,
        &DriftPage {
            csrf: nav.csrf.clone(),
            nav: Some(nav),
            devices: with_selected(menu, filter.device.as_deref()),
            detector: filter.detector.clone().unwrap_or_default(),
            statuses,
            since: filter
                .since
                .map(time::format_local_field)
                .unwrap_or_default(),
            until: filter
                .until
                .map(time::format_local_field)
                .unwrap_or_default(),
            return_query: filter.query(filter.after),
            decided: decided.and_then(|events| card(&events, &names, &classes, CARD_IMAGES)),
            incidents,
            after_given: filter.after.is_some(),
            first_link: filter.link(None),
            next_link: list.next_after.map(|a| filter.link(Some(a))),
        },
    ))
}

/// Validate or reject `ids` as `operator`; (id, outcome) per event and the worst failure.
pub(super) fn decide_all(
    sphere: &Sphere,
    ids: &[u64],
    operator: &str,
    validate: bool,
    label: Option<String>,
    note: Option<String>,
) -> (Vec<(u64, String)>, Option<DomainError>) {
    let mut outcomes = Vec::new();
    let mut failure = None;
    // Events decided together (an incident's) often share samples: each label once.
    let mut labelled = HashSet::new();
    for &id in ids {
        let result = if validate {
            sphere.validate_drift_event_once(
                id,
                operator,
                &ValidateRequest {
                    label: label.clone(),
                    note: note.clone(),
                },
                &mut labelled,
            )
        } else {
            sphere.reject_drift_event(id, operator, &RejectRequest { note: note.clone() })
        };
        match result {
            Ok(e) => outcomes.push((id, e.status.as_str().to_owned())),
            Err(e) => {
                outcomes.push((id, format!("not changed: {e}")));
                failure.get_or_insert(e);
            }
        }
    }
    (outcomes, failure)
}

pub(super) const DECIDE_FIELDS: [&str; 5] = ["csrf", "return", "action", "label", "note"];

/// What a decision covers.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    /// One event (`/ui/drift/{id}/decide`).
    Event(u64),
    /// The events selected by `id` fields (`/ui/drift/bulk`).
    Selected,
    /// The pending events of the incident event `id` belongs to (`/ui/drift/{id}/incident`).
    Incident(u64),
}

pub(super) async fn decide(target: Target, ctx: Ctx, body: bytes::Bytes) -> Page {
    let repeatable = matches!(target, Target::Selected).then_some("id");
    let (session, fields) = post_guard(&ctx, &body, &DECIDE_FIELDS, repeatable).await?;
    let nav = session.nav();
    // The view to return to: re-parsed and re-built, so it can only ever be a Drift Hub URL.
    let filter = DriftFilter::parse(fields.get("return").unwrap_or("")).unwrap_or_default();
    let back = filter.link(None);
    let validate = match fields.get("action") {
        Some("validate") => true,
        Some("reject") => false,
        _ => {
            return Err(bad_request(
                Some(nav),
                "`action` must be validate or reject",
                &back,
            ));
        }
    };
    let ids: Vec<u64> = match target {
        Target::Event(id) => vec![id],
        Target::Incident(id) => {
            let sphere = ctx.sphere.clone();
            let events = run(move || sphere.drift_incident(id))
                .await
                .map_err(|e| domain_error(Some(nav.clone()), e, &back))?;
            let ids: Vec<u64> = events
                .iter()
                .filter(|e| e.status == DriftEventStatus::Pending)
                .map(|e| e.id)
                .collect();
            if ids.is_empty() {
                return Err(error_page(
                    Some(nav),
                    StatusCode::CONFLICT,
                    "every event of this incident is decided already",
                    Some("open the incident to see its decision".into()),
                    &format!("/ui/drift/{id}"),
                ));
            }
            ids
        }
        Target::Selected => {
            let mut ids = Vec::new();
            for v in &fields.repeated {
                match v.parse::<u64>() {
                    Ok(id) if !ids.contains(&id) => ids.push(id),
                    Ok(_) => {}
                    Err(_) => return Err(bad_request(Some(nav), "`id` must be event ids", &back)),
                }
            }
            if ids.is_empty() {
                return Err(bad_request(Some(nav), "select at least one event", &back));
            }
            if ids.len() > MAX_DASHBOARD_PAGE {
                return Err(bad_request(
                    Some(nav),
                    format!("at most {MAX_DASHBOARD_PAGE} events at once"),
                    &back,
                ));
            }
            ids
        }
    };
    let label = fields.get("label").map(str::to_owned);
    let note = fields.get("note").map(str::to_owned);
    let sphere = ctx.sphere.clone();
    let operator = session.name.clone();
    let list = ids.clone();
    let (outcomes, failure) =
        run(move || Ok(decide_all(&sphere, &list, &operator, validate, label, note)))
            .await
            .map_err(|e| domain_error(Some(nav.clone()), e, &back))?;
    match failure {
        // After a whole incident, the hub confirms it and shows its feedback's progress.
        None => Ok(redirect(&match target {
            Target::Incident(id) => format!("{back}&decided={id}"),
            _ => back,
        })),
        Some(e) => {
            let api = ApiError::from(e);
            Err(html(
                api.status,
                &ErrorPage {
                    nav: Some(nav),
                    status: api.status.as_u16(),
                    title: api.status.canonical_reason().unwrap_or("Error").to_owned(),
                    message: if ids.len() == 1 {
                        api.error
                    } else {
                        "some of the selected events were not changed".into()
                    },
                    fix: api.fix,
                    outcomes: if ids.len() == 1 { vec![] } else { outcomes },
                    back,
                },
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_filters_parse_and_round_trip() {
        let f = DriftFilter::parse("").unwrap();
        assert_eq!(f, DriftFilter::default());
        let f = DriftFilter::parse(
            "device=dev-01&detector=a%26b+%3Cx%3E&status=any&since=2025-11-26T09:00&until=&after=7",
        )
        .unwrap();
        assert_eq!(f.detector.as_deref(), Some("a&b <x>"));
        assert_eq!(f.status, None);
        assert_eq!(f.since, Some(1_764_147_600_000));
        assert_eq!(f.until, None);
        assert_eq!(DriftFilter::parse(&f.query(f.after)).unwrap(), f);
        for bad in [
            "status=open",
            "since=yesterday",
            "after=-1",
            "device=../x",
            "nope=1",
            "status=any&status=pending",
        ] {
            assert!(DriftFilter::parse(bad).is_err(), "{bad}");
        }
    }
}
