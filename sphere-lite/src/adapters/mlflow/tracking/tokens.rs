//! Credentials on MLflow: operator tokens, enrollment keys and dashboard sessions, all in the
//! `<ns>/auth` experiment.
//!
//! Why a module of its own: the credential lifecycle (expiry, roles, revocation, sessions) is
//! one concern, and the mapping file is long enough. Layout:
//!
//! * **Operator tokens**: experiment tags of `<ns>/auth`, one group per token hash `<h>`:
//!   `sphere.operator_token.<h>` the record (JSON: id, name, role, created, expires; written
//!   once at creation), `sphere.operator_revoked.<h>` the revocation time and
//!   `sphere.operator_used.<h>` the last use. Each tag has one writer purpose, so a use
//!   recorded by one replica can never overwrite a revocation made by another. A record tag
//!   that is not JSON is a token of the version before records (the value is the operator's
//!   name): an admin token with no expiry, read as such, nothing rewritten.
//! * **Enrollment keys**: runs (`sphere.kind=enrollment-key`) tagged `sphere.key_sha256`,
//!   `sphere.uses` (a count, or `unlimited`), optionally `sphere.key_name`,
//!   `sphere.expires_unix_ms` and, once revoked, `sphere.revoked_unix_ms`; each use is a
//!   write-once param `use.<i>`. Key runs of the previous version lack the new tags and read as
//!   keys without expiry.
//! * **Sessions**: runs (`sphere.kind=session`) tagged `sphere.session_sha256`,
//!   `sphere.session_token_sha256`, `sphere.expires_unix_ms`, `sphere.last_active_unix_ms`;
//!   logout deletes the run. Not cached: a logout or revocation on one replica ends the
//!   session on every replica at once.
//!
//! Races: a revocation and an enrollment (or a login) in the same instant on two replicas can
//! both succeed (MLflow has no transaction across a tag and a param); operator-token look-ups
//! are cached for [`OPERATOR_CACHE_TTL`](super::OPERATOR_CACHE_TTL), so a token revoked on
//! another replica (or by the CLI) keeps working there that long.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::super::client::{ParamOutcome, Run, RunQuery, Tag};
use super::super::filter::{Filter, hex};
use super::super::names;
use super::{
    KEY_HASH, KIND, KIND_DEVICE, KIND_KEY, KIND_QUEUE, MAX_DUPLICATES, MlflowTracking,
    OPERATOR_TOKEN_PREFIX, OperatorSnapshot, USE_PARAM_PREFIX, USES, corrupt, lit, lit_const, lock,
    unhex32,
};
use crate::adapters::mlflow::client::Experiment;
use crate::ports::{
    DeviceRecord, EnrollOutcome, EnrollmentKey, OperatorToken, Role, SecretHash, SessionRecord,
    StoreError,
};
use crate::secret;

const OPERATOR_REVOKED_PREFIX: &str = "sphere.operator_revoked.";
const OPERATOR_USED_PREFIX: &str = "sphere.operator_used.";
const KEY_NAME: &str = "sphere.key_name";
const EXPIRES: &str = "sphere.expires_unix_ms";
const REVOKED: &str = "sphere.revoked_unix_ms";
const UNLIMITED: &str = "unlimited";
const KIND_SESSION: &str = "session";
const SESSION_HASH: &str = "sphere.session_sha256";
const SESSION_TOKEN: &str = "sphere.session_token_sha256";
const CREATED: &str = "sphere.created_unix_ms";
const LAST_ACTIVE: &str = "sphere.last_active_unix_ms";
/// Most key or session runs read by one listing (an error beyond, never a silent cut).
const MAX_AUTH_RUNS: usize = 100_000;

/// The record tag's JSON (what never changes after creation).
#[derive(Serialize, Deserialize)]
struct StoredToken {
    id: String,
    name: String,
    role: Role,
    created_unix_ms: u64,
    #[serde(default)]
    expires_unix_ms: Option<u64>,
}

