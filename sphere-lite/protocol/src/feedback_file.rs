//! The device's feedback file: human verdicts ("this incident was a false alarm", "this
//! quarantined sample is a `cat`", "class `new-1` is `empty`") as the small TOML files of the
//! device's feedback inbox, and the translation of the server's feedback items into one.
//!
//! Why here: the verdicts come from sphere-lite ([`crate::api::FeedbackItem`]) and the sync
//! client writes them into the inbox unchanged, so this format and its bounds are what the
//! server's input must pass on the device; in the protocol crate they are fuzzed without the
//! runtime's dependency tree. Reading the inbox, resolving event and incident numbers and
//! applying verdicts are the runtime's (`tinylcm::autonomy::feedback`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::{FeedbackItem, FeedbackVerdict, MAX_LABEL_BYTES};

/// A human's verdict on a drift (the same words in the feedback file and the API).
pub use crate::api::DriftVerdict as Verdict;

/// Largest feedback file read (a verdict is a few lines).
pub const MAX_FILE_BYTES: u64 = 64 << 10;
/// Most verdicts in one file.
pub const MAX_ITEMS: usize = 1000;

/// One verdict on drift, by incident or by event number (as `tinylcm status` lists them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftVerdict {
    /// Every drift event of this incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<u64>,
    /// This event of the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<u64>,
    /// The verdict.
    pub verdict: Verdict,
}

/// One verdict on a quarantined sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleVerdict {
    /// The quarantine entry.
    pub id: u64,
    /// Its true class (the KNN learns it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Not useful: reject it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reject: bool,
}

/// A class the KNN holds gets another name: every sample of `from` becomes `to` (e.g. the
/// device proposed `new-1` and a human says it is `empty`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassVerdict {
    /// The class as the KNN names it now.
    pub from: String,
    /// Its true name (an existing class merges).
    pub to: String,
}

/// The sphere-lite feedback items the verdicts of a file came from, one list per verdict
/// list and in its order (the sync client writes them; verdicts written on the device have
/// none). A list is either empty or as long as its verdict list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceItems {
    /// Items of the `drift` verdicts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<u64>,
    /// Items of the `sample` verdicts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sample: Vec<u64>,
    /// Items of the `class` verdicts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class: Vec<u64>,
}

impl SourceItems {
    /// Whether no verdict names an item.
    pub fn is_empty(&self) -> bool {
        self.drift.is_empty() && self.sample.is_empty() && self.class.is_empty()
    }
}

/// The content of one inbox file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackFile {
    /// Verdicts on drift.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<DriftVerdict>,
    /// Verdicts on quarantined samples.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sample: Vec<SampleVerdict>,
    /// Class names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class: Vec<ClassVerdict>,
    /// The sphere-lite feedback items they came from (what the device reports results for).
    #[serde(default, skip_serializing_if = "SourceItems::is_empty")]
    pub items: SourceItems,
}

/// A feedback file that is not valid feedback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: not valid feedback: {reason}", path.display())]
pub struct InvalidFeedback {
    /// The file (or the inbox it was to be written to).
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

/// A remote configuration item of a feedback page, set apart from the verdicts: its item id,
/// its revision and its TOML fragment.
pub type ConfigItem = (u64, String, String);

impl FeedbackFile {
    /// Check what serde cannot: one target per drift verdict, label xor reject, bounds.
    /// `path` names the file in errors.
    pub fn validate(&self, path: &Path) -> Result<(), InvalidFeedback> {
        let bad = |reason: String| InvalidFeedback {
            path: path.to_path_buf(),
            reason,
        };
        if self.drift.len() + self.sample.len() + self.class.len() > MAX_ITEMS {
            return Err(bad(format!("more than {MAX_ITEMS} verdicts")));
        }
        for (what, ids, verdicts) in [
            ("drift", &self.items.drift, self.drift.len()),
            ("sample", &self.items.sample, self.sample.len()),
            ("class", &self.items.class, self.class.len()),
        ] {
            if !ids.is_empty() && ids.len() != verdicts {
                return Err(bad(format!(
                    "items.{what} names {} items for {verdicts} {what} verdicts",
                    ids.len()
                )));
            }
        }
        for d in &self.drift {
            if d.incident.is_some() == d.event.is_some() {
                return Err(bad(
                    "each drift verdict names an incident or an event, not both".into(),
                ));
            }
        }
        for s in &self.sample {
            match (&s.label, s.reject) {
                (Some(_), true) | (None, false) => {
                    return Err(bad(format!(
                        "sample {}: give a label or reject = true, not both or neither",
                        s.id
                    )));
                }
                (Some(l), false) if l.trim().is_empty() || l.len() > MAX_LABEL_BYTES => {
                    return Err(bad(format!(
                        "sample {}: label must be 1..={MAX_LABEL_BYTES} bytes",
                        s.id,
                    )));
                }
                _ => {}
            }
        }
        let label_ok = |l: &str| !l.trim().is_empty() && l.len() <= MAX_LABEL_BYTES;
        for c in &self.class {
            if !label_ok(&c.from) || !label_ok(&c.to) {
                return Err(bad(format!(
                    "class {:?} -> {:?}: names must be 1..={MAX_LABEL_BYTES} bytes",
                    c.from, c.to,
                )));
            }
        }
        Ok(())
    }

