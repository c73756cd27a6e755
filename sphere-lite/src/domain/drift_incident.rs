//! Drift incidents: the events one device reported for one incident, reviewed together, and
//! the classes an operator can label them with.
//!
//! Why: a device reports one drift event per detector onset, and several detectors usually
//! fire for the same change (an incident), so a list of events shows every incident two or
//! more times. The device numbers its incidents (`incident`, per life of its state database,
//! `epoch`), so the events of one incident are those of the same device, epoch and incident
//! number; the Drift Hub shows them as one card and a decision covers all of them.
//!
//! The label chooser offers the classes the device reports counts for (its status's
//! per-class counts arrive as the metric keys `classes.<name>.total`); names the runtime
//! proposes for clusters it found itself start with `new-`.

use std::collections::BTreeSet;

use tinylcm_protocol::api::{DriftEventQuery, DriftEventView, MAX_DRIFT_EVENT_PAGE};
use tinylcm_protocol::metric_keys::class_of_count_key;

use super::{DomainError, Sphere};

/// How far (device clock) from an event the other events of its incident are looked for: a
/// device reports the onsets of one incident within its span, and an incident closes after
/// some quiet frames, so a day covers every incident a device keeps open.
pub const INCIDENT_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;

/// Most events of one device looked at to assemble an incident (bounds the work of one page).
pub const MAX_INCIDENT_SCAN: usize = 5 * MAX_DRIFT_EVENT_PAGE;

/// Prefix of the class names the runtime proposes for clusters of unknown samples.
pub const PROPOSED_CLASS_PREFIX: &str = "new-";

/// What makes events one incident: the device, the life of its state database and the
/// incident number the device gave them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IncidentKey {
    /// The reporting device.
    pub device_id: String,
    /// The life of its state database (`None` for devices older than that field).
    pub epoch: Option<String>,
    /// The device's incident number.
    pub incident: u64,
}

impl IncidentKey {
    /// The incident `event` belongs to.
    pub fn of(event: &DriftEventView) -> IncidentKey {
        IncidentKey {
            device_id: event.device_id.clone(),
            epoch: event.epoch.clone(),
            incident: event.incident,
        }
    }
}

/// `events` grouped by incident, each group in the order given, the groups in the order of
/// their first event.
pub fn group_by_incident(events: Vec<DriftEventView>) -> Vec<Vec<DriftEventView>> {
    let mut groups: Vec<(IncidentKey, Vec<DriftEventView>)> = Vec::new();
    for event in events {
        let key = IncidentKey::of(&event);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, group)) => group.push(event),
            None => groups.push((key, vec![event])),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// The classes a device reports in the metric keys `keys`, known ones first, then the ones it
/// proposed (`new-…`), each sorted.
pub fn classes_of_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> (Vec<String>, Vec<String>) {
    let names: BTreeSet<&str> = keys.into_iter().filter_map(class_of_count_key).collect();
    let (proposed, known): (Vec<&str>, Vec<&str>) = names
        .into_iter()
        .partition(|n| n.starts_with(PROPOSED_CLASS_PREFIX));
    let owned = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect();
    (owned(known), owned(proposed))
}

impl Sphere {
    /// Every event of the incident event `id` belongs to (the device's events within
    /// [`INCIDENT_WINDOW_MS`] of it, at most [`MAX_INCIDENT_SCAN`] looked at), by id.
    pub fn drift_incident(&self, id: u64) -> Result<Vec<DriftEventView>, DomainError> {
        let event = self.get_drift_event(id)?;
        let key = IncidentKey::of(&event);
        let mut query = DriftEventQuery {
            device: Some(event.device_id.clone()),
            since: Some(event.unix_ms.saturating_sub(INCIDENT_WINDOW_MS)),
            until: Some(event.unix_ms.saturating_add(INCIDENT_WINDOW_MS)),
            limit: Some(MAX_DRIFT_EVENT_PAGE),
            ..DriftEventQuery::default()
        };
        let mut found = Vec::new();
        let mut scanned = 0;
        loop {
            let page = self.list_drift_events(&query)?;
            scanned += page.events.len();
            found.extend(
                page.events
                    .into_iter()
                    .filter(|e| IncidentKey::of(e) == key),
            );
            match page.next_after {
                Some(after) if scanned < MAX_INCIDENT_SCAN => query.after = Some(after),
                _ => break,
            }
        }
        // Outside the window or past the scan bound, the event itself still belongs to it.
        if !found.iter().any(|e| e.id == event.id) {
            found.push(event);
            found.sort_by_key(|e| e.id);
        }
        Ok(found)
    }

    /// The classes `device_id` reports counts for: (known, proposed `new-…`). From its
    /// stored metric keys and its newest report, since a tracking store may keep only some
    /// series (MLflow's `mlflow_metric_keys`).
    pub fn device_classes(
        &self,
        device_id: &str,
    ) -> Result<(Vec<String>, Vec<String>), DomainError> {
        let mut keys = self.metric_keys(device_id)?.keys;
        keys.extend(
            self.reported(device_id)?
                .classes
                .iter()
                .map(|c| tinylcm_protocol::metric_keys::class_count_key(c)),
        );
        Ok(classes_of_keys(keys.iter().map(String::as_str)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tinylcm_protocol::api::DriftEventStatus;

    /// A pending drift event with plain values, for tests of the domain.
    pub(crate) fn event(
        id: u64,
        device: &str,
        epoch: Option<&str>,
        incident: u64,
    ) -> DriftEventView {
        DriftEventView {
            id,
            device_id: device.into(),
            package_id: "p".into(),
            event_seq: id,
            epoch: epoch.map(str::to_owned),
            incident,
            detector: "adwin".into(),
            statistic: 1.0,
            threshold: 1.0,
            magnitude: 1.0,
            sample_id: 1,
            unix_ms: 1,
            received_unix_ms: 1,
            samples: vec![],
            status: DriftEventStatus::Pending,
            label: None,
            note: None,
            decided_by: None,
            decided_unix_ms: None,
            feedback: vec![],
            predicted: None,
            top_k: Vec::new(),
        }
    }

    #[test]
    fn events_group_by_device_epoch_and_incident_in_order_of_first_event() {
        let groups = group_by_incident(vec![
            event(1, "a", Some("e1"), 1),
            event(2, "b", Some("e1"), 1),
            event(3, "a", Some("e1"), 1),
            event(4, "a", Some("e2"), 1),
            event(5, "a", Some("e1"), 2),
            event(6, "b", Some("e1"), 1),
        ]);
        let ids: Vec<Vec<u64>> = groups
            .iter()
            .map(|g| g.iter().map(|e| e.id).collect())
            .collect();
        assert_eq!(ids, vec![vec![1, 3], vec![2, 6], vec![4], vec![5]]);
    }

    #[test]
    fn classes_come_from_the_per_class_count_keys() {
        let keys = [
            "classes.star.total",
            "classes.star.interval",
            "classes.new-2.total",
            "classes.ball.total",
            "classes.new-1.total",
            "classes..total",
            "fps",
            "latency.total.p50_us",
        ];
        let (known, proposed) = classes_of_keys(keys);
        assert_eq!(known, vec!["ball", "star"]);
        assert_eq!(proposed, vec!["new-1", "new-2"]);
    }
}
