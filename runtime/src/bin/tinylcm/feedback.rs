//! `tinylcm feedback`: a human's verdicts for the device — a drift was a false alarm or
//! real, a quarantined sample is a given class or useless, a proposed class has a name.
//!
//! The verdict is written into the inbox folder beside the database (never into the
//! database, which the running service holds); the service applies it within a second, or
//! at its next start.

use anyhow::{Context, bail};
use tinylcm::autonomy::feedback::{
    ClassVerdict, DriftVerdict, FeedbackFile, SampleVerdict, Submit as _, Verdict, inbox_dir,
};

use crate::status::StatePlace;

/// Options of `tinylcm feedback`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
    #[command(flatten)]
    place: StatePlace,
}

#[derive(clap::Subcommand)]
enum What {
    /// A verdict on every drift event of incident N (as the demo and `tinylcm status` list them).
    Incident {
        /// The incident number.
        n: u64,
        #[command(flatten)]
        verdict: DriftArgs,
    },
    /// A verdict on event N of the log (`tinylcm status` lists them).
    Event {
        /// The event's sequence number.
        n: u64,
        #[command(flatten)]
        verdict: DriftArgs,
    },
    /// Label (the KNN learns it) or reject quarantined sample ID (`tinylcm quarantine`).
    Sample {
        /// The quarantine entry.
        id: u64,
        /// Its true class.
        #[arg(long, conflicts_with = "reject", required_unless_present = "reject")]
        label: Option<String>,
        /// Not useful for learning.
        #[arg(long)]
        reject: bool,
    },
    /// Give class FROM (e.g. a proposed `new-1`) its true name.
    Class {
        /// The class as the device names it.
        from: String,
        /// Its true name (an existing class merges).
        #[arg(long = "is", value_name = "NAME")]
        to: String,
    },
    /// Queue a whole feedback file (TOML with `[[drift]]`, `[[sample]]`, `[[class]]`).
    File {
        /// The file.
        path: std::path::PathBuf,
    },
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct DriftArgs {
    /// Nothing that matters changed: the detectors accept the condition as normal.
    #[arg(long)]
    false_alarm: bool,
    /// The drift was real: the detectors keep their reference.
    #[arg(long)]
    confirm: bool,
}

impl DriftArgs {
    fn verdict(&self) -> Verdict {
        if self.false_alarm {
            Verdict::FalseAlarm
        } else {
            Verdict::Confirmed
        }
    }
}

/// Run `tinylcm feedback`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = args.place.config()?;
    let file = match args.what {
        What::Incident { n, verdict } => FeedbackFile {
            drift: vec![DriftVerdict {
                incident: Some(n),
                event: None,
                verdict: verdict.verdict(),
            }],
            ..FeedbackFile::default()
        },
        What::Event { n, verdict } => FeedbackFile {
            drift: vec![DriftVerdict {
                incident: None,
                event: Some(n),
                verdict: verdict.verdict(),
            }],
            ..FeedbackFile::default()
        },
        What::Sample { id, label, reject } => FeedbackFile {
            sample: vec![SampleVerdict { id, label, reject }],
            ..FeedbackFile::default()
        },
        What::Class { from, to } => FeedbackFile {
            class: vec![ClassVerdict { from, to }],
            ..FeedbackFile::default()
        },
        What::File { path } => {
            let meta = std::fs::metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if meta.len() > tinylcm::autonomy::feedback::MAX_FILE_BYTES {
                bail!("{} is too large for a feedback file", path.display());
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            FeedbackFile::parse(&path, &text)?
        }
    };
    let inbox = inbox_dir(&config.state.path);
    let written = file
        .submit(&inbox)
        .with_context(|| format!("cannot queue the feedback in {}", inbox.display()))?;
    println!(
        "queued {}: a running tinylcm applies it within a second, a stopped one at its next start",
        written.display()
    );
    Ok(())
}