/// The operator tokens described by the tags of the auth experiment, by hash (hex).
pub(super) fn tokens_of(exp: &Experiment) -> HashMap<String, OperatorToken> {
    let number = |prefix: &str, h: &str| -> Option<u64> {
        exp.tag(&format!("{prefix}{h}"))
            .and_then(|v| v.parse().ok())
    };
    exp.tags
        .iter()
        .filter_map(|t| {
            let h = t.key.strip_prefix(OPERATOR_TOKEN_PREFIX)?;
            let hash = unhex32(h)?;
            let stored = match serde_json::from_str::<StoredToken>(&t.value) {
                Ok(s) => s,
                // The version before records stored the operator's name alone.
                Err(_) => StoredToken {
                    id: secret::public_id("tok-", &hash),
                    name: t.value.clone(),
                    role: Role::Admin,
                    created_unix_ms: 0,
                    expires_unix_ms: None,
                },
            };
            Some((
                h.to_owned(),
                OperatorToken {
                    id: stored.id,
                    name: stored.name,
                    role: stored.role,
                    token_hash: hash,
                    created_unix_ms: stored.created_unix_ms,
                    expires_unix_ms: stored.expires_unix_ms,
                    revoked_unix_ms: number(OPERATOR_REVOKED_PREFIX, h),
                    last_used_unix_ms: number(OPERATOR_USED_PREFIX, h),
                },
            ))
        })
        .collect()
}

fn key_of(run: &Run) -> Result<EnrollmentKey, StoreError> {
    let hash = run
        .tag(KEY_HASH)
        .and_then(unhex32)
        .ok_or_else(|| corrupt(format!("key run {} has no valid hash", run.info.run_id)))?;
    let used = run
        .data
        .params
        .iter()
        .filter(|p| p.key.starts_with(USE_PARAM_PREFIX))
        .count() as u64;
    let remaining = match run.tag(USES) {
        Some(UNLIMITED) => None,
        Some(n) => Some(
            n.parse::<u32>()
                .map_err(|_| corrupt("enrollment key without uses"))?
                .saturating_sub(used.min(u32::MAX as u64) as u32),
        ),
        None => return Err(corrupt("enrollment key without uses")),
    };
    Ok(EnrollmentKey {
        id: secret::public_id("key-", &hash),
        name: run.tag(KEY_NAME).map(str::to_owned),
        key_hash: hash,
        remaining,
        used,
        created_unix_ms: run.info.start_time.max(0) as u64,
        expires_unix_ms: run.tag(EXPIRES).and_then(|v| v.parse().ok()),
        revoked_unix_ms: run.tag(REVOKED).and_then(|v| v.parse().ok()),
    })
}

/// The slots `0..slots` of key run `run` free in this snapshot, in the order one enrollment
/// tries them: from a place derived from `device_id` (random per enrollment), wrapping round.
/// Concurrent enrollments with the same snapshot start at different slots, so they rarely try
/// the same one; from slot 0 they all raced for each slot in turn, each loser paying a failed
/// write and a re-read of the key run (quadratic in the enrollments at once). Which slots a
/// use takes does not change the count: a key with N uses has N slots.
fn claim_order(run: &Run, slots: u64, device_id: &str) -> Vec<u64> {
    let taken: std::collections::HashSet<u64> = run
        .data
        .params
        .iter()
        .filter_map(|p| p.key.strip_prefix(USE_PARAM_PREFIX)?.parse().ok())
        .collect();
    let free: Vec<u64> = (0..slots).filter(|i| !taken.contains(i)).collect();
    if free.is_empty() {
        return free;
    }
    let digest = secret::hash(device_id);
    let seed = u64::from_le_bytes(digest[..8].try_into().unwrap_or([0; 8]));
    let start = (seed % free.len() as u64) as usize;
    free[start..]
        .iter()
        .chain(&free[..start])
        .copied()
        .collect()
}

fn session_of(run: &Run) -> Result<SessionRecord, StoreError> {
    let hash = |key: &str| {
        run.tag(key)
            .and_then(unhex32)
            .ok_or_else(|| corrupt(format!("session run {} has no {key}", run.info.run_id)))
    };
    let number = |key: &str| {
        run.tag(key)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| corrupt(format!("session run {} has no {key}", run.info.run_id)))
    };
    Ok(SessionRecord {
        session_hash: hash(SESSION_HASH)?,
        token_hash: hash(SESSION_TOKEN)?,
        created_unix_ms: number(CREATED)?,
        expires_unix_ms: number(EXPIRES)?,
        last_active_unix_ms: number(LAST_ACTIVE)?,
    })
}

impl MlflowTracking {
    /// The operator tokens by hash (hex), from a snapshot at most `max_age` old.
    pub(super) fn operator_snapshot(
        &self,
        max_age: Duration,
    ) -> Result<HashMap<String, OperatorToken>, StoreError> {
        {
            let cached = lock(&self.operators);
            if let Some(s) = cached.as_ref() {
                if s.at.elapsed() < max_age {
                    return Ok(s.by_hash.clone());
                }
            }
        }
        let exp = self
            .client
            .experiment_by_name(&names::auth(&self.namespace))?
            .filter(Experiment::is_active)
            .ok_or_else(|| StoreError::new("mlflow", "the auth experiment is gone"))?;
        let by_hash = tokens_of(&exp);
        *lock(&self.operators) = Some(OperatorSnapshot {
            at: Instant::now(),
            by_hash: by_hash.clone(),
        });
        Ok(by_hash)
    }

