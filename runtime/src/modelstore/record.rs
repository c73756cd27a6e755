//! What the store remembers in the state database (`kv` key `models`): which slot is
//! committed, which is on trial and how often it was started, what was installed, refused or
//! rolled back. One versioned value, replaced as a whole, so every change is atomic.
//!
//! Format 2 added the security epoch of each slot's release and the store's epoch floor (the
//! highest epoch ever committed): a value of format 1 is read as floor 0 and epoch 0 for every
//! record, which is what its releases carried, and written back as format 2.

use serde::{Deserialize, Serialize};

/// Entries kept in [`ModelsState::history`] (oldest dropped first).
pub const HISTORY_LEN: usize = 32;

/// The name of the value in the state database.
pub(crate) const STATE_KEY: &str = "models";

/// One of the two model slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// Folder `a/`.
    A,
    /// Folder `b/`.
    B,
}

impl Slot {
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The slot's folder name.
    pub fn dir_name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// A verified release whose files are complete in a slot (format 2, the one written).
pub type SlotRecord = SlotRecordOf<u32>;

/// A slot record of either format: `E` is the type of its epoch, `u32` in format 2 and `()` in
/// format 1 (which had none; postcard writes `()` as nothing). One layout for both formats, so
/// they cannot drift apart but where format 2 added the epoch; the bytes of format 1 are held
/// by a test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotRecordOf<E> {
    /// Where its files are.
    pub slot: Slot,
    /// Release name.
    pub name: String,
    /// Release version.
    pub version: String,
    /// SHA-256 of the model file.
    pub sha256: String,
    /// Model file size.
    pub size: u64,
    /// Id of the key that signed the release.
    pub key_id: String,
    /// When it was installed (Unix ms).
    pub installed_unix_ms: u64,
    /// Mean top-class confidence measured in its health window (set at commit).
    pub mean_confidence: Option<f32>,
    /// The release's security epoch (0 for releases without one).
    pub epoch: E,
}

/// A slot on trial (format 2, the one written).
pub type Trial = TrialOf<u32>;

/// A slot on trial: activated, not yet committed; `E` as in [`SlotRecordOf`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialOf<E> {
    /// The release on trial.
    pub record: SlotRecordOf<E>,
    /// Service starts with this model so far (incremented and flushed before each load).
    pub starts: u32,
    /// Frames seen in the current health window (informational, saved at commit/rollback).
    pub frames: u64,
    /// When it was activated (Unix ms).
    pub activated_unix_ms: u64,
}

/// What happened, for the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Happening {
    /// Verified and written to a slot.
    Installed,
    /// Made the trial model.
    Activated,
    /// Passed its health window.
    Committed,
    /// Taken out of use.
    RolledBack,
    /// Refused at install.
    Refused,
}

impl Happening {
    /// The word used in status output.
    pub fn as_str(self) -> &'static str {
        match self {
            Happening::Installed => "installed",
            Happening::Activated => "activated",
            Happening::Committed => "committed",
            Happening::RolledBack => "rolled back",
            Happening::Refused => "refused",
        }
    }
}

/// One history entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When (Unix ms).
    pub unix_ms: u64,
    /// What.
    pub what: Happening,
    /// Which release (`name version`), when known.
    pub release: String,
    /// Why, or details.
    pub detail: String,
}

/// The last refusal or automatic rollback, for status and sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    /// When (Unix ms).
    pub unix_ms: u64,
    /// The error or reason.
    pub reason: String,
}

/// The model store's whole state (format 2, the one written).
pub type ModelsState = ModelsStateOf<u32>;

/// The model store's whole state in either format: `E` as in [`SlotRecordOf`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelsStateOf<E> {
    /// The committed model (what runs when nothing is on trial).
    pub committed: Option<SlotRecordOf<E>>,
    /// The model committed before it, while its files are still in the other slot.
    pub previous: Option<SlotRecordOf<E>>,
    /// Installed and verified, not activated.
    pub staged: Option<SlotRecordOf<E>>,
    /// Activated, on trial.
    pub trial: Option<TrialOf<E>>,
    /// The last refusal or automatic rollback.
    pub last_refusal: Option<Refusal>,
    /// The last [`HISTORY_LEN`] happenings, oldest first.
    pub history: Vec<HistoryEntry>,
    /// The highest security epoch this device ever committed: releases below it are refused,
    /// whoever asks. It only rises (at a commit), survives restarts and rollbacks, and a
    /// rollback never returns to a model below it.
    pub epoch_floor: E,
}

