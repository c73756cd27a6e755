//! Remote configuration: settings an operator pushes from sphere-lite to a device, a device
//! group or the whole fleet (e.g. drift detector thresholds), delivered through the device's
//! feedback queue and acknowledged like feedback.
//!
//! Why a shared module: the server must refuse a configuration the device would refuse
//! *before* it queues it, and both sides must compute the same effective configuration and
//! revision. A configuration is a TOML fragment of the runtime's own config file, limited to
//! an allow-list of *keys* ([`REMOTE_KEYS`]), each with its type and bound: what the device
//! learns and how it watches for drift — never a path, which model, camera, engine or state
//! folder it uses, nor a size its SD card or memory could not take (one `PUT` to the fleet
//! layer reaches every device: a typo there must not take a fleet off the air with nobody on
//! site). The server checks every layer against the list before it stores or queues it; the
//! runtime checks the whole fragment again on receipt and at every start (a server older
//! than the list may have sent anything), then against its complete config schema.
//!
//! Layers: the fleet-wide fragment (`all`), then the device's group, then the device's own
//! fragment; a later layer wins key by key (tables merge deeply). The device receives the
//! whole effective fragment every time ([`crate::api::FeedbackVerdict::Config`]), so items
//! that arrive late or twice never leave it half-configured.
//!
//! A fragment the device cannot run (refused on receipt, or its generation fails to start or
//! run) is set aside by the device and reported with [`crate::api::ConfigRefusal`] on
//! [`crate::paths::config_refusal`]; the server keeps the refusal per device, shows it, and
//! never delivers that revision to that device again.

use sha2::{Digest, Sha256};
use thiserror::Error;

/// Largest fragment, and largest effective configuration, in bytes: a detector-threshold
/// change is a few hundred, and the whole configuration must fit in one feedback item (the
/// MLflow adapter keeps an item in a 6000-character param).
pub const MAX_CONFIG_BYTES: usize = 4 * 1024;

/// Top-level sections of the runtime's config file a remote fragment may touch (the first
/// segment of every [`REMOTE_KEYS`] pattern).
pub const REMOTE_SECTIONS: [&str; 5] = ["autonomy", "knn", "drift", "quarantine", "adaptation"];

/// What a remotely settable key may hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyType {
    /// `true` or `false`.
    Bool,
    /// A TOML integer in `min..=max`.
    Integer {
        /// Smallest value.
        min: i64,
        /// Largest value.
        max: i64,
    },
    /// A finite number (TOML float or integer) in `min..=max`.
    Float {
        /// Smallest value.
        min: f64,
        /// Largest value.
        max: f64,
    },
    /// One of these strings.
    Choice(&'static [&'static str]),
    /// A short name: 1 to `max_bytes` bytes, no whitespace, control characters or path
    /// separators.
    Name {
        /// Longest name in bytes.
        max_bytes: usize,
    },
}

impl KeyType {
    /// Whether `value` fits; `Err` says why not.
    pub fn check(&self, value: &toml::Value) -> Result<(), String> {
        use toml::Value as V;
        match (self, value) {
            (KeyType::Bool, V::Boolean(_)) => Ok(()),
            (KeyType::Integer { min, max }, V::Integer(v)) => {
                if (*min..=*max).contains(v) {
                    Ok(())
                } else {
                    Err(format!("{v} is outside {min}..={max}"))
                }
            }
            (KeyType::Float { min, max }, V::Float(_) | V::Integer(_)) => {
                let v = match value {
                    V::Float(f) => *f,
                    V::Integer(i) => *i as f64,
                    _ => unreachable!("matched above"),
                };
                if v.is_finite() && *min <= v && v <= *max {
                    Ok(())
                } else {
                    Err(format!("{v} is outside {min}..={max}"))
                }
            }
            (KeyType::Choice(choices), V::String(s)) => {
                if choices.contains(&s.as_str()) {
                    Ok(())
                } else {
                    Err(format!("{s:?} is not one of {}", choices.join(", ")))
                }
            }
            (KeyType::Name { max_bytes }, V::String(s)) => {
                if s.is_empty()
                    || s.len() > *max_bytes
                    || s.chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == '\\')
                {
                    Err(format!(
                        "{s:?} is not a name of 1..={max_bytes} bytes without spaces or slashes"
                    ))
                } else {
                    Ok(())
                }
            }
            (kind, value) => Err(format!(
                "a {} is expected, not a {}",
                kind.type_name(),
                value.type_str()
            )),
        }
    }

    /// The TOML type it takes.
    pub fn type_name(&self) -> &'static str {
        match self {
            KeyType::Bool => "boolean",
            KeyType::Integer { .. } => "integer",
            KeyType::Float { .. } => "number",
            KeyType::Choice(_) | KeyType::Name { .. } => "string",
        }
    }
}

