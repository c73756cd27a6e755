//! Naming a device's classes from the dashboard: the form the device page's timeline and the
//! Data Hub both show (`class_form.html`), the Data Hub's list of the classes a device
//! proposed, and the one handler both forms post to (`POST /ui/devices/{id}/classes`).
//!
//! Why a module of its own: an operator names a proposed class (`new-N`) where they look at
//! it, on the device's timeline or among its samples on the Data Hub, and both must queue the
//! same feedback item through the same domain call (`Sphere::rename_class`) with the same
//! checks (session, CSRF token, admin role). The form says where it was sent from (`back`), so
//! the answer returns there, with the rename just asked shown with its progress.

use tinylcm_protocol::learning::{ClassRenameRequest, ClassRenameView, LearningEvent};
use warp::http::StatusCode;

use super::fields::Fields;
use super::reply::{Page, bad_request, domain_error, error_page, redirect, run};
use super::session::{Ctx, post_guard};
use crate::domain::{DomainError, MAX_LEARNING_PAGE, Sphere};

/// Where a rename form was sent from, and where its answer returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Back {
    /// The device page (its timeline).
    Device,
    /// The Data Hub's sample gallery of the device.
    Data,
}

impl Back {
    /// The form field's value.
    pub fn field(self) -> &'static str {
        match self {
            Back::Device => "device",
            Back::Data => "data",
        }
    }

    /// The field's value as given; absent (a form older than the field) is the device page.
    fn parse(value: Option<&str>) -> Option<Back> {
        match value {
            None | Some("device") => Some(Back::Device),
            Some("data") => Some(Back::Data),
            Some(_) => None,
        }
    }

    /// The page of `device_id` to return to, showing the rename `renamed` if given; the Data
    /// Hub's gallery keeps the filter it had (`filter`, see [`gallery_filter`]).
    fn url(self, device_id: &str, renamed: Option<u64>, filter: &str) -> String {
        let device: String = form_urlencoded::byte_serialize(device_id.as_bytes()).collect();
        let filter = if filter.is_empty() {
            String::new()
        } else {
            format!("&{filter}")
        };
        match (self, renamed) {
            (Back::Device, None) => format!("/ui/devices/{device}"),
            (Back::Device, Some(id)) => format!("/ui/devices/{device}?renamed={id}#timeline"),
            (Back::Data, None) => format!("/ui/data?device={device}{filter}"),
            (Back::Data, Some(id)) => {
                format!("/ui/data?device={device}{filter}&renamed={id}#classes")
            }
        }
    }
}

/// The gallery filters a rename form carries back to the Data Hub.
const GALLERY_FILTERS: [&str; 3] = ["class", "since", "until"];

/// The Data Hub gallery's filter as the rename form's hidden `filter` field: its non-empty
/// `class`, `since` and `until` values as a query string (empty when unfiltered).
pub fn gallery_filter(class: Option<&str>, since: Option<&str>, until: Option<&str>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in GALLERY_FILTERS.iter().zip([class, since, until]) {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            q.append_pair(k, v);
        }
    }
    q.finish()
}

/// The form's `filter` field read back: only the gallery's own filters, re-encoded, so the
/// answer's redirect stays a Data Hub address whatever was sent.
fn returned_filter(raw: Option<&str>) -> Result<String, String> {
    let fields = Fields::parse(raw.unwrap_or(""), &GALLERY_FILTERS, None)
        .map_err(|e| format!("`filter`: {e}"))?;
    Ok(gallery_filter(
        fields.get("class"),
        fields.get("since"),
        fields.get("until"),
    ))
}

/// A rename an operator asked, as a line: what and how far its feedback item got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenameLine {
    /// `new-1 → star`.
    pub what: String,
    /// `queued`, `queued → delivered`, `queued → delivered → applied`, or `… → refused (why)`.
    pub progress: String,
    /// The progress's CSS class (`progress-queued`, …, `progress-refused`).
    pub progress_class: String,
}

impl RenameLine {
    /// The line of `rename`.
    pub fn of(rename: &ClassRenameView) -> RenameLine {
        RenameLine {
            what: format!("{} → {}", rename.from, rename.to),
            progress: progress_text(&rename.feedback),
            progress_class: format!("progress-{}", rename.feedback.progress.as_str()),
        }
    }
}

