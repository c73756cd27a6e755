//! The embedded (redb) adapter: the `AccessStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! tables and shared helpers live in the parent module.

use super::*;
use crate::ports::AccessStore;

impl AccessStore for RedbTracking {
    fn add_enrollment_key(&self, key: &EnrollmentKey) -> Result<(), StoreError> {
        self.add_key(key)
    }

    fn enrollment_keys(&self) -> Result<Vec<EnrollmentKey>, StoreError> {
        self.keys()
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
        self.add_operator(token)
    }

    fn operator_token(&self, token_hash: &SecretHash) -> Result<Option<OperatorToken>, StoreError> {
        self.operator(token_hash)
    }

    fn operator_tokens(&self) -> Result<Vec<OperatorToken>, StoreError> {
        self.operators()
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
        if let Some(token) = self.operator(token_hash)? {
            return Ok(Some(Principal::Operator(token.name)));
        }
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(TOKENS).map_err(err)?;
        match table.get(token_hash.as_slice()).map_err(err)? {
            Some(v) => Ok(Some(from_json(v.value())?)),
            None => Ok(None),
        }
    }

    fn replace_device_token(
        &self,
        device_id: &str,
        new_hash: Option<SecretHash>,
    ) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut devices = tx.open_table(DEVICES).map_err(err)?;
            let Some(mut device) = Self::read_device(&devices, device_id)? else {
                return Ok(false);
            };
            let mut tokens = tx.open_table(TOKENS).map_err(err)?;
            tokens.remove(device.token_hash.as_slice()).map_err(err)?;
            // Revoked: a hash no token has (finding a preimage of all zeros is infeasible).
            device.token_hash = new_hash.unwrap_or([0; 32]);
            if let Some(hash) = new_hash {
                tokens
                    .insert(
                        hash.as_slice(),
                        to_json(&Principal::Device(device_id.to_owned()))?.as_slice(),
                    )
                    .map_err(err)?;
            }
            devices
                .insert(device_id, to_json(&device)?.as_slice())
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(true)
    }
}