/// One entry of the allow-list: a dotted key pattern and what its value may be.
///
/// A pattern is the key as it is written in the config file (`knn.k`); a segment
/// `{a|b}` matches any of its alternatives, so one entry covers a key that several nested
/// detector tables of `[drift]` share (`drift.{page-hinkley-distance|page-hinkley-confidence}.lambda`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteKey {
    /// The dotted pattern.
    pub pattern: &'static str,
    /// Its type and bound.
    pub kind: KeyType,
}

const fn key(pattern: &'static str, kind: KeyType) -> RemoteKey {
    RemoteKey { pattern, kind }
}
const BOOL: KeyType = KeyType::Bool;
const fn int(min: i64, max: i64) -> KeyType {
    KeyType::Integer { min, max }
}
const fn num(min: f64, max: f64) -> KeyType {
    KeyType::Float { min, max }
}

/// A key of both Page-Hinkley detector tables of `[drift]`.
macro_rules! page_hinkley {
    ($key:literal) => {
        concat!(
            "drift.{page-hinkley-distance|page-hinkley-confidence}.",
            $key
        )
    };
}
/// A key of every detector table of `[drift]`.
macro_rules! every_detector {
    ($key:literal) => {
        concat!(
            "drift.{page-hinkley-distance|page-hinkley-confidence|ewma-confidence|cusum|distribution|embedding|adwin}.",
            $key
        )
    };
}
/// Directions a scalar detector watches.
const DIRECTIONS: &[&str] = &["increase", "decrease", "both"];
/// Signals a scalar detector watches.
const SIGNALS: &[&str] = &["confidence", "distance"];

/// Largest `quarantine.max-entries` (and every count tied to it): adaptation clusters the
/// pending entries in O(n²) and keeps at most 2 000 points; more would only be thrown away.
const MAX_QUARANTINE_ENTRIES: i64 = 2_000;