    /// Parse and validate a file's text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, InvalidFeedback> {
        let file: FeedbackFile = toml::from_str(text).map_err(|e| InvalidFeedback {
            path: path.to_path_buf(),
            reason: e.message().to_string(),
        })?;
        file.validate(path)?;
        Ok(file)
    }

    /// The verdicts of the server's feedback `items` as one file (each with its item id, for
    /// the results the device reports), and the configuration items apart. Not validated:
    /// the caller decides what an invalid file means (the sync client refuses its items).
    pub fn from_items(items: &[FeedbackItem]) -> (FeedbackFile, Vec<ConfigItem>) {
        let mut file = FeedbackFile::default();
        let mut configs = Vec::new();
        for item in items {
            let id = item.id;
            match &item.verdict {
                FeedbackVerdict::Drift {
                    incident,
                    event,
                    verdict,
                } => {
                    file.items.drift.push(id);
                    file.drift.push(DriftVerdict {
                        incident: *incident,
                        event: *event,
                        verdict: *verdict,
                    });
                }
                FeedbackVerdict::Sample {
                    id: entry,
                    label,
                    reject,
                } => {
                    file.items.sample.push(id);
                    file.sample.push(SampleVerdict {
                        id: *entry,
                        label: label.clone(),
                        reject: *reject,
                    });
                }
                FeedbackVerdict::Class { from, to } => {
                    file.items.class.push(id);
                    file.class.push(ClassVerdict {
                        from: from.clone(),
                        to: to.clone(),
                    });
                }
                FeedbackVerdict::Config { revision, toml } => {
                    configs.push((id, revision.clone(), toml.clone()))
                }
            }
        }
        (file, configs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: u64, verdict: FeedbackVerdict) -> FeedbackItem {
        FeedbackItem {
            id,
            created_unix_ms: 0,
            verdict,
        }
    }

    #[test]
    fn server_items_become_one_file_with_their_ids_and_configs_apart() {
        let (file, configs) = FeedbackFile::from_items(&[
            item(
                7,
                FeedbackVerdict::Drift {
                    incident: Some(2),
                    event: None,
                    verdict: Verdict::FalseAlarm,
                },
            ),
            item(
                8,
                FeedbackVerdict::Config {
                    revision: "r".into(),
                    toml: "".into(),
                },
            ),
            item(
                9,
                FeedbackVerdict::Sample {
                    id: 4,
                    label: Some("cat".into()),
                    reject: false,
                },
            ),
        ]);
        assert_eq!(file.items.drift, [7]);
        assert_eq!(file.items.sample, [9]);
        assert_eq!(file.sample[0].id, 4);
        assert_eq!(configs, [(8, "r".to_string(), String::new())]);
        file.validate(Path::new("inbox")).unwrap();
        let text = toml::to_string(&file).unwrap();
        assert_eq!(FeedbackFile::parse(Path::new("f"), &text).unwrap(), file);
    }

    #[test]
    fn a_label_over_the_bound_or_a_verdict_without_target_is_refused() {
        let long = format!(
            "[[sample]]\nid = 1\nlabel = \"{}\"\n",
            "x".repeat(MAX_LABEL_BYTES + 1)
        );
        let e = FeedbackFile::parse(Path::new("f.toml"), &long).unwrap_err();
        assert!(e.reason.contains("label must be"), "{e}");
        let e = FeedbackFile::parse(Path::new("f.toml"), "[[drift]]\nverdict = \"confirmed\"\n")
            .unwrap_err();
        assert!(
            e.to_string().starts_with("f.toml: not valid feedback: "),
            "{e}"
        );
    }
}
