//! Incidents: the drift a user hears about.
//!
//! Seven detectors watch one stream, so one change in the scene usually makes several of
//! them fire within a few frames. Each detector already emits one event per onset; an
//! incident groups the onsets that belong to the same change, so the demo, the logs and
//! the server report "drift at frame 612 (page-hinkley-distance, +cusum, +ewma)" once
//! instead of three times. An incident opens with the first onset while none is open and
//! closes after `quiet_frames` consecutive frames in which no detector is in drift.

use super::event::EventKind;
use crate::drift::{DetectorKind, DriftEvent};

/// An open incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// Its number (from 1, persisted across restarts by the caller).
    pub id: u64,
    /// The event that opened it.
    pub first: DriftEvent,
    /// Frame it opened at.
    pub opened_at: u64,
    /// Detectors that fired during it, in order, the first included.
    pub detectors: Vec<DetectorKind>,
    quiet: u32,
}

/// What a frame did to the incident state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing.
    None,
    /// An incident opened at this frame.
    Opened(u64),
    /// An event joined the open incident.
    Joined(u64),
    /// The incident closed at this frame.
    Closed(u64),
}

/// Groups detector onsets into incidents.
#[derive(Debug, Clone)]
pub struct Incidents {
    quiet_frames: u32,
    next_id: u64,
    open: Option<Incident>,
}

impl Incidents {
    /// A tracker whose incidents close after `quiet_frames` frames without drift; `next_id`
    /// is the number the next incident gets.
    pub fn new(quiet_frames: u32, next_id: u64) -> Self {
        Incidents {
            quiet_frames: quiet_frames.max(1),
            next_id: next_id.max(1),
            open: None,
        }
    }

    /// The open incident, if any.
    pub fn open(&self) -> Option<&Incident> {
        self.open.as_ref()
    }

    /// The number the next incident gets.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Account for one frame: its onsets, and whether any detector is in drift after it.
    /// Returns one change per onset or close (at most `events.len() + 1`), via `on_change`.
    pub fn frame(
        &mut self,
        frame: u64,
        events: &[DriftEvent],
        any_in_drift: bool,
        mut on_change: impl FnMut(Change, &Incident),
    ) {
        for event in events {
            match self.open.as_mut() {
                Some(incident) => {
                    incident.quiet = 0;
                    if !incident.detectors.contains(&event.detector) {
                        incident.detectors.push(event.detector);
                    }
                    on_change(Change::Joined(incident.id), incident);
                }
                None => {
                    let incident = Incident {
                        id: self.next_id,
                        first: *event,
                        opened_at: frame,
                        detectors: vec![event.detector],
                        quiet: 0,
                    };
                    self.next_id += 1;
                    on_change(Change::Opened(incident.id), &incident);
                    self.open = Some(incident);
                }
            }
        }
        if let Some(incident) = self.open.as_mut() {
            if any_in_drift || !events.is_empty() {
                incident.quiet = 0;
            } else {
                incident.quiet += 1;
                if incident.quiet >= self.quiet_frames {
                    let closed = self.open.take();
                    if let Some(incident) = closed {
                        on_change(Change::Closed(incident.id), &incident);
                    }
                }
            }
        }
    }
}

/// Log what `change` did to `incident` at `frame`; a close also becomes an event for the log.
pub(crate) fn log_change(frame: u64, change: Change, incident: &Incident) -> Option<EventKind> {
    match change {
        Change::Opened(id) => {
            tracing::info!(
                incident = id,
                frame,
                detector = %incident.first.detector,
                statistic = format_args!("{:.2}", incident.first.statistic),
                threshold = format_args!("{:.2}", incident.first.threshold),
                magnitude = format_args!("{:+.2}", incident.first.magnitude),
                "drift incident opened"
            );
            None
        }
        Change::Closed(id) => {
            tracing::info!(incident = id, frame, "drift incident closed");
            Some(EventKind::IncidentClosed {
                incident: id,
                opened_at: incident.opened_at,
                closed_at: frame,
                detectors: incident.detectors.iter().map(|d| d.to_string()).collect(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(detector: DetectorKind, at: u64) -> DriftEvent {
        DriftEvent {
            detector,
            statistic: 30.0,
            threshold: 24.0,
            magnitude: 2.0,
            sample_id: at,
            at,
        }
    }

    #[test]
    fn onsets_close_together_make_one_incident_that_closes_when_quiet() {
        let mut t = Incidents::new(3, 1);
        let mut changes = Vec::new();
        let mut log = |c: Change, _: &Incident| changes.push(c);
        t.frame(10, &[event(DetectorKind::Cusum, 10)], true, &mut log);
        t.frame(11, &[], true, &mut log);
        t.frame(
            12,
            &[
                event(DetectorKind::EwmaConfidence, 12),
                event(DetectorKind::Cusum, 12),
            ],
            true,
            &mut log,
        );
        assert_eq!(t.open().unwrap().detectors.len(), 2);
        for f in 13..=15 {
            t.frame(f, &[], false, &mut log);
        }
        assert!(t.open().is_none());
        t.frame(40, &[event(DetectorKind::Adwin, 40)], true, &mut log);
        assert_eq!(
            changes,
            vec![
                Change::Opened(1),
                Change::Joined(1),
                Change::Joined(1),
                Change::Closed(1),
                Change::Opened(2)
            ]
        );
    }

    #[test]
    fn a_detector_still_in_drift_keeps_the_incident_open() {
        let mut t = Incidents::new(2, 5);
        let mut opened = 0;
        t.frame(1, &[event(DetectorKind::Cusum, 1)], true, |c, _| {
            opened += u32::from(matches!(c, Change::Opened(5)))
        });
        for f in 2..100 {
            t.frame(f, &[], true, |_, _| panic!("no change expected"));
        }
        assert_eq!(opened, 1);
        assert_eq!(t.open().unwrap().id, 5);
        assert_eq!(t.next_id(), 6);
    }
}
