//! The `AccessStore` part of the `Tracking` port.
//!
//! It holds who may talk to sphere-lite: enrollment keys, operator tokens and device tokens.
//!
//! Why its own trait: each aggregate of the tracking store is one trait, so an adapter
//! implements it in one file and a new feature touches only the aggregate it is about.

use super::{
    DeviceRecord, EnrollOutcome, EnrollmentKey, OperatorToken, Principal, SecretHash, StoreError,
};

/// Who may talk to sphere-lite: enrollment keys, operator tokens and the devices' tokens
/// (hashes only).
///
/// Embedded: tables `enrollment_key_records`, `operator_tokens` and `tokens` (a database of
/// an older version is migrated when opened). MLflow: `adapters::mlflow::tracking::tokens`.
pub trait AccessStore: Send + Sync {
    /// Store a new enrollment key.
    /// MLflow: a run in `<ns>/auth` tagged `sphere.key_sha256`, `sphere.uses`, `sphere.key_id`,
    /// `sphere.expires_unix_ms`, `sphere.key_name`.
    fn add_enrollment_key(&self, key: &EnrollmentKey) -> Result<(), StoreError>;

    /// Every enrollment key (spent, expired and revoked ones too), oldest first.
    /// MLflow: `runs/search` of the key runs; uses counted from their `use.<i>` params.
    fn enrollment_keys(&self) -> Result<Vec<EnrollmentKey>, StoreError>;

    /// Revoke the key with public id `id` at `now_unix_ms`; false if there is no such key.
    /// A revoked key stays listed and never enrolls again.
    /// MLflow: run tag `sphere.revoked_unix_ms` on the key's run.
    fn revoke_enrollment_key(&self, id: &str, now_unix_ms: u64) -> Result<bool, StoreError>;

    /// Atomically check the key at `now_unix_ms` (known, not revoked, not expired, a use left),
    /// consume one use and store `device` and its token.
    /// MLflow: claim a write-once param `use.<i>` on the key's run (exact across replicas),
    /// then `experiments/create` for the device and `runs/create` for its feedback queue.
    fn enroll(
        &self,
        key_hash: SecretHash,
        device: &DeviceRecord,
        now_unix_ms: u64,
    ) -> Result<EnrollOutcome, StoreError>;

    /// Store a new operator token.
    /// MLflow: tag `sphere.operator_token.<hash>` (the record as JSON) on `<ns>/auth`.
    fn add_operator_token(&self, token: &OperatorToken) -> Result<(), StoreError>;

    /// The operator token with this hash (revoked and expired ones too), if any.
    /// MLflow: `<ns>/auth`'s tags (cached briefly; a revocation made by this process is seen
    /// at once, one made elsewhere within the cache time).
    fn operator_token(&self, token_hash: &SecretHash) -> Result<Option<OperatorToken>, StoreError>;

    /// Every operator token (revoked and expired ones too), oldest first.
    fn operator_tokens(&self) -> Result<Vec<OperatorToken>, StoreError>;

    /// Revoke the operator token with public id `id` at `now_unix_ms` and end its dashboard
    /// sessions; false if there is no such token.
    /// MLflow: tag `sphere.operator_revoked.<hash>` on `<ns>/auth` (never overwritten by
    /// anything else, so no other write can undo it).
    fn revoke_operator_token(&self, id: &str, now_unix_ms: u64) -> Result<bool, StoreError>;

    /// Record a use of the token with this hash at `now_unix_ms` (the caller throttles).
    /// MLflow: tag `sphere.operator_used.<hash>` on `<ns>/auth`.
    fn touch_operator_token(
        &self,
        token_hash: &SecretHash,
        now_unix_ms: u64,
    ) -> Result<(), StoreError>;

    /// Who owns the token with this hash, if anyone (an operator token whatever its state:
    /// the caller checks it with [`AccessStore::operator_token`]).
    /// MLflow: `<ns>/auth`'s tags (cached briefly), else `experiments/search` on the device
    /// experiments' `sphere.token_sha256` tag.
    fn token_owner(&self, token_hash: &SecretHash) -> Result<Option<Principal>, StoreError>;

    /// Replace the token of `device_id` with `new_hash`, or revoke it (`None`): the old token
    /// stops working in the same step. False for an unknown device.
    /// MLflow: device experiment tag `token_hash` (and the token index tag); another replica
    /// that has the device's record cached accepts the old token for at most
    /// `DEVICE_CACHE_TTL` (10 s).
    fn replace_device_token(
        &self,
        device_id: &str,
        new_hash: Option<SecretHash>,
    ) -> Result<bool, StoreError>;
}
