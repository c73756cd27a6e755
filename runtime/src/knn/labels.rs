//! Class names interned as small integer ids, so samples and votes carry a
//! `u16` instead of a string.

use super::KnnError;

/// Most distinct labels one KNN holds.
pub const MAX_LABELS: usize = 1024;
/// Longest label accepted, in bytes.
pub const MAX_LABEL_BYTES: usize = 128;

/// Index of a label in a [`LabelTable`].
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct LabelId(pub u16);

/// The label names, in order of first appearance; an id is an index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelTable {
    names: Vec<String>,
}

impl LabelTable {
    /// A table of the given names (validated: non-empty, bounded, unique).
    pub fn from_names(names: Vec<String>) -> Result<Self, KnnError> {
        let mut table = LabelTable::default();
        for name in names {
            if table.get(&name).is_some() {
                return Err(KnnError::InvalidState(format!(
                    "label {name:?} appears twice"
                )));
            }
            table.intern(&name)?;
        }
        Ok(table)
    }

    /// Id of `name`, adding it if new.
    pub fn intern(&mut self, name: &str) -> Result<LabelId, KnnError> {
        if let Some(id) = self.get(name) {
            return Ok(id);
        }
        if name.is_empty() || name.len() > MAX_LABEL_BYTES {
            return Err(KnnError::Label(format!(
                "label of {} bytes; labels need 1..={MAX_LABEL_BYTES}",
                name.len()
            )));
        }
        if self.names.len() >= MAX_LABELS {
            return Err(KnnError::Label(format!("more than {MAX_LABELS} labels")));
        }
        self.names.push(name.to_owned());
        Ok(LabelId((self.names.len() - 1) as u16))
    }

    /// Id of `name`, if known.
    pub fn get(&self, name: &str) -> Option<LabelId> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| LabelId(i as u16))
    }

    /// Name of `id`, if it exists.
    pub fn name(&self, id: LabelId) -> Option<&str> {
        self.names.get(usize::from(id.0)).map(String::as_str)
    }

    /// All names, index = id.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no label is known.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}
