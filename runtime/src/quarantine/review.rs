//! Copies of the features of samples sent for review, kept after their entries may be gone.
//!
//! Why: a drift event goes to sphere-lite with its quarantined samples (thumbnail and
//! features), and a human's label comes back naming the quarantine entry. The entry is held
//! for review ([`Quarantine::hold_for_review`](super::Quarantine::hold_for_review)), but that
//! hold is bounded (count, bytes, `review-hours`) because a verdict may never come; a label
//! that arrives after the entry was evicted would then teach nothing. So the sync client keeps
//! a copy of exactly the features it sent with each event, and a sample verdict for an entry
//! that is gone applies through that copy: the KNN learns the label from the same features the
//! human's drift event carried.
//!
//! The copies are one value in the state store's `sync` table (outside snapshots, so a
//! restore never brings back features of samples that were reviewed), bounded by count and
//! bytes, oldest dropped first. Written by the sync thread when it packages drift events; read
//! by the feedback inbox thread when it resolves a sample verdict.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::state::{Batch, StateError, Store};

/// Name of the value in the `sync` table.
pub const REVIEW_COPIES: &str = "review-copies";
/// Most copies kept.
pub const MAX_COPIES: usize = 256;
/// Most feature bytes kept over all copies (4 bytes per value).
pub const MAX_COPY_BYTES: usize = 1 << 20;

/// The features of one sample sent for review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewCopy {
    /// The quarantine entry id (what a sample verdict names).
    pub id: u64,
    /// Its feature vector as sent.
    pub features: Vec<f32>,
}

/// The stored value: a layout version, then the copies, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Stored {
    version: u32,
    copies: Vec<ReviewCopy>,
}

const VERSION: u32 = 1;

/// The copies kept, oldest first (none when nothing was stored or the value is unreadable:
/// the copies are a fallback, never a reason to fail).
pub fn copies(store: &Store) -> Vec<ReviewCopy> {
    match store.get_sync::<Stored>(REVIEW_COPIES) {
        Ok(Some(s)) if s.version == VERSION => s.copies,
        Ok(Some(s)) => {
            tracing::warn!(
                "review copies: layout {} unknown to this build; ignored",
                s.version
            );
            Vec::new()
        }
        Ok(None) => Vec::new(),
        Err(e) => {
            tracing::warn!("review copies unreadable ({e}); ignored");
            Vec::new()
        }
    }
}

/// The copies of `ids` that are kept, by id.
pub fn carried(store: &Store, ids: &[u64]) -> HashMap<u64, Vec<f32>> {
    if ids.is_empty() {
        return HashMap::new();
    }
    copies(store)
        .into_iter()
        .filter(|c| ids.contains(&c.id))
        .map(|c| (c.id, c.features))
        .collect()
}

/// Adds `new` copies (a copy of an id kept already replaces it) to what `store` holds, drops
/// the oldest beyond [`MAX_COPIES`] and [`MAX_COPY_BYTES`], and queues the value into `batch`.
pub fn remember(store: &Store, new: Vec<ReviewCopy>, batch: &mut Batch) -> Result<(), StateError> {
    if new.is_empty() {
        return Ok(());
    }
    let mut all = copies(store);
    all.retain(|c| !new.iter().any(|n| n.id == c.id));
    all.extend(new);
    bound(&mut all);
    batch.put_sync(
        REVIEW_COPIES,
        &Stored {
            version: VERSION,
            copies: all,
        },
    )?;
    Ok(())
}

/// Drops the oldest copies until both bounds hold.
fn bound(all: &mut Vec<ReviewCopy>) {
    let over = all.len().saturating_sub(MAX_COPIES);
    all.drain(..over);
    let mut bytes: usize = all.iter().map(|c| c.features.len() * 4).sum();
    let mut drop = 0;
    while bytes > MAX_COPY_BYTES && drop < all.len() {
        bytes -= all[drop].features.len() * 4;
        drop += 1;
    }
    all.drain(..drop);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DurabilityPolicy;

    #[test]
    fn copies_are_kept_replaced_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.redb"), DurabilityPolicy::default()).unwrap();
        assert!(copies(&store).is_empty());
        let copy = |id, v| ReviewCopy {
            id,
            features: vec![v; 4],
        };
        let mut b = Batch::new();
        remember(&store, vec![copy(1, 1.0), copy(2, 2.0)], &mut b).unwrap();
        store.submit(b).unwrap();
        store.flush().unwrap();
        let mut b = Batch::new();
        remember(&store, vec![copy(2, 3.0)], &mut b).unwrap();
        store.submit(b).unwrap();
        store.flush().unwrap();
        let found = carried(&store, &[2, 7]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[&2], vec![3.0; 4]);

        let mut many: Vec<_> = (0..MAX_COPIES as u64 + 10).map(|i| copy(i, 0.0)).collect();
        bound(&mut many);
        assert_eq!(many.len(), MAX_COPIES);
        assert_eq!(many[0].id, 10, "the oldest go first");
        let mut big = vec![
            ReviewCopy {
                id: 1,
                features: vec![0.0; MAX_COPY_BYTES / 4],
            },
            copy(2, 0.0),
        ];
        bound(&mut big);
        assert_eq!(big.len(), 1);
        assert_eq!(big[0].id, 2);
    }
}
