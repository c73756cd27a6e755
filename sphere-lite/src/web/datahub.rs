//! Data Hub pages: the prediction-sample gallery (`/ui/data`, by device, class and time), every
//! image file of processed packages (`/ui/data/files`), a device's operational logs
//! (`/ui/logs?device=`), and the embedding export as a download (`/ui/exports/embeddings`).
//!
//! Why a module of its own: the pages share the dashboard's session, CSRF-free GET forms,
//! headers and templates (`super`), and keep the Data Hub's handlers and routes out of the
//! dashboard's main module. Device-supplied text (class names, file names, log lines) reaches
//! the HTML only through askama expressions, so it is always escaped.

use askama::Template;
use tinylcm_protocol::datahub::{
    EmbeddingExportQuery, LogLevel, LogLineView, LogQuery, PredictionQuery,
};
use tinylcm_protocol::ids::valid_device_id;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::classes::{Back, ClassForm, Classes, ProposedClass, gallery_filter, renamed_of};
use super::fields::Fields;
use super::image::image_url;
use super::names::{device_menu, with_selected};
use super::pages::{DataPage, ImageRow, Nav};
use super::reply::{Page, bad_request, domain_error, done, html, run};
use super::session::{Ctx, require, require_401};
use super::{PAGE, time};
use crate::domain::{DomainError, is_image_key};
use crate::ports::Role;

/// Log lines on one page of the viewer.
const LOG_PAGE: usize = 100;

/// The display name of `device_id` from the device menu, else the id itself.
fn name_of(menu: &[(String, String)], device_id: &str) -> String {
    menu.iter()
        .find(|(id, _)| id == device_id)
        .map_or_else(|| device_id.to_owned(), |(_, name)| name.clone())
}

/// One prediction sample in the gallery.
#[derive(Debug, Clone)]
pub struct PredictionRow {
    /// Where the image is served.
    pub url: String,
    /// Device id.
    pub device_id: String,
    /// Its display name.
    pub device_name: String,
    /// File name in its package.
    pub file: String,
    /// Predicted class.
    pub class: String,
    /// Confidence in percent, formatted.
    pub confidence: String,
    /// When it was taken (device clock), formatted.
    pub when: String,
}

/// A class the selected device proposed, in the gallery's list.
#[derive(Debug, Clone)]
pub struct ProposedRow {
    /// The class, how the device made it and its newest rename.
    pub class: ProposedClass,
    /// The gallery of its prediction samples on this device.
    pub samples: String,
    /// Whether the gallery shows only its samples now.
    pub shown: bool,
}

/// The classes the selected device proposed, to look at and name (delivered to the device as
/// feedback, as from its page).
#[derive(Debug, Clone)]
pub struct ProposedSection {
    /// The device's display name.
    pub device_name: String,
    /// Its proposed classes.
    pub rows: Vec<ProposedRow>,
    /// The rename form, for an admin when it proposed a class.
    pub form: Option<ClassForm>,
}

/// The prediction-sample gallery.
#[derive(Template)]
#[template(path = "predictions.html")]
pub struct GalleryPage {
    /// The bar.
    pub nav: Option<Nav>,
    /// Devices for the filter: (id, name, selected).
    pub devices: Vec<(String, String, bool)>,
    /// The class filter as given.
    pub class: String,
    /// The `since` field's value.
    pub since: String,
    /// The `until` field's value.
    pub until: String,
    /// This page's samples.
    pub rows: Vec<PredictionRow>,
    /// Whether this is not the first page.
    pub after_given: bool,
    /// The first page of this filter.
    pub first_link: String,
    /// The next page of this filter.
    pub next_link: Option<String>,
    /// The embedding export of validated drift events (of the selected device, since `since`).
    pub export_link: String,
    /// The selected device's proposed classes (none selected: `None`).
    pub classes: Option<ProposedSection>,
}

