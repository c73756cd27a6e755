//! The credential lifecycle: operator tokens with a role and an expiry, enrollment keys with an
//! expiry and a use count, both listable and revocable, and server-side dashboard sessions.
//!
//! Why: a token that can never expire or be revoked, a dashboard cookie that *is* the token
//! (so logging out ended nothing and the cookie kept working on the API) and one all-powerful
//! operator role made every leak permanent. Here the dashboard gets its own random session id
//! (only its hash is stored), bound to the token it came from and ended by logout, by its
//! expiry, by idling, or by the token's revocation; a `read-only` token reads everything an
//! operator sees and changes nothing (enforced in `http::access`).

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

use super::{DomainError, MAX_LABEL_BYTES, Sphere, now_unix_ms};
use crate::ports::{EnrollmentKey, OperatorToken, Role, SecretHash, SessionRecord};
use crate::secret::{self, SecretKind};

/// How long a dashboard login lasts at most (ms): 12 hours.
pub const SESSION_LIFETIME_MS: u64 = 12 * 3600 * 1000;
/// A dashboard session with no request for this long ends (ms): 1 hour.
pub const SESSION_IDLE_MS: u64 = 3600 * 1000;
/// A token's last use and a session's activity are written at most this often (ms), so reads
/// do not each become a durable write.
pub const USE_RECORD_INTERVAL_MS: u64 = 60 * 1000;
/// Longest expiry accepted for a token or key (ms): 10 years.
pub const MAX_EXPIRY_MS: u64 = 10 * 365 * 24 * 3600 * 1000;
/// Lifetime of the single-use key behind `device add` (used at once, never shown).
const INTERNAL_KEY_LIFETIME_MS: u64 = 60 * 1000;
/// Most entries the use throttle remembers before it forgets the stale ones.
const THROTTLE_ENTRIES: usize = 10_000;

/// An authenticated operator (by bearer token or dashboard session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The operator's name (recorded on decisions and uploads).
    pub name: String,
    /// What the token may do.
    pub role: Role,
    /// The token's public id.
    pub token_id: String,
}

/// An operator token as `token list` shows it (never the secret, nor its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenView {
    /// Public id (`tok-…`).
    pub id: String,
    /// Operator name.
    pub name: String,
    /// `admin` or `read-only`.
    pub role: Role,
    /// Created (Unix ms; 0 = before records had times).
    pub created_unix_ms: u64,
    /// Expiry (Unix ms), if any.
    pub expires_unix_ms: Option<u64>,
    /// Revoked (Unix ms), if it was.
    pub revoked_unix_ms: Option<u64>,
    /// Last use (Unix ms, to the minute), if any.
    pub last_used_unix_ms: Option<u64>,
    /// `active`, `expired` or `revoked`.
    pub state: &'static str,
}

/// An enrollment key as `enrollment-key list` shows it (never the secret, nor its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyView {
    /// Public id (`key-…`).
    pub id: String,
    /// What it is for, if given.
    pub name: Option<String>,
    /// Enrollments left (`None`: no count).
    pub remaining: Option<u32>,
    /// Enrollments made with it.
    pub used: u64,
    /// Created (Unix ms; 0 = before records had times).
    pub created_unix_ms: u64,
    /// Expiry (Unix ms), if any.
    pub expires_unix_ms: Option<u64>,
    /// Revoked (Unix ms), if it was.
    pub revoked_unix_ms: Option<u64>,
    /// `active`, `used-up`, `expired` or `revoked`.
    pub state: &'static str,
}

/// Remembers when a token's use or a session's activity was last written, so each is written
/// at most once per [`USE_RECORD_INTERVAL_MS`] by this process.
#[derive(Default)]
pub(crate) struct UseThrottle(Mutex<HashMap<SecretHash, u64>>);

impl UseThrottle {
    /// Whether a use of `hash` at `now` should be written (and note that it is).
    fn due(&self, hash: &SecretHash, now: u64) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map
            .get(hash)
            .is_some_and(|&t| now < t.saturating_add(USE_RECORD_INTERVAL_MS))
        {
            return false;
        }
        if map.len() >= THROTTLE_ENTRIES {
            map.retain(|_, t| now < t.saturating_add(USE_RECORD_INTERVAL_MS));
        }
        map.insert(*hash, now);
        true
    }
}

