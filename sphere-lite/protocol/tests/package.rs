//! Sync package round trips and refusals.
//!
//! Malicious archives are written byte by byte with [`header`] (not with the `tar` crate's
//! builder, which refuses to write most of them), so each test feeds exactly the attack it names.

use std::io::{self, Read};

use sha2::{Digest, Sha256};
use tinylcm_protocol::package::{
    FORMAT, FileEntry, FileKind, Limits, MANIFEST_NAME, Manifest, PackageBuilder, PackageError,
    read_package,
};

const ALL_KINDS: [FileKind; 9] = FileKind::ALL;

// ---------------------------------------------------------------- hand-made TAR

/// A ustar header block with the given name, type flag, size and link name.
fn header(name: &[u8], typeflag: u8, size: u64, linkname: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    if size < 1 << 33 {
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    } else {
        // GNU base-256 for sizes the 11 octal digits cannot hold.
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = typeflag;
    h[157..157 + linkname.len()].copy_from_slice(linkname);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h
}

/// Header plus data padded to whole blocks.
fn member(name: &str, typeflag: u8, data: &[u8]) -> Vec<u8> {
    let mut out = header(name.as_bytes(), typeflag, data.len() as u64, b"").to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn sha(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn entry(name: &str, data: &[u8]) -> FileEntry {
    FileEntry {
        name: name.into(),
        kind: FileKind::Other,
        size: data.len() as u64,
        sha256: sha(data),
    }
}

fn manifest(files: Vec<FileEntry>) -> Manifest {
    Manifest {
        format: FORMAT,
        package_id: "pkg-1".into(),
        device_id: "dev-1".into(),
        created_unix_ms: 1_764_147_600_000,
        files,
    }
}

fn manifest_member(m: &Manifest) -> Vec<u8> {
    member(MANIFEST_NAME, b'0', &serde_json::to_vec(m).unwrap())
}

/// Manifest listing `listed`, followed by the raw `members`, then the end marker.
fn archive(listed: Vec<FileEntry>, members: &[Vec<u8>]) -> Vec<u8> {
    let mut out = manifest_member(&manifest(listed));
    for m in members {
        out.extend_from_slice(m);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn read(bytes: &[u8]) -> Result<tinylcm_protocol::package::Package, PackageError> {
    read_package(bytes, &Limits::default())
}

fn refused(bytes: &[u8]) -> PackageError {
    read(bytes).expect_err("package must be refused")
}

// ---------------------------------------------------------------- round trips

#[test]
fn round_trip_every_kind() {
    let mut b = PackageBuilder::new(
        "6f1c2a9e-8a4b-4c1d-9f00-123456789abc",
        "pi-7",
        1_764_147_600_123,
    )
    .unwrap();
    let mut expected = Vec::new();
    for (i, kind) in ALL_KINDS.into_iter().enumerate() {
        let name = format!("dir{i}/file-{i}.bin");
        let data: Vec<u8> = (0..(i * 700)).map(|x| (x * 7 + i) as u8).collect();
        b.add(name.clone(), kind, data.clone()).unwrap();
        expected.push((name, kind, data));
    }
    b.add("empty.json", FileKind::Metrics, Vec::new()).unwrap();
    let tar = b.finish().unwrap();
    assert_eq!(tar.len() % 512, 0);

    let p = read(&tar).unwrap();
    assert_eq!(p.manifest.format, FORMAT);
    assert_eq!(
        p.manifest.package_id,
        "6f1c2a9e-8a4b-4c1d-9f00-123456789abc"
    );
    assert_eq!(p.manifest.device_id, "pi-7");
    assert_eq!(p.manifest.created_unix_ms, 1_764_147_600_123);
    assert_eq!(p.files.len(), expected.len() + 1);
    for ((entry, data), (name, kind, want)) in p.files.iter().zip(&expected) {
        assert_eq!(&entry.name, name);
        assert_eq!(entry.kind, *kind);
        assert_eq!(entry.size, want.len() as u64);
        assert_eq!(entry.sha256, sha(want));
        assert_eq!(data, want);
    }
    assert_eq!(p.file("empty.json"), Some(&[][..]));
    assert_eq!(p.file("nope"), None);
}

#[test]
fn round_trip_empty_package_and_kinds_are_kebab_case() {
    let tar = PackageBuilder::new("p", "d", 0).unwrap().finish().unwrap();
    let p = read(&tar).unwrap();
    assert!(p.files.is_empty());
    assert_eq!(
        serde_json::to_string(&FileKind::DriftEvents).unwrap(),
        "\"drift-events\""
    );
}

#[test]
fn members_in_any_order_come_back_in_manifest_order() {
    let tar = archive(
        vec![entry("a", b"A"), entry("b", b"B")],
        &[member("b", b'0', b"B"), member("a", b'0', b"A")],
    );
    let p = read(&tar).unwrap();
    assert_eq!(p.files[0].1, b"A");
    assert_eq!(p.files[1].1, b"B");
}

#[test]
fn zero_padding_after_the_end_marker_is_accepted_other_bytes_are_not() {
    let mut tar = PackageBuilder::new("p", "d", 0).unwrap().finish().unwrap();
    tar.resize(10240, 0); // GNU tar record padding
    read(&tar).unwrap();
    tar.push(b'x');
    assert!(matches!(
        refused(&tar),
        PackageError::TrailingData { offset: 10240 }
    ));
}

#[test]
fn accepts_a_real_tar_tool_style_old_type_flag() {
    // Type flag NUL is the pre-POSIX way to say "regular file".
    let tar = archive(vec![entry("a", b"A")], &[member("a", 0, b"A")]);
    read(&tar).unwrap();
}

// ---------------------------------------------------------------- names

#[test]
fn refuses_path_traversal() {
    for name in ["../x", "a/../../x", "a/..", "..", "./x", "a/./b"] {
        let tar = archive(vec![], &[member(name, b'0', b"x")]);
        let e = refused(&tar);
        assert!(matches!(e, PackageError::InvalidName { .. }), "{name}: {e}");
        assert!(!e.is_too_large());
    }
}

#[test]
fn refuses_absolute_and_odd_names() {
    for name in [
        "/etc/passwd",
        "a//b",
        "a/",
        "a b",
        "a\\b",
        "ä",
        "a:b",
        "C:x",
    ] {
        let tar = archive(vec![], &[member(name, b'0', b"x")]);
        assert!(
            matches!(refused(&tar), PackageError::InvalidName { .. }),
            "{name}"
        );
    }
    let tar = archive(vec![], &[member("\u{ff}", b'0', b"x")]);
    assert!(matches!(refused(&tar), PackageError::InvalidName { .. }));
    // Not UTF-8 at all.
    let mut m = header(b"a\xff", b'0', 0, b"").to_vec();
    m.extend_from_slice(&[0u8; 1024]);
    let mut tar = manifest_member(&manifest(vec![]));
    tar.extend_from_slice(&m);
    assert!(matches!(
        refused(&tar),
        PackageError::InvalidName {
            reason: "not UTF-8",
            ..
        }
    ));
}

#[test]
fn refuses_bad_names_in_the_manifest() {
    for name in ["../x", "/abs", "", "a//b", MANIFEST_NAME, "MANIFEST.JSON"] {
        let tar = archive(vec![entry(name, b"x")], &[]);
        assert!(
            matches!(refused(&tar), PackageError::InvalidName { .. }),
            "{name:?}"
        );
    }
}

#[test]
fn refuses_names_over_the_limit() {
    let limits = Limits {
        max_name_bytes: 10,
        ..Limits::default()
    };
    let tar = archive(vec![], &[member("abcdefghijk", b'0', b"x")]);
    let e = read_package(&tar[..], &limits).unwrap_err();
    assert!(
        matches!(
            e,
            PackageError::NameTooLong {
                len: 11,
                max: 10,
                ..
            }
        ),
        "{e}"
    );
    // The ustar prefix field counts too.
    let mut h = header(b"name", b'0', 0, b"");
    h[345..350].copy_from_slice(b"aaaaa");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut tar = manifest_member(&manifest(vec![entry("aaaaa/name", b"")]));
    tar.extend_from_slice(&h);
    tar.extend_from_slice(&[0u8; 1024]);
    let limits = Limits {
        max_name_bytes: 9,
        ..Limits::default()
    };
    assert!(matches!(
        read_package(&tar[..], &limits).unwrap_err(),
        PackageError::NameTooLong { len: 10, .. }
    ));
    read(&tar).unwrap();
}

#[test]
fn refuses_duplicate_members() {
    let tar = archive(
        vec![entry("a", b"A")],
        &[member("a", b'0', b"A"), member("a", b'0', b"A")],
    );
    assert!(matches!(refused(&tar), PackageError::DuplicateName { .. }));
    // A second manifest member is a duplicate too.
    let tar = archive(vec![], &[manifest_member(&manifest(vec![]))]);
    assert!(matches!(refused(&tar), PackageError::DuplicateName { .. }));
}

#[test]
fn refuses_duplicate_names_in_the_manifest_ignoring_case_and_file_folder_clashes() {
    for (a, b) in [
        ("a", "a"),
        ("Data.json", "data.JSON"),
        ("a", "a/b"),
        ("a/b", "A"),
    ] {
        let tar = archive(vec![entry(a, b"x"), entry(b, b"y")], &[]);
        assert!(
            matches!(refused(&tar), PackageError::DuplicateName { .. }),
            "{a} {b}"
        );
    }
}

// ---------------------------------------------------------------- member types

#[test]
fn refuses_symlinks_hardlinks_and_other_non_files() {
    let cases: [(u8, &str); 11] = [
        (b'1', "hard link"),
        (b'2', "symlink"),
        (b'3', "character device"),
        (b'4', "block device"),
        (b'5', "directory"),
        (b'6', "FIFO"),
        (b'7', "contiguous file"),
        (b'x', "PAX extension header"),
        (b'g', "PAX global header"),
        (b'L', "GNU long-name header"),
        (b'S', "GNU sparse file"),
    ];
    for (flag, kind) in cases {
        let mut tar = manifest_member(&manifest(vec![entry("x", b"")]));
        tar.extend_from_slice(&header(b"x", flag, 0, b"/etc/passwd"));
        tar.extend_from_slice(&[0u8; 1024]);
        match refused(&tar) {
            PackageError::NotRegularFile { name, kind: k } => {
                assert_eq!(name, "x");
                assert_eq!(k, kind);
            }
            e => panic!("type {}: {e}", flag as char),
        }
    }
}

#[test]
fn refuses_a_symlinked_manifest() {
    let mut tar = header(MANIFEST_NAME.as_bytes(), b'2', 0, b"/etc/passwd").to_vec();
    tar.extend_from_slice(&[0u8; 1024]);
    assert!(matches!(refused(&tar), PackageError::NotRegularFile { .. }));
}

// ---------------------------------------------------------------- manifest

#[test]
fn refuses_manifest_not_first() {
    let m = manifest(vec![entry("a", b"A")]);
    let mut tar = member("a", b'0', b"A");
    tar.extend_from_slice(&manifest_member(&m));
    tar.extend_from_slice(&[0u8; 1024]);
    assert!(matches!(
        refused(&tar),
        PackageError::ManifestNotFirst { found } if found == "a"
    ));
}

#[test]
fn refuses_empty_and_memberless_bodies() {
    assert!(matches!(refused(b""), PackageError::Empty));
    assert!(matches!(
        refused(&[0u8; 1024]),
        PackageError::MissingManifest
    ));
    assert!(matches!(refused(b"hello"), PackageError::Tar { .. }));
}

#[test]
fn refuses_invalid_manifests() {
    for body in [&b"not json"[..], b"{}", br#"{"format":1}"#] {
        let mut tar = member(MANIFEST_NAME, b'0', body);
        tar.extend_from_slice(&[0u8; 1024]);
        assert!(matches!(
            refused(&tar),
            PackageError::InvalidManifest { .. }
        ));
    }
    // Unknown fields are refused: a new field means a new format.
    let mut v = serde_json::to_value(manifest(vec![])).unwrap();
    v["extra"] = serde_json::json!(1);
    let mut tar = member(MANIFEST_NAME, b'0', &serde_json::to_vec(&v).unwrap());
    tar.extend_from_slice(&[0u8; 1024]);
    assert!(matches!(
        refused(&tar),
        PackageError::InvalidManifest { .. }
    ));
}

#[test]
fn refuses_other_formats() {
    let mut m = manifest(vec![]);
    m.format = 2;
    let mut tar = manifest_member(&m);
    tar.extend_from_slice(&[0u8; 1024]);
    assert!(matches!(
        refused(&tar),
        PackageError::UnsupportedFormat {
            found: 2,
            expected: 1
        }
    ));
}

#[test]
fn refuses_bad_ids() {
    for (pkg, dev, field) in [
        ("../p", "d", "package_id"),
        ("", "d", "package_id"),
        ("p", "d/../../x", "device_id"),
        ("p", &"d".repeat(65), "device_id"),
    ] {
        let mut m = manifest(vec![]);
        m.package_id = pkg.into();
        m.device_id = dev.into();
        let mut tar = manifest_member(&m);
        tar.extend_from_slice(&[0u8; 1024]);
        match refused(&tar) {
            PackageError::InvalidId { field: f, .. } => assert_eq!(f, field),
            e => panic!("{e}"),
        }
        assert!(matches!(
            PackageBuilder::new(pkg, dev, 0),
            Err(PackageError::InvalidId { .. })
        ));
    }
}

#[test]
fn refuses_malformed_hashes_in_the_manifest() {
    let mut e = entry("a", b"A");
    e.sha256 = e.sha256.to_uppercase();
    let tar = archive(vec![e], &[member("a", b'0', b"A")]);
    assert!(matches!(refused(&tar), PackageError::InvalidHash { .. }));
}

#[test]
fn refuses_oversized_manifest_before_reading_it() {
    // Claims 1 GiB; only the header is sent.
    let mut tar = header(MANIFEST_NAME.as_bytes(), b'0', 1 << 30, b"").to_vec();
    tar.extend_from_slice(&[0u8; 1024]);
    let e = refused(&tar);
    assert!(matches!(e, PackageError::ManifestTooLarge { .. }), "{e}");
    assert!(e.is_too_large());
}

// ---------------------------------------------------------------- manifest vs members

#[test]
fn refuses_size_mismatch() {
    let tar = archive(vec![entry("a", b"AAAA")], &[member("a", b'0', b"AAA")]);
    assert!(matches!(
        refused(&tar),
        PackageError::SizeMismatch {
            manifest: 4,
            actual: 3,
            ..
        }
    ));
}

#[test]
fn refuses_hash_mismatch() {
    let tar = archive(vec![entry("a", b"AAA")], &[member("a", b'0', b"AAB")]);
    let e = refused(&tar);
    assert!(matches!(e, PackageError::HashMismatch { .. }), "{e}");
    assert!(e.to_string().contains("\"a\""));
}

#[test]
fn refuses_missing_file() {
    let tar = archive(
        vec![entry("a", b"A"), entry("b", b"B")],
        &[member("a", b'0', b"A")],
    );
    assert!(matches!(refused(&tar), PackageError::MissingFile { name } if name == "b"));
}

#[test]
fn refuses_extra_file_not_in_the_manifest() {
    let tar = archive(
        vec![entry("a", b"A")],
        &[member("a", b'0', b"A"), member("b", b'0', b"B")],
    );
    assert!(matches!(refused(&tar), PackageError::NotInManifest { name } if name == "b"));
}

#[test]
fn refuses_member_cut_short() {
    let mut tar = manifest_member(&manifest(vec![entry("a", &[1u8; 2000])]));
    tar.extend_from_slice(&header(b"a", b'0', 2000, b""));
    tar.extend_from_slice(&[1u8; 100]);
    assert!(matches!(refused(&tar), PackageError::Tar { .. }));
}

#[test]
fn refuses_bad_header_checksum() {
    let mut tar = PackageBuilder::new("p", "d", 0).unwrap().finish().unwrap();
    tar[0] = b'M'; // "Manifest.json", checksum no longer matches
    assert!(matches!(refused(&tar), PackageError::Tar { .. }));
}

// ---------------------------------------------------------------- limits

#[test]
fn refuses_oversized_member_before_allocating() {
    let limits = Limits {
        max_member_bytes: 1000,
        ..Limits::default()
    };
    // The manifest lists a small file; the header claims 1 TiB and no data follows.
    let mut tar = manifest_member(&manifest(vec![entry("a", b"A")]));
    tar.extend_from_slice(&header(b"a", b'0', 1 << 40, b""));
    let e = read_package(&tar[..], &limits).unwrap_err();
    assert!(
        matches!(e, PackageError::MemberTooLarge { size, max: 1000, .. } if size == 1 << 40),
        "{e}"
    );
    assert!(e.is_too_large());
    // The manifest itself may not announce an oversized file either.
    let tar = archive(vec![entry("a", &[0u8; 1001])], &[]);
    assert!(matches!(
        read_package(&tar[..], &limits).unwrap_err(),
        PackageError::MemberTooLarge { size: 1001, .. }
    ));
}

#[test]
fn refuses_too_many_members() {
    let limits = Limits {
        max_members: 3,
        ..Limits::default()
    };
    let names = ["a", "b", "c"];
    // Listed in the manifest: refused while checking the manifest.
    let tar = archive(names.iter().map(|n| entry(n, b"")).collect(), &[]);
    let e = read_package(&tar[..], &limits).unwrap_err();
    assert!(matches!(e, PackageError::TooManyMembers { max: 3 }), "{e}");
    assert!(e.is_too_large());
    // Not listed: the member count stops the stream before the name check.
    let members: Vec<Vec<u8>> = names.iter().map(|n| member(n, b'0', b"")).collect();
    let tar = archive(vec![entry("a", b""), entry("b", b"")], &members);
    assert!(matches!(
        read_package(&tar[..], &limits).unwrap_err(),
        PackageError::TooManyMembers { max: 3 }
    ));
    // Exactly at the limit is fine.
    let tar = archive(vec![entry("a", b""), entry("b", b"")], &members[..2]);
    read_package(&tar[..], &limits).unwrap();
}

#[test]
fn refuses_packages_over_the_byte_limit() {
    let data = vec![7u8; 4096];
    let mut b = PackageBuilder::new("p", "d", 0).unwrap();
    b.add("a", FileKind::Sample, data.clone()).unwrap();
    let tar = b.finish().unwrap();
    let exact = Limits {
        max_package_bytes: tar.len() as u64,
        ..Limits::default()
    };
    read_package(&tar[..], &exact).unwrap();
    let under = Limits {
        max_package_bytes: tar.len() as u64 - 1,
        ..Limits::default()
    };
    let e = read_package(&tar[..], &under).unwrap_err();
    assert!(matches!(e, PackageError::PackageTooLarge { .. }), "{e}");
    assert!(e.is_too_large());
}

/// An endless reader that counts what was taken from it.
struct Endless<'a> {
    prefix: &'a [u8],
    fill: u8,
    taken: u64,
}

impl Read for Endless<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = if self.prefix.is_empty() {
            buf.fill(self.fill);
            buf.len()
        } else {
            self.prefix.read(buf)?
        };
        self.taken += n as u64;
        Ok(n)
    }
}

#[test]
fn endless_streams_stop_at_the_byte_limit() {
    let limits = Limits {
        max_package_bytes: 1 << 20,
        ..Limits::default()
    };
    let mut b = PackageBuilder::new("p", "d", 0).unwrap();
    b.add("a", FileKind::Logs, b"log".to_vec()).unwrap();
    let tar = b.finish().unwrap();
    // A valid package followed by zeros forever.
    let mut endless = Endless {
        prefix: &tar,
        fill: 0,
        taken: 0,
    };
    let e = read_package(&mut endless, &limits).unwrap_err();
    assert!(
        matches!(e, PackageError::PackageTooLarge { max } if max == 1 << 20),
        "{e}"
    );
    assert!(
        endless.taken <= (1 << 20) + 8192,
        "read {} bytes",
        endless.taken
    );

    // A member whose data never ends (header claims the largest allowed size).
    let mut prefix = manifest_member(&manifest(vec![entry("a", &vec![1u8; 32 << 20])]));
    prefix.extend_from_slice(&header(b"a", b'0', 32 << 20, b""));
    let mut endless = Endless {
        prefix: &prefix,
        fill: 1,
        taken: 0,
    };
    let e = read_package(&mut endless, &limits).unwrap_err();
    assert!(matches!(e, PackageError::PackageTooLarge { .. }), "{e}");
    assert!(
        endless.taken <= (1 << 20) + 8192,
        "read {} bytes",
        endless.taken
    );
}

#[test]
fn refuses_compressed_bodies() {
    for (magic, format) in [
        (&[0x1f, 0x8b, 8, 0][..], "gzip"),
        (b"BZh91AY", "bzip2"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz"),
        (&[0x28, 0xb5, 0x2f, 0xfd, 0], "zstd"),
        (b"PK\x03\x04rest", "zip"),
    ] {
        let mut body = magic.to_vec();
        body.resize(4096, 0xaa);
        match refused(&body) {
            PackageError::Compressed { format: f } => assert_eq!(f, format),
            e => panic!("{format}: {e}"),
        }
    }
    // Even a one-byte-short gzip magic must not panic.
    assert!(read(&[0x1f]).is_err());
}

// ---------------------------------------------------------------- builder

#[test]
fn builder_refuses_what_the_reader_would_refuse() {
    let mut b = PackageBuilder::new("p", "d", 0).unwrap();
    for name in ["../x", "/x", "a//b", "", MANIFEST_NAME] {
        assert!(matches!(
            b.add(name, FileKind::Other, vec![]),
            Err(PackageError::InvalidName { .. })
        ));
    }
    b.add("a/b", FileKind::Other, vec![]).unwrap();
    assert!(matches!(
        b.add("A/B", FileKind::Other, vec![]),
        Err(PackageError::DuplicateName { .. })
    ));
    assert!(matches!(
        b.add("a", FileKind::Other, vec![]),
        Err(PackageError::DuplicateName { .. })
    ));
    let limits = Limits {
        max_members: 2,
        max_member_bytes: 10,
        max_package_bytes: 4096,
        max_name_bytes: 8,
    };
    let mut b = PackageBuilder::new("p", "d", 0)
        .unwrap()
        .with_limits(limits);
    assert!(matches!(
        b.add("big", FileKind::Other, vec![0; 11]),
        Err(PackageError::MemberTooLarge { .. })
    ));
    assert!(matches!(
        b.add("longname1", FileKind::Other, vec![]),
        Err(PackageError::NameTooLong { .. })
    ));
    b.add("one", FileKind::Other, vec![0; 10]).unwrap();
    assert!(matches!(
        b.add("two", FileKind::Other, vec![]),
        Err(PackageError::TooManyMembers { max: 2 })
    ));
    assert_eq!(b.manifest().files.len(), 1);
    let tar = b.finish().unwrap();
    read_package(&tar[..], &limits).unwrap();
}

#[test]
fn builder_output_is_plain_ustar() {
    let mut b = PackageBuilder::new("p", "d", 5_000).unwrap();
    b.add("x.json", FileKind::Metrics, b"{}".to_vec()).unwrap();
    let tar = b.finish().unwrap();
    assert!(tar.starts_with(MANIFEST_NAME.as_bytes()));
    assert_eq!(&tar[257..263], b"ustar\0");
    assert_eq!(tar[156], b'0');
    assert!(tar.ends_with(&[0u8; 1024]));
}

// ---------------------------------------------------------------- never panics

/// Tiny xorshift64* so the fuzz loop needs no extra dependency and is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let limits = Limits {
        max_package_bytes: 64 * 1024,
        ..Limits::default()
    };
    // A valid package to mutate: random input alone rarely gets past the first checksum.
    let mut b = PackageBuilder::new("p", "d", 0).unwrap();
    b.add("a/b.json", FileKind::Metrics, b"{\"x\":1}".to_vec())
        .unwrap();
    b.add("c.bin", FileKind::Sample, vec![3u8; 700]).unwrap();
    let valid = b.finish().unwrap();
    read_package(&valid[..], &limits).unwrap();

    for round in 0..10_000 {
        let bytes: Vec<u8> = if round % 2 == 0 {
            let len = rng.below(4096) as usize;
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            let mut v = valid.clone();
            for _ in 0..=rng.below(8) {
                let i = rng.below(v.len() as u64) as usize;
                v[i] = rng.next() as u8;
            }
            if rng.below(4) == 0 {
                v.truncate(rng.below(v.len() as u64) as usize);
            }
            v
        };
        // Must return (Ok or Err), never panic; an Ok must still satisfy the manifest.
        if let Ok(p) = read_package(&bytes[..], &limits) {
            for (e, data) in &p.files {
                assert_eq!(e.size, data.len() as u64);
                assert_eq!(e.sha256, sha(data));
            }
        }
    }
}

#[test]
fn errors_become_error_responses_with_a_fix() {
    let e = refused(&[0x1f, 0x8b, 8, 0]);
    let r = tinylcm_protocol::api::ErrorResponse::from(&e);
    assert!(r.error.contains("gzip"), "{}", r.error);
    assert!(r.fix.unwrap().contains("uncompressed"));
}

/// Hands out `data`, then fails like a dropped connection.
struct Failing<'a> {
    data: &'a [u8],
}