/// The stored form: a version tag in front, so a later runtime can migrate it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Stored {
    /// Format 1 (before epochs), read only.
    V1(v1::ModelsState),
    /// Format 2.
    V2(ModelsState),
}

impl Stored {
    /// The state in the current form, whatever format it was stored in.
    pub(crate) fn into_current(self) -> ModelsState {
        match self {
            Stored::V1(old) => old.into(),
            Stored::V2(s) => s,
        }
    }
}

/// Format 1 (before epochs): format 2's layout without the epochs, read only (postcard has no
/// optional fields: an added field is a new format).
pub(crate) mod v1 {
    /// Format 1's slot record.
    pub type SlotRecord = super::SlotRecordOf<()>;
    /// Format 1's state.
    pub type ModelsState = super::ModelsStateOf<()>;

    impl From<SlotRecord> for super::SlotRecord {
        /// Format 1's releases carried no epoch: epoch 0.
        fn from(r: SlotRecord) -> Self {
            super::SlotRecord {
                slot: r.slot,
                name: r.name,
                version: r.version,
                sha256: r.sha256,
                size: r.size,
                key_id: r.key_id,
                installed_unix_ms: r.installed_unix_ms,
                mean_confidence: r.mean_confidence,
                epoch: 0,
            }
        }
    }

    impl From<ModelsState> for super::ModelsState {
        /// Format 1 had no floor: floor 0.
        fn from(s: ModelsState) -> Self {
            super::ModelsState {
                committed: s.committed.map(Into::into),
                previous: s.previous.map(Into::into),
                staged: s.staged.map(Into::into),
                trial: s.trial.map(|t| super::Trial {
                    record: t.record.into(),
                    starts: t.starts,
                    frames: t.frames,
                    activated_unix_ms: t.activated_unix_ms,
                }),
                last_refusal: s.last_refusal,
                history: s.history,
                epoch_floor: 0,
            }
        }
    }
}

impl ModelsState {
    /// Appends a history entry, dropping the oldest beyond [`HISTORY_LEN`].
    pub(crate) fn note(&mut self, what: Happening, release: String, detail: String) {
        self.history.push(HistoryEntry {
            unix_ms: crate::utc::now_unix_ms(),
            what,
            release,
            detail,
        });
        let excess = self.history.len().saturating_sub(HISTORY_LEN);
        self.history.drain(..excess);
    }

    /// Records `reason` as the last refusal and in the history.
    pub(crate) fn refuse(&mut self, what: Happening, release: String, reason: String) {
        self.last_refusal = Some(Refusal {
            unix_ms: crate::utc::now_unix_ms(),
            reason: reason.clone(),
        });
        self.note(what, release, reason);
    }

    /// Forgets every reference to `slot` except the committed and trial ones (their files
    /// are about to be overwritten).
    pub(crate) fn release_slot(&mut self, slot: Slot) {
        if self.staged.as_ref().is_some_and(|r| r.slot == slot) {
            self.staged = None;
        }
        if self.previous.as_ref().is_some_and(|r| r.slot == slot) {
            self.previous = None;
        }
    }

    /// Whether anything refers to `slot`.
    pub(crate) fn references(&self, slot: Slot) -> bool {
        [
            self.committed.as_ref(),
            self.previous.as_ref(),
            self.staged.as_ref(),
            self.trial.as_ref().map(|t| &t.record),
        ]
        .into_iter()
        .flatten()
        .any(|r| r.slot == slot)
    }
}

impl SlotRecord {
    /// `name version`, for messages.
    pub fn label(&self) -> String {
        format!("{} {}", self.name, self.version)
    }
}

