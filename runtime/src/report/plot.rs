//! Drawing a [`Timeline`] with plotters: the same code for PNG and SVG.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::font::{FontError, load_font};
use super::timeline::{MarkKind, Timeline};

/// Size of the rendered report in pixels.
const SIZE: (u32, u32) = (1200, 900);
/// Windows the class-mix panel averages over.
const MIX_WINDOWS: usize = 100;

/// Failures writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// No font to draw text with.
    #[error(transparent)]
    Font(#[from] FontError),
    /// Nothing to draw.
    #[error("the run recorded no frames; nothing to report")]
    Empty,
    /// plotters failed (usually: the output file cannot be written).
    #[error("cannot draw {path}: {reason}")]
    Draw {
        /// The output file.
        path: String,
        /// What plotters said.
        reason: String,
    },
}

/// Draw `timeline` into `png` and/or `svg`.
pub fn render(
    timeline: &Timeline,
    png: Option<&Path>,
    svg: Option<&Path>,
) -> Result<(), ReportError> {
    if timeline.frames.is_empty() {
        return Err(ReportError::Empty);
    }
    load_font()?;
    if let Some(path) = png {
        let fail = |e: String| ReportError::Draw {
            path: path.display().to_string(),
            reason: e,
        };
        let root = BitMapBackend::new(path, SIZE).into_drawing_area();
        draw(&root, timeline).map_err(fail)?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    if let Some(path) = svg {
        let fail = |e: String| ReportError::Draw {
            path: path.display().to_string(),
            reason: e,
        };
        let root = SVGBackend::new(path, SIZE).into_drawing_area();
        draw(&root, timeline).map_err(fail)?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    Ok(())
}

/// Colour of series `i` (phases, classes, detectors).
fn color(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    PALETTE[i % PALETTE.len()]
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    timeline: &Timeline,
) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let root = root
        .titled("TinyLCM run report", ("sans-serif", 24))
        .map_err(|x| e(&x))?;
    let panels = root.split_evenly((3, 1));
    let last = timeline.last_index().max(2);
    confidence_panel(&panels[0], timeline, last).map_err(|x| e(&x))?;
    mix_panel(&panels[1], timeline, last).map_err(|x| e(&x))?;
    detector_panel(&panels[2], timeline, last).map_err(|x| e(&x))?;
    Ok(())
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn confidence_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    timeline: &Timeline,
    last: u64,
) -> DrawResult<DB> {
    let mut chart = ChartBuilder::on(area)
        .caption(
            "top-class confidence, scenario phases and events",
            ("sans-serif", 16),
        )
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(44)
        .build_cartesian_2d(1u64..last, 0f32..1.15f32)?;
    chart
        .configure_mesh()
        .x_desc("frame")
        .y_desc("confidence")
        .disable_x_mesh()
        .draw()?;
    for (i, span) in timeline.phases.iter().enumerate() {
        let band = color(i).mix(0.12);
        chart.draw_series(std::iter::once(Rectangle::new(
            [(span.start, 0.0), (span.end.max(span.start + 1), 1.15)],
            band.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            span.phase.clone(),
            (span.start, 1.13),
            ("sans-serif", 13).into_font().color(&color(i)),
        )))?;
    }
    chart.draw_series(LineSeries::new(
        timeline.frames.iter().map(|p| (p.index, p.confidence)),
        BLACK.stroke_width(1),
    ))?;
    // Incidents in red, adaptations in blue, verdicts thin; only onsets and adaptations are
    // labelled, on alternating rows so neighbours do not overwrite each other.
    let mut row = 0u8;
    for event in &timeline.events {
        let (colour, width, labelled) = match event.kind {
            MarkKind::Drift => (RED, 2, true),
            MarkKind::Closed => (RGBColor(150, 150, 150), 1, false),
            MarkKind::Adapted => (BLUE, 2, true),
            MarkKind::Kept => (RGBColor(0, 140, 0), 1, false),
            MarkKind::RolledBack => (RGBColor(230, 120, 0), 2, true),
        };
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(event.index, 0.0), (event.index, 1.15)],
            colour.stroke_width(width),
        )))?;
        if labelled {
            chart.draw_series(std::iter::once(Text::new(
                event.label.clone(),
                (event.index, 0.05 + 0.08 * f32::from(row % 3u8)),
                ("sans-serif", 12).into_font().color(&colour),
            )))?;
            row = row.wrapping_add(1);
        }
    }
    Ok(())
}

/// Share of each class per window of frames: (window end index, shares).
fn class_mix(timeline: &Timeline) -> Vec<(u64, Vec<f32>)> {
    let classes = timeline.labels.len().max(1);
    let per_window = timeline.frames.len().div_ceil(MIX_WINDOWS).max(1);
    timeline
        .frames
        .chunks(per_window)
        .map(|chunk| {
            let mut counts = vec![0u32; classes];
            for p in chunk {
                if let Some(c) = counts.get_mut(p.class) {
                    *c += 1;
                }
            }
            let n = chunk.len() as f32;
            let end = chunk.last().map_or(0, |p| p.index);
            (end, counts.iter().map(|&c| c as f32 / n).collect())
        })
        .collect()
}