/// One row of the log viewer: a log line, or a run of consecutive identical lines (same
/// level, target and message) shown once with their count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// When the newest line of the run was written (device clock, UTC, to the ms), or empty.
    pub when: String,
    /// When the oldest line of the run was written (same form), or empty.
    pub first: String,
    /// How many consecutive identical lines the row stands for (1 for a single line).
    pub count: usize,
    /// Its level, or `?` for a line that did not parse.
    pub level: &'static str,
    /// The CSS class that colours the level (`level-error`, …, `level-unknown`).
    pub level_class: &'static str,
    /// Its target.
    pub target: String,
    /// The message (or the raw line).
    pub message: String,
    /// `package / file:line` of the newest line of the run.
    pub origin: String,
}

impl LogRow {
    /// One log line as a row.
    fn of(line: &LogLineView) -> Self {
        let when = line.unix_ms.map(time::format_utc_ms).unwrap_or_default();
        let level = line.level.map_or("?", LogLevel::as_str);
        Self {
            first: when.clone(),
            when,
            count: 1,
            level,
            level_class: match line.level {
                Some(LogLevel::Error) => "level-error",
                Some(LogLevel::Warn) => "level-warn",
                Some(LogLevel::Info) => "level-info",
                Some(LogLevel::Debug) => "level-debug",
                Some(LogLevel::Trace) => "level-trace",
                None => "level-unknown",
            },
            target: line.target.clone().unwrap_or_default(),
            message: line.message.clone(),
            origin: format!("{} / {}:{}", line.package_id, line.file, line.line),
        }
    }

    /// Whether `other` repeats this row's line (same level, target and message).
    fn repeats(&self, other: &Self) -> bool {
        self.level == other.level && self.target == other.target && self.message == other.message
    }
}

/// Rows of `lines` (newest first), each run of consecutive identical lines folded into one
/// row that counts them and keeps the newest and oldest time: a device repeating one warning
/// every frame fills one row, not the page.
fn collapse(lines: &[LogLineView]) -> Vec<LogRow> {
    let mut rows: Vec<LogRow> = Vec::new();
    for line in lines {
        let row = LogRow::of(line);
        match rows.last_mut() {
            Some(last) if last.repeats(&row) => {
                last.count += 1;
                last.first = row.first;
            }
            _ => rows.push(row),
        }
    }
    rows
}

/// A device's operational logs.
#[derive(Template)]
#[template(path = "logs.html")]
pub struct LogsPage {
    /// The bar.
    pub nav: Option<Nav>,
    /// Devices for the picker: (id, name, selected).
    pub devices: Vec<(String, String, bool)>,
    /// The selected device's id, if any.
    pub device: Option<String>,
    /// Its display name.
    pub device_name: String,
    /// Level choices: (value, selected); `any` first.
    pub levels: Vec<(&'static str, bool)>,
    /// The text filter as given.
    pub q: String,
    /// This page's lines, newest first.
    pub rows: Vec<LogRow>,
    /// Whether this is not the first page.
    pub after_given: bool,
    /// The first page of this filter.
    pub first_link: String,
    /// The next page of this filter.
    pub next_link: Option<String>,
}

/// A dashboard link: `path` with the non-empty `pairs` as its query string.
fn link(path: &str, pairs: &[(&str, Option<&str>)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            q.append_pair(k, v);
        }
    }
    format!("{path}?{}", q.finish())
}

