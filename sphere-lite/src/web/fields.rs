//! Query strings and form bodies, parsed strictly: the dashboard refuses an unknown or
//! repeated parameter with a 400 page instead of guessing what was meant.

use std::collections::HashMap;

use super::time;

/// The fields of a query string or form body; a parameter given twice, or one not in
/// `allowed` (when not `repeatable`), is refused.
pub(super) struct Fields {
    pub(super) single: HashMap<String, String>,
    pub(super) repeated: Vec<String>,
}

impl Fields {
    pub(super) fn parse(
        raw: &str,
        allowed: &[&str],
        repeatable: Option<&str>,
    ) -> Result<Fields, String> {
        let mut single = HashMap::new();
        let mut repeated = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            if Some(k.as_ref()) == repeatable {
                repeated.push(v.into_owned());
                continue;
            }
            if !allowed.contains(&k.as_ref()) {
                let shown: String = k.chars().take(40).collect();
                return Err(format!(
                    "unknown parameter {shown:?}; this page takes: {}",
                    allowed.join(", ")
                ));
            }
            if single
                .insert(k.clone().into_owned(), v.into_owned())
                .is_some()
            {
                return Err(format!("parameter {:?} given twice", k.as_ref()));
            }
        }
        Ok(Fields { single, repeated })
    }

    /// A non-empty value of `key`.
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.single
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The `datetime-local` value of `key` (UTC) as Unix ms.
    pub(super) fn time(&self, key: &str) -> Result<Option<u64>, String> {
        self.get(key)
            .map(|v| {
                time::parse_local_field(v).ok_or_else(|| {
                    format!("`{key}` must be a UTC date and time like 2025-11-26T10:00")
                })
            })
            .transpose()
    }
}