/// Parse a lifetime such as `30d`, `12h`, `90m`, `3600s` or `2w` into milliseconds (at most
/// ten years, at least one second).
pub fn parse_lifetime(text: &str) -> Result<u64, DomainError> {
    let bad = || DomainError::BadRequest {
        error: format!("invalid lifetime {text:?}"),
        fix: Some(
            "write a number and a unit: 3600s, 90m, 12h, 30d or 2w (at most 10 years)".into(),
        ),
    };
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() || number.len() > 12 {
        return Err(bad());
    }
    let n: u64 = number.parse().map_err(|_| bad())?;
    let unit_ms: u64 = match unit {
        "s" => 1000,
        "m" => 60 * 1000,
        "h" => 3600 * 1000,
        "d" => 24 * 3600 * 1000,
        "w" => 7 * 24 * 3600 * 1000,
        _ => return Err(bad()),
    };
    let ms = n.checked_mul(unit_ms).ok_or_else(bad)?;
    if ms == 0 || ms > MAX_EXPIRY_MS {
        return Err(bad());
    }
    Ok(ms)
}

fn check_name(name: &str, what: &str) -> Result<String, DomainError> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_LABEL_BYTES || name.chars().any(char::is_control) {
        return Err(DomainError::BadRequest {
            error: format!("{what} must be 1 to 200 printable characters"),
            fix: Some(format!("pass a short {what}, e.g. --name grafana")),
        });
    }
    Ok(name.to_owned())
}

fn token_state(t: &OperatorToken, now: u64) -> &'static str {
    if t.revoked_unix_ms.is_some() {
        "revoked"
    } else if !t.active(now) {
        "expired"
    } else {
        "active"
    }
}

fn unauthorized(error: &str, fix: &str) -> DomainError {
    DomainError::Unauthorized {
        error: error.into(),
        fix: Some(fix.into()),
    }
}

/// Why an inactive operator token is refused (401 with what to do).
pub(super) fn inactive_token(token: &OperatorToken, now: u64) -> DomainError {
    if token.revoked_unix_ms.is_some() {
        unauthorized(
            "this operator token was revoked",
            "ask an administrator for a new token (`sphere-lite token create`)",
        )
    } else if !token.active(now) {
        unauthorized(
            "this operator token has expired",
            "ask an administrator for a new token (`sphere-lite token create`)",
        )
    } else {
        unauthorized(
            "missing or unknown bearer token",
            "send your operator token",
        )
    }
}

impl Sphere {
    /// An admin operator token for `name` without expiry (shown once, only its hash is kept).
    pub fn create_operator_token(&self, name: &str) -> Result<String, DomainError> {
        Ok(self.issue_operator_token(name, Role::Admin, None)?.0)
    }

    /// Create an operator token for operator `name` with `role`, valid for `lifetime_ms` (or
    /// until revoked); returns the token (shown once, only its hash is kept) and its record.
    pub fn issue_operator_token(
        &self,
        name: &str,
        role: Role,
        lifetime_ms: Option<u64>,
    ) -> Result<(String, TokenView), DomainError> {
        let name = check_name(name, "operator name")?;
        let now = now_unix_ms();
        let token = secret::generate(SecretKind::OperatorToken)?;
        let hash = secret::hash(&token);
        let record = OperatorToken {
            id: secret::public_id("tok-", &hash),
            name,
            role,
            token_hash: hash,
            created_unix_ms: now,
            expires_unix_ms: lifetime_ms.map(|ms| now.saturating_add(ms)),
            revoked_unix_ms: None,
            last_used_unix_ms: None,
        };
        self.tracking.add_operator_token(&record)?;
        tracing::info!(id = %record.id, operator = %record.name, role = record.role.as_str(), "operator token created");
        Ok((token, view_token(&record, now)))
    }

    /// Every operator token, oldest first (no secrets).
    pub fn list_operator_tokens(&self) -> Result<Vec<TokenView>, DomainError> {
        let now = now_unix_ms();
        Ok(self
            .tracking
            .operator_tokens()?
            .iter()
            .map(|t| view_token(t, now))
            .collect())
    }

