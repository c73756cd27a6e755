//! Rollouts from the models page: the form that assigns a release to a device group (or
//! `all`), whole or as a canary share, and each rollout's progress per device — the release
//! the device is assigned and what it reports running.
//!
//! Why a module of its own: a rollout is an operator task with consequences on every device
//! of a group, so the page shows, next to the form, whether the devices followed; the
//! progress reads several per-device reports and is kept apart from the page's listing.
//!
//! A device's stage is read from what it sends, never guessed: `running` when the model it
//! reports is the release it is assigned (by SHA-256, else by name and version), `refused`
//! when it reports refusing that release (with the reason's kind and its message, as its
//! metrics file says: [`tinylcm_protocol::device_json::refusal`]) — or, for a device too old
//! to say, when its count of refused releases ([`metric_keys::MODELS_REFUSED`]) grew since the
//! rollout was set —, `downloading or waiting` when it has asked the server since the
//! rollout but does not run the release yet (a download in progress, a check it must retry, a
//! release held back until its model store may take it), `pending` when it has not been
//! heard from since the rollout.

use std::collections::HashMap;

use tinylcm_protocol::api::RolloutRequest;
use tinylcm_protocol::device_json::refusal::ReleaseRefusal;
use tinylcm_protocol::metric_keys;
use warp::http::StatusCode;

use super::fields::Fields;
use super::names::display_name;
use super::reply::{Page, bad_request, domain_error, error_page, redirect, run};
use super::session::{Ctx, post_guard};
use crate::domain::{DomainError, MetricQuery, ReleaseList, Sphere};
use crate::ports::{ALL_DEVICES, DeviceSettings, Role, Rollout};

/// Devices whose progress is shown per rollout (the counts cover them all).
pub const PROGRESS_DEVICES: usize = 100;

/// How far before a rollout a device's refusal count is read for the baseline (ms), for a
/// device that does not report its refusals: the counter restarts with the device, so only a
/// recent value says what it was at the rollout.
const BASELINE_WINDOW_MS: u64 = 24 * 3600 * 1000;

/// Where a device stands in a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// It reports running the release it is assigned.
    Running,
    /// It refused its release (with the reason it reports; a device too old to report one:
    /// it refused a release since the rollout, and its log says why).
    Refused,
    /// It asked the server since the rollout but does not run its release yet.
    Waiting,
    /// It has not been heard from since the rollout.
    Pending,
    /// It is outside the canary and its group had no earlier full release: it keeps its model.
    Keeps,
}

impl Stage {
    /// The word the page shows (also its CSS class).
    pub fn label(self) -> &'static str {
        match self {
            Stage::Running => "running",
            Stage::Refused => "refused",
            Stage::Waiting => "downloading or waiting",
            Stage::Pending => "pending",
            Stage::Keeps => "keeps its model",
        }
    }

    /// The CSS classes of the stage's cell (the colours of the Drift Hub's progress).
    pub fn class(self) -> &'static str {
        match self {
            Stage::Running => "stage-running progress-applied",
            Stage::Refused => "stage-refused progress-refused",
            Stage::Waiting => "stage-waiting",
            Stage::Pending => "stage-pending",
            Stage::Keeps => "stage-keeps",
        }
    }
}

/// What is known of one device for its stage.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The release it is assigned (name, version, SHA-256), if any.
    pub assigned: Option<(String, String, String)>,
    /// The model it reports running (name, version, SHA-256 — possibly empty).
    pub running: Option<(String, String, String)>,
    /// It made an authenticated request since the rollout was set.
    pub heard_since: bool,
    /// It reports refusing the release it is assigned, or (a device too old to report which
    /// release it refused) its refused-release count grew since the rollout was set.
    pub refused_since: bool,
}