/// How far a feedback item got, in words: queued → delivered → applied or refused (with the
/// device's reason).
pub(super) fn progress_text(f: &tinylcm_protocol::api::FeedbackItemState) -> String {
    use tinylcm_protocol::api::FeedbackProgress;
    let mut s = match f.progress {
        FeedbackProgress::Queued => "queued".to_owned(),
        FeedbackProgress::Delivered => "queued → delivered".to_owned(),
        p => format!("queued → delivered → {}", p.as_str()),
    };
    if let Some(r) = &f.reason {
        s.push_str(&format!(" ({r})"));
    }
    s
}

/// The rename form: the device's classes, proposed ones first.
#[derive(Debug, Clone)]
pub struct ClassForm {
    /// The device the form renames a class of.
    pub device_id: String,
    /// The session's CSRF token.
    pub csrf: String,
    /// Where the form was shown (its hidden `back` field).
    pub back: Back,
    /// The Data Hub gallery's filter to return to (its hidden `filter` field; empty: none).
    pub filter: String,
    /// The classes to pick from: proposed ones (`new-…`) first, then the known ones.
    pub options: Vec<ClassOption>,
    /// Classes it knows (offered as new names: a merge).
    pub known: Vec<String>,
    /// The rename just sent from this form (the page's `renamed` parameter), with its
    /// progress.
    pub sent: Option<RenameLine>,
}

/// A class in the form's chooser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassOption {
    /// Its name.
    pub name: String,
    /// Whether the device proposed it (`new-…`).
    pub proposed: bool,
    /// Whether it is chosen when the page opens.
    pub selected: bool,
}

/// A class the device proposed, for the Data Hub's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedClass {
    /// Its name (`new-…`).
    pub name: String,
    /// How the device made it (`round 2, 12 samples`), when it reported that.
    pub origin: Option<String>,
    /// The newest rename asked for it, if any.
    pub rename: Option<RenameLine>,
}

/// What a device's class naming needs: its classes and the renames asked.
pub struct Classes {
    /// Classes it knows, sorted.
    pub known: Vec<String>,
    /// Classes it proposed, sorted, each with how it made it.
    pub proposed: Vec<ProposedClass>,
    /// Renames asked for it, newest first.
    pub renames: Vec<ClassRenameView>,
}

impl Classes {
    /// The classes of `device_id`: those it reports counts for (`classes.<name>` metrics) and
    /// those it proposed in a learning event (which may not be in its metrics yet).
    pub fn of(sphere: &Sphere, device_id: &str) -> Result<Classes, DomainError> {
        let (known, proposed) = sphere.device_classes(device_id)?;
        let learning = sphere.learning_events(device_id, MAX_LEARNING_PAGE)?;
        let renames = sphere.class_renames(device_id, MAX_LEARNING_PAGE)?;
        let mut origins: Vec<(String, String)> = Vec::new();
        // Newest first: the first event naming a class is its latest round.
        for e in &learning {
            if let LearningEvent::NewClass {
                round,
                class,
                members,
            } = &e.event
            {
                if !origins.iter().any(|(c, _)| c == class) {
                    origins.push((class.clone(), format!("round {round}, {members} samples")));
                }
            }
        }
        let mut names = proposed;
        for (class, _) in &origins {
            if !names.contains(class) && !known.contains(class) {
                names.push(class.clone());
            }
        }
        names.sort();
        let proposed = names
            .into_iter()
            .map(|name| ProposedClass {
                origin: origins
                    .iter()
                    .find(|(c, _)| *c == name)
                    .map(|(_, o)| o.clone()),
                rename: renames.iter().find(|r| r.from == name).map(RenameLine::of),
                name,
            })
            .collect();
        Ok(Classes {
            known,
            proposed,
            renames,
        })
    }

    /// The rename form for an admin (with the session's `csrf` token) on the page `back`,
    /// with `selected` chosen and the rename `renamed` (a feedback item id) shown as sent;
    /// `None` for a device without classes.
    pub fn form(
        &self,
        device_id: &str,
        csrf: &str,
        back: Back,
        selected: Option<&str>,
        renamed: Option<u64>,
    ) -> Option<ClassForm> {
        if self.known.is_empty() && self.proposed.is_empty() {
            return None;
        }
        let proposed = self.proposed.iter().map(|p| (&p.name, true));
        let options = proposed
            .chain(self.known.iter().map(|k| (k, false)))
            .map(|(name, proposed)| ClassOption {
                name: name.clone(),
                proposed,
                selected: selected == Some(name.as_str()),
            })
            .collect();
        Some(ClassForm {
            device_id: device_id.to_owned(),
            csrf: csrf.to_owned(),
            back,
            filter: String::new(),
            options,
            known: self.known.clone(),
            sent: renamed.and_then(|id| {
                self.renames
                    .iter()
                    .find(|r| r.feedback.id == id)
                    .map(RenameLine::of)
            }),
        })
    }
}