/// Every key an operator may set remotely, with its bound. Anything else — every path
/// (`quarantine.thumbnail-dir`), the model, engine, source, state, sync, models, RAUC, board,
/// status and run sections, and the memory guards `drift.distribution.max-classes` and
/// `drift.embedding.max-dim` (a value below the model's size stops the detectors from
/// starting) — stays in the device's own file.
///
/// The bounds are what a Raspberry Pi Zero 2 W (512 MiB RAM shared with the GPU, four
/// Cortex-A53 cores, an SD card that wears with every write) can live with for months
/// unattended; they are tighter than the runtime's own validation where that allows values
/// only a bigger board could take:
///
/// * `quarantine.max-thumbnail-bytes` ≤ 128 MiB: 2 000 entries × a 256-px JPEG at quality
///   100 (≈ 60 KiB) fit, and it stays a small share of the few GiB of `/data` on an 8 GB card
///   (the runtime itself would take 4 GiB, a full card);
/// * `quarantine.max-bytes` ≤ 16 MiB of feature vectors, held in memory (the whole runtime
///   runs in about 40 MB);
/// * `knn.max-samples` ≤ 2 000 and `knn.k` ≤ 64: the KNN is searched linearly on every frame
///   and held in memory (2 000 × 8 192 dimensions × 4 bytes = 64 MiB at the largest
///   embedding the runtime takes, 2 MiB at the default model's);
/// * `autonomy.checkpoint-seconds` ≥ 5: each checkpoint is a database commit on the SD card;
/// * sample counts and windows ≤ 100 000: detectors keep per-sample state of that length.
pub const REMOTE_KEYS: &[RemoteKey] = &[
    // [autonomy]
    key("autonomy.enabled", BOOL),
    key("autonomy.classifier", KeyType::Choice(&["knn", "model"])),
    key("autonomy.far-sigma", num(1.0, 100.0)),
    key("autonomy.incident-quiet-frames", int(1, 100_000)),
    key("autonomy.checkpoint-seconds", int(5, 3_600)),
    // [knn]
    key("knn.k", int(1, 64)),
    key(
        "knn.metric",
        KeyType::Choice(&["euclidean", "manhattan", "cosine"]),
    ),
    key("knn.max-samples", int(10, 2_000)),
    key("knn.eviction", KeyType::Choice(&["fifo", "class-balanced"])),
    key(
        "knn.vote",
        KeyType::Choice(&["majority", "distance-weighted"]),
    ),
    // [drift]: the shared life cycle
    key("drift.warm-up", int(0, 100_000)),
    key("drift.reference-samples", int(10, 100_000)),
    key("drift.cooldown", int(0, 100_000)),
    key("drift.reference-beta", num(0.0, 1.0)),
    key("drift.reference-interval", int(2, 100_000)),
    key("drift.false-alarm-raise", num(1.0, 10.0)),
    key("drift.max-threshold-factor", num(1.0, 100.0)),
    // [drift.<detector>]
    key(every_detector!("enabled"), BOOL),
    key(page_hinkley!("delta"), num(0.0, 100.0)),
    key(page_hinkley!("lambda"), num(0.01, 1_000.0)),
    key(page_hinkley!("exit-lambda"), num(0.01, 1_000.0)),
    key("drift.ewma-confidence.lambda", num(0.0001, 1.0)),
    key("drift.ewma-confidence.limit", num(0.01, 100.0)),
    key("drift.ewma-confidence.exit-limit", num(0.01, 100.0)),
    key("drift.ewma-confidence.persistence", int(1, 10_000)),
    key(
        "drift.ewma-confidence.direction",
        KeyType::Choice(DIRECTIONS),
    ),
    key("drift.cusum.signal", KeyType::Choice(SIGNALS)),
    key("drift.cusum.direction", KeyType::Choice(DIRECTIONS)),
    key("drift.cusum.k", num(0.0, 100.0)),
    key("drift.cusum.h", num(0.01, 1_000.0)),
    key("drift.cusum.exit-h", num(0.01, 1_000.0)),
    key("drift.distribution.window", int(10, 100_000)),
    key("drift.distribution.threshold", num(0.000001, 1.0)),
    key("drift.distribution.exit-threshold", num(0.0, 1.0)),
    key("drift.distribution.smoothing", num(0.000001, 100.0)),
    key("drift.embedding.lambda", num(0.0001, 1.0)),
    key("drift.embedding.threshold", num(0.01, 1_000.0)),
    key("drift.embedding.exit-threshold", num(0.0, 1_000.0)),
    key("drift.adwin.signal", KeyType::Choice(SIGNALS)),
    key("drift.adwin.delta", num(1e-12, 0.5)),
    key("drift.adwin.clock", int(1, 10_000)),
    key("drift.adwin.max-buckets", int(2, 64)),
    key("drift.adwin.min-window", int(1, 10_000)),
    key("drift.adwin.max-window", int(16, 100_000)),
    key("drift.adwin.min-shift", num(0.01, 100.0)),
    // [quarantine]: no thumbnail-dir (a path)
    key("quarantine.enabled", BOOL),
    key("quarantine.max-entries", int(1, MAX_QUARANTINE_ENTRIES)),
    key("quarantine.max-bytes", int(1_024, 16 << 20)),
    key("quarantine.max-age-hours", int(1, 24 * 366)),
    key("quarantine.per-class-cap", int(1, MAX_QUARANTINE_ENTRIES)),
    key("quarantine.thumbnails", BOOL),
    key("quarantine.thumbnail-size", int(8, 256)),
    key("quarantine.thumbnail-quality", int(1, 100)),
    key("quarantine.max-thumbnail-bytes", int(64 << 10, 128 << 20)),
    // [adaptation]
    key("adaptation.enabled", BOOL),
    key("adaptation.min-pending", int(2, MAX_QUARANTINE_ENTRIES)),
    key(
        "adaptation.min-cluster-size",
        int(2, MAX_QUARANTINE_ENTRIES),
    ),
    key("adaptation.radius", num(0.01, 100.0)),
    key("adaptation.min-neighbors", int(1, MAX_QUARANTINE_ENTRIES)),
    key("adaptation.compactness", num(0.01, 100.0)),
    key("adaptation.near-factor", num(0.01, 100.0)),
    key("adaptation.far-factor", num(0.01, 100.0)),
    key("adaptation.representatives", int(1, 256)),
    key("adaptation.max-new-classes", int(0, 64)),
    key(
        "adaptation.new-class-prefix",
        KeyType::Name { max_bytes: 32 },
    ),
    key("adaptation.guard-frames", int(10, 100_000)),
    key("adaptation.confidence-drop", num(0.001, 1.0)),
    key("adaptation.distance-growth", num(0.01, 100.0)),
    key("adaptation.class-mix-max-share", num(0.01, 1.0)),
];

