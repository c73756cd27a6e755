//! `tinylcm eval`: whether what the device learns makes it better, scored against the truth
//! on held-out frames (see `tinylcm::eval`): before and after learning per phase, every
//! proposed class judged, the spread over seeds and drift orders.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use tinylcm::config::Config;
use tinylcm::eval::{self, DriftOrder, Report, RunResult, Spread, SyntheticPlan};

use crate::demo::ModelArgs;

/// Options of `tinylcm eval`.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file: model, KNN, drift and adaptation settings (its source is
    /// replaced by the learning and held-out streams).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Learning runs with the scene seeds 1..=N (held-out frames: seed + 1000).
    #[arg(long, default_value_t = 5, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    seeds: u64,
    /// Drift order of a learning scenario, e.g. `noise,unseen,lighting`; repeat for several.
    /// Default: `lighting,unseen,noise` (the demo's) and `noise,unseen,lighting`.
    #[arg(long = "order", value_name = "PHASES")]
    orders: Vec<DriftOrder>,
    /// Frames per drift phase of a learning scenario (the first normal stretch gets three
    /// times as many, the recovery stretches twice as many, as in `demo`).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    phase_frames: u64,
    /// Held-out frames per phase (normal, lighting, unseen, noise).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    eval_frames: u64,
    /// Learn from this folder of images instead (file order, sub-folders included);
    /// needs --held-out.
    #[arg(long, value_name = "DIR", requires = "held_out",
          conflicts_with_all = ["seeds", "orders", "phase_frames", "eval_frames"])]
    learn: Option<PathBuf>,
    /// Score on this folder: DIR/<class>/*.png (the truth is the folder name), optionally
    /// grouped by phase as DIR/<phase>/<class>/*.png; needs --learn.
    #[arg(long, value_name = "DIR", requires = "learn")]
    held_out: Option<PathBuf>,
    /// Also write the whole report (every run, phase and proposed class) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
}

/// Run the evaluation, print the tables, write the JSON.
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    args.model.apply(&mut config);
    config.validate()?;
    let started = Instant::now();
    let report = match (&args.learn, &args.held_out) {
        (Some(learn), Some(held_out)) => eval::replay(&config, learn, held_out)?,
        _ => {
            let plan = SyntheticPlan {
                seeds: (1..=args.seeds).collect(),
                orders: if args.orders.is_empty() {
                    DriftOrder::defaults()
                } else {
                    args.orders.clone()
                },
                phase_frames: args.phase_frames,
                eval_frames: args.eval_frames,
            };
            let total = plan.seeds.len() * plan.orders.len();
            let mut done = 0;
            eval::synthetic(&config, &plan, &mut |run| {
                done += 1;
                eprintln!(
                    "run {done}/{total}: seed {}, order {}: {} rounds ({} rolled back), {} spurious classes",
                    run.seed.unwrap_or(0),
                    run.order.as_deref().unwrap_or_default().join(","),
                    run.learning.rounds,
                    run.learning.rolled_back,
                    run.after.spurious
                );
            })?
        }
    };
    print(&report);
    println!("scored in {:.1} s", started.elapsed().as_secs_f64());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).context("cannot encode the report")?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    Ok(())
}

fn pct(x: f64) -> String {
    format!("{:.1}", x * 100.0)
}

fn spread_pct(s: &Spread) -> String {
    format!("{} [{}–{}]", pct(s.mean), pct(s.min), pct(s.max))
}

fn signed_pct(s: &Spread) -> String {
    format!(
        "{:+.1} [{:+.1}–{:+.1}]",
        s.mean * 100.0,
        s.min * 100.0,
        s.max * 100.0
    )
}

fn run_name(run: &RunResult) -> (String, String) {
    (
        run.seed.map_or_else(|| "-".into(), |s| s.to_string()),
        run.order
            .as_ref()
            .map_or_else(|| "-".into(), |o| o.join("→")),
    )
}

/// The tables: per run, the spread per phase, and the proposed classes.
fn print(report: &Report) {
    let phases: Vec<&str> = report
        .aggregate
        .phases
        .iter()
        .map(|p| p.phase.as_str())
        .collect();
    println!(
        "held-out accuracy (%) before → after learning; model {} knows {}",
        report.model,
        report.known.join(", ")
    );
    let mut runs = Table::new();
    let mut header = vec![
        "seed".to_string(),
        "drift order".into(),
        "rounds kept / rolled back".into(),
        "proposed (spurious)".into(),
    ];
    header.extend(phases.iter().map(|p| p.to_string()));
    runs.load_preset(UTF8_FULL_CONDENSED).set_header(header);
    for run in &report.runs {
        let (seed, order) = run_name(run);
        let l = &run.learning;
        let mut row = vec![
            seed,
            order,
            format!("{} / {}", l.kept, l.rolled_back)
                + &if l.rounds > l.kept + l.rolled_back {
                    format!(" (+{} open)", l.rounds - l.kept - l.rolled_back)
                } else {
                    String::new()
                },
            format!("{} ({})", run.after.proposed.len(), run.after.spurious),
        ];
        for phase in &phases {
            let acc = |s: &eval::Scorecard| s.phase(phase).map_or("-".into(), |p| pct(p.accuracy));
            row.push(format!("{} → {}", acc(&run.before), acc(&run.after)));
        }
        runs.add_row(row);
    }
    println!("{runs}");

    let a = &report.aggregate;
    let mut spread = Table::new();
    spread.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        format!("over {} runs: mean [min–max]", a.runs),
        "before %".into(),
        "after %".into(),
        "change (points)".into(),
        "runs lower".into(),
    ]);
    for p in a.phases.iter().chain(a.overall.as_ref()) {
        spread.add_row(vec![
            p.phase.clone(),
            spread_pct(&p.before),
            spread_pct(&p.after),
            signed_pct(&p.change),
            p.runs_lower.to_string(),
        ]);
    }
    println!("{spread}");

    let proposed: Vec<_> = report
        .runs
        .iter()
        .flat_map(|r| r.after.proposed.iter().map(move |c| (r, c)))
        .collect();
    if !proposed.is_empty() {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
            "seed",
            "drift order",
            "proposed class",
            "held-out frames",
            "majority truth",
            "purity %",
            "recall %",
            "verdict",
        ]);
        for (run, c) in proposed {
            let (seed, order) = run_name(run);
            table.add_row(vec![
                seed,
                order,
                c.label.clone(),
                c.predicted_frames.to_string(),
                c.majority.clone().unwrap_or_else(|| "-".into()),
                c.purity.map_or("-".into(), pct),
                c.recall.map_or("-".into(), pct),
                match (&c.majority, c.spurious) {
                    (None, _) => "never predicted".into(),
                    (Some(_), true) => "SPURIOUS (a known object)".into(),
                    (Some(m), false) => format!("new object: {m}"),
                },
            ]);
        }
        println!("{table}");
    }
    let lowered: usize = a.phases.iter().map(|p| p.runs_lower).sum();
    println!(
        "spurious classes: {} over {} runs (per run {}); learning lowered a phase's held-out accuracy {} times; rounds per run {:.1} (kept {:.1}, rolled back {:.1})",
        a.spurious_total,
        a.runs,
        format_args!(
            "{:.1} [{}–{}]",
            a.spurious_classes.mean, a.spurious_classes.min, a.spurious_classes.max
        ),
        lowered,
        a.rounds.mean,
        a.kept.mean,
        a.rolled_back.mean,
    );
}