async fn gallery(ctx: Ctx, raw: String) -> Page {
    let session = require(&ctx).await?;
    let nav = session.nav();
    let back = "/ui/data";
    let fields = Fields::parse(
        &raw,
        &["device", "class", "since", "until", "after", "renamed"],
        None,
    )
    .map_err(|e| bad_request(Some(nav.clone()), e, back))?;
    let bad = |e: String| bad_request(Some(nav.clone()), e, back);
    let renamed = renamed_of(&fields).map_err(bad)?;
    let device = fields.get("device").map(str::to_owned);
    if device.as_deref().is_some_and(|d| !valid_device_id(d)) {
        return Err(bad("`device` is not a device id".into()));
    }
    let class = fields.get("class").map(str::to_owned);
    let since = fields.time("since").map_err(bad)?;
    let until = fields.time("until").map_err(bad)?;
    let query = PredictionQuery {
        device: device.clone(),
        class: class.clone(),
        since,
        until,
        after: fields.get("after").map(str::to_owned),
        limit: Some(PAGE),
    };
    let sphere = ctx.sphere.clone();
    let q = query.clone();
    let (menu, list, classes) = run(move || {
        let menu = device_menu(&sphere, q.device.as_deref())?;
        // A device that is gone (decommissioned) may still have samples here: no classes.
        let classes = match q.device.as_deref().map(|d| Classes::of(&sphere, d)) {
            Some(Ok(c)) => Some(c),
            None | Some(Err(DomainError::NotFound { .. })) => None,
            Some(Err(e)) => return Err(e),
        };
        Ok((menu, sphere.list_predictions(&q)?, classes))
    })
    .await
    .map_err(|e| domain_error(Some(nav.clone()), e, back))?;
    let since_field = since.map(time::format_local_field);
    let until_field = until.map(time::format_local_field);
    let page_link = |after: Option<&str>| {
        link(
            back,
            &[
                ("device", device.as_deref()),
                ("class", class.as_deref()),
                ("since", since_field.as_deref()),
                ("until", until_field.as_deref()),
                ("after", after),
            ],
        )
    };
    let since_ms = since.map(|t| t.to_string());
    let csrf = (session.role == Role::Admin).then(|| nav.csrf.clone());
    let filter = gallery_filter(
        class.as_deref(),
        since_field.as_deref(),
        until_field.as_deref(),
    );
    let classes = device.as_deref().zip(classes).map(|(d, c)| {
        let mut section = proposed_section(
            d,
            name_of(&menu, d),
            &c,
            csrf.as_deref(),
            class.as_deref(),
            renamed,
        );
        // The answer to a rename returns to this gallery as filtered now.
        if let Some(form) = section.form.as_mut() {
            form.filter = filter;
        }
        section
    });
    let rows = list
        .predictions
        .iter()
        .map(|p| PredictionRow {
            url: image_url(&p.key),
            device_id: p.device_id.clone(),
            device_name: name_of(&menu, &p.device_id),
            file: p.file.clone(),
            class: p.class.clone(),
            confidence: format!("{:.0} %", p.confidence * 100.0),
            when: time::format_utc(p.unix_ms),
        })
        .collect();
    Ok(html(
        StatusCode::OK,
        &GalleryPage {
            nav: Some(nav),
            devices: with_selected(menu, device.as_deref()),
            class: class.clone().unwrap_or_default(),
            since: since_field.clone().unwrap_or_default(),
            until: until_field.clone().unwrap_or_default(),
            rows,
            after_given: query.after.is_some(),
            first_link: page_link(None),
            next_link: list.next_after.as_deref().map(|a| page_link(Some(a))),
            export_link: link(
                "/ui/exports/embeddings",
                &[
                    ("status", Some("validated")),
                    ("device", device.as_deref()),
                    ("since", since_ms.as_deref()),
                ],
            ),
            classes,
        },
    ))
}

/// The gallery's section of `device_id`'s proposed classes: each linking to its samples, and
/// for an admin (`csrf` given) the rename form with the filtered class `class` chosen and the
/// rename `renamed` shown as sent.
fn proposed_section(
    device_id: &str,
    device_name: String,
    classes: &Classes,
    csrf: Option<&str>,
    class: Option<&str>,
    renamed: Option<u64>,
) -> ProposedSection {
    let rows = classes
        .proposed
        .iter()
        .map(|p| ProposedRow {
            samples: link(
                "/ui/data",
                &[("device", Some(device_id)), ("class", Some(&p.name))],
            ),
            shown: class == Some(p.name.as_str()),
            class: p.clone(),
        })
        .collect::<Vec<_>>();
    let form = csrf
        .filter(|_| !rows.is_empty())
        .and_then(|csrf| classes.form(device_id, csrf, Back::Data, class, renamed));
    ProposedSection {
        device_name,
        rows,
        form,
    }
}

