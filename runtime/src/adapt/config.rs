//! The `[adaptation]` configuration section: every knob of clustering, planning and the
//! rollback guard, with documented defaults and a `validate` that names the key and the fix.
//!
//! Distances are never raw numbers here: radius, compactness, near and far are factors of
//! the reference mean k-NN distance (leave-one-out, see [`Reference`](super::Reference)), and
//! the guard's distance growth is in reference standard deviations. Raw distances were the
//! original's magic numbers (its dispersion bound of 0.1 was unreachable with 256-d features).
//! (Not yet composed into `crate::config::Config`: that is the wiring step.)

use serde::{Deserialize, Serialize};

use super::MAX_POINTS;
use crate::config_error::ConfigError;
use crate::knn::{MAX_LABEL_BYTES, MAX_LABELS};

/// Most representatives one cluster may add to the KNN.
pub const MAX_REPRESENTATIVES: usize = 256;
/// Longest new-class prefix: room is left for the number appended to it.
pub const MAX_PREFIX_BYTES: usize = MAX_LABEL_BYTES - 20;
/// Longest guard window, in frames.
pub const MAX_GUARD_FRAMES: u32 = 1_000_000;

/// `[adaptation]` configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AdaptationConfig {
    /// Run heuristic adaptation at all. Default `false`: it changes the KNN without a human,
    /// so it is opt-in (as in the original, where it was also off by default).
    pub enabled: bool,
    /// Quarantined samples needed before a round is attempted. Default 30.
    pub min_pending: usize,
    /// Members a cluster needs before it can change the KNN. Default 12.
    pub min_cluster_size: usize,
    /// Clustering radius, × reference mean distance: two samples closer than this are
    /// neighbours. Default 1.25.
    pub radius: f64,
    /// Neighbours (other samples within `radius`) that make a sample a cluster core.
    /// Default 4. Samples with fewer neighbours only join a cluster at its border; samples
    /// near no core stay unclustered (scattered noise never forms a cluster).
    pub min_neighbors: usize,
    /// A cluster is compact when its mean member–centroid distance is at most this,
    /// × reference mean distance. Default 1.0 (a Gaussian class as spread as the known ones
    /// measures about 0.7–0.85).
    pub compactness: f64,
    /// A compact cluster whose centroid's mean distance to the k nearest samples of its
    /// nearest class is at most this, × reference mean, is pseudo-labelled with that class.
    /// Default 1.0: the centroid would pass as an ordinary sample of the class.
    pub near_factor: f64,
    /// A compact cluster farther than this, × reference mean, from every class becomes a
    /// new class. Default 2.0. Between near and far the cluster is left alone.
    pub far_factor: f64,
    /// Samples added to the KNN per cluster at most (medoid first, then spread). Default 8.
    pub representatives: usize,
    /// New classes the KNN may hold at once (labels starting with `new-class-prefix` that
    /// still have samples). Default 4; 0 never proposes a new class.
    pub max_new_classes: usize,
    /// Name of a proposed class: this prefix and the next free number. Default `"new-"`.
    pub new_class_prefix: String,
    /// Frames observed after an adaptation before it is kept or rolled back. Default 150.
    pub guard_frames: u32,
    /// Roll back when the mean confidence falls by more than this (absolute, 0..=1).
    /// Default 0.15.
    pub confidence_drop: f64,
    /// Roll back when the mean k-NN distance grows by more than this many reference σ.
    /// Default 1.0 (the mean of 150 frames moves about 0.1 σ by chance).
    pub distance_growth: f64,
    /// Roll back when one class takes more than this share of the predictions while no
    /// class did before. Default 0.8; 1.0 turns the check off.
    pub class_mix_max_share: f64,
    /// Frames the stream's running mean feature spans (exponentially weighted), the mean
    /// whose offset from the model's reference samples is the scene's common shift.
    /// Default 50.
    pub shift_window: u32,
    /// A round is about a new object in the scene, not a change of the whole scene, when
    /// taking the common shift out moves its samples farther from the known samples by more
    /// than this many reference σ on average. Default 1.0 (measured on the built-in
    /// scenario: lighting and noise −0.3…+0.1, the unseen object +2.0…+2.3).
    pub local_shift: f64,
    /// A sample tells a scene-wide change from a new object only when the stream as a whole
    /// had moved by at least this, × reference mean distance, when it was admitted.
    /// Default 1.5 (measured on the built-in scenario: under 1.1 in normal stretches, over
    /// 1.8 in every drift phase).
    pub min_stream_shift: f64,
    /// A scene-wide change may still carry a new object: a compact cluster of its samples
    /// whose centroid lies beyond this × reference mean from every class is proposed as a
    /// new class (before the rest are pseudo-labelled). A nuisance of the camera moves known
    /// objects as a whole but keeps each near its class when the model was trained to
    /// ignore it; a new object makes its own dense place far from all. Default 2.0; 0 turns
    /// it off: a scene-wide change never makes a new class.
    pub wide_far_factor: f64,
    /// In a scene-wide round, a sample is pseudo-labelled only when at least this share of
    /// its k nearest neighbours agree on a class of the model once the shift is taken out.
    /// Default 1.0 (unanimous).
    pub pseudo_label_agreement: f64,
    /// In a scene-wide round, a sample is pseudo-labelled only when the model's own head
    /// names the same class as the aligned vote (models without a head: the vote alone).
    /// Default `true`.
    pub pseudo_label_head_agreement: bool,
    /// A change judged scene-wide is planned as local (new classes by geometry, no
    /// pseudo-labels by vote) when fewer than this share of its shifted samples get the same
    /// class from the model's own head and the aligned vote. 0 turns the check off (and
    /// models without a class head never make it). Default 0.6 (measured with the built-in
    /// model: 0.74–0.85 over lighting and noise, 0.20–0.50 over the unseen star).
    pub scene_agreement: f64,
    /// Samples a scene-wide round adds per class at most. Default 16.
    pub pseudo_labels_per_class: usize,
    /// Roll a round back at once when the leave-one-out agreement of the model's original
    /// reference samples (the protected set) falls by more than this share. Default 0.01.
    pub protected_drop: f64,
    /// A proposed class (named `new-class-prefix` and a number, waiting for a human name)
    /// is a neighbour of a frame only within this, × reference mean distance, of one of its
    /// samples; farther out the known classes vote. Default 1.75; 0 turns the limit off.
    /// A class proposed from a few representatives otherwise claims every frame that falls
    /// on its side of the known classes, noisy known objects included.
    pub proposed_reach: f64,
    /// In a scene-wide round, a pseudo-label is not added when it would be among the k
    /// nearest samples of one of the change's shifted samples whose model head names
    /// another class (it would vote against the head there). Default `true` (models
    /// without a head: no effect).
    pub pseudo_label_displacement: bool,
}

