//! Reading the archives the original clients upload: flat TAR or gzip-compressed TAR.
//!
//! Why a reader of its own: these archives have no manifest and come from Python's `tarfile`,
//! which writes PAX headers when it likes (float mtimes, long or non-ASCII names), so the
//! strict v2 reader ([`crate::package::read_package`]) would refuse them. What stays
//! as strict: only regular files are taken (links, devices and FIFOs refuse the archive,
//! directories are skipped: the format is flat), no name may be absolute or contain `..`, and
//! every byte inflated from a `.tar.gz` counts against the package limit, so a decompression
//! bomb stops at the limit instead of filling memory.

use std::io::{Read, Seek, SeekFrom};

use crate::package::Limits;
use flate2::read::GzDecoder;

use super::LegacyError;

/// How an uploaded archive is compressed (decided by its magic number, not its file name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain TAR (the client's default).
    None,
    /// `.tar.gz` (client compression "gzip").
    Gzip,
}

impl Compression {
    /// Detect the format of `bytes`. ZIP archives (client compression "zip") are refused with
    /// an error that says how to reconfigure the client.
    pub fn detect(bytes: &[u8]) -> Result<Self, LegacyError> {
        if bytes.starts_with(&[0x1f, 0x8b]) {
            Ok(Compression::Gzip)
        } else if bytes.starts_with(b"PK\x03\x04") {
            Err(LegacyError::Unsupported(
                "ZIP packages are not supported; set the client's compression to \"none\" or \"gzip\"",
            ))
        } else {
            Ok(Compression::None)
        }
    }
}

/// One file of an uploaded archive: its base name as sent, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The name inside the archive (UTF-8, no folders, no `..`).
    pub name: String,
    /// The content.
    pub data: Vec<u8>,
}

/// Read every regular file of `bytes` under `limits` (inflated size, member count and size).
pub fn read_members(bytes: &[u8], limits: &Limits) -> Result<Vec<Member>, LegacyError> {
    read_members_from(std::io::Cursor::new(bytes), limits)
}

/// As [`read_members`], from `archive` (a spooled upload): the archive itself is streamed,
/// only the members' contents are held.
pub fn read_members_from<R: Read + Seek>(
    mut archive: R,
    limits: &Limits,
) -> Result<Vec<Member>, LegacyError> {
    let unreadable = |e: std::io::Error| LegacyError::Spool(e.to_string());
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        match archive.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(unreadable(e)),
        }
    }
    archive.seek(SeekFrom::Start(0)).map_err(unreadable)?;
    let archive = std::io::BufReader::new(archive);
    let source: Box<dyn Read + '_> = match Compression::detect(&head[..n])? {
        Compression::None => Box::new(archive),
        Compression::Gzip => Box::new(GzDecoder::new(archive)),
    };
    // One byte past the limit tells "exactly at the limit" from "beyond it".
    let mut budget = source.take(limits.max_package_bytes.saturating_add(1));
    let result = read_tar(&mut budget, limits);
    if budget.limit() == 0 {
        return Err(LegacyError::TooLarge(format!(
            "the archive holds more than {} bytes once unpacked",
            limits.max_package_bytes
        )));
    }
    result
}

fn read_tar<R: Read>(source: R, limits: &Limits) -> Result<Vec<Member>, LegacyError> {
    let bad =
        |e: std::io::Error| LegacyError::BadArchive(format!("not a readable TAR archive: {e}"));
    let mut archive = tar::Archive::new(source);
    let mut members = Vec::new();
    let mut seen = 0usize;
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        seen += 1;
        if seen > limits.max_members {
            return Err(LegacyError::TooLarge(format!(
                "the archive has more than {} members",
                limits.max_members
            )));
        }
        let path = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| LegacyError::BadArchive("a member name is not UTF-8".into()))?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(LegacyError::BadArchive(format!(
                "member {path:?} is not a regular file (links and devices are refused)"
            )));
        }
        let name = base_name(&path)?;
        let size = entry.size();
        if size > limits.max_member_bytes {
            return Err(LegacyError::TooLarge(format!(
                "member {name:?} has {size} bytes; at most {} are accepted",
                limits.max_member_bytes
            )));
        }
        // `size` is bounded by the limit checked above.
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        entry
            .by_ref()
            .take(size)
            .read_to_end(&mut data)
            .map_err(bad)?;
        if data.len() as u64 != size {
            return Err(LegacyError::BadArchive(format!(
                "member {name:?} is truncated"
            )));
        }
        members.push(Member { name, data });
    }
    Ok(members)
}

/// The last segment of a member path; absolute paths and `..` refuse the archive (the original
/// clients only write base names, so such a name means a hostile archive).
fn base_name(path: &str) -> Result<String, LegacyError> {
    let refuse = |why: &str| {
        Err(LegacyError::BadArchive(format!(
            "member name {:?} {why}",
            path.chars().take(200).collect::<String>()
        )))
    };
    if path.starts_with('/') || path.starts_with('\\') {
        return refuse("is absolute");
    }
    let segments: Vec<&str> = path
        .split(['/', '\\'])
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if segments.contains(&"..") {
        return refuse("contains `..`");
    }
    if path.chars().any(char::is_control) {
        return refuse("contains control characters");
    }
    match segments.last() {
        Some(last) => Ok((*last).to_owned()),
        None => refuse("is empty"),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn reads_plain_and_gzip_archives() {
        let tar = tar_of(&[("metrics.json", b"{}"), ("img.jpg", b"\xff\xd8")]);
        for body in [tar.clone(), gzip(&tar)] {
            let m = read_members(&body, &Limits::default()).unwrap();
            assert_eq!(m.len(), 2);
            assert_eq!(m[0].name, "metrics.json");
            assert_eq!(m[1].data, b"\xff\xd8");
        }
    }

    #[test]
    fn folders_are_flattened_and_traversal_refused() {
        let m = read_members(&tar_of(&[("a/b/c.json", b"1")]), &Limits::default()).unwrap();
        assert_eq!(m[0].name, "c.json");
        assert!(base_name("../etc/passwd").is_err());
        assert!(base_name("/etc/passwd").is_err());
        assert!(base_name("a/../../b").is_err());
        assert!(base_name("./").is_err());
    }

    #[test]
    fn links_are_refused() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "evil", "/etc/passwd").unwrap();
        let body = b.into_inner().unwrap();
        let err = read_members(&body, &Limits::default()).unwrap_err();
        assert!(matches!(err, LegacyError::BadArchive(_)), "{err}");
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        let tar = tar_of(&[("zeros.bin", &vec![0u8; 4 * 1024 * 1024])]);
        let bomb = gzip(&tar);
        assert!(bomb.len() < 64 * 1024, "compresses well: {}", bomb.len());
        let limits = Limits {
            max_package_bytes: 1024 * 1024,
            ..Limits::default()
        };
        let err = read_members(&bomb, &limits).unwrap_err();
        assert!(matches!(err, LegacyError::TooLarge(_)), "{err}");
    }

    #[test]
    fn zip_is_refused_with_a_fix() {
        let err = read_members(b"PK\x03\x04rest", &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("gzip"), "{err}");
    }
}
