//! The tables printed at the end of a run and by `bench`.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use tinylcm::autonomy::{Autonomy, Note};
use tinylcm::bench::BenchReport;
use tinylcm::bench_autonomy::{AutonomyBench, Breakdown, Measured};
use tinylcm::pipeline::runner::RunSummary;
use tinylcm::report::IncidentLog;
use tinylcm::stats::{Percentiles, Stage, StageLatencies, peak_rss_bytes};

fn ms(us: f64) -> String {
    format!("{:.3}", us / 1000.0)
}

/// One table row of a stage's percentiles, in milliseconds.
pub fn latency_row(name: &str, p: &Percentiles) -> Vec<String> {
    vec![
        name.to_string(),
        p.count.to_string(),
        ms(p.mean_us),
        ms(p.p50_us as f64),
        ms(p.p90_us as f64),
        ms(p.p99_us as f64),
        ms(p.max_us as f64),
    ]
}

/// Per-stage latency percentiles in milliseconds.
pub fn latency_table(latencies: &StageLatencies) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "stage", "frames", "mean ms", "p50 ms", "p90 ms", "p99 ms", "max ms",
    ]);
    for stage in Stage::ALL {
        table.add_row(latency_row(stage.name(), &latencies.percentiles(stage)));
    }
    table
}

/// Class mix and, where the source knows the truth, accuracy per phase.
pub fn outcome_table(summary: &RunSummary) -> Table {
    let outcomes = &summary.outcomes;
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(vec!["", "frames", "share / accuracy"]);
    for (label, n) in &outcomes.predicted {
        let share = *n as f64 * 100.0 / outcomes.frames.max(1) as f64;
        table.add_row(vec![
            format!("predicted {label}"),
            n.to_string(),
            format!("{share:.1} %"),
        ]);
    }
    for (phase, correct, total) in &outcomes.accuracy {
        let accuracy = *correct as f64 * 100.0 / (*total).max(1) as f64;
        table.add_row(vec![
            format!("accuracy in phase {phase}"),
            total.to_string(),
            format!("{accuracy:.1} %"),
        ]);
    }
    table
}

fn mib(bytes: Option<u64>) -> String {
    bytes
        .map(|b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)))
        .unwrap_or_else(|| "n/a".into())
}

/// Everything printed after `demo`, `run` and `replay`.
pub fn print_run(summary: &RunSummary, engine_line: &str) {
    println!("{engine_line}");
    println!(
        "{} frames in {:.2} s: {:.1} fps, mean confidence {:.1} %, ended: {:?}, peak RSS {}",
        summary.frames,
        summary.elapsed.as_secs_f64(),
        summary.fps(),
        summary.outcomes.mean_confidence() * 100.0,
        summary.end,
        mib(peak_rss_bytes()),
    );
    println!("{}", latency_table(&summary.latencies));
    println!("{}", outcome_table(summary));
}

/// The autonomy layer's cost at the original TinyLCM's model size (synthetic data), its
/// kernels apart, and its ratio to the bare invoke of the configured model measured in the
/// same run.
pub fn print_autonomy_bench(
    size: &AutonomyBench,
    measured: &Measured,
    parts: &Breakdown,
    bare_invoke: &Percentiles,
) {
    let p = &measured.wall;
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "after inference, per frame",
        "frames",
        "CPU mean ms",
        "wall mean ms",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
    ]);
    let shape = if size.feature_dim < size.embedding_dim {
        format!(
            "{}-d embedding -> {} PCA components",
            size.embedding_dim, size.feature_dim
        )
    } else {
        format!("{}-d embedding", size.embedding_dim)
    };
    let cpu = measured.cpu_us.map_or_else(|| "n/a".into(), ms);
    let mut row = latency_row(
        &format!(
            "{shape}, {} KNN samples, 7 detectors, state queued",
            size.samples
        ),
        p,
    );
    row.insert(2, cpu);
    table.add_row(row);
    for (name, us) in [
        ("features (L2, standardise, PCA)", parts.features_us),
        ("KNN search", parts.knn_us),
        ("drift detectors", parts.detectors_us),
    ] {
        let mut row = vec![String::new(); 8];
        row[0] = format!("  of which {name}");
        row[1] = size.frames.to_string();
        row[2] = ms(us);
        table.add_row(row);
    }
    println!("{table}");
    if bare_invoke.p50_us > 0 {
        println!(
            "after inference at that size / bare invoke of this model, medians: {:.3} \
             ({} ms / {} ms, same run)",
            p.p50_us as f64 / bare_invoke.p50_us as f64,
            ms(p.p50_us as f64),
            ms(bare_invoke.p50_us as f64),
        );
    }
}