impl Read for Failing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.data.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "peer went away",
            ));
        }
        self.data.read(buf)
    }
}

#[test]
fn reader_failures_are_not_blamed_on_the_package() {
    let mut b = PackageBuilder::new("p", "d", 0).unwrap();
    b.add("a", FileKind::Logs, vec![5u8; 3000]).unwrap();
    let tar = b.finish().unwrap();
    for cut in [0, 100, 1024, 2000, tar.len() - 600] {
        let e = read_package(Failing { data: &tar[..cut] }, &Limits::default()).unwrap_err();
        assert!(
            matches!(&e, PackageError::Read { source } if source.kind() == io::ErrorKind::ConnectionReset),
            "cut {cut}: {e}"
        );
        assert!(!e.is_too_large());
    }
}

#[test]
fn kind_names_match_the_manifest_and_limits_deserialize_with_defaults() {
    for kind in FileKind::ALL {
        assert_eq!(
            serde_json::to_string(&kind).unwrap(),
            format!("\"{}\"", kind.as_str())
        );
        assert_eq!(kind.to_string(), kind.as_str());
    }
    let l: Limits = serde_json::from_str(r#"{"max_members":10}"#).unwrap();
    assert_eq!(l.max_members, 10);
    assert_eq!(l.max_package_bytes, Limits::default().max_package_bytes);
    assert!(serde_json::from_str::<Limits>(r#"{"max_membres":10}"#).is_err());
}

/// A package written by GNU tar (both its default format and ustar) from the same files is
/// accepted: the format is ordinary TAR, not something only our builder can produce.
#[test]
fn packages_written_by_gnu_tar_are_accepted() {
    if std::process::Command::new("tar")
        .arg("--version")
        .output()
        .is_err()
    {
        tinylcm_protocol::test_support::missing("GNU tar", "apt-get install tar");
        return;
    }
    let dir = std::env::temp_dir().join(format!("tinylcm-protocol-tar-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("drift")).unwrap();
    let files: [(&str, &[u8]); 2] = [
        ("metrics.json", b"{\"n\":1}"),
        ("drift/e.jpg", &[9u8; 1500]),
    ];
    for (name, data) in files {
        std::fs::write(dir.join(name), data).unwrap();
    }
    let m = manifest(files.iter().map(|(n, d)| entry(n, d)).collect());
    std::fs::write(dir.join(MANIFEST_NAME), serde_json::to_vec(&m).unwrap()).unwrap();
    for format in ["gnu", "ustar", "posix"] {
        let out = std::process::Command::new("tar")
            .arg(format!("--format={format}"))
            .args(["-cf", "-", "-C"])
            .arg(&dir)
            .args([MANIFEST_NAME, "metrics.json", "drift/e.jpg"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        match read(&out.stdout) {
            Ok(p) => assert_eq!(p.file("drift/e.jpg"), Some(&[9u8; 1500][..]), "{format}"),
            // POSIX (pax) archives carry extension headers, which are refused by design.
            Err(PackageError::NotRegularFile { kind, .. }) if format == "posix" => {
                assert_eq!(kind, "PAX extension header")
            }
            Err(e) => panic!("{format}: {e}"),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
