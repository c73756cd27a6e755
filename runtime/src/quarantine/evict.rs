//! Choosing which entries make room: one pass per eviction tier, allocation-free.
//!
//! Order: entries of the lowest [eviction tier](super::StatusKind) first (resolved, then
//! pending, then pseudo-labelled, then entries under review: they back a drift event a human
//! is looking at, and a verdict for a sample that is gone could not be applied to it), oldest
//! (lowest id) first within a tier. A new sample takes from the first two tiers only. The
//! per-class cap
//! is met first with entries of the new sample's class; then the count and byte caps with
//! any entries. Planning never changes anything, so a sample that cannot be admitted leaves
//! the quarantine exactly as it was.

use std::collections::{BTreeMap, HashMap};

use super::entry::Entry;

/// The tier of entries under review: above every status, so only enforcing caps (at open)
/// takes them.
pub(crate) const REVIEW_TIER: u8 = 3;

/// The eviction tier of `e`: [`REVIEW_TIER`] while it is under review, else its status's.
pub(crate) fn tier_of(e: &Entry) -> u8 {
    if e.review_since_unix_ms.is_some() {
        REVIEW_TIER
    } else {
        e.status.kind().eviction_tier()
    }
}

/// The caps a plan must meet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    pub max_entries: usize,
    pub max_bytes: u64,
    pub per_class: usize,
}

/// What is to be added (nothing, when bringing an over-full quarantine back under caps).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Incoming<'a> {
    /// Its class (the per-class cap is checked for this class only).
    pub class: &'a str,
    /// 1 for a new sample, 0 when only enforcing caps.
    pub count: usize,
    /// Its feature bytes.
    pub bytes: u64,
}

/// Fills `victims` (cleared first) with the ids to remove so that `incoming` fits, taking
/// entries of tier `max_tier` at most. False when that is impossible; `victims` is then
/// meaningless. Never allocates while `victims` has capacity for `entries.len()` ids.
pub(crate) fn plan(
    entries: &BTreeMap<u64, Entry>,
    per_class: &HashMap<String, usize>,
    held_bytes: u64,
    caps: Caps,
    incoming: Incoming<'_>,
    max_tier: u8,
    victims: &mut Vec<u64>,
) -> bool {
    victims.clear();
    let tier = tier_of;
    let mut count = entries.len() + incoming.count;
    let mut bytes = held_bytes.saturating_add(incoming.bytes);

    let in_class = per_class.get(incoming.class).copied().unwrap_or(0);
    let mut need = (in_class + incoming.count).saturating_sub(caps.per_class);
    'class: for t in 0..=max_tier {
        for e in entries.values() {
            if need == 0 {
                break 'class;
            }
            if tier(e) == t && e.predicted == incoming.class {
                victims.push(e.id);
                need -= 1;
                count -= 1;
                bytes = bytes.saturating_sub(e.feature_bytes());
            }
        }
    }
    if need > 0 {
        return false;
    }
    let class_victims = victims.len();

    let fits = |count: usize, bytes: u64| count <= caps.max_entries && bytes <= caps.max_bytes;
    for t in 0..=max_tier {
        for e in entries.values() {
            if fits(count, bytes) {
                return true;
            }
            if tier(e) != t {
                continue;
            }
            // The class pass took the first entries of the class in this same order.
            if e.predicted == incoming.class && victims[..class_victims].contains(&e.id) {
                continue;
            }
            victims.push(e.id);
            count -= 1;
            bytes = bytes.saturating_sub(e.feature_bytes());
        }
    }
    fits(count, bytes)
}

#[cfg(test)]
mod tests {
    use super::super::entry::{ENTRY_VERSION, Reason};
    use super::super::status::Status;
    use super::*;

    fn entry(id: u64, class: &str, dim: usize, status: Status) -> Entry {
        Entry {
            version: ENTRY_VERSION,
            id,
            created_unix_ms: id,
            sample: id,
            reason: Reason::FarFromKnown,
            predicted: class.into(),
            confidence: 0.5,
            knn_distance: None,
            features: vec![0.0; dim],
            status,
            thumbnail: None,
            review_since_unix_ms: None,
        }
    }

    struct Fixture {
        entries: BTreeMap<u64, Entry>,
        per_class: HashMap<String, usize>,
        bytes: u64,
    }

    fn fixture(list: Vec<Entry>) -> Fixture {
        let mut f = Fixture {
            entries: BTreeMap::new(),
            per_class: HashMap::new(),
            bytes: 0,
        };
        for e in list {
            *f.per_class.entry(e.predicted.clone()).or_default() += 1;
            f.bytes += e.feature_bytes();
            f.entries.insert(e.id, e);
        }
        f
    }

    fn run(f: &Fixture, caps: Caps, class: &str, dim: usize, max_tier: u8) -> Option<Vec<u64>> {
        let mut v = Vec::new();
        let incoming = Incoming {
            class,
            count: 1,
            bytes: dim as u64 * 4,
        };
        plan(
            &f.entries,
            &f.per_class,
            f.bytes,
            caps,
            incoming,
            max_tier,
            &mut v,
        )
        .then_some(v)
    }

    const CAPS: Caps = Caps {
        max_entries: 4,
        max_bytes: 1 << 20,
        per_class: 4,
    };

