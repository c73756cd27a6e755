//! The embedded (redb) adapter: the `AccessStore` part of the `Tracking` port.
//!
//! Why a file of its own: one aggregate of the store per file, as in `ports/`; the
//! tables and shared helpers live in the parent module.

use redb::ReadableTable;

use super::credentials::{ENROLLMENT_KEYS, OPERATOR_TOKENS, SESSIONS, all, one, update_where};
use super::*;
use crate::ports::AccessStore;

impl AccessStore for RedbTracking {
    fn add_enrollment_key(&self, key: &EnrollmentKey) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        tx.open_table(ENROLLMENT_KEYS)
            .map_err(err)?
            .insert(key.key_hash.as_slice(), to_json(key)?.as_slice())
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn enrollment_keys(&self) -> Result<Vec<EnrollmentKey>, StoreError> {
        let mut out: Vec<EnrollmentKey> = all(&self.db, ENROLLMENT_KEYS)?;
        out.sort_by(|a, b| (a.created_unix_ms, &a.id).cmp(&(b.created_unix_ms, &b.id)));
        Ok(out)
    }

    fn revoke_enrollment_key(&self, id: &str, now_unix_ms: u64) -> Result<bool, StoreError> {
        Ok(update_where(
            &self.db,
            ENROLLMENT_KEYS,
            |k: &EnrollmentKey| k.id == id,
            |k| {
                k.revoked_unix_ms.get_or_insert(now_unix_ms);
            },
        )?
        .is_some())
    }

    fn enroll(
        &self,
        key_hash: SecretHash,
        device: &DeviceRecord,
        now_unix_ms: u64,
    ) -> Result<EnrollOutcome, StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut keys = tx.open_table(ENROLLMENT_KEYS).map_err(err)?;
            let key: Option<EnrollmentKey> = keys
                .get(key_hash.as_slice())
                .map_err(err)?
                .map(|v| from_json(v.value()))
                .transpose()?;
            let Some(mut key) = key else {
                return Ok(EnrollOutcome::UnknownKey);
            };
            if let Some(refusal) = key.refusal(now_unix_ms) {
                return Ok(refusal);
            }
            key.remaining = key.remaining.map(|n| n - 1);
            key.used += 1;
            keys.insert(key_hash.as_slice(), to_json(&key)?.as_slice())
                .map_err(err)?;
            let mut devices = tx.open_table(DEVICES).map_err(err)?;
            if devices
                .get(device.device_id.as_str())
                .map_err(err)?
                .is_some()
            {
                return Err(StoreError::new("redb", "device id collision"));
            }
            devices
                .insert(device.device_id.as_str(), to_json(device)?.as_slice())
                .map_err(err)?;
            tx.open_table(TOKENS)
                .map_err(err)?
                .insert(
                    device.token_hash.as_slice(),
                    to_json(&Principal::Device(device.device_id.clone()))?.as_slice(),
                )
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(EnrollOutcome::Enrolled)
    }

    fn add_operator_token(&self, token: &OperatorToken) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        tx.open_table(OPERATOR_TOKENS)
            .map_err(err)?
            .insert(token.token_hash.as_slice(), to_json(token)?.as_slice())
            .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn operator_token(&self, token_hash: &SecretHash) -> Result<Option<OperatorToken>, StoreError> {
        one(&self.db, OPERATOR_TOKENS, token_hash)
    }

    fn operator_tokens(&self) -> Result<Vec<OperatorToken>, StoreError> {
        let mut out: Vec<OperatorToken> = all(&self.db, OPERATOR_TOKENS)?;
        out.sort_by(|a, b| (a.created_unix_ms, &a.id).cmp(&(b.created_unix_ms, &b.id)));
        Ok(out)
    }

    fn revoke_operator_token(&self, id: &str, now_unix_ms: u64) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        let found = {
            let mut table = tx.open_table(OPERATOR_TOKENS).map_err(err)?;
            let mut hit = None;
            for row in table.iter().map_err(err)? {
                let (_, v) = row.map_err(err)?;
                let token: OperatorToken = from_json(v.value())?;
                if token.id == id {
                    hit = Some(token);
                    break;
                }
            }
            match hit {
                Some(mut token) => {
                    token.revoked_unix_ms.get_or_insert(now_unix_ms);
                    table
                        .insert(token.token_hash.as_slice(), to_json(&token)?.as_slice())
                        .map_err(err)?;
                    // Its sessions end in the same transaction.
                    let mut sessions = tx.open_table(SESSIONS).map_err(err)?;
                    let mut ended = Vec::new();
                    for row in sessions.iter().map_err(err)? {
                        let (k, v) = row.map_err(err)?;
                        let s: SessionRecord = from_json(v.value())?;
                        if s.token_hash == token.token_hash {
                            ended.push(k.value().to_vec());
                        }
                    }
                    for k in ended {
                        sessions.remove(k.as_slice()).map_err(err)?;
                    }
                    true
                }
                None => false,
            }
        };
        tx.commit().map_err(err)?;
        Ok(found)
    }

    fn touch_operator_token(
        &self,
        token_hash: &SecretHash,
        now_unix_ms: u64,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut table = tx.open_table(OPERATOR_TOKENS).map_err(err)?;
            let token: Option<OperatorToken> = table
                .get(token_hash.as_slice())
                .map_err(err)?
                .map(|v| from_json(v.value()))
                .transpose()?;
            let Some(mut token) = token else {
                return Ok(());
            };
            if token.last_used_unix_ms.is_some_and(|t| t >= now_unix_ms) {
                return Ok(());
            }
            token.last_used_unix_ms = Some(now_unix_ms);
            table
                .insert(token_hash.as_slice(), to_json(&token)?.as_slice())
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    fn token_owner(&self, token_hash: &SecretHash) -> Result<Option<Principal>, StoreError> {
        if let Some(token) = self.operator_token(token_hash)? {
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