impl Default for AdaptationConfig {
    fn default() -> Self {
        AdaptationConfig {
            enabled: true,
            min_pending: 30,
            min_cluster_size: 12,
            radius: 1.25,
            min_neighbors: 4,
            compactness: 1.5,
            near_factor: 0.5,
            far_factor: 2.0,
            representatives: 8,
            max_new_classes: 4,
            new_class_prefix: "new-".into(),
            guard_frames: 150,
            confidence_drop: 0.15,
            distance_growth: 1.0,
            class_mix_max_share: 0.8,
            shift_window: 50,
            local_shift: 1.0,
            min_stream_shift: 1.5,
            wide_far_factor: 2.0,
            pseudo_label_agreement: 1.0,
            pseudo_label_head_agreement: true,
            scene_agreement: 0.6,
            pseudo_labels_per_class: 16,
            protected_drop: 0.01,
            proposed_reach: 1.75,
            pseudo_label_displacement: true,
        }
    }
}

fn range_usize(
    key: &str,
    value: usize,
    min: usize,
    max: usize,
    fix: &str,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::new(
            format!("adaptation.{key}"),
            format!("{value} is out of range {min}..={max}"),
            fix,
        ));
    }
    Ok(())
}

fn range_f64(key: &str, value: f64, min: f64, max: f64, fix: &str) -> Result<(), ConfigError> {
    // A lower bound of 0 is exclusive: every factor here must be positive.
    if !value.is_finite() || value <= min || value > max {
        return Err(ConfigError::new(
            format!("adaptation.{key}"),
            format!("{value} is out of range (above {min}, at most {max})"),
            fix,
        ));
    }
    Ok(())
}