    #[test]
    fn room_left_means_no_victim() {
        let f = fixture(vec![entry(1, "a", 2, Status::Pending)]);
        assert_eq!(run(&f, CAPS, "a", 2, 1), Some(vec![]));
    }

    #[test]
    fn resolved_go_before_pending_and_pseudo_labelled_are_kept() {
        let label = || "x".to_string();
        let f = fixture(vec![
            entry(1, "a", 2, Status::PseudoLabelled { label: label() }),
            entry(2, "a", 2, Status::Pending),
            entry(3, "a", 2, Status::Adapted { label: label() }),
            entry(4, "b", 2, Status::Rejected),
        ]);
        // Full at 4: the oldest resolved (3) goes, though 1 and 2 are older.
        assert_eq!(run(&f, CAPS, "c", 2, 1), Some(vec![3]));
        // Room for 2 only: both resolved go first, then nothing else is needed.
        let caps = Caps {
            max_entries: 3,
            ..CAPS
        };
        assert_eq!(run(&f, caps, "c", 2, 1), Some(vec![3, 4]));
        let caps = Caps {
            max_entries: 2,
            ..CAPS
        };
        assert_eq!(run(&f, caps, "c", 2, 1), Some(vec![3, 4, 2]));
        // Only pseudo-labelled would be left to evict: refused at the admission tier...
        let caps = Caps {
            max_entries: 1,
            ..CAPS
        };
        assert_eq!(run(&f, caps, "c", 2, 1), None);
        // ...taken when enforcing caps (every tier).
        assert_eq!(run(&f, caps, "c", 2, 2), Some(vec![3, 4, 2, 1]));
    }

    /// Fails before this change: entries backing a drift event under review were evicted
    /// like any pending entry, so the verdict found nothing to apply to.
    #[test]
    fn entries_under_review_are_never_taken_for_a_new_sample() {
        let mut pinned = entry(1, "a", 2, Status::Pending);
        pinned.review_since_unix_ms = Some(5);
        let f = fixture(vec![
            pinned,
            entry(2, "a", 2, Status::Pending),
            entry(3, "a", 2, Status::Validated { label: "a".into() }),
            entry(4, "a", 2, Status::Pending),
        ]);
        // Full at 4: the resolved one first, then the oldest pending that is not under review.
        assert_eq!(run(&f, CAPS, "a", 2, 1), Some(vec![3]));
        let caps = Caps {
            max_entries: 2,
            ..CAPS
        };
        assert_eq!(run(&f, caps, "a", 2, 1), Some(vec![3, 2, 4]));
        // Only the entry under review would be left to take: the sample is refused...
        let caps = Caps {
            max_entries: 1,
            ..CAPS
        };
        assert_eq!(run(&f, caps, "a", 2, 1), None);
        let caps = Caps {
            per_class: 1,
            ..CAPS
        };
        assert_eq!(run(&f, caps, "a", 2, 1), None);
        // ...and enforcing caps at open takes it last.
        let caps = Caps {
            max_entries: 1,
            ..CAPS
        };
        assert_eq!(run(&f, caps, "a", 2, REVIEW_TIER), Some(vec![3, 2, 4, 1]));
    }

    #[test]
    fn the_per_class_cap_evicts_within_the_class() {
        let f = fixture(vec![
            entry(1, "b", 2, Status::Pending),
            entry(2, "a", 2, Status::Pending),
            entry(3, "a", 2, Status::Validated { label: "a".into() }),
        ]);
        let caps = Caps {
            per_class: 2,
            ..CAPS
        };
        // Class a is at its cap: its resolved entry goes, not the older b.
        assert_eq!(run(&f, caps, "a", 2, 1), Some(vec![3]));
        let caps = Caps {
            per_class: 1,
            ..CAPS
        };
        assert_eq!(run(&f, caps, "a", 2, 1), Some(vec![3, 2]));
        // Another class is not touched.
        assert_eq!(run(&f, caps, "b", 2, 1), Some(vec![1]));
        // Class cap and count cap together: the class victim also makes the room.
        let caps = Caps {
            per_class: 2,
            max_entries: 3,
            ..CAPS
        };
        assert_eq!(run(&f, caps, "a", 2, 1), Some(vec![3]));
    }

    #[test]
    fn the_byte_cap_can_take_several_small_entries_for_one_large() {
        let f = fixture(vec![
            entry(1, "a", 10, Status::Pending),
            entry(2, "a", 10, Status::Pending),
            entry(3, "a", 10, Status::Pending),
        ]);
        let caps = Caps {
            max_bytes: 160,
            ..CAPS
        };
        // Held 120 bytes; 100 more need 60 freed: two entries.
        assert_eq!(run(&f, caps, "b", 25, 1), Some(vec![1, 2]));
    }

    #[test]
    fn planning_allocates_nothing_with_reserved_capacity() {
        let f = fixture((1..=4).map(|i| entry(i, "a", 2, Status::Pending)).collect());
        let mut v = Vec::with_capacity(f.entries.len());
        let ptr = v.as_ptr();
        let incoming = Incoming {
            class: "a",
            count: 1,
            bytes: 8,
        };
        assert!(plan(
            &f.entries,
            &f.per_class,
            f.bytes,
            CAPS,
            incoming,
            1,
            &mut v
        ));
        assert_eq!(v, [1]);
        assert_eq!(v.as_ptr(), ptr);
    }
}