/// Every image file of processed packages (drift and quarantine samples too): one device's
/// newest package first, or every device's by blob key.
async fn files(ctx: Ctx, raw: String) -> Page {
    let nav = require(&ctx).await?.nav();
    let back = "/ui/data/files";
    let fields = Fields::parse(&raw, &["device", "after"], None)
        .map_err(|e| bad_request(Some(nav.clone()), e, back))?;
    let device = fields.get("device").map(str::to_owned);
    if device.as_deref().is_some_and(|d| !valid_device_id(d)) {
        return Err(bad_request(Some(nav), "`device` is not a device id", back));
    }
    let after = fields.get("after").map(str::to_owned);
    // Every device's images are paged by key; one device's newest package first (its cursor
    // is checked by the domain).
    if device.is_none() && after.as_deref().is_some_and(|a| !is_image_key(a)) {
        return Err(bad_request(Some(nav), "`after` is not an image key", back));
    }
    let sphere = ctx.sphere.clone();
    let (d, a) = (device.clone(), after.clone());
    let (menu, page) = run(move || {
        let menu = device_menu(&sphere, d.as_deref())?;
        let page = match d.as_deref() {
            Some(d) => sphere.device_images_newest_first(d, a.as_deref(), PAGE)?,
            None => sphere.sample_images(None, a.as_deref(), PAGE)?,
        };
        Ok((menu, page))
    })
    .await
    .map_err(|e| domain_error(Some(nav.clone()), e, back))?;
    let page_link =
        |after: Option<&str>| link(back, &[("device", device.as_deref()), ("after", after)]);
    let images = page
        .images
        .iter()
        .map(|i| ImageRow {
            url: image_url(&i.key),
            device_id: i.device_id.clone(),
            device_name: name_of(&menu, &i.device_id),
            package_id: i.package_id.clone(),
            name: i.name.clone(),
            quarantine_id: i.quarantine_id,
            accepted: i
                .accepted_unix_ms
                .map(time::format_utc)
                .unwrap_or_else(|| "package not recorded".into()),
        })
        .collect();
    Ok(html(
        StatusCode::OK,
        &DataPage {
            nav: Some(nav),
            by_time: device.is_some(),
            devices: with_selected(menu, device.as_deref()),
            images,
            after_given: after.is_some(),
            first_link: page_link(None),
            next_link: page.next_after.as_deref().map(|a| page_link(Some(a))),
        },
    ))
}

async fn logs(ctx: Ctx, raw: String) -> Page {
    let nav = require(&ctx).await?.nav();
    let back = "/ui/logs";
    let fields = Fields::parse(&raw, &["device", "level", "q", "after"], None)
        .map_err(|e| bad_request(Some(nav.clone()), e, back))?;
    let device = fields.get("device").map(str::to_owned);
    let level = match fields.get("level") {
        None | Some("any") => None,
        Some(l) => Some(LogLevel::parse(l).ok_or_else(|| {
            bad_request(
                Some(nav.clone()),
                "`level` must be any, error, warn, info, debug or trace",
                back,
            )
        })?),
    };
    let q = fields.get("q").map(str::to_owned);
    let after = fields.get("after").map(str::to_owned);
    let sphere = ctx.sphere.clone();
    let (d, query) = (
        device.clone(),
        LogQuery {
            level,
            q: q.clone(),
            after: after.clone(),
            limit: Some(LOG_PAGE),
        },
    );
    let (menu, page) = run(move || {
        let menu = device_menu(&sphere, d.as_deref())?;
        let page = match &d {
            Some(d) => Some(sphere.device_logs(d, &query)?),
            None => None,
        };
        Ok((menu, page))
    })
    .await
    .map_err(|e| domain_error(Some(nav.clone()), e, back))?;
    let level_name = level.map(LogLevel::as_str);
    let page_link = |after: Option<&str>| {
        link(
            back,
            &[
                ("device", device.as_deref()),
                ("level", level_name),
                ("q", q.as_deref()),
                ("after", after),
            ],
        )
    };
    let rows = page
        .as_ref()
        .map(|p| collapse(&p.lines))
        .unwrap_or_default();
    let levels = std::iter::once(("any", level.is_none()))
        .chain(
            LogLevel::ALL
                .iter()
                .map(|l| (l.as_str(), Some(*l) == level)),
        )
        .collect();
    Ok(html(
        StatusCode::OK,
        &LogsPage {
            nav: Some(nav),
            device_name: device
                .as_deref()
                .map(|d| name_of(&menu, d))
                .unwrap_or_default(),
            devices: with_selected(menu, device.as_deref()),
            device: device.clone(),
            levels,
            q: q.clone().unwrap_or_default(),
            rows,
            after_given: after.is_some(),
            first_link: page_link(None),
            next_link: page
                .as_ref()
                .and_then(|p| p.next_after.as_deref())
                .map(|a| page_link(Some(a))),
        },
    ))
}

