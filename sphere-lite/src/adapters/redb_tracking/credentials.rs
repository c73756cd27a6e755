//! Credentials in the embedded store: the tables of enrollment keys, operator tokens and
//! dashboard sessions, the record helpers the `AccessStore` (`access.rs`) and `SessionStore`
//! (`sessions.rs`) impls share, and the migration of databases written before credentials
//! had expiry, roles and revocation.
//!
//! Every record is JSON keyed by the SHA-256 of its secret, so a look-up by a presented
//! secret is one read.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{TOKENS, err, from_json, to_json};
use crate::ports::{EnrollmentKey, OperatorToken, Principal, Role, SecretHash, StoreError};
use crate::secret;

/// enrollment key hash → remaining uses: the table of versions before key records. Read only
/// by the migration, which empties it.
pub(super) const LEGACY_ENROLLMENT_KEYS: TableDefinition<&[u8], u32> =
    TableDefinition::new("enrollment_keys");
/// enrollment key hash → JSON [`EnrollmentKey`].
pub(super) const ENROLLMENT_KEYS: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("enrollment_key_records");
/// operator token hash → JSON [`OperatorToken`]. Device tokens stay in `tokens`.
pub(super) const OPERATOR_TOKENS: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("operator_tokens");
/// session id hash → JSON [`SessionRecord`].
pub(super) const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions");

/// Create the credential tables and move records of older versions into them, inside the
/// open transaction: an operator token stored as `Principal::Operator(name)` in `tokens`
/// becomes an admin token of that name with no expiry (its holder keeps working, and the name
/// recorded on decisions stays the same); an enrollment key's remaining uses become a key
/// record without expiry. Idempotent: a migrated record is moved, not copied.
pub(super) fn migrate(tx: &WriteTransaction) -> Result<(), StoreError> {
    let mut operators = tx.open_table(OPERATOR_TOKENS).map_err(err)?;
    let mut keys = tx.open_table(ENROLLMENT_KEYS).map_err(err)?;
    tx.open_table(SESSIONS).map_err(err)?;

    let mut tokens = tx.open_table(TOKENS).map_err(err)?;
    let mut legacy_operators = Vec::new();
    for row in tokens.iter().map_err(err)? {
        let (k, v) = row.map_err(err)?;
        if let Principal::Operator(name) = from_json(v.value())? {
            legacy_operators.push((k.value().to_vec(), name));
        }
    }
    for (hash_bytes, name) in legacy_operators {
        let hash: SecretHash = hash_bytes
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::new("redb", "corrupt record: a token hash is not 32 bytes"))?;
        if operators.get(hash.as_slice()).map_err(err)?.is_none() {
            let record = OperatorToken {
                id: secret::public_id("tok-", &hash),
                name,
                role: Role::Admin,
                token_hash: hash,
                created_unix_ms: 0,
                expires_unix_ms: None,
                revoked_unix_ms: None,
                last_used_unix_ms: None,
            };
            operators
                .insert(hash.as_slice(), to_json(&record)?.as_slice())
                .map_err(err)?;
            tracing::info!(id = %record.id, operator = %record.name, "migrated an operator token (admin, no expiry)");
        }
        tokens.remove(hash.as_slice()).map_err(err)?;
    }

    let mut legacy_keys = tx.open_table(LEGACY_ENROLLMENT_KEYS).map_err(err)?;
    let mut old = Vec::new();
    for row in legacy_keys.iter().map_err(err)? {
        let (k, v) = row.map_err(err)?;
        old.push((k.value().to_vec(), v.value()));
    }
    for (hash_bytes, remaining) in old {
        let hash: SecretHash = hash_bytes
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::new("redb", "corrupt record: a key hash is not 32 bytes"))?;
        if keys.get(hash.as_slice()).map_err(err)?.is_none() {
            let record = EnrollmentKey {
                id: secret::public_id("key-", &hash),
                name: None,
                key_hash: hash,
                remaining: Some(remaining),
                used: 0,
                created_unix_ms: 0,
                expires_unix_ms: None,
                revoked_unix_ms: None,
            };
            keys.insert(hash.as_slice(), to_json(&record)?.as_slice())
                .map_err(err)?;
        }
        legacy_keys.remove(hash.as_slice()).map_err(err)?;
    }
    Ok(())
}

