//! An incident's card and page (`/ui/drift/{id}`): the drift events one device reported for
//! one incident (one per detector onset), their samples, the label chooser, and what became
//! of the decision on the device.
//!
//! Why a module of its own: the Drift Hub lists the same cards, and an incident is what an
//! operator reviews, not a detector's onset (two detectors firing for one change made every
//! incident appear twice). Device-supplied text (detector and class names) reaches the HTML
//! only through askama expressions.

use std::collections::HashMap;

use tinylcm_protocol::api::{DriftEventStatus, DriftEventView};
use warp::http::StatusCode;

use super::drift::{DriftFilter, event_row};
use super::names::{device_name, display_name};
use super::pages::{ClassChoice, IncidentCard, IncidentPage};
use super::reply::{Page, domain_error, error_page, html, run};
use super::session::{Ctx, require};
use super::time;
use crate::domain::{DomainError, PROPOSED_CLASS_PREFIX, Sphere};

/// Sample images shown on one card at most (the incident page shows them all).
pub(super) const CARD_IMAGES: usize = 6;

/// Classes offered with a digit for keyboard review.
const KEYED_CLASSES: usize = 9;

/// Each device's classes, (known, proposed), by device id.
pub(super) type DeviceClasses = HashMap<String, (Vec<String>, Vec<String>)>;

/// The classes of each device in `events`.
pub(super) fn classes_by_device<'a>(
    sphere: &Sphere,
    events: impl IntoIterator<Item = &'a DriftEventView>,
) -> Result<DeviceClasses, DomainError> {
    let mut out = HashMap::new();
    for e in events {
        if out.contains_key(&e.device_id) {
            continue;
        }
        let classes = match sphere.device_classes(&e.device_id) {
            Ok(c) => c,
            // Removed since it reported: no classes to offer, free text still works.
            Err(DomainError::NotFound { .. }) => Default::default(),
            Err(e) => return Err(e),
        };
        out.insert(e.device_id.clone(), classes);
    }
    Ok(out)
}

/// The label chooser's entries: the known classes, then the proposed ones, the first nine
/// with their digit.
fn choices(known: &[String], proposed: &[String]) -> Vec<ClassChoice> {
    known
        .iter()
        .chain(proposed)
        .enumerate()
        .map(|(i, name)| ClassChoice {
            key: (i < KEYED_CLASSES).then_some(i + 1),
            name: name.clone(),
            proposed: name.starts_with(PROPOSED_CLASS_PREFIX),
        })
        .collect()
}

/// The card of one incident's `events` (non-empty, in id order), showing at most `images`
/// samples.
pub(super) fn card(
    events: &[DriftEventView],
    names: &HashMap<String, String>,
    classes: &DeviceClasses,
    images: usize,
) -> Option<IncidentCard> {
    let first = events.first()?;
    let rows: Vec<_> = events.iter().map(|e| event_row(e, names)).collect();
    let mut detectors: Vec<String> = Vec::new();
    let mut urls: Vec<String> = Vec::new();
    for row in &rows {
        if !detectors.contains(&row.detector) {
            detectors.push(row.detector.clone());
        }
        for url in &row.images {
            if !urls.contains(url) && urls.len() < images {
                urls.push(url.clone());
            }
        }
    }
    let pending = events
        .iter()
        .filter(|e| e.status == DriftEventStatus::Pending)
        .count();
    let status = if pending == events.len() {
        "pending"
    } else if pending > 0 || events.iter().any(|e| e.status != first.status) {
        "partly decided"
    } else {
        first.status.as_str()
    };
    // The first onset that reports what the device predicted (older devices report none).
    let said = events
        .iter()
        .find(|e| e.predicted.is_some() || !e.top_k.is_empty());
    let predicted = said.and_then(|e| e.predicted.clone());
    let top_k = said
        .map(|e| {
            e.top_k
                .iter()
                .map(|c| (c.class.clone(), format!("{:.2}", c.score)))
                .collect()
        })
        .unwrap_or_default();
    let (known, proposed) = classes
        .get(&first.device_id)
        .map(|(k, p)| (k.as_slice(), p.as_slice()))
        .unwrap_or_default();
    Some(IncidentCard {
        id: first.id,
        device_id: first.device_id.clone(),
        device_name: rows[0].device_name.clone(),
        incident: first.incident,
        when: time::format_utc(
            events
                .iter()
                .map(|e| e.unix_ms)
                .min()
                .unwrap_or(first.unix_ms),
        ),
        status,
        pending: pending > 0,
        events: rows,
        detectors,
        images: urls,
        classes: choices(known, proposed),
        predicted,
        top_k,
        bulk: true,
    })
}

/// `GET /ui/drift/{id}`: the incident drift event `id` belongs to.
pub(super) async fn page(id: u64, ctx: Ctx) -> Page {
    let session = require(&ctx).await?;
    let nav = session.nav();
    let sphere = ctx.sphere.clone();
    let found = run(move || {
        let events = match sphere.drift_incident(id) {
            Ok(events) => events,
            Err(DomainError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let classes = classes_by_device(&sphere, &events)?;
        let device = &events[0].device_id;
        let name = match sphere.device_summary(device)? {
            // A settings read that fails still names the device, by its enrollment name.
            Some(d) => device_name(&sphere, &d).unwrap_or_else(|_| display_name(&d, None)),
            None => device.clone(),
        };
        Ok(Some((events, classes, name)))
    })
    .await
    .map_err(|e| domain_error(Some(nav.clone()), e, "/ui/drift"))?;
    let Some((events, classes, name)) = found else {
        return Err(error_page(
            Some(nav),
            StatusCode::NOT_FOUND,
            format!("no drift event {id}"),
            Some("pick an incident in the Drift Hub".into()),
            "/ui/drift",
        ));
    };
    let names = HashMap::from([(events[0].device_id.clone(), name)]);
    // No bulk form on this page: the incident's own form decides it.
    let Some(card) =
        card(&events, &names, &classes, usize::MAX).map(|c| IncidentCard { bulk: false, ..c })
    else {
        return Err(error_page(
            Some(nav),
            StatusCode::NOT_FOUND,
            format!("no drift event {id}"),
            None,
            "/ui/drift",
        ));
    };
    Ok(html(
        StatusCode::OK,
        &IncidentPage {
            csrf: nav.csrf.clone(),
            nav: Some(nav),
            return_query: DriftFilter::default().query(None),
            card,
        },
    ))
}