/// The embedding export (NDJSON) as a download for a logged-in operator.
async fn export(ctx: Ctx, raw: String) -> Page {
    require_401(&ctx).await?;
    let back = "/ui/data";
    // The API's query (status, device, since in Unix ms): the same parser, the same errors.
    let query: EmbeddingExportQuery = serde_urlencoded::from_str(&raw)
        .map_err(|e| bad_request(None, format!("invalid query string: {e}"), back))?;
    crate::domain::Sphere::check_export_query(&query).map_err(|e| domain_error(None, e, back))?;
    let mut response = crate::http::embedding_export(ctx.sphere.clone(), query);
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"embeddings.ndjson\""),
    );
    Ok(response)
}

/// The Data Hub's routes (behind the dashboard's context and query filters).
pub(super) fn routes(
    ctx: BoxedFilter<(Ctx,)>,
    query: BoxedFilter<(String,)>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let gallery_get = warp::path!("ui" / "data")
        .and(warp::get())
        .and(ctx.clone())
        .and(query.clone())
        .then(|ctx, raw| async move { done(gallery(ctx, raw).await) });
    let files_get = warp::path!("ui" / "data" / "files")
        .and(warp::get())
        .and(ctx.clone())
        .and(query.clone())
        .then(|ctx, raw| async move { done(files(ctx, raw).await) });
    let logs_get = warp::path!("ui" / "logs")
        .and(warp::get())
        .and(ctx.clone())
        .and(query.clone())
        .then(|ctx, raw| async move { done(logs(ctx, raw).await) });
    let export_get = warp::path!("ui" / "exports" / "embeddings")
        .and(warp::get())
        .and(ctx)
        .and(query)
        .then(|ctx, raw| async move { done(export(ctx, raw).await) });
    gallery_get
        .or(files_get)
        .unify()
        .or(logs_get)
        .unify()
        .or(export_get)
        .unify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_leave_out_empty_values_and_encode_the_rest() {
        assert_eq!(
            link("/ui/data", &[("class", Some("a b&c")), ("device", None)]),
            "/ui/data?class=a+b%26c"
        );
    }

    fn line(unix_ms: u64, level: LogLevel, message: &str) -> LogLineView {
        LogLineView {
            package_id: "p".into(),
            file: "logs/a.jsonl".into(),
            line: unix_ms,
            unix_ms: Some(unix_ms),
            level: Some(level),
            target: Some("tinylcm::sync".into()),
            message: message.into(),
        }
    }

    /// Fails before this change: every line was its own row, so a warning repeated every
    /// frame filled the page, and times were `… UTC` strings without milliseconds.
    #[test]
    fn consecutive_identical_lines_fold_into_one_row_with_their_count_and_times() {
        let newest_first = [
            line(1_764_147_600_900, LogLevel::Warn, "slow frame"),
            line(1_764_147_600_500, LogLevel::Warn, "slow frame"),
            line(1_764_147_600_100, LogLevel::Warn, "slow frame"),
            line(1_764_147_600_050, LogLevel::Info, "slow frame"),
            line(1_764_147_600_040, LogLevel::Warn, "slow frame"),
        ];
        let rows = collapse(&newest_first);
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.count, r.level_class, r.first.as_str(), r.when.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    3,
                    "level-warn",
                    "2025-11-26 09:00:00.100",
                    "2025-11-26 09:00:00.900"
                ),
                (
                    1,
                    "level-info",
                    "2025-11-26 09:00:00.050",
                    "2025-11-26 09:00:00.050"
                ),
                (
                    1,
                    "level-warn",
                    "2025-11-26 09:00:00.040",
                    "2025-11-26 09:00:00.040"
                ),
            ]
        );
        let mut other_target = line(1, LogLevel::Warn, "slow frame");
        other_target.target = None;
        assert_eq!(
            collapse(&[line(2, LogLevel::Warn, "slow frame"), other_target]).len(),
            2
        );
    }
}