/// Every JSON value of a hash-keyed table.
pub(super) fn all<T: serde::de::DeserializeOwned>(
    db: &redb::Database,
    def: TableDefinition<&[u8], &[u8]>,
) -> Result<Vec<T>, StoreError> {
    let tx = db.begin_read().map_err(err)?;
    let table = tx.open_table(def).map_err(err)?;
    let mut out = Vec::new();
    for row in table.iter().map_err(err)? {
        out.push(from_json(row.map_err(err)?.1.value())?);
    }
    Ok(out)
}

/// One JSON value of a hash-keyed table.
pub(super) fn one<T: serde::de::DeserializeOwned>(
    db: &redb::Database,
    def: TableDefinition<&[u8], &[u8]>,
    hash: &SecretHash,
) -> Result<Option<T>, StoreError> {
    let tx = db.begin_read().map_err(err)?;
    let table = tx.open_table(def).map_err(err)?;
    table
        .get(hash.as_slice())
        .map_err(err)?
        .map(|v| from_json(v.value()))
        .transpose()
}

/// Read-modify-write of the record of `def` whose value satisfies `pick`; false if none does.
pub(super) fn update_where<T: serde::de::DeserializeOwned + serde::Serialize>(
    db: &redb::Database,
    def: TableDefinition<&[u8], &[u8]>,
    pick: impl Fn(&T) -> bool,
    change: impl FnOnce(&mut T),
) -> Result<Option<T>, StoreError> {
    let tx = db.begin_write().map_err(err)?;
    let found = {
        let mut table = tx.open_table(def).map_err(err)?;
        let mut hit = None;
        for row in table.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            let value: T = from_json(v.value())?;
            if pick(&value) {
                hit = Some((k.value().to_vec(), value));
                break;
            }
        }
        match hit {
            Some((k, mut value)) => {
                change(&mut value);
                table
                    .insert(k.as_slice(), to_json(&value)?.as_slice())
                    .map_err(err)?;
                Some(value)
            }
            None => None,
        }
    };
    tx.commit().map_err(err)?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::super::RedbTracking;
    use super::*;
    use crate::ports::prelude::*;

    /// A database written by the version before credential records: its operator token and
    /// enrollment key keep working after the upgrade (fails before this change: the tables
    /// and the migration did not exist, so there was nothing to list or revoke).
    #[test]
    fn an_old_database_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let db = redb::Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(TOKENS)
                .unwrap()
                .insert(
                    [7u8; 32].as_slice(),
                    serde_json::to_vec(&Principal::Operator("alice".into()))
                        .unwrap()
                        .as_slice(),
                )
                .unwrap();
            tx.open_table(LEGACY_ENROLLMENT_KEYS)
                .unwrap()
                .insert([8u8; 32].as_slice(), 2)
                .unwrap();
            tx.commit().unwrap();
        }
        for _ in 0..2 {
            let t = RedbTracking::open(&path).unwrap();
            let token = t.operator_token(&[7; 32]).unwrap().unwrap();
            assert_eq!(token.name, "alice");
            assert_eq!(token.role, Role::Admin);
            assert!(token.active(u64::MAX - 1));
            assert_eq!(t.operator_tokens().unwrap().len(), 1);
            assert_eq!(
                t.token_owner(&[7; 32]).unwrap(),
                Some(Principal::Operator("alice".into()))
            );
            let keys = t.enrollment_keys().unwrap();
            assert_eq!(keys.len(), 1);
            assert_eq!(keys[0].remaining, Some(2));
        }
    }
}
