//! The dashboard's configuration page (`/ui/config`): the fleet-wide and group layers, each
//! editable, and which devices run their configuration (acknowledged), still wait for it, or
//! refused it (with the device's reason).
//!
//! Why a page of its own: remote configuration concerns many devices at once, and an
//! operator wants to see, after a change, which devices have applied it.

use askama::Template;
use warp::http::StatusCode;

use super::fields::Fields;
use super::reply::{Page, bad_request, domain_error, html, redirect, run};
use super::session::{Ctx, post_guard, require};
use crate::domain::DEVICE_SCOPE;
use crate::ports::ALL_DEVICES;
use crate::web::pages::Nav;
use crate::web::time;

/// Devices whose state the page shows at once.
const DEVICES_SHOWN: usize = 50;

/// One editable layer.
pub struct LayerRow {
    /// `all` or the group.
    pub scope: String,
    /// The fragment.
    pub toml: String,
    /// Who set it, and when; `None` for a layer never set.
    pub set: Option<String>,
}

/// One device's configuration state.
pub struct DeviceConfigRow {
    /// Device id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// The remote configuration it should run (the layers merged), empty when none.
    pub effective: String,
    /// Its group, or empty.
    pub group: String,
    /// Effective revision, or `local` when nothing is configured remotely.
    pub revision: String,
    /// `applied`, `waiting for the device`, `refused by the device: <reason>`, …
    pub status: String,
    /// The device refused it (the row is marked).
    pub refused: bool,
}

/// `/ui/config`.
#[derive(Template)]
#[template(path = "config.html")]
pub struct ConfigPage {
    /// The bar.
    pub nav: Option<Nav>,
    /// The CSRF token of the forms.
    pub csrf: String,
    /// The fleet-wide layer (may be empty).
    pub fleet: LayerRow,
    /// Group layers, by group.
    pub groups: Vec<LayerRow>,
    /// The first devices' states.
    pub devices: Vec<DeviceConfigRow>,
    /// More devices exist than are shown.
    pub more: bool,
}

fn layer_row(l: &tinylcm_protocol::api::ConfigLayer) -> LayerRow {
    LayerRow {
        scope: l.scope.clone(),
        toml: l.toml.clone(),
        set: Some(format!("{}, {}", l.by, time::format_utc(l.unix_ms))),
    }
}

/// `GET /ui/config`.
pub async fn page(ctx: Ctx) -> Page {
    let session = require(&ctx).await?;
    let nav = session.nav();
    let sphere = ctx.sphere.clone();
    let (layers, states, more, names) = run(move || {
        let layers = sphere.scope_configs()?;
        let (devices, next) = sphere.devices_page(None, DEVICES_SHOWN)?;
        let ids: Vec<&str> = devices.iter().map(|d| d.device_id.as_str()).collect();
        let states = sphere.config_states(&ids)?;
        let mut names = std::collections::HashMap::new();
        for d in &devices {
            names.insert(d.device_id.clone(), super::names::device_name(&sphere, d)?);
        }
        Ok((layers, states, next.is_some(), names))
    })
    .await
    .map_err(|e| domain_error(Some(nav.clone()), e, "/ui/fleet"))?;
    let fleet = layers
        .iter()
        .find(|l| l.scope == ALL_DEVICES)
        .map(layer_row)
        .unwrap_or(LayerRow {
            scope: ALL_DEVICES.into(),
            toml: String::new(),
            set: None,
        });
    let groups = layers
        .iter()
        .filter(|l| l.scope != ALL_DEVICES && !l.toml.is_empty())
        .map(layer_row)
        .collect();
    let devices = states
        .into_iter()
        .map(|(s, group)| DeviceConfigRow {
            name: names
                .get(&s.device_id)
                .cloned()
                .unwrap_or_else(|| s.device_id.clone()),
            effective: s.effective_toml.clone(),
            id: s.device_id,
            group: group.unwrap_or_default(),
            revision: if s.effective_toml.is_empty() {
                "local".into()
            } else {
                s.revision
            },
            status: match (&s.refused, &s.delivered, s.acknowledged) {
                (Some(r), _, _) => format!("refused by the device: {}", r.reason),
                (None, _, true) => "applied".into(),
                (None, Some(_), false) => "waiting for the device".into(),
                (None, None, false) => "not sent (save the layer again)".into(),
            },
            refused: s.refused.is_some(),
        })
        .collect();
    Ok(html(
        StatusCode::OK,
        &ConfigPage {
            csrf: nav.csrf.clone(),
            nav: Some(nav),
            fleet,
            groups,
            devices,
            more,
        },
    ))
}

/// `POST /ui/config`: set the layer of the form's `device`, or else of its `scope` (`all` or
/// a group).
pub async fn save(ctx: Ctx, body: bytes::Bytes) -> Page {
    let (session, fields): (_, Fields) =
        post_guard(&ctx, &body, &["csrf", "scope", "device", "toml"], None).await?;
    let nav = session.nav();
    let toml = fields.get("toml").unwrap_or("").replace("\r\n", "\n");
    let by = session.name.clone();
    let sphere = ctx.sphere.clone();
    let saved = match fields.get("device").map(str::to_owned) {
        Some(device) => run(move || sphere.set_device_config(&device, &toml, &by).map(drop)).await,
        None => {
            let scope = fields.get("scope").unwrap_or(ALL_DEVICES).to_owned();
            if scope == DEVICE_SCOPE {
                return Err(bad_request(Some(nav), "name the device", "/ui/config"));
            }
            run(move || sphere.set_scope_config(&scope, &toml, &by).map(drop)).await
        }
    };
    saved.map_err(|e| domain_error(Some(nav), e, "/ui/config"))?;
    Ok(redirect("/ui/config"))
}