/// The `renamed` parameter of a page: a feedback item id.
pub(super) fn renamed_of(fields: &Fields) -> Result<Option<u64>, String> {
    fields
        .get("renamed")
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| "`renamed` must be a feedback item id".to_owned())
        })
        .transpose()
}

/// Fields of the rename form.
pub(super) const RENAME_FIELDS: [&str; 5] = ["csrf", "from", "to", "back", "filter"];

/// `POST /ui/devices/{id}/classes`: an admin names a class of the device (`from` → `to`; a
/// class it has already: merge), queued as feedback for the device; the answer returns to
/// the page the form was on (`back`), which shows the rename sent.
pub(super) async fn rename(id: String, ctx: Ctx, body: bytes::Bytes) -> Page {
    // A read-only session never gets here: `http::access` refuses its every write.
    let (session, fields) = post_guard(&ctx, &body, &RENAME_FIELDS, None).await?;
    let nav = session.nav();
    let Some(back) = Back::parse(fields.get("back")) else {
        return Err(bad_request(
            Some(nav),
            "`back` must be device or data",
            &Back::Device.url(&id, None, ""),
        ));
    };
    let filter = returned_filter(fields.single.get("filter").map(String::as_str))
        .map_err(|e| bad_request(Some(nav.clone()), e, &back.url(&id, None, "")))?;
    let back_url = back.url(&id, None, &filter);
    let request = ClassRenameRequest {
        from: fields.get("from").unwrap_or("").to_owned(),
        to: fields.get("to").unwrap_or("").trim().to_owned(),
    };
    if request.from.is_empty() || request.to.is_empty() {
        return Err(bad_request(
            Some(nav),
            "pick the class and type its new name (or the class to merge it into)",
            &back_url,
        ));
    }
    let sphere = ctx.sphere.clone();
    let device_id = id.clone();
    let operator = session.name.clone();
    match run(move || sphere.rename_class(&device_id, &operator, &request)).await {
        Ok(item) => Ok(redirect(&back.url(&id, Some(item), &filter))),
        Err(DomainError::NotFound { .. }) => Err(error_page(
            Some(nav),
            StatusCode::NOT_FOUND,
            "no such device",
            Some("pick a device on the fleet page".into()),
            "/ui/fleet",
        )),
        Err(e) => Err(domain_error(Some(nav), e, &back_url)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_returns_to_the_page_the_form_was_on() {
        assert_eq!(Back::parse(None), Some(Back::Device));
        assert_eq!(Back::parse(Some("data")), Some(Back::Data));
        assert_eq!(Back::parse(Some("//evil.example")), None);
        assert_eq!(
            Back::Data.url("d-1", Some(7), ""),
            "/ui/data?device=d-1&renamed=7#classes"
        );
        assert_eq!(
            Back::Device.url("d-1", Some(7), "class=new-1"),
            "/ui/devices/d-1?renamed=7#timeline"
        );
    }

    #[test]
    fn the_data_hub_comes_back_with_its_filter() {
        let filter = gallery_filter(Some("new 1&x"), None, Some("2026-12-07T10:00"));
        assert_eq!(filter, "class=new+1%26x&until=2026-12-07T10%3A00");
        assert_eq!(returned_filter(Some(&filter)).unwrap(), filter);
        assert_eq!(
            Back::Data.url("d-1", Some(7), &filter),
            "/ui/data?device=d-1&class=new+1%26x&until=2026-12-07T10%3A00&renamed=7#classes"
        );
        assert_eq!(returned_filter(None).unwrap(), "");
        // Only the gallery's filters go back: nothing that could steer the redirect.
        assert!(returned_filter(Some("device=other&class=a")).is_err());
        assert!(returned_filter(Some("class=a&class=b")).is_err());
    }
}