/// Whether the active model is committed or on trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActiveState {
    /// Passed its health window.
    Committed,
    /// Activated, health window not yet passed.
    Trial,
}

impl ActiveState {
    /// The words used in status output.
    pub fn as_str(self) -> &'static str {
        match self {
            ActiveState::Committed => "committed",
            ActiveState::Trial => "on trial",
        }
    }
}

/// The identity of the model that runs, for sync and status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveModel {
    /// Release name.
    pub name: String,
    /// Release version.
    pub version: String,
    /// SHA-256 of the model file.
    pub sha256: String,
    /// Its slot.
    pub slot: Slot,
    /// Committed or on trial.
    pub state: ActiveState,
    /// The key that signed the release.
    pub key_id: String,
}

impl ActiveModel {
    /// The identity of `record` in `state`.
    pub(crate) fn of(record: &SlotRecord, state: ActiveState) -> Self {
        ActiveModel {
            name: record.name.clone(),
            version: record.version.clone(),
            sha256: record.sha256.clone(),
            slot: record.slot,
            state,
            key_id: record.key_id.clone(),
        }
    }
}

impl ModelsState {
    /// The model that runs: the trial, else the committed one; `None`: the configured model.
    pub fn active(&self) -> Option<ActiveModel> {
        match (&self.trial, &self.committed) {
            (Some(t), _) => Some(ActiveModel::of(&t.record, ActiveState::Trial)),
            (None, Some(c)) => Some(ActiveModel::of(c, ActiveState::Committed)),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded_and_state_round_trips_through_postcard() {
        let mut s = ModelsState::default();
        for i in 0..(HISTORY_LEN + 5) {
            s.note(Happening::Installed, format!("m {i}"), String::new());
        }
        assert_eq!(s.history.len(), HISTORY_LEN);
        assert_eq!(s.history[0].release, "m 5");
        s.epoch_floor = 4;
        let bytes = postcard::to_allocvec(&Stored::V2(s.clone())).unwrap();
        let back: Stored = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.into_current(), s);
    }

    /// The record below as the runtime before epochs (1b3d9c9) wrote it, in hex: slot B,
    /// "shapes", "1", the 64-character digest, size 9, key "k", installed 5, confidence 0.5.
    const FORMAT_1_RECORD: &str = concat!(
        "0106736861706573013140616261626162616261626162616261626162616261",
        "6261626162616261626162616261626162616261626162616261626162616261",
        "626162616261626162616209016b05010000003f",
    );

    /// The whole value of format 1 the test writes: `Stored::V1`, `Some(record)`, no previous,
    /// no staged, `Some(trial)` of the same record (starts 2, frames 7, activated 6), no
    /// refusal, no history.
    fn format_1_bytes() -> Vec<u8> {
        let hex = format!("0001{FORMAT_1_RECORD}000001{FORMAT_1_RECORD}0207060000");
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    /// A state written by a runtime before epochs existed reads as floor 0, epoch 0.
    #[test]
    fn format_1_values_read_as_floor_zero() {
        let record = v1::SlotRecord {
            slot: Slot::B,
            name: "shapes".into(),
            version: "1".into(),
            sha256: "ab".repeat(32),
            size: 9,
            key_id: "k".into(),
            installed_unix_ms: 5,
            mean_confidence: Some(0.5),
            epoch: (),
        };
        let old = v1::ModelsState {
            committed: Some(record.clone()),
            trial: Some(TrialOf {
                record,
                starts: 2,
                frames: 7,
                activated_unix_ms: 6,
            }),
            ..Default::default()
        };
        let bytes = postcard::to_allocvec(&Stored::V1(old)).unwrap();
        assert_eq!(
            bytes,
            format_1_bytes(),
            "format 1's bytes changed: a change to the shared layout must not reach format 1"
        );
        let now = postcard::from_bytes::<Stored>(&bytes)
            .unwrap()
            .into_current();
        assert_eq!(now.epoch_floor, 0);
        let committed = now.committed.unwrap();
        assert_eq!((committed.slot, committed.epoch), (Slot::B, 0));
        assert_eq!(now.trial.unwrap().starts, 2);
    }
}
