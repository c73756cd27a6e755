//! The v2 sync package reader (`tinylcm_protocol::package::read_package`) on any bytes:
//! no panic, nothing unbounded, and what it accepts keeps its promises (every file's size and
//! SHA-256 as listed, names valid) and builds again into a package it accepts the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinylcm_protocol::package::{Limits, PackageBuilder, read_package, sha256_hex, validate_name};

/// Smaller than the server's defaults so the fuzzer reaches every limit.
const LIMITS: Limits = Limits {
    max_package_bytes: 256 * 1024,
    max_members: 16,
    max_member_bytes: 64 * 1024,
    max_name_bytes: 100,
};

fuzz_target!(|data: &[u8]| {
    let Ok(package) = read_package(std::io::Cursor::new(data), &LIMITS) else {
        return;
    };
    let m = &package.manifest;
    assert!(package.files.len() < LIMITS.max_members);
    for (entry, content) in &package.files {
        assert_eq!(entry.size, content.len() as u64);
        assert_eq!(entry.sha256, sha256_hex(content));
        assert!(
            validate_name(&entry.name, &LIMITS).is_ok(),
            "{}",
            entry.name
        );
    }
    // What was read builds again (the device's builder) and reads back the same.
    let mut builder = PackageBuilder::new(&m.package_id, &m.device_id, m.created_unix_ms)
        .expect("an accepted manifest's ids are valid for the builder")
        .with_limits(LIMITS);
    for (entry, content) in &package.files {
        builder
            .add(&entry.name, entry.kind, content.clone())
            .expect("an accepted file is accepted by the builder");
    }
    let again = builder.finish().expect("an accepted package builds again");
    let reread =
        read_package(std::io::Cursor::new(&again), &LIMITS).expect("a rebuilt package reads back");
    assert_eq!(reread, package);
});
