//! The models page (`/ui/models`): published releases, the rollouts of each group with their
//! progress per device, and (for admins) the forms that publish and roll out
//! (`web::publish`, `web::rollout`).

use warp::http::StatusCode;

use super::pages::{ModelsPage, ReleaseRow, RolloutRow};
use super::reply::{Page, domain_error, html, run};
use super::session::{Ctx, require};
use super::{rollout, time};
use crate::ports::Role;

pub(super) async fn models(ctx: Ctx) -> Page {
    let session = require(&ctx).await?;
    let nav = session.nav();
    let sphere = ctx.sphere.clone();
    let (list, progress) = run(move || {
        let list = sphere.list_releases()?;
        let progress = rollout::progress(&sphere, &list)?;
        Ok((list, progress))
    })
    .await
    .map_err(|e| domain_error(Some(nav.clone()), e, "/ui/models"))?;
    let releases = list
        .releases
        .iter()
        .map(|r| ReleaseRow {
            name: r.name.clone(),
            version: r.version.clone(),
            size: format!("{:.1} KiB", r.size as f64 / 1024.0),
            sha_short: r.sha256.chars().take(12).collect(),
            key_id: r.key_id.clone(),
            uploaded_by: r.uploaded_by.clone(),
            uploaded: time::format_utc(r.uploaded_unix_ms),
        })
        .collect();
    let rollouts = list
        .rollouts
        .iter()
        .map(|r| RolloutRow {
            group: r.group.clone(),
            release: format!("{} {}", r.name, r.version),
            percent: r.percent,
            previous: r.previous.as_ref().map(|(n, v)| format!("{n} {v}")),
            by: r.by.clone(),
            when: time::format_utc(r.unix_ms),
        })
        .collect();
    Ok(html(
        StatusCode::OK,
        &ModelsPage {
            csrf: (session.role == Role::Admin).then(|| nav.csrf.clone()),
            progress,
            nav: Some(nav),
            releases,
            rollouts,
        },
    ))
}