    /// The operator token with `hash`: from the cache, re-read when not found in it.
    pub(super) fn find_operator(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<OperatorToken>, StoreError> {
        let h = hex(hash);
        if let Some(t) = self.operator_snapshot(super::OPERATOR_CACHE_TTL)?.get(&h) {
            return Ok(Some(t.clone()));
        }
        Ok(self
            .operator_snapshot(super::OPERATOR_MISS_REFRESH)?
            .get(&h)
            .cloned())
    }

    pub(super) fn store_operator(&self, token: &OperatorToken) -> Result<(), StoreError> {
        let stored = StoredToken {
            id: token.id.clone(),
            name: token.name.clone(),
            role: token.role,
            created_unix_ms: token.created_unix_ms,
            expires_unix_ms: token.expires_unix_ms,
        };
        let json = serde_json::to_string(&stored)
            .map_err(|e| StoreError::new("mlflow", format!("encode: {e}")))?;
        self.set_experiment_tag(
            &self.auth,
            &format!("{OPERATOR_TOKEN_PREFIX}{}", hex(&token.token_hash)),
            &json,
        )?;
        *lock(&self.operators) = None;
        Ok(())
    }

    pub(super) fn all_operators(&self) -> Result<Vec<OperatorToken>, StoreError> {
        let mut out: Vec<OperatorToken> = self
            .operator_snapshot(Duration::ZERO)?
            .into_values()
            .collect();
        out.sort_by(|a, b| (a.created_unix_ms, &a.id).cmp(&(b.created_unix_ms, &b.id)));
        Ok(out)
    }

    pub(super) fn revoke_operator(&self, id: &str, now: u64) -> Result<bool, StoreError> {
        let Some(token) = self.all_operators()?.into_iter().find(|t| t.id == id) else {
            return Ok(false);
        };
        if token.revoked_unix_ms.is_none() {
            self.set_experiment_tag(
                &self.auth,
                &format!("{OPERATOR_REVOKED_PREFIX}{}", hex(&token.token_hash)),
                &now.to_string(),
            )?;
        }
        *lock(&self.operators) = None;
        for run in
            self.session_runs(Filter::new().tag_eq(SESSION_TOKEN, &lit(&hex(&token.token_hash))?))?
        {
            self.client.delete_run(&run.info.run_id)?;
        }
        Ok(true)
    }

    pub(super) fn touch_operator(&self, hash: &SecretHash, now: u64) -> Result<(), StoreError> {
        self.set_experiment_tag(
            &self.auth,
            &format!("{OPERATOR_USED_PREFIX}{}", hex(hash)),
            &now.to_string(),
        )?;
        Ok(())
    }

    fn key_runs(&self, filter: Filter) -> Result<Vec<Run>, StoreError> {
        let query = RunQuery {
            experiment_ids: vec![self.auth.clone()],
            filter: filter.tag_eq(KIND, &lit_const(KIND_KEY)).build(),
            order_by: vec![],
        };
        let mut runs = self.client.search_runs(&query, MAX_AUTH_RUNS)?;
        runs.sort_by(|a, b| {
            (a.info.start_time, &a.info.run_id).cmp(&(b.info.start_time, &b.info.run_id))
        });
        Ok(runs)
    }

    pub(super) fn store_key(&self, key: &EnrollmentKey) -> Result<(), StoreError> {
        let mut tags = vec![
            Tag::new(KIND, KIND_KEY),
            Tag::new(KEY_HASH, hex(&key.key_hash)),
            Tag::new(
                USES,
                key.remaining
                    .map_or_else(|| UNLIMITED.to_owned(), |n| n.to_string()),
            ),
        ];
        if let Some(n) = &key.name {
            tags.push(Tag::new(KEY_NAME, n));
        }
        if let Some(t) = key.expires_unix_ms {
            tags.push(Tag::new(EXPIRES, t.to_string()));
        }
        self.client
            .create_run(&self.auth, KIND_KEY, key.created_unix_ms, &tags)?;
        Ok(())
    }

    pub(super) fn all_keys(&self) -> Result<Vec<EnrollmentKey>, StoreError> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for run in self.key_runs(Filter::new())? {
            let key = key_of(&run)?;
            // A key stored twice (a retried create) is one key: its oldest run counts.
            if seen.insert(key.key_hash) {
                out.push(key);
            }
        }
        Ok(out)
    }