/// The stage of a device as `observed`.
pub fn stage(observed: &Observed) -> Stage {
    let Some((name, version, sha)) = &observed.assigned else {
        return Stage::Keeps;
    };
    let runs_it = observed.running.as_ref().is_some_and(|(n, v, s)| {
        if !s.is_empty() && !sha.is_empty() {
            s.eq_ignore_ascii_case(sha)
        } else {
            n == name && v == version
        }
    });
    if runs_it {
        Stage::Running
    } else if observed.refused_since {
        Stage::Refused
    } else if observed.heard_since {
        Stage::Waiting
    } else {
        Stage::Pending
    }
}

/// One device of a rollout.
pub struct DeviceProgress {
    /// Device id (links to its page).
    pub id: String,
    /// Its display name.
    pub name: String,
    /// The release it is assigned (`name version`), or `—`.
    pub assigned: String,
    /// The model it reports running (`name version`), or `not reported`.
    pub running: String,
    /// Its stage's label.
    pub stage: &'static str,
    /// Its stage's CSS class.
    pub class: &'static str,
    /// Why it refused its release, when it says.
    pub refusal: Option<RefusalShown>,
}

/// A device's refusal of its release, as the page shows it.
pub struct RefusalShown {
    /// The reason's kind on the wire (`untrusted_key`), for the cell's `data-kind`.
    pub kind: &'static str,
    /// The kind in a few words (`untrusted key`).
    pub label: &'static str,
    /// The device's message (what it says to do about it).
    pub message: String,
}

impl From<&ReleaseRefusal> for RefusalShown {
    fn from(r: &ReleaseRefusal) -> Self {
        RefusalShown {
            kind: r.kind.as_str(),
            label: r.kind.label(),
            message: r.message.clone(),
        }
    }
}

/// One rollout's progress.
pub struct RolloutProgress {
    /// `all` or the group.
    pub group: String,
    /// `name version` of the rollout's release.
    pub release: String,
    /// Devices per stage, e.g. `2 running, 1 pending`; `no devices` when it targets none.
    pub counts: String,
    /// The first [`PROGRESS_DEVICES`] devices it targets.
    pub devices: Vec<DeviceProgress>,
    /// It targets more devices than are shown.
    pub more: bool,
}

/// The devices `rollout` governs: its group's, or for `all` those whose group has no rollout
/// of its own (decommissioned devices follow none).
fn targets<'a>(
    rollout: &Rollout,
    rollouts: &[Rollout],
    devices: &'a [(crate::domain::DeviceSummary, DeviceSettings)],
) -> Vec<&'a (crate::domain::DeviceSummary, DeviceSettings)> {
    devices
        .iter()
        .filter(|(_, s)| !s.decommissioned)
        .filter(|(_, s)| {
            let own = s
                .group
                .as_deref()
                .filter(|g| rollouts.iter().any(|r| r.group == *g));
            match own {
                Some(g) => g == rollout.group,
                None => rollout.group == ALL_DEVICES,
            }
        })
        .collect()
}

/// Whether `device_id`'s refused-release count grew since `since` (Unix ms).
fn refused_since(sphere: &Sphere, device_id: &str, since: u64) -> Result<bool, DomainError> {
    let max = |since: u64, until: Option<u64>| -> Result<f64, DomainError> {
        let series = sphere.metric_series(
            device_id,
            &MetricQuery {
                key: metric_keys::MODELS_REFUSED.into(),
                since: Some(since),
                until,
                limit: Some(crate::domain::MAX_SERIES_POINTS),
            },
        )?;
        Ok(series.points.iter().map(|p| p.value).fold(0.0, f64::max))
    };
    let after = max(since, None)?;
    if after <= 0.0 {
        return Ok(false);
    }
    let before = max(since.saturating_sub(BASELINE_WINDOW_MS), Some(since))?;
    Ok(after > before)
}