    /// Revoke the operator token with id `which`, or the one active token named `which`; it
    /// stops working at once (embedded; with MLflow within the token cache time on other
    /// replicas) and its dashboard sessions end. Returns what was revoked. Several active
    /// tokens with that name: refused, listing their ids.
    pub fn revoke_operator_token(&self, which: &str) -> Result<TokenView, DomainError> {
        let now = now_unix_ms();
        let tokens = self.tracking.operator_tokens()?;
        let token = match tokens.iter().find(|t| t.id == which) {
            Some(t) => t.clone(),
            None => {
                let named: Vec<&OperatorToken> = tokens
                    .iter()
                    .filter(|t| t.name == which && t.revoked_unix_ms.is_none())
                    .collect();
                match named.as_slice() {
                    [one] => (*one).clone(),
                    [] => {
                        return Err(DomainError::NotFound {
                            error: format!("no operator token has the id or name {which:?}"),
                            fix: Some("see `sphere-lite token list`".into()),
                        });
                    }
                    many => {
                        return Err(DomainError::Exists {
                            error: format!(
                                "{} tokens are named {which:?}: {}",
                                many.len(),
                                many.iter()
                                    .map(|t| t.id.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            fix: Some("revoke by id".into()),
                        });
                    }
                }
            }
        };
        self.tracking.revoke_operator_token(&token.id, now)?;
        tracing::info!(id = %token.id, operator = %token.name, "operator token revoked");
        let revoked = self
            .tracking
            .operator_token(&token.token_hash)?
            .unwrap_or(token);
        Ok(view_token(&revoked, now))
    }

    /// An enrollment key for `uses` enrollments without expiry (shown once).
    pub fn create_enrollment_key(&self, uses: u32) -> Result<String, DomainError> {
        Ok(self.issue_enrollment_key(Some(uses), None, None)?.0)
    }

    /// Create an enrollment key for `uses` enrollments (`None`: any number until it expires or
    /// is revoked; then a lifetime is required), valid for `lifetime_ms`; returns the key
    /// (shown once) and its record.
    pub fn issue_enrollment_key(
        &self,
        uses: Option<u32>,
        lifetime_ms: Option<u64>,
        name: Option<&str>,
    ) -> Result<(String, KeyView), DomainError> {
        if uses == Some(0) {
            return Err(DomainError::BadRequest {
                error: "an enrollment key needs at least one use".into(),
                fix: Some("pass --uses 1 or more".into()),
            });
        }
        if uses.is_none() && lifetime_ms.is_none() {
            return Err(DomainError::BadRequest {
                error: "a key without a use count must expire".into(),
                fix: Some("add --expires, e.g. --expires 7d".into()),
            });
        }
        let name = name.map(|n| check_name(n, "key name")).transpose()?;
        let key = secret::generate(SecretKind::EnrollmentKey)?;
        let now = now_unix_ms();
        let record = new_key(secret::hash(&key), uses, lifetime_ms, name, now);
        self.tracking.add_enrollment_key(&record)?;
        tracing::info!(id = %record.id, "enrollment key created");
        Ok((key, view_key(&record, now)))
    }

    /// A single-use key that enrolls a device the operator adds (never shown to anyone).
    pub(super) fn internal_key(&self, device_id: &str) -> Result<SecretHash, DomainError> {
        let key = secret::generate(SecretKind::EnrollmentKey)?;
        let hash = secret::hash(&key);
        let now = now_unix_ms();
        self.tracking.add_enrollment_key(&new_key(
            hash,
            Some(1),
            Some(INTERNAL_KEY_LIFETIME_MS),
            Some(format!("device add {device_id}")),
            now,
        ))?;
        Ok(hash)
    }

    /// Every enrollment key, oldest first (no secrets).
    pub fn list_enrollment_keys(&self) -> Result<Vec<KeyView>, DomainError> {
        let now = now_unix_ms();
        Ok(self
            .tracking
            .enrollment_keys()?
            .iter()
            .map(|k| view_key(k, now))
            .collect())
    }

    /// Revoke the enrollment key with id `which`, or the one unrevoked key named `which`.
    pub fn revoke_enrollment_key(&self, which: &str) -> Result<KeyView, DomainError> {
        let now = now_unix_ms();
        let keys = self.tracking.enrollment_keys()?;
        let key = match keys.iter().find(|k| k.id == which) {
            Some(k) => k.clone(),
            None => {
                let named: Vec<&EnrollmentKey> = keys
                    .iter()
                    .filter(|k| k.name.as_deref() == Some(which) && k.revoked_unix_ms.is_none())
                    .collect();
                match named.as_slice() {
                    [one] => (*one).clone(),
                    [] => {
                        return Err(DomainError::NotFound {
                            error: format!("no enrollment key has the id or name {which:?}"),
                            fix: Some("see `sphere-lite enrollment-key list`".into()),
                        });
                    }
                    many => {
                        return Err(DomainError::Exists {
                            error: format!(
                                "{} keys are named {which:?}: {}",
                                many.len(),
                                many.iter()
                                    .map(|k| k.id.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            fix: Some("revoke by id".into()),
                        });
                    }
                }
            }
        };
        self.tracking.revoke_enrollment_key(&key.id, now)?;
        tracing::info!(id = %key.id, "enrollment key revoked");
        let mut revoked = key;
        revoked.revoked_unix_ms.get_or_insert(now);
        Ok(view_key(&revoked, now))
    }

    /// The active operator token whose hash is `hash`, its use recorded (throttled);
    /// `Ok(None)` when no operator token has this hash; 401 for an expired or revoked one.
    pub(super) fn active_operator(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<Operator>, DomainError> {
        let Some(token) = self.tracking.operator_token(hash)? else {
            return Ok(None);
        };
        let now = now_unix_ms();
        if !token.active(now) {
            return Err(inactive_token(&token, now));
        }
        if self.use_throttle.due(hash, now) {
            // Bookkeeping: a failed write must not refuse the request.
            if let Err(e) = self.tracking.touch_operator_token(hash, now) {
                tracing::warn!(error = %e, id = %token.id, "could not record a token's use");
            }
        }
        Ok(Some(Operator {
            name: token.name,
            role: token.role,
            token_id: token.id,
        }))
    }

    /// The role of the active operator token in `authorization`, `None` for anything else
    /// (no header, a device token, an unknown, expired or revoked token: the route's own
    /// check refuses those).
    pub fn bearer_role(&self, authorization: Option<&str>) -> Result<Option<Role>, DomainError> {
        let Some(token) = super::auth::bearer(authorization) else {
            return Ok(None);
        };
        match self.active_operator(&secret::hash(token)) {
            Ok(op) => Ok(op.map(|o| o.role)),
            Err(DomainError::Unauthorized { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Log in to the dashboard with an operator token: a new session id for the cookie (only
    /// its hash is stored) and the operator. 401 for an unknown, expired or revoked token; 403
    /// for a device token.
    pub fn login(&self, token: &str) -> Result<(String, Operator), DomainError> {
        let hash = secret::hash(token);
        let operator = match self.active_operator(&hash)? {
            Some(op) => op,
            None => {
                return Err(match self.tracking.token_owner(&hash)? {
                    Some(_) => DomainError::Forbidden {
                        error:
                            "device tokens cannot log in to the dashboard; use an operator token"
                                .into(),
                        fix: None,
                    },
                    None => unauthorized("unknown operator token", "paste your operator token"),
                });
            }
        };
        let now = now_unix_ms();
        // Logins are rare: the moment to drop sessions that ended without a logout.
        match self.tracking.purge_sessions(now, SESSION_IDLE_MS) {
            Ok(n) if n > 0 => tracing::info!(sessions = n, "ended sessions removed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not remove ended sessions"),
        }
        let id = secret::generate(SecretKind::Session)?;
        self.tracking.create_session(&SessionRecord {
            session_hash: secret::hash(&id),
            token_hash: hash,
            created_unix_ms: now,
            expires_unix_ms: now + SESSION_LIFETIME_MS,
            last_active_unix_ms: now,
        })?;
        tracing::info!(operator = %operator.name, token = %operator.token_id, "dashboard login");
        Ok((id, operator))
    }

    /// The operator of dashboard session `id`, if it is a live session of an active token
    /// (its activity recorded, throttled); an ended session is deleted.
    pub fn session_operator(&self, id: &str) -> Result<Option<Operator>, DomainError> {
        let hash = secret::hash(id);
        let Some(session) = self.tracking.session(&hash)? else {
            return Ok(None);
        };
        let now = now_unix_ms();
        let ended = now >= session.expires_unix_ms
            || now >= session.last_active_unix_ms.saturating_add(SESSION_IDLE_MS);
        let operator = if ended {
            None
        } else {
            match self.active_operator(&session.token_hash) {
                Ok(op) => op,
                Err(DomainError::Unauthorized { .. }) => None,
                Err(e) => return Err(e),
            }
        };
        let Some(operator) = operator else {
            self.tracking.delete_session(&hash)?;
            return Ok(None);
        };
        if self.use_throttle.due(&hash, now) {
            if let Err(e) = self.tracking.touch_session(&hash, now) {
                tracing::warn!(error = %e, "could not record a session's activity");
            }
        }
        Ok(Some(operator))
    }

    /// End dashboard session `id` (deleting a missing one is fine).
    pub fn logout(&self, id: &str) -> Result<(), DomainError> {
        self.tracking.delete_session(&secret::hash(id))?;
        Ok(())
    }
}

fn new_key(
    hash: SecretHash,
    uses: Option<u32>,
    lifetime_ms: Option<u64>,
    name: Option<String>,
    now: u64,
) -> EnrollmentKey {
    EnrollmentKey {
        id: secret::public_id("key-", &hash),
        name,
        key_hash: hash,
        remaining: uses,
        used: 0,
        created_unix_ms: now,
        expires_unix_ms: lifetime_ms.map(|ms| now.saturating_add(ms)),
        revoked_unix_ms: None,
    }
}

fn view_token(t: &OperatorToken, now: u64) -> TokenView {
    TokenView {
        id: t.id.clone(),
        name: t.name.clone(),
        role: t.role,
        created_unix_ms: t.created_unix_ms,
        expires_unix_ms: t.expires_unix_ms,
        revoked_unix_ms: t.revoked_unix_ms,
        last_used_unix_ms: t.last_used_unix_ms,
        state: token_state(t, now),
    }
}

fn view_key(k: &EnrollmentKey, now: u64) -> KeyView {
    KeyView {
        id: k.id.clone(),
        name: k.name.clone(),
        remaining: k.remaining,
        used: k.used,
        created_unix_ms: k.created_unix_ms,
        expires_unix_ms: k.expires_unix_ms,
        revoked_unix_ms: k.revoked_unix_ms,
        state: match k.refusal(now) {
            None => "active",
            Some(crate::ports::EnrollOutcome::KeyRevoked) => "revoked",
            Some(crate::ports::EnrollOutcome::KeyExpired) => "expired",
            Some(_) => "used-up",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_parse() {
        assert_eq!(parse_lifetime("30d").unwrap(), 30 * 24 * 3600 * 1000);
        assert_eq!(parse_lifetime("90m").unwrap(), 90 * 60 * 1000);
        assert_eq!(parse_lifetime("3600s").unwrap(), 3600 * 1000);
        assert_eq!(parse_lifetime("2w").unwrap(), 14 * 24 * 3600 * 1000);
        for bad in [
            "",
            "d",
            "30",
            "0d",
            "-1d",
            "1y",
            "99999999999d",
            "1.5h",
            "3 d",
        ] {
            assert!(parse_lifetime(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn uses_are_written_at_most_once_a_minute() {
        let t = UseThrottle::default();
        assert!(t.due(&[1; 32], 1000));
        assert!(!t.due(&[1; 32], 1000 + USE_RECORD_INTERVAL_MS - 1));
        assert!(t.due(&[2; 32], 1000));
        assert!(t.due(&[1; 32], 1000 + USE_RECORD_INTERVAL_MS));
    }
}