    pub(super) fn revoke_key(&self, id: &str, now: u64) -> Result<bool, StoreError> {
        let mut found = false;
        for run in self.key_runs(Filter::new())? {
            let key = key_of(&run)?;
            if key.id == id {
                found = true;
                if key.revoked_unix_ms.is_none() {
                    self.client
                        .set_tag(&run.info.run_id, REVOKED, &now.to_string())?;
                }
            }
        }
        Ok(found)
    }

    pub(super) fn enroll_with_key(
        &self,
        key_hash: SecretHash,
        device: &DeviceRecord,
        now: u64,
    ) -> Result<EnrollOutcome, StoreError> {
        let runs = self.key_runs(Filter::new().tag_eq(KEY_HASH, &lit(&hex(&key_hash))?))?;
        let Some(run) = runs.into_iter().next() else {
            return Ok(EnrollOutcome::UnknownKey);
        };
        let key = key_of(&run)?;
        if let Some(refusal) = key.refusal(now) {
            return Ok(refusal);
        }
        // Each use is a write-once param `use.<i>` = device id: of two replicas enrolling with
        // the last use at once, exactly one gets it.
        let slots = match run.tag(USES) {
            Some(UNLIMITED) => key.used + super::MAX_CLAIM_ATTEMPTS,
            Some(n) => n.parse::<u64>().unwrap_or(0),
            None => 0,
        };
        let mut claimed = false;
        for i in claim_order(&run, slots, &device.device_id) {
            let slot = format!("{USE_PARAM_PREFIX}{i}");
            if self
                .client
                .claim_param(&run.info.run_id, &slot, &device.device_id)?
                == ParamOutcome::Stored
            {
                claimed = true;
                break;
            }
        }
        if !claimed {
            return Ok(EnrollOutcome::KeyUsedUp);
        }
        self.create_device(device)?;
        Ok(EnrollOutcome::Enrolled)
    }

    /// The device's experiment and its feedback queue run.
    fn create_device(&self, device: &DeviceRecord) -> Result<(), StoreError> {
        let mut tags = vec![
            Tag::new(KIND, KIND_DEVICE),
            Tag::new(super::DEVICE_ID, &device.device_id),
            Tag::new(super::TOKEN, hex(&device.token_hash)),
            Tag::new(super::ENROLLED, device.enrolled_unix_ms.to_string()),
            Tag::new(super::LAST_SEEN, device.last_seen_unix_ms.to_string()),
        ];
        if let Some(n) = &device.name {
            tags.push(Tag::new(super::NAME, n));
        }
        if let Some(h) = &device.hardware {
            tags.push(Tag::new(super::HARDWARE, h));
        }
        let exp = match self
            .client
            .create_experiment(&names::device(&self.namespace, &device.device_id), &tags)
        {
            Ok(id) => id,
            Err(e) if e.is_already_exists() => {
                return Err(StoreError::new("mlflow", "device id collision"));
            }
            Err(e) => return Err(e.into()),
        };
        let queue = self.client.create_run(
            &exp,
            KIND_QUEUE,
            device.enrolled_unix_ms,
            &[
                Tag::new(KIND, KIND_QUEUE),
                Tag::new(super::DEVICE, &device.device_id),
            ],
        )?;
        // An empty queue, marked: the device's polls need no MLflow read until an item is
        // queued ([`super::feedback_marks`]).
        if let Some(marks) = &self.feedback_marks {
            marks.mark(&device.device_id, 0)?;
        }
        // The device's first requests need neither look-up.
        self.remember_queue_run(&device.device_id, &queue.info.run_id);
        self.remember_device(
            &exp,
            DeviceRecord {
                packages: 0,
                ..device.clone()
            },
        );
        Ok(())
    }

    fn session_runs(&self, filter: Filter) -> Result<Vec<Run>, StoreError> {
        let query = RunQuery {
            experiment_ids: vec![self.auth.clone()],
            filter: filter.tag_eq(KIND, &lit_const(KIND_SESSION)).build(),
            order_by: vec![],
        };
        Ok(self.client.search_runs(&query, MAX_AUTH_RUNS)?)
    }

    fn runs_of_session(&self, hash: &SecretHash) -> Result<Vec<Run>, StoreError> {
        let runs = self.session_runs(Filter::new().tag_eq(SESSION_HASH, &lit(&hex(hash))?))?;
        if runs.len() > MAX_DUPLICATES {
            return Err(corrupt("too many runs of one session"));
        }
        Ok(runs)
    }

