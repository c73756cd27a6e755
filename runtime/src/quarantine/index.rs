//! [`Quarantine`]: the entries in memory, their caps, and the batch operations that mirror
//! every change into the state store.
//!
//! The quarantine never writes itself: each change queues its `put`/`delete` into the
//! caller's [`Batch`], which the caller submits to the store (with `try_submit` on the
//! inference thread), so nothing here waits on the disk. Memory and database agree once
//! those batches are committed; a batch the caller drops makes them differ until the next
//! [`Quarantine::open`], which believes the database.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use super::config::QuarantineConfig;
use super::entry::{Candidate, ENTRY_VERSION, Entry, check_label, thumbnail_name};
use super::error::QuarantineError;
use super::evict::{self, Caps, Incoming};
use super::status::{Status, StatusKind};
use super::thumbnails::{ThumbnailStats, ThumbnailWriter};
use crate::frame::Frame;
use crate::state::{Batch, MAX_QUARANTINE_PER_READ, Store};

/// Counter (in the store) of samples ever admitted; also the last id given, so ids are never
/// reused, even after every entry is gone.
pub const ADMITTED_COUNTER: &str = "quarantine.admitted";
/// Counter of entries evicted to make room.
pub const EVICTED_COUNTER: &str = "quarantine.evicted";
/// Counter of entries removed by age.
pub const EXPIRED_COUNTER: &str = "quarantine.expired";

/// Damaged entries logged one by one at open; the rest are summed up in one line.
const DAMAGED_LOGGED: usize = 5;

/// How many entries are in each status, and what the quarantine has done since it opened.
/// Also the quarantine's part of the status report, hence serialisable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct QuarantineStats {
    /// Entries held.
    pub entries: usize,
    /// Feature bytes held (the `max-bytes` budget).
    pub bytes: u64,
    /// Entries pending.
    pub pending: usize,
    /// Entries pseudo-labelled.
    pub pseudo_labelled: usize,
    /// Entries validated.
    pub validated: usize,
    /// Entries rejected.
    pub rejected: usize,
    /// Entries adapted.
    pub adapted: usize,
    /// Entries under review (held for a human's verdict, see [`Quarantine::hold_for_review`]).
    pub under_review: usize,
    /// Samples admitted since open.
    pub admitted: u64,
    /// Samples not admitted since open because only entries worth more than a new sample
    /// (pseudo-labelled ones) could have made room.
    pub refused: u64,
    /// Entries evicted since open to make room.
    pub evicted: u64,
    /// Entries removed by age since open.
    pub expired: u64,
    /// Entries released from review since open without their verdict (waited `review-hours`,
    /// or made room under `max-under-review`).
    pub released: u64,
    /// Stored entries found damaged at open (dropped; deleted by the next `expire`).
    pub damaged: u64,
    /// The thumbnail writer's figures, when thumbnails are on.
    pub thumbnails: Option<ThumbnailStats>,
}

#[derive(Debug, Default)]
struct Session {
    admitted: u64,
    refused: u64,
    evicted: u64,
    expired: u64,
    released: u64,
    damaged: u64,
}

/// The quarantine of suspicious samples: bounded by count, feature bytes, age and per
/// predicted class; every entry in memory (for clustering and lookups without disk reads),
/// mirrored in the state store's `quarantine` table.
///
/// Open one per store: ids come from the store's [`ADMITTED_COUNTER`] as committed at open,
/// so two instances would hand out the same ids. Not shared between threads: the thread
/// that decides a frame is suspicious owns it (it is `Send`).
#[derive(Debug)]
pub struct Quarantine {
    config: QuarantineConfig,
    entries: BTreeMap<u64, Entry>,
    bytes: u64,
    per_class: HashMap<String, usize>,
    by_kind: [usize; 5],
    /// Ids of the entries under review (few: at most `max-under-review`).
    reviews: Vec<u64>,
    /// Feature bytes of the entries under review.
    review_bytes: u64,
    next_id: u64,
    /// Scratch for eviction plans, with capacity for every entry, so planning (also for a
    /// sample that is then refused) never allocates.
    victims: Vec<u64>,
    /// Ids to delete from the store at the next `expire`: damaged entries, and entries over
    /// the caps at open (the caps may have been lowered).
    stale: Vec<u64>,
    thumbnails: Option<ThumbnailWriter>,
    session: Session,
}

