//! One blob-store contract, run against every `Blobs` adapter: the local directory always, and
//! S3 when `SPHERE_TEST_S3_ENDPOINT` is set (`./scripts/test sphere` starts SeaweedFS and sets
//! it, with `SPHERE_TEST_S3_ACCESS_KEY`, `SPHERE_TEST_S3_SECRET_KEY`, `SPHERE_TEST_S3_REGION`).
//!
//! Each S3 test works under its own random key prefix in one shared bucket, so the tests run in
//! parallel without seeing each other's objects.

use std::io::Read as _;
use std::time::Duration;

use sphere_lite::adapters::{DirBlobs, S3Blobs, S3Settings};
use sphere_lite::ports::{BlobKey, Blobs};

const BUCKET: &str = "sphere-blobs-test";

fn key(k: &str) -> BlobKey {
    BlobKey::new(k).unwrap()
}

/// S3 settings from the environment, under a fresh prefix; `None` when unset
/// (`test_support::missing`).
fn s3_settings(test: &str) -> Option<S3Settings> {
    let Ok(endpoint) = std::env::var("SPHERE_TEST_S3_ENDPOINT") else {
        tinylcm_protocol::test_support::missing(
            &format!("{test}, S3 half: an S3 service (SPHERE_TEST_S3_ENDPOINT is not set)"),
            "run ./scripts/test sphere, which starts SeaweedFS and sets it",
        );
        return None;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let nonce: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    Some(S3Settings {
        endpoint,
        bucket: BUCKET.into(),
        access_key: var("SPHERE_TEST_S3_ACCESS_KEY"),
        secret_key: var("SPHERE_TEST_S3_SECRET_KEY"),
        region: std::env::var("SPHERE_TEST_S3_REGION").unwrap_or_else(|_| "us-east-1".into()),
        prefix: Some(format!("t/{test}-{nonce:x}-{}", std::process::id())),
    })
}

/// Run `check` on a fresh directory store, then on a fresh S3 store if one is configured.
fn each_store(test: &str, check: impl Fn(&dyn Blobs, Backend)) {
    let dir = tempfile::tempdir().unwrap();
    let local = DirBlobs::open(&dir.path().join("blobs")).unwrap();
    check(&local, Backend::Dir);
    if let Some(settings) = s3_settings(test) {
        let s3 = S3Blobs::open(&settings).unwrap();
        check(&s3, Backend::S3(&settings));
    }
}

#[derive(Clone, Copy)]
enum Backend<'a> {
    Dir,
    S3(&'a S3Settings),
}

#[test]
fn put_get_round_trip_and_overwrite() {
    each_store("round-trip", |b, _| {
        let k = key("devices/d1/packages/p1/metrics.json");
        b.put(&k, b"{\"n\":1}").unwrap();
        assert_eq!(b.get(&k).unwrap().unwrap(), b"{\"n\":1}");
        b.put(&k, b"second").unwrap();
        assert_eq!(b.get(&k).unwrap().unwrap(), b"second");
        b.put(&k, b"").unwrap();
        assert_eq!(b.get(&k).unwrap().unwrap(), b"");
    });
}

#[test]
fn missing_keys_are_none() {
    each_store("missing", |b, _| {
        assert_eq!(b.get(&key("nope/never.bin")).unwrap(), None);
        assert_eq!(b.list("nope/").unwrap(), Vec::<BlobKey>::new());
    });
}

#[test]
fn binary_content_survives() {
    each_store("binary", |b, _| {
        let all: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        let k = key("bin/all-bytes.bin");
        b.put(&k, &all).unwrap();
        assert_eq!(b.get(&k).unwrap().unwrap(), all);
    });
}

#[test]
fn a_large_blob_round_trips() {
    each_store("large", |b, _| {
        // 8 MiB of a cheap non-repeating pattern (an xorshift stream).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let big: Vec<u8> = (0..8 * 1024 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let k = key("large/eight-mib.bin");
        b.put(&k, &big).unwrap();
        let back = b.get(&k).unwrap().unwrap();
        assert_eq!(back.len(), big.len());
        assert!(back == big, "content differs");
    });
}

#[test]
fn list_by_prefix_is_sorted_and_exact() {
    each_store("list", |b, _| {
        for k in ["x/b.bin", "x/y/a.bin", "x/a.bin", "xy/c.bin", "z.bin"] {
            b.put(&key(k), k.as_bytes()).unwrap();
        }
        let names = |p: &str| -> Vec<String> {
            b.list(p)
                .unwrap()
                .into_iter()
                .map(|k| k.as_str().to_owned())
                .collect()
        };
        assert_eq!(
            names(""),
            ["x/a.bin", "x/b.bin", "x/y/a.bin", "xy/c.bin", "z.bin"]
        );
        assert_eq!(names("x/"), ["x/a.bin", "x/b.bin", "x/y/a.bin"]);
        assert_eq!(names("x/y/"), ["x/y/a.bin"]);
        assert_eq!(names("nope/"), Vec::<String>::new());
    });
}

#[test]
fn listing_follows_pages_past_1000_keys() {
    each_store("pages", |b, _| {
        for i in 0..1005 {
            b.put(&key(&format!("many/k{i:04}")), b"x").unwrap();
        }
        let keys = b.list("many/").unwrap();
        assert_eq!(keys.len(), 1005);
        assert_eq!(keys[0].as_str(), "many/k0000");
        assert_eq!(keys[1004].as_str(), "many/k1004");
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    });
}

#[test]
fn delete_is_idempotent() {
    each_store("delete", |b, _| {
        let k = key("del/me.bin");
        let other = key("del/keep.bin");
        b.put(&k, b"1").unwrap();
        b.put(&other, b"2").unwrap();
        b.delete(&k).unwrap();
        assert_eq!(b.get(&k).unwrap(), None);
        b.delete(&k).unwrap();
        b.delete(&key("del/never-existed.bin")).unwrap();
        assert_eq!(b.list("del/").unwrap(), vec![other.clone()]);
        assert_eq!(b.get(&other).unwrap().unwrap(), b"2");
    });
}

fn http_get(url: &str) -> (u16, Vec<u8>) {
    let response = match ureq::get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = response.status();
    let mut body = Vec::new();
    response.into_reader().read_to_end(&mut body).unwrap();
    (status, body)
}

#[test]
fn presigned_urls_serve_the_bytes_and_the_bucket_is_private() {
    each_store("presign", |b, backend| {
        let k = key("shared/model.tflite");
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        b.put(&k, &bytes).unwrap();
        let url = b.presigned_get(&k, Duration::from_secs(600)).unwrap();
        let Backend::S3(settings) = backend else {
            assert_eq!(url, None, "the directory store has no URLs");
            return;
        };
        let url = url.expect("S3 hands out presigned URLs");
        assert!(url.contains("X-Amz-Signature="), "{url}");
        assert!(
            !url.contains(&settings.secret_key),
            "the secret leaked into the URL"
        );
        let (status, body) = http_get(&url);
        assert_eq!(status, 200);
        assert!(body == bytes, "presigned GET returned other bytes");

        // The same object without a signature is refused: the bucket is not public.
        let object = format!(
            "{}/{}/{}/{}",
            settings.endpoint.trim_end_matches('/'),
            settings.bucket,
            settings.prefix.as_deref().unwrap(),
            k
        );
        let (status, _) = http_get(&object);
        assert!(
            status == 403 || status == 401,
            "unsigned GET answered {status}"
        );
        // A tampered signature is refused too.
        let tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0");
        assert_eq!(http_get(&tampered).0, 403);
        // And an expired URL stops working.
        let short = b
            .presigned_get(&k, Duration::from_secs(1))
            .unwrap()
            .unwrap();
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(http_get(&short).0, 403, "expired presigned URL still works");
    });
}

#[test]
fn s3_reports_a_wrong_secret_without_leaking_it() {
    let Some(mut settings) = s3_settings("wrong-secret") else {
        return;
    };
    settings.secret_key = "definitely-wrong-secret".into();
    let err = match S3Blobs::open(&settings) {
        Ok(b) => b.put(&key("x.bin"), b"x").unwrap_err(),
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(!text.contains("definitely-wrong-secret"), "{text}");
    assert!(text.starts_with("s3:"), "{text}");
}
