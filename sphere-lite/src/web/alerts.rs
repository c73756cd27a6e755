//! The sync alert a device raises when something that is not sphere-lite answers its requests
//! (a reverse proxy whose body limit is below the device's packages, a gateway): shown on the
//! fleet list and the device page.
//!
//! Why here: the device keeps the refused packages and retries, so nothing is lost, but
//! nothing big reaches the server until someone fixes what is in between; the small packages
//! still get through and carry the device's sync status, whose
//! [`FOREIGN_ANSWER_METRIC`] is the HTTP status of the last such answer (0 once a whole
//! round went through). Its latest value is the alert.

use tinylcm_protocol::api::FOREIGN_ANSWER_METRIC;

use crate::domain::{DomainError, MetricQuery, Sphere};

/// A device's sync alert, as the pages show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncAlert {
    /// The HTTP status that was not sphere-lite's (e.g. 413).
    pub status: u16,
    /// One sentence for operators.
    pub text: String,
}

/// The alert of `device_id`: its latest [`FOREIGN_ANSWER_METRIC`] when that is not 0.
pub fn sync_alert(sphere: &Sphere, device_id: &str) -> Result<Option<SyncAlert>, DomainError> {
    let query = MetricQuery {
        key: FOREIGN_ANSWER_METRIC.to_owned(),
        limit: Some(1),
        ..MetricQuery::default()
    };
    let latest = match sphere.metric_series(device_id, &query) {
        Ok(series) => series.points.last().map(|p| p.value),
        // Removed between the listing and now: no alert to show.
        Err(DomainError::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    Ok(latest.and_then(alert_of))
}

/// The alert for a latest metric value `v` (0, or anything that is no HTTP error status,
/// is none).
fn alert_of(v: f64) -> Option<SyncAlert> {
    if !(400.0..600.0).contains(&v) {
        return None;
    }
    let status = v as u16;
    let why = if status == 413 {
        "a proxy's body limit is below the device's packages (nginx: client_max_body_size)"
    } else {
        "something between the device and this server answers in its place"
    };
    Some(SyncAlert {
        status,
        text: format!(
            "Sync blocked: HTTP {status} from something that is not sphere-lite; {why}. The \
             device keeps its data and retries; `tinylcm status` on it names who answered."
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_error_status_is_an_alert() {
        assert_eq!(alert_of(0.0), None);
        assert_eq!(alert_of(200.0), None);
        assert_eq!(alert_of(f64::NAN), None);
        let a = alert_of(413.0).unwrap();
        assert_eq!(a.status, 413);
        assert!(a.text.contains("client_max_body_size"), "{}", a.text);
        assert_eq!(alert_of(502.0).unwrap().status, 502);
    }
}