/// The drift incidents of the run and what the autonomy layer holds now.
pub fn print_autonomy(autonomy: &Autonomy, log: &IncidentLog, state: &std::path::Path) {
    let counts = autonomy.counts();
    let knn = autonomy
        .knn()
        .map(|k| {
            let classes = (0..k.labels().len())
                .filter(|&i| k.class_count(tinylcm::knn::LabelId(i as u16)) > 0)
                .count();
            format!("KNN {} samples of {classes} classes", k.len())
        })
        .unwrap_or_else(|| "no KNN".into());
    println!(
        "autonomy: {} incidents from {} detector onsets, {} frames far from known samples; {knn}; state in {}",
        counts.incidents,
        counts.onsets,
        counts.far,
        state.display()
    );
    if let Some(q) = autonomy.quarantine() {
        let s = q.stats();
        println!(
            "quarantine: {} samples admitted this run; holds {} ({} pending, {} adapted, {} validated, {} rejected); {} adaptation steps, {} rounds rolled back",
            counts.quarantined,
            s.entries,
            s.pending,
            s.adapted,
            s.validated,
            s.rejected,
            counts.adaptations,
            counts.rollbacks
        );
    }
    print_incidents(log);
    print_adaptations(log);
}

fn print_adaptations(log: &IncidentLog) {
    if log.adaptations.is_empty() {
        return;
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "round",
        "frame",
        "phase",
        "step",
        "class",
        "members",
        "added",
        "confidence before → after",
        "distance before → after",
    ]);
    for r in &log.adaptations {
        let (step, e) = match &r.note {
            Note::Applied(e) => (format!("{:?}", e.kind).to_lowercase(), e),
            Note::Kept(e) => ("kept".to_string(), e),
            Note::RolledBack(e) => (format!("rolled back ({:?})", e.reason).to_lowercase(), e),
        };
        let after = e.after.as_ref();
        table.add_row(vec![
            format!("#{}", e.id),
            r.frame.to_string(),
            r.phase.clone().unwrap_or_else(|| "-".into()),
            step,
            e.label.clone().unwrap_or_else(|| "-".into()),
            match r.note {
                Note::Applied(_) => e.member_count.to_string(),
                _ => "-".into(),
            },
            e.added.len().to_string(),
            format!(
                "{:.2} → {}",
                e.before.mean_confidence,
                after.map_or("…".into(), |a| format!("{:.2}", a.mean_confidence))
            ),
            format!(
                "{:.3} → {}",
                e.before.mean_distance,
                after.map_or("…".into(), |a| format!("{:.3}", a.mean_distance))
            ),
        ]);
    }
    println!("{table}");
}

fn print_incidents(log: &IncidentLog) {
    if log.incidents.is_empty() {
        return;
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "incident",
        "phase",
        "frames",
        "first detector",
        "statistic / threshold",
        "magnitude",
        "also",
    ]);
    for r in &log.incidents {
        table.add_row(vec![
            format!("#{}", r.id),
            r.phase.clone().unwrap_or_else(|| "-".into()),
            match r.closed_at {
                Some(end) => format!("{}–{}", r.opened_at, end),
                None => format!("{}–", r.opened_at),
            },
            r.first.detector.to_string(),
            format!("{:.2} / {:.2}", r.first.statistic, r.first.threshold),
            format!("{:+.2}", r.first.magnitude),
            r.joined.join(", "),
        ]);
    }
    println!("{table}");
}

