//! Which uploads may go ahead: one at a time per package id, and within the device's quota.
//!
//! Why: uploads used to pass one by one through a global lock held across the duplicate
//! check, the quota check (a listing of every blob the device stored), the raw TAR's write
//! and its durable record, so the server took one package per disk flush and the listing
//! grew with the device's history. Now only what must be exact is serialised, in memory:
//!
//! * a [`Claim`] on (device, package id): a second upload of the same package waits until
//!   the first has been answered, then finds it recorded (a duplicate) or, if the first
//!   failed, goes ahead itself. Different packages never wait for each other here.
//! * a device's stored bytes: where this process is the stores' only writer
//!   ([`crate::ports::PackageStore::sole_writer`]), it keeps an upper bound of them, so an
//!   upload that fits under the quota with room to spare is admitted without a listing.
//!   Accepts add their raw TAR's size and processing adds the files it writes (so the bound
//!   stays above the truth; deletions are not subtracted); only when the bound says the
//!   upload might not fit does the device's exact listing and pruning run
//!   ([`Sphere::make_room`]), exactly as before, after the device's other uploads in flight
//!   have finished writing, and the listing resets the bound. Where other processes write
//!   too (MLflow + S3 replicas sharing one bucket), the bound is trusted only for
//!   [`SHARED_USAGE_TTL`] after its listing: a listing costs the S3 server time per key the
//!   device stores (≈ 17 ms per 1000 keys on SeaweedFS), so listing at every upload made an
//!   upload's cost grow with the device's history. The bound then misses what the device
//!   stores through other replicas meanwhile, so it can exceed its quota by about one
//!   [`SHARED_USAGE_TTL`] of its uploads through them until the next listing prunes it back.

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a device's stored-bytes bound from a listing is trusted where other processes
/// write the same stores (see the module documentation).
pub const SHARED_USAGE_TTL: Duration = Duration::from_secs(60);

use super::{DomainError, Sphere};

#[derive(Default)]
struct State {
    /// (device, package) of uploads in progress.
    claimed: HashSet<(String, String)>,
    /// Per device, uploads admitted under its quota and not answered yet.
    writing: HashMap<String, usize>,
    /// Per device, an upper bound of its stored bytes (raw TARs and unpacked files), as of
    /// its listing at the instant kept (bytes this process wrote since are added).
    stored: HashMap<String, (u64, Instant)>,
}

/// Claims and stored-bytes bounds (see the module documentation).
#[derive(Default)]
pub(crate) struct Admission {
    state: Mutex<State>,
    changed: Condvar,
}

impl Admission {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(state).unwrap_or_else(|p| p.into_inner())
    }

    /// Claim (device, package), waiting while another upload of it is in progress.
    pub(crate) fn claim(&self, device: &str, package: &str) -> Claim<'_> {
        let key = (device.to_owned(), package.to_owned());
        let mut state = self.lock();
        while state.claimed.contains(&key) {
            state = self.wait(state);
        }
        state.claimed.insert(key.clone());
        Claim {
            admission: self,
            key,
            writing: false,
        }
    }

    /// Processing wrote `bytes` more of `device`'s package files.
    pub(crate) fn note_written(&self, device: &str, bytes: u64) {
        if let Some((stored, _)) = self.lock().stored.get_mut(device) {
            *stored = stored.saturating_add(bytes);
        }
    }
}

/// An upload's claim on its (device, package); released when dropped.
pub(crate) struct Claim<'a> {
    admission: &'a Admission,
    key: (String, String),
    /// Admitted under the quota, counted in `writing`.
    writing: bool,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut state = self.admission.lock();
        state.claimed.remove(&self.key);
        if self.writing {
            let device = &self.key.0;
            if let Some(n) = state.writing.get_mut(device) {
                *n -= 1;
                if *n == 0 {
                    state.writing.remove(device);
                }
            }
        }
        drop(state);
        self.admission.changed.notify_all();
    }
}

impl Sphere {
    /// Admit `len` more bytes of raw TAR for the upload holding `claim` under its device's
    /// quota (the raw TAR and, later, its files: twice `len`), pruning the device's oldest
    /// processed packages if needed; 413 or 507 as [`Sphere::make_room`] says.
    pub(super) fn admit(&self, claim: &mut Claim<'_>, len: u64) -> Result<(), DomainError> {
        let Some(quota) = self.storage.device_quota_bytes else {
            return Ok(());
        };
        let device = claim.key.0.as_str();
        let incoming = len.saturating_mul(2);
        let admission = claim.admission;
        let mut state = admission.lock();
        let sole_writer = self.tracking.sole_writer();
        let fits = |state: &State| {
            state.stored.get(device).is_some_and(|(bound, listed)| {
                (sole_writer || listed.elapsed() < SHARED_USAGE_TTL)
                    && bound.saturating_add(incoming) <= quota
            })
        };
        if !fits(&state) {
            // The exact way: the device's own uploads in flight finish writing first, so the
            // listing sees all they stored; processing, which also writes, waits for this
            // lock to add its bytes, so nothing written during the listing is lost.
            while state.writing.contains_key(device) {
                state = admission.wait(state);
            }
            let used = self.make_room(device, incoming)?;
            state
                .stored
                .insert(device.to_owned(), (used, Instant::now()));
        }
        if let Some((stored, _)) = state.stored.get_mut(device) {
            *stored = stored.saturating_add(len);
        }
        *state.writing.entry(device.to_owned()).or_insert(0) += 1;
        claim.writing = true;
        Ok(())
    }
}