/// Why a fragment is refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// More than [`MAX_CONFIG_BYTES`] (a layer, or the layers merged).
    #[error("the configuration has {0} bytes; at most {MAX_CONFIG_BYTES} are accepted")]
    TooLarge(usize),
    /// Not TOML.
    #[error("the configuration is not valid TOML: {0}")]
    Toml(String),
    /// A top-level key that is not a remotely settable section.
    #[error(
        "section {0:?} cannot be set remotely; allowed: autonomy, knn, drift, quarantine, adaptation"
    )]
    Section(String),
    /// A top-level key that is not a table (`drift = 3`).
    #[error("{0:?} must be a table ([{0}] …)")]
    NotATable(String),
    /// A key that is not on the allow-list ([`REMOTE_KEYS`]).
    #[error(
        "key `{0}` cannot be set remotely (it is not on the allow-list of remote keys: no paths, \
         and only what a device can change without going off the air); set it in the device's \
         own config file"
    )]
    NotAllowed(String),
    /// An allowed key with a value of the wrong type or outside its bound.
    #[error("key `{key}`: {problem}")]
    Value {
        /// The dotted key.
        key: String,
        /// What is wrong with the value, and the bound.
        problem: String,
    },
}

impl ConfigError {
    /// The dotted key the error is about, when it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Section(k) | ConfigError::NotATable(k) | ConfigError::NotAllowed(k) => {
                Some(k)
            }
            ConfigError::Value { key, .. } => Some(key),
            ConfigError::TooLarge(_) | ConfigError::Toml(_) => None,
        }
    }
}

/// The alternatives of a pattern segment `{a|b|…}`, or the segment itself.
fn alternatives(segment: &str) -> Vec<&str> {
    match segment.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
        Some(a) => a.split('|').collect(),
        None => vec![segment],
    }
}

/// Whether `pattern`'s first `path.len()` segments match `path`: `Some(true)` when the
/// pattern has exactly that many segments (a key), `Some(false)` when it is longer (`path` is a
/// table on the way to keys), `None` when it does not match.
fn pattern_matches(pattern: &str, path: &[&str]) -> Option<bool> {
    let segments: Vec<&str> = pattern.split('.').collect();
    if segments.len() < path.len() {
        return None;
    }
    segments
        .iter()
        .zip(path)
        .all(|(p, s)| alternatives(p).contains(s))
        .then_some(segments.len() == path.len())
}

/// The allow-list entry of the key at `path` (its dotted segments), if it is allowed.
pub fn remote_key(path: &[&str]) -> Option<&'static RemoteKey> {
    REMOTE_KEYS
        .iter()
        .find(|k| pattern_matches(k.pattern, path) == Some(true))
}

/// Every concrete dotted key a pattern stands for (`{a|b}` expanded), in order.
pub fn expand(pattern: &str) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for segment in pattern.split('.') {
        let alts = alternatives(segment);
        keys = if keys.is_empty() {
            alts.iter().map(|a| (*a).to_owned()).collect()
        } else {
            keys.iter()
                .flat_map(|k| alts.iter().map(move |a| format!("{k}.{a}")))
                .collect()
        };
    }
    keys
}

/// Check every key of `table`, found at `path`, against the allow-list.
fn check_keys<'a>(path: &mut Vec<&'a str>, table: &'a toml::Table) -> Result<(), ConfigError> {
    for (name, value) in table {
        path.push(name);
        match value {
            toml::Value::Table(inner) => {
                if !REMOTE_KEYS
                    .iter()
                    .any(|k| pattern_matches(k.pattern, path) == Some(false))
                {
                    return Err(ConfigError::NotAllowed(path.join(".")));
                }
                check_keys(path, inner)?;
            }
            leaf => {
                let key =
                    remote_key(path).ok_or_else(|| ConfigError::NotAllowed(path.join(".")))?;
                key.kind.check(leaf).map_err(|problem| ConfigError::Value {
                    key: path.join("."),
                    problem,
                })?;
            }
        }
        path.pop();
    }
    Ok(())
}

