//! Frame pacing: deliver frames at a target rate, or as fast as possible.
//!
//! Sources that are not a camera (synthetic scene, directory replay) have no
//! natural rate; a demo wants camera-like timing, a benchmark wants none.
//! The pacer also numbers and timestamps what those sources deliver, so they
//! do it the same way.

use std::time::{Duration, Instant};

use super::Frame;

/// Sleeps so that successive [`Pacer::wait`] calls are `1 / fps` apart.
#[derive(Debug, Clone)]
pub struct Pacer {
    period: Option<Duration>,
    next: Option<Instant>,
    sequence: u64,
    started: Option<Instant>,
}

impl Pacer {
    /// A pacer for `fps` frames per second; `fps <= 0` (or not finite) means no pacing.
    pub fn new(fps: f64) -> Self {
        let period = (fps.is_finite() && fps > 0.0).then(|| Duration::from_secs_f64(1.0 / fps));
        Pacer {
            period,
            next: None,
            sequence: 0,
            started: None,
        }
    }

    /// The sequence number the next delivered frame gets (0 for the first).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Number `frame`, wait until it is due, and stamp its time since the first frame.
    pub fn deliver(&mut self, frame: &mut Frame) {
        frame.sequence = self.sequence;
        self.sequence += 1;
        self.wait();
        let started = *self.started.get_or_insert_with(Instant::now);
        frame.timestamp = started.elapsed();
    }

    /// Wait until the next frame is due. When the caller has fallen behind by
    /// more than one period, the schedule restarts from now instead of bursting.
    pub fn wait(&mut self) {
        let Some(period) = self.period else { return };
        let now = Instant::now();
        let due = match self.next {
            Some(due) if due + period >= now => due,
            _ => now,
        };
        if due > now {
            std::thread::sleep(due - now);
        }
        self.next = Some(due + period);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpaced_never_sleeps() {
        let mut p = Pacer::new(0.0);
        let t = Instant::now();
        for _ in 0..1000 {
            p.wait();
        }
        assert!(t.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn paced_spaces_frames() {
        let mut p = Pacer::new(200.0);
        let t = Instant::now();
        for _ in 0..5 {
            p.wait();
        }
        // First frame is immediate, four more periods of 5 ms.
        assert!(t.elapsed() >= Duration::from_millis(19));
    }

    #[test]
    fn delivered_frames_are_numbered_and_timestamped_in_order() {
        let mut p = Pacer::new(0.0);
        let mut frame = Frame::default();
        let mut last = Duration::ZERO;
        for expected in 0..3 {
            assert_eq!(p.sequence(), expected);
            p.deliver(&mut frame);
            assert_eq!(frame.sequence, expected);
            assert!(frame.timestamp >= last);
            last = frame.timestamp;
        }
    }
}
