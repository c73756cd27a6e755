//! A reverse proxy that answers in sphere-lite's place: nginx's own `413 Request Entity Too
//! Large` HTML page for bodies over its limit (its default `client_max_body_size` of 1 MiB is
//! below the device's 4 MiB packages) and a bare `400 Bad Request`, between a real sync client
//! and a live sphere-lite.
//!
//! Fails before this change: the device treated any 413 as "drop the package" and any 400 as
//! "move it aside", whoever answered, so the packages the proxy refused never reached the
//! server (`sync.dropped` / `sync.rejected` counted them) and nothing told the user why.
//! Now only sphere-lite's own error (its body carries `"origin": "sphere-lite"`) is final:
//! the big packages stay in the outbox, the small ones behind them still go, the device's
//! status names the proxy, and once the limit is lifted every package arrives exactly once.

use std::sync::Arc;

use tinylcm::sync::SyncClient;
use tinylcm::sync::outbox::{
    DROPPED_COUNTER, DUPLICATE_COUNTER, QUEUED_COUNTER, REJECTED_COUNTER, UPLOADED_COUNTER,
};
use tinylcm_e2e::device::{Device, add_drift, add_drift_with_thumbnail};
use tinylcm_e2e::host::TestHost;
use tinylcm_e2e::proxy::{Fault, NGINX_SERVER, Proxy};
use tinylcm_e2e::sphere::Sphere;
use tinylcm_e2e::wait_for;

/// The proxy's body limit: far above a package with one small thumbnail, far below one with
/// a big thumbnail.
const LIMIT: usize = 48 << 10;

/// A JPEG of noise, `side` pixels square at full quality: over 100 KiB for 200.
fn big_jpeg(side: u32, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    let img = image::RgbImage::from_fn(side, side, |_, _| {
        // xorshift: incompressible pixels.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        image::Rgb([x as u8, (x >> 8) as u8, (x >> 16) as u8])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 100)
        .encode_image(&img)
        .unwrap();
    out
}

#[test]
fn a_proxys_own_refusals_keep_the_packages_and_raise_an_alert() {
    let work = tempfile::tempdir().unwrap();
    let sphere = Sphere::embedded(None);
    let proxy = Proxy::start(&sphere.addr);
    let device = Device::new(&work.path().join("device"));
    let store = device.open_store();
    let host = Arc::new(TestHost::new(device.inbox(), Vec::new()));
    // Backoff capped at 1 s so the test does not wait for the real cap.
    let setup = device.setup(&proxy.url(), &sphere.enrollment_key, 1);
    let client = SyncClient::start(setup, Arc::clone(&store), host).unwrap();
    let id = wait_for(30, "enrollment", || device.device_id());
    proxy.limit_body(Some(LIMIT));

    let mut sent = Vec::new();
    let mut add = |k: u64, big: bool| {
        let seq = if big {
            let thumb = big_jpeg(200, k as u32);
            assert!(thumb.len() > LIMIT, "{} bytes", thumb.len());
            add_drift_with_thumbnail(&store, &device, k, 500 + k, k, thumb)
        } else {
            add_drift(&store, &device, k, 500 + k, k)
        };
        store.flush().unwrap();
        sent.push(seq);
        seq
    };

    // Two big packages: the proxy refuses them with its HTML 413, again and again.
    add(1, true);
    wait_for(30, "the proxy's first 413", || {
        (proxy.counts().too_large >= 1).then_some(())
    });
    add(2, true);
    wait_for(30, "the proxy's 413 to both big packages", || {
        (proxy.counts().too_large >= 3 && store.outbox_len().unwrap() == 2).then_some(())
    });
    // The device's status names who answered and how.
    let alert = wait_for(30, "the alert in the sync status", || {
        client.status().foreign_answer
    });
    assert_eq!(alert.status, 413, "{alert:?}");
    assert_eq!(alert.request, "upload", "{alert:?}");
    assert_eq!(
        alert.answered_by,
        format!("{NGINX_SERVER} (not sphere-lite)"),
        "{alert:?}"
    );
    assert!(alert.fix.contains("client_max_body_size"), "{alert:?}");
    assert_eq!(client.status().foreign_answer_status, 413);

    // A small package behind them still goes: the big ones are skipped, not in the way.
    let small = add(3, false);
    wait_for(30, "the small package past the blocked big ones", || {
        (sphere.event_seqs(&id) == [small]).then_some(())
    });

    // A bare 400 from the proxy is no verdict on the package either.
    proxy.inject("/packages", Fault::Bare400, 3);
    add(4, false);
    wait_for(30, "the proxy's bare 400s", || {
        (proxy.pending_rules() == 0).then_some(())
    });

    // Nothing was dropped or moved aside while the proxy refused; the big ones are kept.
    assert_eq!(store.counter(DROPPED_COUNTER).unwrap(), 0);
    assert_eq!(store.counter(REJECTED_COUNTER).unwrap(), 0);
    assert!(store.outbox_len().unwrap() >= 2);
    let status = client.status();
    assert_eq!((status.dropped, status.rejected), (0, 0), "{status:?}");
    assert!(
        !device.dir.join("sync").join("rejected").exists(),
        "a package was moved aside"
    );

    // The limit is lifted: everything arrives, each once, and the alert clears.
    proxy.limit_body(None);
    let want = sent.len();
    wait_for(60, "every package on the server", || {
        let n = sphere.drift_events(&id).len();
        assert!(n <= want, "{n} events on the server, {want} sent");
        (n == want && store.outbox_len().unwrap() == 0).then_some(())
    });
    wait_for(30, "the alert to clear", || {
        let s = client.status();
        (s.foreign_answer.is_none() && s.foreign_answer_status == 0).then_some(())
    });
    let status = client.status();
    assert!(client.stop());
    let queued = store.counter(QUEUED_COUNTER).unwrap();
    let uploaded = store.counter(UPLOADED_COUNTER).unwrap();
    let duplicates = store.counter(DUPLICATE_COUNTER).unwrap();
    assert_eq!(store.counter(DROPPED_COUNTER).unwrap(), 0);
    assert_eq!(store.counter(REJECTED_COUNTER).unwrap(), 0);
    // The proxy never forwarded a refused body, so nothing is a duplicate.
    assert_eq!((uploaded, duplicates), (queued, 0), "{status:?}");
    assert_eq!(sphere.packages(&id), queued);
    sent.sort_unstable();
    assert_eq!(sphere.event_seqs(&id), sent);
}