/// The progress of every rollout in `list`, read from the devices' reports.
pub fn progress(sphere: &Sphere, list: &ReleaseList) -> Result<Vec<RolloutProgress>, DomainError> {
    if list.rollouts.is_empty() {
        return Ok(Vec::new());
    }
    let devices: Vec<_> = sphere
        .list_devices()?
        .devices
        .into_iter()
        .map(|d| {
            let settings = sphere.device_settings(&d.device_id)?;
            Ok((d, settings))
        })
        .collect::<Result<_, DomainError>>()?;
    let pairs: Vec<(&str, &DeviceSettings)> = devices
        .iter()
        .map(|(d, s)| (d.device_id.as_str(), s))
        .collect();
    let assigned = sphere.assigned_releases(&pairs)?;
    let sha: HashMap<(&str, &str), &str> = list
        .releases
        .iter()
        .map(|r| ((r.name.as_str(), r.version.as_str()), r.sha256.as_str()))
        .collect();
    let mut out = Vec::new();
    for rollout in &list.rollouts {
        let targeted = targets(rollout, &list.rollouts, &devices);
        let mut tally: HashMap<Stage, usize> = HashMap::new();
        let mut rows = Vec::new();
        for (d, settings) in targeted.iter().take(PROGRESS_DEVICES) {
            let id = d.device_id.as_str();
            let given = assigned.get(id).map(|(n, v)| {
                let s = sha.get(&(n.as_str(), v.as_str())).copied().unwrap_or("");
                (n.clone(), v.clone(), s.to_owned())
            });
            let reported = sphere.reported(id)?;
            // The device's own word on the release it is assigned; only a device that does
            // not report refusals is judged by its counter.
            let refusal = reported
                .refused_release
                .as_ref()
                .filter(|r| given.as_ref().is_some_and(|(n, v, s)| r.is_of(n, v, s)));
            let running = reported
                .model
                .clone()
                .map(|m| (m.name, m.version, m.sha256));
            let refused = if reported.reports_refusals {
                refusal.is_some()
            } else {
                given.is_some()
                    && running.as_ref().map(|r| (&r.0, &r.1))
                        != given.as_ref().map(|g| (&g.0, &g.1))
                    && refused_since(sphere, id, rollout.unix_ms)?
            };
            let observed = Observed {
                heard_since: d.last_seen_unix_ms >= rollout.unix_ms,
                refused_since: refused,
                assigned: given,
                running,
            };
            let stage = stage(&observed);
            *tally.entry(stage).or_default() += 1;
            rows.push(DeviceProgress {
                id: id.to_owned(),
                name: display_name(d, Some(settings)),
                assigned: observed
                    .assigned
                    .as_ref()
                    .map_or("—".into(), |(n, v, _)| format!("{n} {v}")),
                running: observed
                    .running
                    .as_ref()
                    .map_or("not reported".into(), |(n, v, _)| format!("{n} {v}")),
                stage: stage.label(),
                class: stage.class(),
                refusal: refusal
                    .filter(|_| stage == Stage::Refused)
                    .map(RefusalShown::from),
            });
        }
        let counts = [
            Stage::Running,
            Stage::Waiting,
            Stage::Pending,
            Stage::Refused,
            Stage::Keeps,
        ]
        .iter()
        .filter_map(|s| tally.get(s).map(|n| format!("{n} {}", s.label())))
        .collect::<Vec<_>>();
        out.push(RolloutProgress {
            group: rollout.group.clone(),
            release: format!("{} {}", rollout.name, rollout.version),
            counts: if targeted.is_empty() {
                "no devices".into()
            } else if targeted.len() > PROGRESS_DEVICES {
                format!(
                    "{} (of the first {PROGRESS_DEVICES} of {} devices)",
                    counts.join(", "),
                    targeted.len()
                )
            } else {
                counts.join(", ")
            },
            more: targeted.len() > PROGRESS_DEVICES,
            devices: rows,
        });
    }
    Ok(out)
}

/// The fields of the rollout form.
const ROLLOUT_FIELDS: [&str; 4] = ["csrf", "release", "group", "percent"];