/// The `bench` report.
pub fn print_bench(report: &BenchReport, engine_line: &str) {
    println!("{engine_line}");
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(vec!["measurement", "value"]);
    table.add_row(vec![
        "bare invoke rate".to_string(),
        format!("{:.1} /s", report.bare_rate),
    ]);
    table.add_row(vec![
        "full pipeline rate, live source".to_string(),
        format!("{:.1} frames/s", report.pipeline.fps()),
    ]);
    table.add_row(vec![
        "pipeline / bare ratio, live source".to_string(),
        format!("{:.3}", report.ratio()),
    ]);
    table.add_row(vec![
        "full pipeline rate, frames from memory".to_string(),
        format!("{:.1} frames/s", report.pipeline_cached.fps()),
    ]);
    table.add_row(vec![
        "pipeline / bare ratio, frames from memory".to_string(),
        format!("{:.3}", report.ratio_cached()),
    ]);
    table.add_row(vec![
        "inference-thread cost outside invoke (preprocess + autonomy + rest, mean)".to_string(),
        format!(
            "{} ms",
            ms(report.stage(Stage::Preprocess).mean_us
                + report.stage(Stage::Autonomy).mean_us
                + report.stage(Stage::Rest).mean_us)
        ),
    ]);
    table.add_row(vec![
        "after inference: features, KNN, detectors, state (this model, mean)".to_string(),
        format!("{} ms", ms(report.stage(Stage::Autonomy).mean_us)),
    ]);
    table.add_row(vec![
        "after inference (autonomy + reading outputs), median, frames from memory".to_string(),
        format!("{} ms", ms(report.after_inference_us() as f64)),
    ]);
    table.add_row(vec![
        "after inference (autonomy + reading outputs) / bare invoke, medians".to_string(),
        format!("{:.4}", report.after_inference_ratio()),
    ]);
    table.add_row(vec![
        "capture (own thread, overlaps inference, mean)".to_string(),
        format!("{} ms", ms(report.stage(Stage::Capture).mean_us)),
    ]);
    let memory = report.memory;
    table.add_row(vec![
        "peak RSS".to_string(),
        mib(memory.map(|m| m.peak_bytes)),
    ]);
    table.add_row(vec![
        "  resident then: anonymous (heap, stacks, library arena, buffers)".to_string(),
        mib(memory.map(|m| m.anon_bytes)),
    ]);
    table.add_row(vec![
        "  resident then: file-backed (code of tinylcm and the libraries)".to_string(),
        mib(memory.map(|m| m.file_bytes)),
    ]);
    // The largest files by name; the rest in one line, so the split adds up.
    const FILES_SHOWN: usize = 4;
    for file in report.resident_files.iter().take(FILES_SHOWN) {
        table.add_row(vec![
            format!("    of which {}", file.name),
            mib(Some(file.bytes)),
        ]);
    }
    if report.resident_files.len() > FILES_SHOWN {
        let rest = &report.resident_files[FILES_SHOWN..];
        table.add_row(vec![
            format!("    of which {} other files", rest.len()),
            mib(Some(rest.iter().map(|f| f.bytes).sum())),
        ]);
    }
    println!("{table}");
    let mut latencies = Table::new();
    latencies.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "stage", "count", "mean ms", "p50 ms", "p90 ms", "p99 ms", "max ms",
    ]);
    latencies.add_row(latency_row("bare invoke", &report.bare_invoke));
    for stage in Stage::ALL {
        latencies.add_row(latency_row(stage.name(), &report.stage(stage)));
    }
    println!("{latencies}");
}
