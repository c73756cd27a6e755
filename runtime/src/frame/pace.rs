//! Frame pacing: deliver frames at a target rate, or as fast as possible.
//!
//! Sources that are not a camera (synthetic scene, directory replay) have no
//! natural rate; a demo wants camera-like timing, a benchmark wants none.

use std::time::{Duration, Instant};

/// Sleeps so that successive [`Pacer::wait`] calls are `1 / fps` apart.
#[derive(Debug, Clone)]
pub struct Pacer {
    period: Option<Duration>,
    next: Option<Instant>,
}

impl Pacer {
    /// A pacer for `fps` frames per second; `fps <= 0` (or not finite) means no pacing.
    pub fn new(fps: f64) -> Self {
        let period = (fps.is_finite() && fps > 0.0).then(|| Duration::from_secs_f64(1.0 / fps));
        Pacer { period, next: None }
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
}
