//! `tinylcm report`: what happened during a run, drawn as PNG and SVG.
//!
//! A [`Timeline`] is filled while frames run (it is a pipeline observer with
//! bounded memory) and drawn afterwards by [`render`]: confidence over time with
//! the scenario phases and drift events, the class mix, and each drift
//! detector's statistic against its threshold.

mod font;
mod incidents;
mod plot;
mod timeline;

pub use font::{FONT_ENV, FontError, load_font};
pub use incidents::{AdaptationRecord, IncidentLog, IncidentRecord, MAX_INCIDENTS};
pub use plot::{ReportError, render};
pub use timeline::{DetectorTrace, EventMark, FramePoint, MarkKind, PhaseSpan, Timeline};
