//! The MLflow adapter: the `AccessStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! client calls and shared helpers live in the parent module.

use super::*;
use crate::ports::AccessStore;

impl AccessStore for MlflowTracking {
    fn add_enrollment_key(&self, key: &EnrollmentKey) -> Result<(), StoreError> {
        self.store_key(key)
    }

    fn enrollment_keys(&self) -> Result<Vec<EnrollmentKey>, StoreError> {
        self.all_keys()
    }

    fn revoke_enrollment_key(&self, id: &str, now_unix_ms: u64) -> Result<bool, StoreError> {
        self.revoke_key(id, now_unix_ms)
    }

    fn enroll(
        &self,
        key_hash: SecretHash,
        device: &DeviceRecord,
        now_unix_ms: u64,
    ) -> Result<EnrollOutcome, StoreError> {
        self.enroll_with_key(key_hash, device, now_unix_ms)
    }

    fn add_operator_token(&self, token: &OperatorToken) -> Result<(), StoreError> {
        self.store_operator(token)
    }

    fn operator_token(&self, token_hash: &SecretHash) -> Result<Option<OperatorToken>, StoreError> {
        self.find_operator(token_hash)
    }

    fn operator_tokens(&self) -> Result<Vec<OperatorToken>, StoreError> {
        self.all_operators()
    }

    fn revoke_operator_token(&self, id: &str, now_unix_ms: u64) -> Result<bool, StoreError> {
        self.revoke_operator(id, now_unix_ms)
    }

    fn touch_operator_token(
        &self,
        token_hash: &SecretHash,
        now_unix_ms: u64,
    ) -> Result<(), StoreError> {
        self.touch_operator(token_hash, now_unix_ms)
    }

    fn token_owner(&self, token_hash: &SecretHash) -> Result<Option<Principal>, StoreError> {
        if let Some(token) = self.find_operator(token_hash)? {
            return Ok(Some(Principal::Operator(token.name)));
        }
        let h = hex(token_hash);
        let prefix = self.device_prefix()?;
        let filter = Filter::new()
            .name_like_prefix(&prefix)
            .tag_eq(TOKEN, &lit(&h)?)
            .build();
        let found = self.client.search_experiments(&filter, MAX_DUPLICATES)?;
        Ok(found
            .iter()
            .filter(|e| e.name.starts_with(prefix.as_str()) && e.tag(TOKEN) == Some(h.as_str()))
            .find_map(|e| e.tag(DEVICE_ID))
            .map(|d| Principal::Device(d.to_owned())))
    }

    fn replace_device_token(
        &self,
        device_id: &str,
        new_hash: Option<SecretHash>,
    ) -> Result<bool, StoreError> {
        let Some(exp) = self.device_experiment(device_id)? else {
            return Ok(false);
        };
        // Revoked: a hash no token has (finding a preimage of all zeros is infeasible).
        let hash = new_hash.unwrap_or([0; 32]);
        self.set_experiment_tag(&exp.experiment_id, TOKEN, &hex(&hash))?;
        // After the write: a replica that drops its record on this reads the new token.
        if let Some(changes) = &self.device_changes {
            changes.announce(device_id)?;
        }
        Ok(true)
    }
}
