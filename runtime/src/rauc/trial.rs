//! [`Confirmations`]: which installations of the OS slots have passed the boot health gate,
//! so the gate marks a slot bad only while it is on trial.
//!
//! A slot is *on trial* from the moment RAUC installs a bundle into it until the health gate
//! passes on it once. Only then may a failed gate blame the OS and mark the slot bad (the
//! bootloader falls back to the previous OS). Once confirmed, a failure is not the OS's (a
//! camera unplugged, a bad model): marking the slot bad would downgrade a good OS, and with
//! both slots confirmed the device would fall back and forth between them.
//!
//! What RAUC keeps is the marker of the installation: its `installed.timestamp` per slot (in
//! its status on `/data`), which a new install of that slot replaces. The gate records the
//! installation it confirmed (slot name and that timestamp) in a small file of its own; a
//! slot is on trial when RAUC has an installation for it that the file does not hold. A slot
//! RAUC never installed (the factory image written with the SD card) is never on trial.
//! Neither the try counters nor the bootloader's good/bad state can tell this: U-Boot's
//! script spends a try on every boot and RAUC's mark-good refills it, so a confirmed slot and
//! a fresh one read the same.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The file name of the record, kept beside the service's status file.
pub const FILE_NAME: &str = "os-slots-confirmed";

/// Where a slot stands for the health gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trial {
    /// Installed by RAUC at `installed_at` and not confirmed since: a failure blames the OS.
    OnTrial {
        /// When RAUC installed it.
        installed_at: String,
    },
    /// The health gate passed on this installation before.
    Confirmed {
        /// When RAUC installed it.
        installed_at: String,
    },
    /// RAUC never installed this slot (the factory image).
    NeverInstalled,
}

/// The installations the health gate confirmed: one `<slot> <installed.timestamp>` line per
/// slot (`-` for a slot RAUC never installed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmations {
    path: PathBuf,
    entries: Vec<(String, String)>,
}

impl Confirmations {
    /// The record beside the status file `status_path`.
    pub fn beside(status_path: &Path) -> PathBuf {
        status_path.with_file_name(FILE_NAME)
    }

    /// Read the record at `path`; a missing file is an empty record (nothing confirmed yet).
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let entries = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once(' '))
            .map(|(slot, at)| (slot.to_string(), at.trim().to_string()))
            .collect();
        Ok(Confirmations {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// Where `slot`, whose RAUC installation is `installed_at`, stands.
    pub fn trial(&self, slot: &str, installed_at: Option<&str>) -> Trial {
        match installed_at {
            None => Trial::NeverInstalled,
            Some(at) if self.entries.iter().any(|(s, a)| s == slot && a == at) => {
                Trial::Confirmed {
                    installed_at: at.to_string(),
                }
            }
            Some(at) => Trial::OnTrial {
                installed_at: at.to_string(),
            },
        }
    }

    /// Record that the gate passed on `slot`'s installation `installed_at`, replacing what the
    /// record held for that slot, and write the file (atomically: a power cut leaves the old
    /// record or the new one).
    pub fn confirm(&mut self, slot: &str, installed_at: Option<&str>) -> std::io::Result<()> {
        self.entries.retain(|(s, _)| s != slot);
        self.entries
            .push((slot.to_string(), installed_at.unwrap_or("-").to_string()));
        self.entries.sort();
        let mut text = String::from(
            "# OS slot installations the boot health gate confirmed (tinylcm healthcheck).\n",
        );
        for (s, at) in &self.entries {
            text.push_str(&format!("{s} {at}\n"));
        }
        let tmp = self.path.with_extension("tmp");
        {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_on_trial_from_its_installation_until_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = Confirmations::beside(&dir.path().join("status.json"));
        assert_eq!(path, dir.path().join(FILE_NAME));
        let mut record = Confirmations::load(&path).unwrap();
        // The factory image: never installed by RAUC, never on trial.
        assert_eq!(record.trial("rootfs.0", None), Trial::NeverInstalled);
        let first = "2026-12-06T10:00:00Z";
        assert!(matches!(
            record.trial("rootfs.1", Some(first)),
            Trial::OnTrial { .. }
        ));
        record.confirm("rootfs.1", Some(first)).unwrap();
        record.confirm("rootfs.0", None).unwrap();
        // Read back as the next boot does.
        let record = Confirmations::load(&path).unwrap();
        assert!(matches!(
            record.trial("rootfs.1", Some(first)),
            Trial::Confirmed { .. }
        ));
        // A new installation into the slot puts it on trial again.
        let mut record = record;
        assert!(matches!(
            record.trial("rootfs.1", Some("2026-12-07T08:00:00Z")),
            Trial::OnTrial { .. }
        ));
        // The other slot's confirmation is another slot's business.
        assert!(matches!(
            record.trial("rootfs.0", Some(first)),
            Trial::OnTrial { .. }
        ));
        record
            .confirm("rootfs.1", Some("2026-12-07T08:00:00Z"))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("rootfs.1 2026-12-07T08:00:00Z\n"), "{text}");
        assert!(!text.contains(first), "{text}");
    }
}
