//! The original clients' uploads: the `metadata` part (JSON), the archive reader (flat TAR or
//! `.tar.gz` under limits, `tinylcm_protocol::legacy::archive`, which sphere-lite runs) and the
//! translator to a v2 package (`tinylcm_protocol::legacy::translate`). Input: metadata, `tinylcm_fuzz::SPLIT`, archive. What
//! the translator builds must be a package the v2 reader accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinylcm_protocol::legacy::archive::read_members;
use tinylcm_protocol::legacy::translate::to_package;
use tinylcm_protocol::legacy::wire::UploadMetadata;
use tinylcm_protocol::package::{Limits, read_package};

const LIMITS: Limits = Limits {
    max_package_bytes: 256 * 1024,
    max_members: 16,
    max_member_bytes: 64 * 1024,
    max_name_bytes: 100,
};

fuzz_target!(|data: &[u8]| {
    let parts = tinylcm_fuzz::parts(data, 2);
    let (metadata, archive) = (parts[0], parts[1]);
    let members = read_members(archive, &LIMITS);
    if let Ok(members) = &members {
        assert!(members.len() <= LIMITS.max_members);
        let total: usize = members.iter().map(|m| m.data.len()).sum();
        assert!(total as u64 <= LIMITS.max_package_bytes);
    }
    let Ok(metadata) = serde_json::from_slice::<UploadMetadata>(metadata) else {
        return;
    };
    let Ok(members) = members else { return };
    if metadata.device_id != tinylcm_fuzz::DEVICE
        || !tinylcm_protocol::ids::valid_package_id(&metadata.package_id)
    {
        return; // accept_upload refuses these before translating
    }
    // The limits the server translates under (room for the added manifest and headers).
    let limits = Limits {
        max_package_bytes: LIMITS.max_package_bytes / 16 * 15,
        ..LIMITS
    };
    if let Ok(package) = to_package(tinylcm_fuzz::DEVICE, &metadata, &members, &limits, 1) {
        read_package(std::io::Cursor::new(&package), &limits)
            .expect("a translated package is a valid v2 package");
    }
});