fn kind_index(kind: StatusKind) -> usize {
    match kind {
        StatusKind::Pending => 0,
        StatusKind::PseudoLabelled => 1,
        StatusKind::Validated => 2,
        StatusKind::Rejected => 3,
        StatusKind::Adapted => 4,
    }
}

impl Quarantine {
    /// Validates `config`, loads the entries committed in `store` (in pages), and starts the
    /// thumbnail writer when thumbnails are on.
    ///
    /// Damaged entries are logged and left out (deleted by the next [`expire`]); when the
    /// store holds more than the caps allow (they were lowered), the entries that eviction
    /// would pick are left out the same way. Call [`expire`] once after opening to queue
    /// those deletions.
    ///
    /// [`expire`]: Quarantine::expire
    pub fn open(config: QuarantineConfig, store: &Store) -> Result<Self, QuarantineError> {
        config.validate()?;
        let mut q = Quarantine {
            victims: Vec::with_capacity(config.max_entries + 1),
            config,
            entries: BTreeMap::new(),
            bytes: 0,
            per_class: HashMap::new(),
            by_kind: [0; 5],
            reviews: Vec::new(),
            review_bytes: 0,
            next_id: 1,
            stale: Vec::new(),
            thumbnails: None,
            session: Session::default(),
        };
        let mut after = 0;
        let mut last_id = 0;
        loop {
            let page = store.quarantine_entries_raw(after, MAX_QUARANTINE_PER_READ)?;
            let full = page.len() == MAX_QUARANTINE_PER_READ;
            for (id, bytes) in page {
                after = id;
                last_id = id;
                match Entry::decode(id, &bytes) {
                    Ok(entry) => q.load(entry),
                    Err(e) => {
                        q.session.damaged += 1;
                        if q.session.damaged as usize <= DAMAGED_LOGGED {
                            tracing::warn!("{e}; it is dropped");
                        }
                        q.stale.push(id);
                    }
                }
            }
            if !full {
                break;
            }
        }
        if q.session.damaged as usize > DAMAGED_LOGGED {
            tracing::warn!(
                "quarantine: {} damaged entries dropped in all",
                q.session.damaged
            );
        }
        let over = q.stale.len() as u64 - q.session.damaged;
        if over > 0 {
            tracing::info!(
                "quarantine: {over} stored entries are over the configured caps and are dropped"
            );
        }
        let admitted = store.counter(ADMITTED_COUNTER)?;
        q.next_id = admitted.max(last_id).saturating_add(1);
        if q.config.thumbnails {
            let keep = q
                .entries
                .values()
                .filter(|e| e.thumbnail.is_some())
                .map(|e| e.id)
                .collect();
            q.thumbnails = Some(ThumbnailWriter::start_with_space(
                &q.config,
                keep,
                store.space().cloned(),
            )?);
        }
        tracing::info!(
            "quarantine: {} entries ({} feature bytes) loaded, next id {}",
            q.entries.len(),
            q.bytes,
            q.next_id
        );
        Ok(q)
    }

    /// Adds a stored entry at open, then brings its class and the totals back under the
    /// caps (taking from every tier: what is stored was admitted under other caps).
    fn load(&mut self, entry: Entry) {
        let class = entry.predicted.clone();
        self.insert(entry);
        let incoming = Incoming {
            class: &class,
            count: 0,
            bytes: 0,
        };
        if evict::plan(
            &self.entries,
            &self.per_class,
            self.bytes,
            self.caps(),
            incoming,
            evict::REVIEW_TIER,
            &mut self.victims,
        ) {
            for i in 0..self.victims.len() {
                let id = self.victims[i];
                if self.take(id).is_some() {
                    self.stale.push(id);
                }
            }
        }
    }

    fn caps(&self) -> Caps {
        Caps {
            max_entries: self.config.max_entries,
            max_bytes: self.config.max_bytes,
            per_class: self.config.per_class_cap,
        }
    }

