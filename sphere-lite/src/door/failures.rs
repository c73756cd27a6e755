//! The failed-authentication budget: a token bucket per source, in a fixed-size table.
//!
//! Why: tokens and enrollment keys are 256-bit, so guessing them is hopeless, but answering
//! thousands of wrong guesses a second costs the server (and the logs) as much as real work.
//! Each source may fail `burst` times, then once every `refill`; while its bucket is empty its
//! attempts are answered 429 with `Retry-After` before any credential is looked at. Only
//! failures take from the bucket: a client that authenticates is never counted or slowed.
//!
//! Bounded memory: at most [`MAX_SOURCES`] sources are remembered (about 40 bytes each). When
//! the table is full, sources whose bucket has refilled (they carry no information) are
//! dropped first, then the one with the fullest bucket, so rotating addresses evicts the least
//! suspicious entries, never grows the table, and a source that used up its budget is the
//! last to be forgotten.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::source::Source;

/// Sources remembered at most.
pub const MAX_SOURCES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Failures still allowed (fractional while refilling).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

/// Per-source budgets of failed authentications (see the module docs).
#[derive(Debug)]
pub struct FailureBudget {
    burst: f64,
    refill: Duration,
    capacity: usize,
    table: Mutex<HashMap<Source, Bucket>>,
}

impl FailureBudget {
    /// `burst` failures at once, then one per `refill`; at most [`MAX_SOURCES`] sources.
    pub fn new(burst: u32, refill: Duration) -> Self {
        Self::with_capacity(burst, refill, MAX_SOURCES)
    }

    fn with_capacity(burst: u32, refill: Duration, capacity: usize) -> Self {
        FailureBudget {
            burst: f64::from(burst.max(1)),
            refill: refill.max(Duration::from_millis(1)),
            capacity: capacity.max(1),
            table: Mutex::new(HashMap::new()),
        }
    }

    fn refilled(&self, b: Bucket, now: Instant) -> Bucket {
        let gained = now.saturating_duration_since(b.at).as_secs_f64() / self.refill.as_secs_f64();
        Bucket {
            tokens: (b.tokens + gained).min(self.burst),
            at: now,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Source, Bucket>> {
        // A panic while holding this lock cannot leave a bucket half-written (plain values).
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long `source` must wait before its next attempt, or `None` when it may try now.
    pub fn wait(&self, source: Source, now: Instant) -> Option<Duration> {
        let table = self.lock();
        let b = self.refilled(*table.get(&source)?, now);
        (b.tokens < 1.0).then(|| self.refill.mul_f64(1.0 - b.tokens))
    }

    /// Count a failed authentication of `source`; returns whether this used up its budget
    /// (the moment to log it once).
    pub fn fail(&self, source: Source, now: Instant) -> bool {
        let mut table = self.lock();
        if !table.contains_key(&source) && table.len() >= self.capacity {
            self.evict(&mut table, now);
        }
        let b = table.get(&source).copied().unwrap_or(Bucket {
            tokens: self.burst,
            at: now,
        });
        let mut b = self.refilled(b, now);
        let had = b.tokens >= 1.0;
        b.tokens = (b.tokens - 1.0).max(0.0);
        table.insert(source, b);
        had && b.tokens < 1.0
    }

    /// Make room for one source (see the module docs for the order).
    fn evict(&self, table: &mut HashMap<Source, Bucket>, now: Instant) {
        table.retain(|_, b| self.refilled(*b, now).tokens < self.burst);
        if table.len() < self.capacity {
            return;
        }
        let fullest = table
            .iter()
            .map(|(s, b)| (*s, self.refilled(*b, now).tokens))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(s, _)| s);
        if let Some(s) = fullest {
            table.remove(&s);
        }
    }

    /// Sources remembered now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no source is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn src(n: u32) -> Source {
        Source::of(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)))
    }

    #[test]
    fn a_burst_then_one_per_refill() {
        let budget = FailureBudget::new(3, Duration::from_secs(10));
        let t = Instant::now();
        assert_eq!(budget.wait(src(1), t), None);
        assert!(!budget.fail(src(1), t));
        assert!(!budget.fail(src(1), t));
        assert!(
            budget.fail(src(1), t),
            "the third failure uses the budget up"
        );
        assert_eq!(budget.wait(src(1), t), Some(Duration::from_secs(10)));
        assert_eq!(
            budget.wait(src(1), t + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
        // Another source is not affected.
        assert_eq!(budget.wait(src(2), t), None);
        // One refill later: exactly one more attempt.
        let later = t + Duration::from_secs(10);
        assert_eq!(budget.wait(src(1), later), None);
        assert!(budget.fail(src(1), later));
        assert!(budget.wait(src(1), later).is_some());
    }

    #[test]
    fn rotating_sources_never_grow_the_table_nor_free_a_blocked_source() {
        let budget = FailureBudget::with_capacity(2, Duration::from_secs(60), 64);
        let t = Instant::now();
        budget.fail(src(0), t);
        budget.fail(src(0), t);
        assert!(budget.wait(src(0), t).is_some());
        for n in 1..100_000 {
            budget.fail(src(n), t);
            assert!(budget.len() <= 64);
        }
        assert!(
            budget.wait(src(0), t).is_some(),
            "a source with its budget used up is evicted last"
        );
    }
}