impl AdaptationConfig {
    /// Check every key; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let max = MAX_POINTS;
        range_usize(
            "min-cluster-size",
            self.min_cluster_size,
            2,
            max,
            "use at least 2; 12 (the default) keeps chance groupings out of the KNN",
        )?;
        range_usize(
            "min-pending",
            self.min_pending,
            self.min_cluster_size,
            max,
            &format!(
                "use at least min-cluster-size ({}) and at most {max}; 30 is the default",
                self.min_cluster_size
            ),
        )?;
        range_f64(
            "radius",
            self.radius,
            0.0,
            100.0,
            "use a factor of the reference mean distance such as 1.25 (the default)",
        )?;
        range_usize(
            "min-neighbors",
            self.min_neighbors,
            1,
            self.min_cluster_size - 1,
            &format!(
                "use 1 up to min-cluster-size − 1 ({}); 4 is the default",
                self.min_cluster_size - 1
            ),
        )?;
        range_f64(
            "compactness",
            self.compactness,
            0.0,
            100.0,
            "use a factor of the reference mean distance such as 1.0 (the default)",
        )?;
        range_f64(
            "near-factor",
            self.near_factor,
            0.0,
            100.0,
            "use a factor of the reference mean distance such as 1.0 (the default)",
        )?;
        if !self.far_factor.is_finite()
            || self.far_factor < self.near_factor
            || self.far_factor > 100.0
        {
            return Err(ConfigError::new(
                "adaptation.far-factor",
                format!(
                    "{} is below near-factor ({}) or above 100",
                    self.far_factor, self.near_factor
                ),
                "use at least near-factor; 2.0 (the default) leaves a gap where nothing happens",
            ));
        }
        range_usize(
            "representatives",
            self.representatives,
            1,
            MAX_REPRESENTATIVES,
            "use 1..=256 samples per cluster; 8 (the default)",
        )?;
        range_usize(
            "max-new-classes",
            self.max_new_classes,
            0,
            MAX_LABELS,
            "use 0 (never propose a class) up to 1024; 4 is the default",
        )?;
        let prefix = &self.new_class_prefix;
        if prefix.is_empty()
            || prefix.len() > MAX_PREFIX_BYTES
            || prefix.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(ConfigError::new(
                "adaptation.new-class-prefix",
                format!(
                    "{prefix:?} is empty, longer than {MAX_PREFIX_BYTES} bytes or holds whitespace"
                ),
                "use a short name without spaces such as \"new-\" (the default)",
            ));
        }
        if self.guard_frames < 10 || self.guard_frames > MAX_GUARD_FRAMES {
            return Err(ConfigError::new(
                "adaptation.guard-frames",
                format!(
                    "{} is out of range 10..={MAX_GUARD_FRAMES}",
                    self.guard_frames
                ),
                "use at least 10 frames; 150 (the default) is about a minute at 2.5 Hz",
            ));
        }
        range_f64(
            "confidence-drop",
            self.confidence_drop,
            0.0,
            1.0,
            "use a drop of mean confidence in (0, 1] such as 0.15 (the default)",
        )?;
        range_f64(
            "distance-growth",
            self.distance_growth,
            0.0,
            100.0,
            "use a growth in reference σ such as 1.0 (the default)",
        )?;
        range_f64(
            "class-mix-max-share",
            self.class_mix_max_share,
            0.0,
            1.0,
            "use a share in (0, 1] such as 0.8 (the default); 1.0 turns the check off",
        )?;
        if self.shift_window < 2 || self.shift_window > MAX_GUARD_FRAMES {
            return Err(ConfigError::new(
                "adaptation.shift-window",
                format!(
                    "{} is out of range 2..={MAX_GUARD_FRAMES}",
                    self.shift_window
                ),
                "use a few dozen frames; 50 (the default)",
            ));
        }
        range_f64(
            "local-shift",
            self.local_shift,
            0.0,
            100.0,
            "use a growth in reference σ such as 1.0 (the default)",
        )?;
        range_f64(
            "min-stream-shift",
            self.min_stream_shift,
            0.0,
            100.0,
            "use a factor of the reference mean distance such as 1.5 (the default)",
        )?;
        if self.wide_far_factor != 0.0 {
            range_f64(
                "wide-far-factor",
                self.wide_far_factor,
                0.0,
                100.0,
                "use a factor of the reference mean distance above far-factor, or 0 (off)",
            )?;
        }
        range_f64(
            "pseudo-label-agreement",
            self.pseudo_label_agreement,
            0.5,
            1.0,
            "use a vote share above 0.5 and at most 1.0 (the default: unanimous)",
        )?;
        if self.scene_agreement != 0.0 {
            range_f64(
                "scene-agreement",
                self.scene_agreement,
                0.0,
                1.0,
                "use a share of samples such as 0.6, or 0 (off)",
            )?;
        }
        range_usize(
            "pseudo-labels-per-class",
            self.pseudo_labels_per_class,
            0,
            MAX_REPRESENTATIVES,
            "use 0 (never pseudo-label a scene-wide change) up to 256; 16 is the default",
        )?;
        range_f64(
            "protected-drop",
            self.protected_drop,
            0.0,
            1.0,
            "use a share in (0, 1] such as 0.01 (the default)",
        )?;
        if self.proposed_reach != 0.0 {
            range_f64(
                "proposed-reach",
                self.proposed_reach,
                0.0,
                100.0,
                "use a factor of the reference mean distance such as 1.0, or 0 (no limit)",
            )?;
        }
        Ok(())
    }

    /// Whether a round should be attempted with `pending` quarantined samples.
    pub fn ready(&self, pending: usize) -> bool {
        self.enabled && pending >= self.min_pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let c = AdaptationConfig::default();
        c.validate().unwrap();
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<AdaptationConfig>(&text).unwrap(), c);
    }

    #[test]
    fn module_doc_example_equals_the_defaults() {
        // The example in the module doc is what the README shows; it must not drift.
        let doc = include_str!("mod.rs");
        let start = doc.find("```toml\n").expect("toml block") + "```toml\n".len();
        let end = start + doc[start..].find("```").expect("block end");
        let body: String = doc[start..end]
            .lines()
            .map(|l| l.trim_start_matches("//!").trim_start())
            .filter(|l| !l.starts_with('[') && !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        let parsed: AdaptationConfig = toml::from_str(&body).unwrap();
        assert_eq!(parsed, AdaptationConfig::default());
    }

    #[test]
    fn kebab_case_keys_and_unknown_keys() {
        let c: AdaptationConfig =
            toml::from_str("min-pending = 40\nnew-class-prefix = \"drift-\"").unwrap();
        assert_eq!(c.min_pending, 40);
        assert_eq!(c.new_class_prefix, "drift-");
        assert!(toml::from_str::<AdaptationConfig>("min_pending = 40").is_err());
        assert!(toml::from_str::<AdaptationConfig>("bogus = 1").is_err());
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        type Breaker = fn(&mut AdaptationConfig);
        let cases: [(&str, Breaker); 10] = [
            ("adaptation.min-cluster-size", |c| c.min_cluster_size = 1),
            ("adaptation.min-pending", |c| c.min_pending = 5),
            ("adaptation.radius", |c| c.radius = f64::NAN),
            ("adaptation.min-neighbors", |c| c.min_neighbors = 12),
            ("adaptation.compactness", |c| c.compactness = 0.0),
            ("adaptation.far-factor", |c| c.far_factor = 0.25),
            ("adaptation.representatives", |c| c.representatives = 0),
            ("adaptation.new-class-prefix", |c| {
                c.new_class_prefix = "a b".into()
            }),
            ("adaptation.guard-frames", |c| c.guard_frames = 0),
            ("adaptation.class-mix-max-share", |c| {
                c.class_mix_max_share = 1.5
            }),
        ];
        for (key, break_it) in cases {
            let mut c = AdaptationConfig::default();
            break_it(&mut c);
            let err = c.validate().unwrap_err();
            assert_eq!(err.key, key, "{err}");
            assert!(err.to_string().contains("Fix: "), "{err}");
        }
    }

    #[test]
    fn ready_needs_enabled_and_enough_samples() {
        let mut c = AdaptationConfig {
            enabled: false,
            ..AdaptationConfig::default()
        };
        assert!(!c.ready(1000));
        c.enabled = true;
        assert!(!c.ready(29));
        assert!(c.ready(30));
    }
}