    fn insert(&mut self, entry: Entry) {
        self.bytes += entry.feature_bytes();
        if entry.review_since_unix_ms.is_some() {
            self.reviews.push(entry.id);
            self.review_bytes += entry.feature_bytes();
        }
        self.by_kind[kind_index(entry.status.kind())] += 1;
        match self.per_class.get_mut(entry.predicted.as_str()) {
            Some(n) => *n += 1,
            None => {
                self.per_class.insert(entry.predicted.clone(), 1);
            }
        }
        self.entries.insert(entry.id, entry);
    }

    /// Removes `id` from memory only.
    fn take(&mut self, id: u64) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        self.bytes -= entry.feature_bytes();
        if entry.review_since_unix_ms.is_some() {
            self.reviews.retain(|r| *r != id);
            self.review_bytes -= entry.feature_bytes();
        }
        self.by_kind[kind_index(entry.status.kind())] -= 1;
        if let Some(n) = self.per_class.get_mut(entry.predicted.as_str()) {
            *n -= 1;
            if *n == 0 {
                self.per_class.remove(entry.predicted.as_str());
            }
        }
        Some(entry)
    }

    /// Drops every entry listed in `victims` (see [`drop_entry`](Self::drop_entry)); how many.
    /// Indexes, not an iterator: `drop_entry` needs `&mut self` while the list is read.
    fn drop_victims(&mut self, batch: &mut Batch) -> usize {
        let n = self.victims.len();
        for i in 0..n {
            let id = self.victims[i];
            self.drop_entry(id, batch);
        }
        n
    }

    /// Removes `id` from memory, queues its deletion and its thumbnail's.
    fn drop_entry(&mut self, id: u64, batch: &mut Batch) -> Option<Entry> {
        let entry = self.take(id)?;
        batch.delete_quarantine(id);
        if entry.thumbnail.is_some() {
            if let Some(w) = &self.thumbnails {
                w.delete(id);
            }
        }
        Some(entry)
    }

    /// Offers a suspicious sample. Returns its id when admitted (its `put`, the evictions
    /// that made room and the admission counter queued into `batch`, its thumbnail handed to
    /// the writer), or `None` when it was not: the quarantine is disabled, or only
    /// pseudo-labelled entries could have made room (counted in
    /// [`QuarantineStats::refused`]). Not admitting allocates nothing.
    ///
    /// Room is made by evicting, in order: resolved entries (validated, rejected, adapted),
    /// then pending ones, oldest first; for the per-class cap only within the sample's
    /// predicted class. Entries under review are never evicted for a new sample (entries that
    /// waited `review-hours` are released from review first). `now_ms` is the wall clock (ms since the Unix epoch), used for age.
    ///
    /// Errors (nothing changed, nothing queued): non-finite or out-of-range features,
    /// confidence or distance, bad label lengths, features larger than `max-bytes`.
    pub fn admit(
        &mut self,
        candidate: Candidate<'_>,
        frame: &Frame,
        now_ms: u64,
        batch: &mut Batch,
    ) -> Result<Option<u64>, QuarantineError> {
        if !self.config.enabled {
            return Ok(None);
        }
        candidate.check()?;
        if !self.reviews.is_empty() {
            self.release_overdue(now_ms, batch);
        }
        let bytes = candidate.feature_bytes();
        if bytes > self.config.max_bytes {
            return Err(QuarantineError::TooLarge {
                bytes,
                max: self.config.max_bytes,
            });
        }
        let incoming = Incoming {
            class: candidate.predicted,
            count: 1,
            bytes,
        };
        if !evict::plan(
            &self.entries,
            &self.per_class,
            self.bytes,
            self.caps(),
            incoming,
            StatusKind::Pending.eviction_tier(),
            &mut self.victims,
        ) {
            self.session.refused += 1;
            return Ok(None);
        }

        let id = self.next_id;
        let thumbnail = match &self.thumbnails {
            Some(w) if w.submit(id, frame) => Some(thumbnail_name(id)),
            _ => None,
        };
        let entry = Entry {
            version: ENTRY_VERSION,
            id,
            created_unix_ms: now_ms,
            sample: candidate.sample,
            reason: candidate.reason.to_owned(),
            predicted: candidate.predicted.to_string(),
            confidence: candidate.confidence,
            knn_distance: candidate.knn_distance,
            features: candidate.features.to_vec(),
            status: Status::Pending,
            thumbnail,
            review_since_unix_ms: None,
        };
        if let Err(e) = batch.put_quarantine(id, &entry) {
            if entry.thumbnail.is_some() {
                if let Some(w) = &self.thumbnails {
                    w.delete(id);
                }
            }
            return Err(e.into());
        }
        batch.increment(ADMITTED_COUNTER, 1);
        self.next_id += 1;

        let evicted = self.drop_victims(batch);
        if evicted > 0 {
            batch.increment(EVICTED_COUNTER, evicted as u64);
            self.session.evicted += evicted as u64;
            tracing::debug!("quarantine: {evicted} entries evicted to admit {id}");
        }
        self.insert(entry);
        self.session.admitted += 1;
        Ok(Some(id))
    }

    /// Changes the status of entry `id` and queues the updated entry into `batch`. Setting
    /// the status it already has changes nothing and queues nothing; a change the life cycle
    /// forbids (see [`super::status`]) is [`QuarantineError::Transition`].
    pub fn set_status(
        &mut self,
        id: u64,
        status: Status,
        batch: &mut Batch,
    ) -> Result<(), QuarantineError> {
        if let Some(label) = status.label() {
            check_label("status label", label)?;
        }
        let entry = self
            .entries
            .get_mut(&id)
            .ok_or(QuarantineError::UnknownEntry { id })?;
        if entry.status == status {
            return Ok(());
        }
        if !entry.status.may_become(&status) {
            return Err(QuarantineError::Transition {
                id,
                from: entry.status.kind().name(),
                to: status.kind().name(),
            });
        }
        let (from, to) = (entry.status.kind(), status.kind());
        // A human's verdict is what the review waited for.
        let verdict = matches!(to, StatusKind::Validated | StatusKind::Rejected);
        let review = entry.review_since_unix_ms;
        let old = std::mem::replace(&mut entry.status, status);
        if verdict {
            entry.review_since_unix_ms = None;
        }
        if let Err(e) = batch.put_quarantine(id, &*entry) {
            entry.status = old;
            entry.review_since_unix_ms = review;
            return Err(e.into());
        }
        if verdict && review.is_some() {
            self.forget_review(id);
        }
        self.by_kind[kind_index(from)] -= 1;
        self.by_kind[kind_index(to)] += 1;
        tracing::debug!("quarantine: entry {id} {} -> {}", from.name(), to.name());
        Ok(())
    }

    /// Holds entry `id` for review: it backs a drift event sent to a human (the sync client
    /// reports the event with this entry's thumbnail and features), so eviction leaves it
    /// alone until its verdict ([`set_status`](Self::set_status) to validated or rejected, or
    /// [`release_review`](Self::release_review) when the drift verdict came without one).
    ///
    /// Bounded, because a verdict may never come: at most `max-under-review` entries (never
    /// more than half of `max-entries`) and half of `max-bytes` are held (beyond, the oldest is released, logged), and an entry is
    /// released after `review-hours` (at the next admission or [`expire`](Self::expire),
    /// logged). Returns whether it is held: false when `max-under-review` is 0 or the entry
    /// has its verdict already. Holding an entry held already changes nothing.
    pub fn hold_for_review(
        &mut self,
        id: u64,
        now_ms: u64,
        batch: &mut Batch,
    ) -> Result<bool, QuarantineError> {
        let entry = self
            .entries
            .get(&id)
            .ok_or(QuarantineError::UnknownEntry { id })?;
        let final_status = matches!(
            entry.status.kind(),
            StatusKind::Validated | StatusKind::Rejected
        );
        if self.config.review_limit() == 0 || final_status {
            return Ok(false);
        }
        if entry.review_since_unix_ms.is_some() {
            return Ok(true);
        }
        let bytes = entry.feature_bytes();
        while !self.reviews.is_empty()
            && (self.reviews.len() >= self.config.review_limit()
                || self.review_bytes + bytes > self.config.max_bytes / 2)
        {
            let oldest = self.reviews[0];
            tracing::info!(
                "quarantine: entry {oldest} is no longer held for review ({} entries under \
                 review at most, quarantine.max-under-review); it may be evicted, and its \
                 verdict then applies through the features its drift event carried",
                self.config.review_limit()
            );
            self.unpin(oldest, batch)?;
            self.session.released += 1;
        }
        let entry = self
            .entries
            .get_mut(&id)
            .ok_or(QuarantineError::UnknownEntry { id })?;
        entry.review_since_unix_ms = Some(now_ms);
        if let Err(e) = batch.put_quarantine(id, &*entry) {
            entry.review_since_unix_ms = None;
            return Err(e.into());
        }
        self.reviews.push(id);
        self.review_bytes += bytes;
        tracing::debug!("quarantine: entry {id} held for review");
        Ok(true)
    }

    /// Ends the review of entry `id` without a sample verdict (e.g. its drift event was
    /// rejected, or validated without a label): it may be evicted like any other from now on.
    /// Returns whether it was under review.
    pub fn release_review(&mut self, id: u64, batch: &mut Batch) -> Result<bool, QuarantineError> {
        match self.entries.get(&id) {
            Some(e) if e.review_since_unix_ms.is_some() => {
                self.unpin(id, batch)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Ends the review of every entry holding frame `sample` (what a drift event names);
    /// returns how many were under review.
    pub fn release_review_of_sample(
        &mut self,
        sample: u64,
        batch: &mut Batch,
    ) -> Result<usize, QuarantineError> {
        let mut n = 0;
        let mut i = 0;
        while i < self.reviews.len() {
            let id = self.reviews[i];
            if self.entries.get(&id).is_some_and(|e| e.sample == sample) {
                self.unpin(id, batch)?;
                n += 1;
            } else {
                i += 1;
            }
        }
        Ok(n)
    }

    /// The ids of the entries under review, oldest hold first.
    pub fn under_review(&self) -> &[u64] {
        &self.reviews
    }

    /// Clears the review pin of `id` (held) and queues the entry.
    fn unpin(&mut self, id: u64, batch: &mut Batch) -> Result<(), QuarantineError> {
        let entry = self
            .entries
            .get_mut(&id)
            .ok_or(QuarantineError::UnknownEntry { id })?;
        let since = entry.review_since_unix_ms.take();
        if let Err(e) = batch.put_quarantine(id, &*entry) {
            entry.review_since_unix_ms = since;
            return Err(e.into());
        }
        self.forget_review(id);
        Ok(())
    }

    /// Drops `id` from the review bookkeeping (its pin is already cleared).
    fn forget_review(&mut self, id: u64) {
        if let Some(i) = self.reviews.iter().position(|r| *r == id) {
            self.reviews.remove(i);
            if let Some(e) = self.entries.get(&id) {
                self.review_bytes -= e.feature_bytes();
            }
        }
    }

    /// Releases the entries that waited longer than `review-hours` for their verdict, and the
    /// oldest beyond `max-under-review` (the setting may have been lowered since they were
    /// held). Looks at the few entries under review only.
    fn release_overdue(&mut self, now_ms: u64, batch: &mut Batch) {
        let cutoff = now_ms.saturating_sub(self.config.review_ms());
        let mut i = 0;
        while i < self.reviews.len() {
            let id = self.reviews[i];
            let since = self
                .entries
                .get(&id)
                .and_then(|e| e.review_since_unix_ms)
                .unwrap_or(0);
            let over = self.reviews.len() > self.config.review_limit();
            if since < cutoff || over {
                if over {
                    tracing::info!(
                        "quarantine: entry {id} is no longer held for review (more than {} \
                         entries under review, quarantine.max-under-review)",
                        self.config.review_limit()
                    );
                } else {
                    tracing::info!(
                        "quarantine: entry {id} waited {} h for a verdict \
                         (quarantine.review-hours = {}); it is no longer held for review and \
                         may be evicted; a later verdict applies through the features its \
                         drift event carried",
                        now_ms.saturating_sub(since) / 3_600_000,
                        self.config.review_hours
                    );
                }
                match self.unpin(id, batch) {
                    Ok(()) => self.session.released += 1,
                    Err(e) => {
                        tracing::warn!("quarantine: cannot release entry {id} from review: {e}");
                        i += 1;
                    }
                }
            } else {
                i += 1;
            }
        }
    }

    /// Removes entry `id` (and its thumbnail), queuing the deletion into `batch`; returns it.
    pub fn remove(&mut self, id: u64, batch: &mut Batch) -> Option<Entry> {
        self.drop_entry(id, batch)
    }

    /// Removes the entries older than `max-age-hours` at `now_ms` (any status), and queues
    /// the deletion of what [`open`](Quarantine::open) left out; returns how many entries
    /// expired. Call it now and then (e.g. once a minute) off the per-frame path: it scans
    /// every entry. Entries stamped in the future (the clock was set back) are kept.
    pub fn expire(&mut self, now_ms: u64, batch: &mut Batch) -> usize {
        for id in self.stale.drain(..) {
            batch.delete_quarantine(id);
        }
        self.release_overdue(now_ms, batch);
        let cutoff = now_ms.saturating_sub(self.config.max_age_ms());
        self.victims.clear();
        self.victims.extend(
            self.entries
                .values()
                .filter(|e| e.created_unix_ms < cutoff)
                .map(|e| e.id),
        );
        let n = self.drop_victims(batch);
        if n > 0 {
            batch.increment(EXPIRED_COUNTER, n as u64);
            self.session.expired += n as u64;
            tracing::debug!("quarantine: {n} entries expired");
        }
        n
    }

    /// Entry `id`, if held.
    pub fn get(&self, id: u64) -> Option<&Entry> {
        self.entries.get(&id)
    }

    /// Every entry, oldest (lowest id) first.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// The entries in status `kind`, oldest first.
    pub fn with_status(&self, kind: StatusKind) -> impl Iterator<Item = &Entry> {
        self.entries
            .values()
            .filter(move |e| e.status.kind() == kind)
    }

    /// The pending entries, oldest first (what the heuristic adaptation clusters).
    pub fn pending(&self) -> impl Iterator<Item = &Entry> {
        self.with_status(StatusKind::Pending)
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries held with predicted label `class`.
    pub fn class_len(&self, class: &str) -> usize {
        self.per_class.get(class).copied().unwrap_or(0)
    }

    /// The id the next admitted sample gets.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The settings.
    pub fn config(&self) -> &QuarantineConfig {
        &self.config
    }

    /// The thumbnail file of entry `id`, when it has one (derived from the id; the file may
    /// be gone, see [`Entry::thumbnail`]).
    pub fn thumbnail_path(&self, id: u64) -> Option<PathBuf> {
        let entry = self.entries.get(&id)?;
        entry.thumbnail.as_ref()?;
        Some(self.config.thumbnail_dir.join(thumbnail_name(id)))
    }

    /// Counts per status, bytes held, and what happened since open.
    pub fn stats(&self) -> QuarantineStats {
        let k = |kind| self.by_kind[kind_index(kind)];
        QuarantineStats {
            entries: self.entries.len(),
            bytes: self.bytes,
            pending: k(StatusKind::Pending),
            pseudo_labelled: k(StatusKind::PseudoLabelled),
            validated: k(StatusKind::Validated),
            rejected: k(StatusKind::Rejected),
            adapted: k(StatusKind::Adapted),
            under_review: self.reviews.len(),
            admitted: self.session.admitted,
            refused: self.session.refused,
            evicted: self.session.evicted,
            expired: self.session.expired,
            released: self.session.released,
            damaged: self.session.damaged,
            thumbnails: self.thumbnails.as_ref().map(ThumbnailWriter::stats),
        }
    }

    /// Waits until the thumbnail jobs queued so far are done (tests, shutdown). Blocks: not
    /// for the inference thread.
    pub fn flush_thumbnails(&self) {
        if let Some(w) = &self.thumbnails {
            w.flush();
        }
    }

    /// Finishes the queued thumbnail jobs and stops the writer (dropping does the same).
    pub fn close(mut self) {
        if let Some(w) = self.thumbnails.take() {
            w.close();
        }
    }
}
