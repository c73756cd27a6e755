//! `tinylcm quarantine`: the samples the device set aside, with their status and
//! thumbnail, so a human can label them (`tinylcm feedback sample ID --label L`).
//!
//! Reads the database, so the service must be stopped (its status file does not list
//! entries); the thumbnails can be looked at any time.

use anyhow::Context;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use tinylcm::quarantine::{Entry, Reason, thumbnail_name};
use tinylcm::state::MAX_QUARANTINE_PER_READ;

use crate::status::StatePlace;
use crate::status_show::{emit, utc};

/// Options of `tinylcm quarantine`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    place: StatePlace,
    /// Only entries with this status: pending, pseudo-labelled, validated, rejected, adapted.
    #[arg(long)]
    status: Option<String>,
    /// Show at most this many entries (newest first).
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

/// Run `tinylcm quarantine`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = args.place.config()?;
    if !config.state.path.is_file() {
        anyhow::bail!(
            "no state database at {}. Fix: pass the folder the runtime uses (--state DIR or --config FILE)",
            config.state.path.display()
        );
    }
    let store = crate::snapshot::open(&config, "read the quarantine")?;
    let mut entries: Vec<Entry> = Vec::new();
    let mut after = 0;
    loop {
        let page: Vec<(u64, Vec<u8>)> = store
            .quarantine_entries_raw(after, MAX_QUARANTINE_PER_READ)
            .context("cannot read the quarantine")?;
        let Some(last) = page.last().map(|(id, _)| *id) else {
            break;
        };
        for (id, bytes) in page {
            if let Ok(e) = Entry::decode(id, &bytes) {
                if args
                    .status
                    .as_deref()
                    .is_none_or(|s| e.status.kind().name() == s)
                {
                    entries.push(e);
                }
            }
        }
        after = last;
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.id));
    let held = entries
        .iter()
        .filter(|e| e.review_since_unix_ms.is_some())
        .count();
    let total = entries.len();
    entries.truncate(args.limit);
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "id",
        "time",
        "frame",
        "reason",
        "predicted",
        "distance",
        "status",
        "thumbnail",
    ]);
    for e in &entries {
        let thumb = config.quarantine.thumbnail_dir.join(thumbnail_name(e.id));
        table.add_row(vec![
            e.id.to_string(),
            utc(e.created_unix_ms),
            e.sample.to_string(),
            match &e.reason {
                Reason::Drift { detector } => format!("drift ({detector})"),
                Reason::FarFromKnown => "far from known".into(),
                Reason::LowConfidence => "low confidence".into(),
            },
            format!("{} ({:.0} %)", e.predicted, e.confidence * 100.0),
            e.knn_distance.map_or("-".into(), |d| format!("{d:.3}")),
            status_cell(e),
            if thumb.is_file() {
                thumb.display().to_string()
            } else {
                "-".into()
            },
        ]);
    }
    emit(&format!(
        "{total} entries{}, {held} held for review; newest {} shown. Label one: tinylcm feedback sample ID --label NAME\n{table}\n",
        args.status
            .as_deref()
            .map(|s| format!(" with status {s}"))
            .unwrap_or_default(),
        entries.len()
    ))
}

/// The status with its label, and since when the entry waits for a human's verdict: such an
/// entry backs a drift event sent for review and is not evicted until the verdict comes.
fn status_cell(e: &Entry) -> String {
    let status = match e.status.label() {
        Some(l) => format!("{} {l}", e.status.kind().name()),
        None => e.status.kind().name().to_string(),
    };
    match e.review_since_unix_ms {
        Some(since) => format!("{status}, held for review since {}", utc(since)),
        None => status,
    }
}
