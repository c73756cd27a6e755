//! The detector set: every detector per sample, events returned per sample, no allocation in
//! the steady state, and one persisted state for all of them.

mod drift_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use drift_support::{CLASSES, DIM, Rng, Sample};
use tinylcm::drift::{
    Cusum, DetectorKind, DetectorSet, DriftConfig, EmbeddingReference, EmbeddingShift, PageHinkley,
    Phase, ScalarReference,
};

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
thread_local! {
    /// Count only on the measuring thread (tests run in parallel).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches only
// an atomic and a const-initialised thread-local, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's layout, forwarded unchanged under the same contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Every signal drifts at once when `drifted`.
fn sample(rng: &mut Rng, id: u64, drifted: bool) -> Sample {
    let shift = if drifted { 1.0 } else { 0.0 };
    let mut embedding = [0f32; DIM];
    for e in &mut embedding {
        *e = (shift + rng.normal()) as f32;
    }
    let p = if drifted {
        [0.85, 0.05, 0.05, 0.05]
    } else {
        [0.25; CLASSES]
    };
    Sample {
        id,
        class: rng.categorical(&p),
        confidence: (0.8 - 0.1 * shift + 0.05 * rng.normal()).clamp(0.0, 1.0) as f32,
        distance: (10.0 + 2.0 * shift + rng.normal()) as f32,
        embedding,
    }
}

#[test]
fn every_detector_fires_once_per_onset_and_steady_state_allocates_nothing() {
    let mut set = DetectorSet::from_config(&DriftConfig::default()).unwrap();
    assert_eq!(set.kinds().count(), 7);
    let mut rng = Rng::new(5);
    let mut events = Vec::new();
    // Reference and a first stretch of monitoring (buffers are allocated once here).
    for id in 0..1000 {
        let s = sample(&mut rng, id, false);
        events.extend_from_slice(set.update(&s.obs()));
    }
    assert!(events.is_empty(), "{events:?}");
    let pre = (1000..4000)
        .map(|i| sample(&mut rng, i, i >= 1500))
        .collect::<Vec<_>>();
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    let mut fired = [0u32; 7];
    for s in &pre {
        for e in set.update(&s.obs()) {
            let i = DetectorKind::ALL
                .iter()
                .position(|k| *k == e.detector)
                .unwrap();
            fired[i] += 1;
        }
    }
    COUNTING.with(|c| c.set(false));
    assert_eq!(
        ALLOCATIONS.load(Ordering::Relaxed),
        0,
        "steady state allocates"
    );
    assert_eq!(fired, [1; 7], "each detector once: {fired:?}");
    assert!(set.detectors().iter().all(|d| d.state() == Phase::Drift));
}

#[test]
fn set_state_round_trips_and_mismatches_are_refused() {
    let config = DriftConfig::default();
    let mut a = DetectorSet::from_config(&config).unwrap();
    let mut rng = Rng::new(9);
    for i in 0..700 {
        a.update(&sample(&mut rng, i, i > 600).obs());
    }
    let text = toml::to_string(&a.save()).unwrap();
    let mut b = DetectorSet::from_config(&config).unwrap();
    b.load(toml::from_str(&text).unwrap()).unwrap();
    for i in 700..2000 {
        let s = sample(&mut rng, i, i < 1200);
        assert_eq!(a.update(&s.obs()), b.update(&s.obs()));
    }
    let mut fewer = config.clone();
    fewer.adwin.enabled = false;
    let mut c = DetectorSet::from_config(&fewer).unwrap();
    assert!(c.load(a.save()).is_err());
    let mut state = a.save();
    state.version = 0;
    assert!(b.load(state).is_err());
}

#[test]
fn injected_references_start_monitoring_at_once() {
    let c = DriftConfig::default();
    let ph = PageHinkley::distance(c.common(), c.page_hinkley_distance.clone())
        .with_reference(ScalarReference {
            mean: 10.0,
            std: 1.0,
        })
        .unwrap();
    let cusum = Cusum::new(c.common(), c.cusum.clone())
        .with_reference(ScalarReference {
            mean: 0.8,
            std: 0.05,
        })
        .unwrap();
    let emb = EmbeddingShift::new(c.common(), c.embedding.clone())
        .with_reference(EmbeddingReference {
            mean: vec![0.0; DIM],
            std: vec![1.0; DIM],
            samples: 1000,
        })
        .unwrap();
    assert!(
        Cusum::new(c.common(), c.cusum.clone())
            .with_reference(ScalarReference {
                mean: f64::NAN,
                std: 1.0
            })
            .is_err()
    );
    let mut set = DetectorSet::new(vec![Box::new(ph), Box::new(cusum), Box::new(emb)]);
    assert!(
        set.detectors()
            .iter()
            .all(|d| d.state() == Phase::Monitoring)
    );
    let mut rng = Rng::new(3);
    let mut n = 0;
    for i in 0..2000 {
        n += set.update(&sample(&mut rng, i, i >= 1000).obs()).len();
    }
    assert_eq!(n, 3);
    set.reset();
    assert!(
        set.detectors()
            .iter()
            .all(|d| d.state() == Phase::Monitoring)
    );
}

#[test]
fn set_state_round_trips_through_postcard_the_state_store_encoding() {
    let config = DriftConfig::default();
    let mut a = DetectorSet::from_config(&config).unwrap();
    let mut rng = Rng::new(21);
    for i in 0..800 {
        a.update(&sample(&mut rng, i, i > 650).obs());
    }
    let bytes = postcard::to_stdvec(&a.save()).unwrap();
    let mut b = DetectorSet::from_config(&config).unwrap();
    b.load(postcard::from_bytes(&bytes).unwrap()).unwrap();
    assert_eq!(a.save(), b.save());
    for i in 800..2000 {
        let s = sample(&mut rng, i, i < 1100);
        assert_eq!(a.update(&s.obs()), b.update(&s.obs()));
    }
}

/// Flipped bytes, truncations: decoding fails, loading refuses, or the loaded state runs;
/// never a panic.
#[test]
fn garbled_state_bytes_never_panic() {
    let config = DriftConfig::default();
    let mut a = DetectorSet::from_config(&config).unwrap();
    let mut rng = Rng::new(37);
    for i in 0..500 {
        a.update(&sample(&mut rng, i, i > 420).obs());
    }
    let bytes = postcard::to_stdvec(&a.save()).unwrap();
    let rounds = if cfg!(target_arch = "x86_64") {
        600
    } else {
        60
    };
    let (mut refused, mut loaded) = (0, 0);
    for round in 0..rounds {
        let mut garbled = bytes.clone();
        if round % 10 == 0 {
            garbled.truncate(rng.uniform() as usize * bytes.len());
        }
        for _ in 0..1 + round % 4 {
            let i = (rng.next_u64() % garbled.len().max(1) as u64) as usize;
            if let Some(b) = garbled.get_mut(i) {
                *b ^= 1 << (rng.next_u64() % 8);
            }
        }
        let Ok(state) = postcard::from_bytes(&garbled) else {
            refused += 1;
            continue;
        };
        let mut b = DetectorSet::from_config(&config).unwrap();
        if b.load(state).is_err() {
            refused += 1;
            continue;
        }
        loaded += 1;
        for i in 0..30 {
            b.update(&sample(&mut rng, i, false).obs());
        }
    }
    assert!(
        refused > 0,
        "some garbling must be caught ({loaded} loaded)"
    );
}