fn mix_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    timeline: &Timeline,
    last: u64,
) -> DrawResult<DB> {
    let mix = class_mix(timeline);
    let mut chart = ChartBuilder::on(area)
        .caption("class mix (share of frames per window)", ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(44)
        .build_cartesian_2d(1u64..last, 0f32..1.0f32)?;
    chart
        .configure_mesh()
        .x_desc("frame")
        .y_desc("share")
        .disable_x_mesh()
        .draw()?;
    for (c, label) in timeline.labels.iter().enumerate() {
        let style = color(c).stroke_width(2);
        chart
            .draw_series(LineSeries::new(
                mix.iter().map(|(end, shares)| (*end, shares[c])),
                style,
            ))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

fn detector_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    timeline: &Timeline,
    last: u64,
) -> DrawResult<DB> {
    if timeline.detectors.iter().all(|d| d.points.is_empty()) {
        area.draw(&Text::new(
            "no drift detector ran in this run",
            (20, 40),
            ("sans-serif", 16).into_font().color(&BLACK),
        ))?;
        return Ok(());
    }
    // Statistics of different detectors live on different scales: normalise
    // each by its own threshold so "1.0" is the firing line for all of them.
    let ratio = |s: f64, t: f64| if t.abs() > f64::EPSILON { s / t } else { s };
    let top = timeline
        .detectors
        .iter()
        .flat_map(|d| d.points.iter().map(|&(_, s, t)| ratio(s, t)))
        .filter(|v| v.is_finite())
        .fold(1.2f64, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(
            "drift statistics / threshold (fires at 1.0)",
            ("sans-serif", 16),
        )
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(44)
        .build_cartesian_2d(1u64..last, 0f64..top * 1.05)?;
    chart
        .configure_mesh()
        .x_desc("frame")
        .y_desc("statistic / threshold")
        .disable_x_mesh()
        .draw()?;
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(1, 1.0), (last, 1.0)],
        RED.stroke_width(1),
    )))?;
    for (i, trace) in timeline.detectors.iter().enumerate() {
        let style = color(i).stroke_width(1);
        chart
            .draw_series(LineSeries::new(
                trace
                    .points
                    .iter()
                    .map(|&(x, s, t)| (x, ratio(s, t)))
                    .filter(|(_, v)| v.is_finite()),
                style,
            ))?
            .label(trace.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{DetectorTrace, EventMark};

    fn sample() -> Timeline {
        let mut t = Timeline::new(vec!["empty".into(), "ball".into()]);
        for i in 1..=400u64 {
            let phase = if i <= 200 { "normal" } else { "unseen" };
            let confidence = if i <= 200 { 0.95 } else { 0.6 };
            t.record(i, confidence, (i % 2) as usize, Some(phase));
        }
        t.detectors.push(DetectorTrace {
            name: "page-hinkley".into(),
            points: (1..=400u64)
                .map(|i| (i, if i <= 200 { 1.0 } else { 30.0 }, 20.0))
                .collect(),
        });
        t.events.push(EventMark {
            index: 215,
            kind: MarkKind::Drift,
            label: "page-hinkley".into(),
        });
        t
    }

    #[test]
    fn class_mix_shares_sum_to_one() {
        for (_, shares) in class_mix(&sample()) {
            let sum: f32 = shares.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "{shares:?}");
        }
    }

    #[test]
    fn renders_png_and_svg() {
        if load_font().is_err() {
            // The test script installs fonts-dejavu-core; say so rather than pass silently.
            panic!(
                "no font: install fonts-dejavu-core or set {}",
                super::super::FONT_ENV
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("r.png");
        let svg = dir.path().join("r.svg");
        render(&sample(), Some(&png), Some(&svg)).unwrap();
        let image = image::open(&png).unwrap();
        assert_eq!((image.width(), image.height()), SIZE);
        let svg = std::fs::read_to_string(&svg).unwrap();
        for text in ["normal", "unseen", "page-hinkley", "ball"] {
            assert!(svg.contains(text), "SVG lacks {text}");
        }
    }

    #[test]
    fn an_empty_run_is_refused() {
        let t = Timeline::new(vec!["a".into()]);
        assert!(matches!(render(&t, None, None), Err(ReportError::Empty)));
    }

    #[test]
    fn an_unwritable_path_is_an_error_not_a_panic() {
        let err = render(&sample(), Some(Path::new("/nonexistent/dir/r.png")), None).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/dir/r.png"), "{err}");
    }
}