/// Parse one layer and check it against the allow-list ([`REMOTE_KEYS`]); an empty or blank
/// text is the empty fragment.
pub fn parse_fragment(text: &str) -> Result<toml::Table, ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge(text.len()));
    }
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Toml(e.message().to_owned()))?;
    for (key, value) in &table {
        if !REMOTE_SECTIONS.contains(&key.as_str()) {
            return Err(ConfigError::Section(key.clone()));
        }
        if !value.is_table() {
            return Err(ConfigError::NotATable(key.clone()));
        }
    }
    check_keys(&mut Vec::new(), &table)?;
    Ok(table)
}

/// `over` merged onto `base`: tables merge key by key, anything else in `over` replaces.
fn merge_into(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_into(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The configuration a device should run, and its revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// The merged fragment (canonical TOML; empty when no layer sets anything).
    pub toml: String,
    /// First 16 hex digits of the SHA-256 of [`Effective::toml`]: equal fragments have equal
    /// revisions, so the server delivers a change once and the device can tell it has it.
    pub revision: String,
}

/// Merge `layers` (fleet-wide first, device last) into the effective configuration.
pub fn effective<'a>(layers: impl IntoIterator<Item = &'a str>) -> Result<Effective, ConfigError> {
    let mut merged = toml::Table::new();
    for layer in layers {
        merge_into(&mut merged, parse_fragment(layer)?);
    }
    let toml = if merged.is_empty() {
        String::new()
    } else {
        toml::to_string(&merged).map_err(|e| ConfigError::Toml(e.to_string()))?
    };
    if toml.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge(toml.len()));
    }
    let revision = crate::package::hex(&Sha256::digest(toml.as_bytes()))[..16].to_owned();
    Ok(Effective { toml, revision })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_merge_deeply_and_the_last_wins() {
        let e = effective([
            "[drift.page-hinkley-distance]\nlambda = 50.0\ndelta = 0.005\n[knn]\nk = 5\n",
            "",
            "[drift.page-hinkley-distance]\nlambda = 80.0\n",
        ])
        .unwrap();
        let t: toml::Table = e.toml.parse().unwrap();
        assert_eq!(
            t["drift"]["page-hinkley-distance"]["lambda"].as_float(),
            Some(80.0)
        );
        assert_eq!(
            t["drift"]["page-hinkley-distance"]["delta"].as_float(),
            Some(0.005)
        );
        assert_eq!(t["knn"]["k"].as_integer(), Some(5));
        assert_eq!(e.revision.len(), 16);
    }

    #[test]
    fn equal_configurations_have_equal_revisions() {
        let a = effective(["[knn]\nk = 5\n[drift]\ncooldown = 1\n"]).unwrap();
        let b = effective(["[drift]\ncooldown = 1\n", "[knn]\nk = 5"]).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.revision, effective([""]).unwrap().revision);
        assert_eq!(effective(["", "  \n"]).unwrap().toml, "");
    }

    #[test]
    fn unsafe_or_malformed_fragments_are_refused() {
        assert_eq!(
            parse_fragment("[model]\npath = \"/tmp/x.tflite\"\n"),
            Err(ConfigError::Section("model".into()))
        );
        assert_eq!(
            parse_fragment("drift = 3"),
            Err(ConfigError::NotATable("drift".into()))
        );
        assert!(matches!(
            parse_fragment("[drift"),
            Err(ConfigError::Toml(_))
        ));
        let big = format!("[knn]\n# {}\n", "x".repeat(MAX_CONFIG_BYTES));
        assert!(matches!(
            parse_fragment(&big),
            Err(ConfigError::TooLarge(_))
        ));
        // A layer that is refused makes the merge fail: nothing half-valid is delivered.
        assert!(effective(["[knn]\nk = 3", "[engine]\nx = 1"]).is_err());
    }

    /// Fails before this change: only sections were checked, so a path inside an allowed
    /// section (the fragment that crash-looped a fleet) and a 4 GiB thumbnail budget passed.
    #[test]
    fn paths_and_sizes_beyond_the_bound_are_refused_naming_the_key() {
        let e = parse_fragment("[quarantine]\nthumbnail-dir = \"/nonexistent/q\"\n").unwrap_err();
        assert_eq!(
            e,
            ConfigError::NotAllowed("quarantine.thumbnail-dir".into())
        );
        assert!(e.to_string().contains("`quarantine.thumbnail-dir`"), "{e}");
        let e = parse_fragment("[quarantine]\nmax-thumbnail-bytes = 4294967296\n").unwrap_err();
        assert_eq!(e.key(), Some("quarantine.max-thumbnail-bytes"), "{e}");
        assert!(matches!(e, ConfigError::Value { .. }), "{e}");
        parse_fragment("[quarantine]\nmax-thumbnail-bytes = 134217728\n").unwrap();
        // The memory guards stay local: a value below the model's size stops the detectors.
        for guard in [
            "[drift.embedding]\nmax-dim = 1\n",
            "[drift.distribution]\nmax-classes = 2\n",
        ] {
            assert!(
                matches!(parse_fragment(guard), Err(ConfigError::NotAllowed(_))),
                "{guard}"
            );
        }
        // Unknown keys, in a known table or a made-up one.
        assert_eq!(
            parse_fragment("[knn]\nkk = 3\n"),
            Err(ConfigError::NotAllowed("knn.kk".into()))
        );
        assert_eq!(
            parse_fragment("[drift.made-up]\nenabled = true\n"),
            Err(ConfigError::NotAllowed("drift.made-up".into()))
        );
        // A table where a value belongs, and a value where a table belongs.
        assert_eq!(
            parse_fragment("[knn.k]\nx = 1\n"),
            Err(ConfigError::NotAllowed("knn.k".into()))
        );
        assert_eq!(
            parse_fragment("[drift]\ncusum = 3\n"),
            Err(ConfigError::NotAllowed("drift.cusum".into()))
        );
    }

    #[test]
    fn values_are_checked_for_type_and_bound() {
        let key = |text: &str| parse_fragment(text).unwrap_err().key().map(str::to_owned);
        assert_eq!(key("[knn]\nk = \"many\"\n").as_deref(), Some("knn.k"));
        assert_eq!(key("[knn]\nk = 1.5\n").as_deref(), Some("knn.k"));
        assert_eq!(key("[knn]\nk = 65\n").as_deref(), Some("knn.k"));
        assert_eq!(
            key("[knn]\nmetric = \"hamming\"\n").as_deref(),
            Some("knn.metric")
        );
        assert_eq!(
            key("[autonomy]\nfar-sigma = nan\n").as_deref(),
            Some("autonomy.far-sigma")
        );
        assert_eq!(
            key("[adaptation]\nnew-class-prefix = \"../x\"\n").as_deref(),
            Some("adaptation.new-class-prefix")
        );
        assert_eq!(
            key("[quarantine]\nthumbnails = 1\n").as_deref(),
            Some("quarantine.thumbnails")
        );
        // A whole number where a float goes is a number.
        parse_fragment("[drift.page-hinkley-distance]\nlambda = 80\n").unwrap();
        parse_fragment("[adaptation]\nnew-class-prefix = \"neu-\"\n").unwrap();
    }

    #[test]
    fn detector_patterns_cover_each_detector_table_and_nothing_else() {
        for detector in [
            "page-hinkley-distance",
            "page-hinkley-confidence",
            "ewma-confidence",
            "cusum",
            "distribution",
            "embedding",
            "adwin",
        ] {
            parse_fragment(&format!("[drift.{detector}]\nenabled = false\n")).unwrap();
        }
        parse_fragment("[drift.page-hinkley-confidence]\nexit-lambda = 9.0\n").unwrap();
        assert!(parse_fragment("[drift.cusum]\nexit-lambda = 9.0\n").is_err());
        let keys = expand(page_hinkley!("lambda"));
        assert_eq!(
            keys,
            [
                "drift.page-hinkley-distance.lambda",
                "drift.page-hinkley-confidence.lambda"
            ]
        );
        assert_eq!(expand("knn.k"), ["knn.k"]);
    }

    #[test]
    fn every_pattern_is_in_a_remote_section_and_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for k in REMOTE_KEYS {
            for key in expand(k.pattern) {
                let section = key.split('.').next().unwrap();
                assert!(REMOTE_SECTIONS.contains(&section), "{key}");
                let leaf = key.rsplit('.').next().unwrap();
                assert!(
                    !leaf.ends_with("dir") && !leaf.ends_with("path") && !leaf.ends_with("file"),
                    "{key} looks like a path"
                );
                assert!(seen.insert(key.clone()), "{key} is listed twice");
            }
        }
    }
}