    pub(super) fn store_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        self.client.create_run(
            &self.auth,
            KIND_SESSION,
            s.created_unix_ms,
            &[
                Tag::new(KIND, KIND_SESSION),
                Tag::new(SESSION_HASH, hex(&s.session_hash)),
                Tag::new(SESSION_TOKEN, hex(&s.token_hash)),
                Tag::new(CREATED, s.created_unix_ms.to_string()),
                Tag::new(EXPIRES, s.expires_unix_ms.to_string()),
                Tag::new(LAST_ACTIVE, s.last_active_unix_ms.to_string()),
            ],
        )?;
        Ok(())
    }

    pub(super) fn find_session(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<SessionRecord>, StoreError> {
        match self.runs_of_session(hash)?.first() {
            Some(run) => Ok(Some(session_of(run)?)),
            None => Ok(None),
        }
    }

    pub(super) fn touch_session_at(&self, hash: &SecretHash, now: u64) -> Result<(), StoreError> {
        for run in self.runs_of_session(hash)? {
            self.client
                .set_tag(&run.info.run_id, LAST_ACTIVE, &now.to_string())?;
        }
        Ok(())
    }

    pub(super) fn remove_session(&self, hash: &SecretHash) -> Result<(), StoreError> {
        for run in self.runs_of_session(hash)? {
            match self.client.delete_run(&run.info.run_id) {
                Ok(()) => {}
                // Deleted meanwhile by another replica.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    pub(super) fn purge(&self, now: u64, idle_ms: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        for run in self.session_runs(Filter::new())? {
            let ended = match session_of(&run) {
                Ok(s) => {
                    now >= s.expires_unix_ms || now >= s.last_active_unix_ms.saturating_add(idle_ms)
                }
                // An unreadable session can never be used: remove it.
                Err(_) => true,
            };
            if ended {
                match self.client.delete_run(&run.info.run_id) {
                    Ok(()) => n += 1,
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every free slot is tried once and no taken one; enrollments of different devices with
    /// the same snapshot start at different free slots (from slot 0 they all collided).
    #[test]
    fn enrollments_try_the_free_slots_from_spread_out_places() {
        let run: Run = serde_json::from_value(serde_json::json!({
            "info": {"run_id": "k"},
            "data": {"params": [
                {"key": "use.1", "value": "dev-a"},
                {"key": "use.4", "value": "dev-b"},
            ]},
        }))
        .unwrap();
        let free = [0, 2, 3, 5, 6, 7, 8, 9];
        let mut firsts = std::collections::HashSet::new();
        for n in 0..32 {
            let order = claim_order(&run, 10, &format!("dev-{n}"));
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, free);
            // Wrapping round from where it starts.
            let start = free.iter().position(|s| *s == order[0]).unwrap();
            assert_eq!(order[..free.len() - start], free[start..]);
            firsts.insert(order[0]);
        }
        assert!(firsts.len() >= free.len() / 2, "starts: {firsts:?}");
        assert!(claim_order(&run, 0, "dev-x").is_empty());
    }

    /// A token tag of the version before records (the value is the operator's name) reads as
    /// an admin token with no expiry; a record tag with its revocation tag reads as revoked.
    #[test]
    fn old_and_new_token_tags_are_read() {
        let old = [3u8; 32];
        let new = [4u8; 32];
        let record = serde_json::to_string(&StoredToken {
            id: "tok-abc".into(),
            name: "grafana".into(),
            role: Role::ReadOnly,
            created_unix_ms: 5,
            expires_unix_ms: Some(9),
        })
        .unwrap();
        let exp = Experiment {
            experiment_id: "1".into(),
            name: "ns/auth".into(),
            lifecycle_stage: "active".into(),
            tags: vec![
                Tag::new(format!("{OPERATOR_TOKEN_PREFIX}{}", hex(&old)), "alice"),
                Tag::new(format!("{OPERATOR_TOKEN_PREFIX}{}", hex(&new)), record),
                Tag::new(format!("{OPERATOR_REVOKED_PREFIX}{}", hex(&new)), "7"),
                Tag::new("sphere.kind", "sphere-lite"),
            ],
        };
        let tokens = tokens_of(&exp);
        assert_eq!(tokens.len(), 2);
        let a = &tokens[&hex(&old)];
        assert_eq!((a.name.as_str(), a.role), ("alice", Role::Admin));
        assert_eq!(a.id, secret::public_id("tok-", &old));
        assert!(a.active(u64::MAX - 1));
        let g = &tokens[&hex(&new)];
        assert_eq!(
            (g.role, g.expires_unix_ms, g.revoked_unix_ms),
            (Role::ReadOnly, Some(9), Some(7))
        );
        assert!(!g.active(6));
    }
}
