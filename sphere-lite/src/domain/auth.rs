//! Bearer-token checks: who is calling, and may they act as this device / as an operator.
//!
//! Why: the original server trusted any `device_id` a request carried. Here a device token
//! only ever authorises its own device (compared in constant time against the device record),
//! and operator routes need an operator token.

use super::{DomainError, Operator, Sphere};
use crate::ports::Principal;
use crate::secret;

fn missing() -> DomainError {
    DomainError::Unauthorized {
        error: "missing or unknown bearer token".into(),
        fix: Some("send `Authorization: Bearer <token>` with the token you were given".into()),
    }
}

/// The token of an `Authorization` header value (`Bearer <token>`), if well-formed.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= 256)
        .then_some(token)
}

impl Sphere {
    /// Check that `authorization` carries the token of device `device_id`, and touch its
    /// last-seen time. Unknown/missing token → 401; another principal's token → 403.
    pub fn authorize_device(
        &self,
        device_id: &str,
        authorization: Option<&str>,
    ) -> Result<(), DomainError> {
        let token = bearer(authorization).ok_or_else(missing)?;
        let hash = secret::hash(token);
        if tinylcm_protocol::ids::valid_device_id(device_id) {
            if let Some(device) = self.tracking.device(device_id)? {
                if secret::hashes_equal(&device.token_hash, &hash) {
                    self.saw_device(device_id)?;
                    return Ok(());
                }
            }
        }
        match self.tracking.token_owner(&hash)? {
            None => Err(missing()),
            Some(Principal::Device(_)) => Err(DomainError::Forbidden {
                error: "a device may only act as itself".into(),
                fix: Some(
                    "use the device id that was returned with this token at enrollment".into(),
                ),
            }),
            Some(Principal::Operator(_)) => Err(DomainError::Forbidden {
                error: "operator tokens cannot act as a device".into(),
                fix: Some("use the device's own token".into()),
            }),
        }
    }

    /// The device whose token `authorization` carries (its last-seen time touched), for clients
    /// that do not name their device in the path (the original Python clients).
    /// Unknown/missing token → 401; an operator token → 403.
    pub fn device_of_token(&self, authorization: Option<&str>) -> Result<String, DomainError> {
        let token = bearer(authorization).ok_or_else(missing)?;
        match self.tracking.token_owner(&secret::hash(token))? {
            Some(Principal::Device(device_id)) => {
                self.saw_device(&device_id)?;
                Ok(device_id)
            }
            Some(Principal::Operator(_)) => Err(DomainError::Forbidden {
                error: "operator tokens cannot act as a device".into(),
                fix: Some("use the device's own token".into()),
            }),
            None => Err(missing()),
        }
    }

    /// Check that `authorization` carries an active operator token (of either role: writes
    /// are refused to read-only tokens before any route runs, in `http::access`); returns the
    /// operator's name. Expired or revoked tokens → 401 saying so; a device token → 403.
    pub fn authorize_operator(&self, authorization: Option<&str>) -> Result<String, DomainError> {
        self.operator(authorization).map(|o| o.name)
    }

    /// As [`Sphere::authorize_operator`], with the token's role and id.
    pub fn operator(&self, authorization: Option<&str>) -> Result<Operator, DomainError> {
        let token = bearer(authorization).ok_or_else(missing)?;
        let hash = secret::hash(token);
        if let Some(operator) = self.active_operator(&hash)? {
            return Ok(operator);
        }
        match self.tracking.token_owner(&hash)? {
            Some(Principal::Device(_)) => Err(DomainError::Forbidden {
                error: "this route needs an operator token".into(),
                fix: Some("create one with `sphere-lite token create --name NAME`".into()),
            }),
            _ => Err(missing()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn parses_bearer_headers() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