/// The rollout request of the form's `group` and `percent`, and its release (`name/version`).
fn rollout_request(fields: &Fields) -> Result<(String, String, RolloutRequest), String> {
    let (name, version) = fields
        .get("release")
        .and_then(|r| r.split_once('/'))
        .ok_or("choose a release")?;
    let group = fields.get("group").map(str::trim).filter(|g| !g.is_empty());
    let percent = match fields
        .get("percent")
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        None => None,
        Some(p) => Some(
            p.parse::<u8>()
                .ok()
                .filter(|p| (1..=100).contains(p))
                .ok_or_else(|| format!("the share {p:?} is not a whole percent from 1 to 100"))?,
        ),
    };
    Ok((
        name.to_owned(),
        version.to_owned(),
        RolloutRequest {
            group: group.map(str::to_owned),
            percent,
        },
    ))
}

/// `POST /ui/models/rollout`: assign the form's release to its group for its share, as
/// `POST /api/v2/models/NAME/VERSION/rollout` does.
pub(super) async fn rollout(ctx: Ctx, body: bytes::Bytes) -> Page {
    let (session, fields) = post_guard(&ctx, &body, &ROLLOUT_FIELDS, None).await?;
    let nav = session.nav();
    // `http::access` refuses a read-only session's writes before this; kept for the handler's
    // own sake.
    if session.role != Role::Admin {
        return Err(error_page(
            Some(nav),
            StatusCode::FORBIDDEN,
            "this operator is read-only: it cannot roll out releases",
            None,
            "/ui/models",
        ));
    }
    let (name, version, request) =
        rollout_request(&fields).map_err(|e| bad_request(Some(nav.clone()), e, "/ui/models"))?;
    let sphere = ctx.sphere.clone();
    let by = session.name.clone();
    let set = run(move || sphere.set_rollout(&by, &name, &version, &request))
        .await
        .map_err(|e| domain_error(Some(nav), e, "/ui/models"))?;
    tracing::info!(
        group = %set.group, release = %format!("{} {}", set.name, set.version),
        percent = set.percent, operator = %session.name,
        "rollout set in the dashboard"
    );
    Ok(redirect("/ui/models#progress"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(v: &str) -> Option<(String, String, String)> {
        Some(("shapes".into(), v.into(), format!("sha{v}")))
    }

    /// Each stage from what the device sent: a matching SHA-256 wins over a renamed release,
    /// a refusal only counts for a device that does not run its release.
    #[test]
    fn a_devices_stage_follows_what_it_reports() {
        let base = Observed {
            assigned: release("2"),
            ..Observed::default()
        };
        assert_eq!(stage(&base), Stage::Pending);
        let heard = Observed {
            heard_since: true,
            running: release("1"),
            ..base.clone()
        };
        assert_eq!(stage(&heard), Stage::Waiting);
        let refused = Observed {
            refused_since: true,
            ..heard.clone()
        };
        assert_eq!(stage(&refused), Stage::Refused);
        let running = Observed {
            running: Some(("other-name".into(), "x".into(), "SHA2".into())),
            ..refused.clone()
        };
        assert_eq!(stage(&running), Stage::Running);
        let unhashed = Observed {
            running: Some(("shapes".into(), "2".into(), String::new())),
            ..base.clone()
        };
        assert_eq!(stage(&unhashed), Stage::Running);
        assert_eq!(stage(&Observed::default()), Stage::Keeps);
    }

    #[test]
    fn the_rollout_form_is_read_strictly() {
        let parse = |q: &str| {
            let f = Fields::parse(q, &ROLLOUT_FIELDS, None).unwrap();
            rollout_request(&f)
        };
        let (n, v, r) = parse("release=shapes%2F3&group=lab&percent=25").unwrap();
        assert_eq!((n.as_str(), v.as_str()), ("shapes", "3"));
        assert_eq!(r.group.as_deref(), Some("lab"));
        assert_eq!(r.percent, Some(25));
        let (_, _, r) = parse("release=shapes%2F3&group=&percent=").unwrap();
        assert_eq!((r.group, r.percent), (None, None));
        for bad in [
            "group=lab",
            "release=shapes",
            "release=shapes%2F3&percent=0",
            "release=shapes%2F3&percent=101",
            "release=shapes%2F3&percent=ten",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
