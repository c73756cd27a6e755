//! Deciding, per cluster of quarantined samples, what the KNN should learn from it — as a
//! value, before anything changes, so the decision can be logged, inspected, tested and
//! computed off the inference thread.
//!
//! Per cluster, in order (the first rule that applies wins):
//!
//! 1. fewer than `min-cluster-size` members → [`Decision::Leave`] ([`Why::TooSmall`]);
//! 2. mean member–centroid distance above `compactness` × reference → `Leave`
//!    ([`Why::NotCompact`]): a smear of samples is not a class;
//! 3. the centroid's mean distance to the k nearest samples of its nearest class (k of the
//!    KNN, or fewer when the class holds fewer) at most `near-factor` × reference →
//!    [`Decision::PseudoLabel`] with that class;
//! 4. above `far-factor` × reference from every class → [`Decision::NewClass`] named
//!    `new-class-prefix` + the smallest number ≥ 1 not yet a label of the KNN (names are
//!    never reused, so past events stay unambiguous), unless the KNN already holds
//!    `max-new-classes` such classes ([`Why::NewClassLimit`]);
//! 5. otherwise, between near and far → `Leave` ([`Why::Ambiguous`]).
//!
//! Classes proposed earlier in the same plan count as known classes for later clusters
//! (through their representatives), so one new object split into two clusters becomes one
//! new class, not two. Unclustered samples (DBSCAN noise) are listed apart and change
//! nothing. Planning reads the KNN and never changes it.

use serde::{Deserialize, Serialize};

use super::cluster::{ClusterParams, MAX_POINTS, cluster};
use super::displace::{Probe, drop_displacing};
use super::error::check_vector;
use super::scene::{self, Evidence, Scene};
use super::{AdaptError, AdaptationConfig, Reference};
use crate::knn::{Knn, LabelId, MAX_LABELS, Metric};

/// What to do with one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "decision")]
pub enum Decision {
    /// Add the representatives to a known class.
    PseudoLabel {
        /// The class.
        label: String,
    },
    /// Add the representatives as a new class.
    NewClass {
        /// The proposed name.
        label: String,
    },
    /// Change nothing.
    Leave {
        /// Why.
        why: Why,
    },
}

/// Why a cluster is left alone. Distances are factors of the reference mean distance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "reason")]
pub enum Why {
    /// Fewer members than `min-cluster-size`.
    TooSmall {
        /// Members.
        size: usize,
        /// The minimum.
        min: usize,
    },
    /// Too spread out to be one class.
    NotCompact {
        /// Its mean member–centroid distance.
        compactness: f64,
        /// The bound (`compactness` key).
        limit: f64,
    },
    /// Neither near a known class nor far from all of them.
    Ambiguous {
        /// Distance to the nearest class.
        distance: f64,
        /// `near-factor`.
        near: f64,
        /// `far-factor`.
        far: f64,
    },
    /// Far from every class, but no new class may be added.
    NewClassLimit {
        /// `max-new-classes` (or the label table's room, whichever is smaller).
        max: usize,
    },
    /// Every representative of a pseudo-label group would be among the nearest samples of
    /// a shifted sample of the round whose model head names another class
    /// (`pseudo-label-displacement`).
    Displaces {
        /// Representatives the group had.
        representatives: usize,
    },
}

/// Why no round was planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "reason")]
pub enum Deferred {
    /// `adaptation.enabled` is false.
    Disabled,
    /// Fewer pending samples than `min-pending`.
    TooFewPending {
        /// Pending samples.
        pending: usize,
        /// `min-pending`.
        min: usize,
    },
}

/// The nearest known class of a cluster's centroid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Nearest {
    /// Its name.
    pub label: String,
    /// Mean distance of the centroid to the class's k nearest samples, × reference mean.
    pub distance: f64,
}

/// A sample chosen to be added to the KNN, with its vector (copied, so the plan can be
/// applied after the quarantine has moved on, and on another thread).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Representative {
    /// Its pending sample id.
    pub sample: u64,
    /// Its feature vector.
    pub features: Vec<f32>,
}

/// One cluster and its decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedCluster {
    /// Pending sample ids of the members, in input order.
    pub members: Vec<u64>,
    /// Mean member–centroid distance, × reference mean.
    pub compactness: f64,
    /// Nearest class (known, or proposed earlier in this plan); `None` when there is none.
    pub nearest: Option<Nearest>,
    /// What would be added (medoid first, then spread).
    pub representatives: Vec<Representative>,
    /// What to do.
    pub decision: Decision,
}

impl PlannedCluster {
    /// The label the representatives go to, unless the cluster is left alone.
    pub fn target(&self) -> Option<&str> {
        match &self.decision {
            Decision::PseudoLabel { label } | Decision::NewClass { label } => Some(label),
            Decision::Leave { .. } => None,
        }
    }
}

/// The outcome of planning one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Length of the feature vectors (checked again when applied).
    pub dim: usize,
    /// Every cluster with its decision, in clustering order.
    pub clusters: Vec<PlannedCluster>,
    /// Pending sample ids in no cluster.
    pub unclustered: Vec<u64>,
    /// Set when nothing was clustered, and why.
    pub deferred: Option<Deferred>,
    /// Per change (group), what kind its samples show, when judged ([`plan_round`]).
    #[serde(default)]
    pub scenes: Vec<(u64, Scene)>,
}

impl Plan {
    /// Whether applying the plan would change the KNN (if not, skip snapshot and guard).
    pub fn has_changes(&self) -> bool {
        self.clusters.iter().any(|c| c.target().is_some())
    }

    /// The clusters that change the KNN.
    pub fn changes(&self) -> impl Iterator<Item = &PlannedCluster> {
        self.clusters.iter().filter(|c| c.target().is_some())
    }
}

/// Plan one adaptation round from the quarantined `pending` samples `(id, features)`.
///
/// Errors on bad input (no samples, more than [`MAX_POINTS`], a vector of another length
/// than the KNN's or holding NaN/∞, a duplicate id, a reference of another metric, an
/// invalid configuration). When adaptation is disabled or fewer than `min-pending` samples
/// wait, the plan is empty and says so in [`Plan::deferred`].
///
/// Cost: at most n² distance evaluations over the pending samples (clustering) and one pass
/// over the KNN per cluster (its nearest class); see [`cluster`](super::cluster()).
///
/// `max-new-classes` counts the KNN labels that start with `new-class-prefix` and still hold
/// samples, so a user class named like a proposal (`new-york` with prefix `new-`) counts too.
pub fn plan(
    pending: &[(u64, &[f32])],
    knn: &Knn,
    reference: &Reference,
    config: &AdaptationConfig,
) -> Result<Plan, AdaptError> {
    check_input(pending, knn, reference, config)?;
    let metric = knn.config().metric;
    let deferred = if !config.enabled {
        Some(Deferred::Disabled)
    } else if pending.len() < config.min_pending {
        Some(Deferred::TooFewPending {
            pending: pending.len(),
            min: config.min_pending,
        })
    } else {
        None
    };
    if deferred.is_some() {
        return Ok(Plan {
            dim: knn.dim(),
            clusters: Vec::new(),
            unclustered: pending.iter().map(|(id, _)| *id).collect(),
            deferred,
            scenes: Vec::new(),
        });
    }

    let points: Vec<&[f32]> = pending.iter().map(|(_, v)| *v).collect();
    let clustering = cluster(
        &points,
        &ClusterParams {
            radius: reference.scaled(config.radius),
            min_neighbors: config.min_neighbors,
            metric,
            representatives: config.representatives,
        },
    )?;

    let mean = reference.mean();
    let prefix = &config.new_class_prefix;
    let held_new = knn
        .labels()
        .names()
        .iter()
        .enumerate()
        .filter(|(i, name)| {
            name.starts_with(prefix.as_str()) && knn.class_count(crate::knn::LabelId(*i as u16)) > 0
        })
        .count();
    let room = MAX_LABELS.saturating_sub(knn.labels().len());
    let max_new = config.max_new_classes.min(held_new + room);
    let mut new_budget = max_new.saturating_sub(held_new);
    // Classes proposed so far in this plan: name and representative vectors.
    let mut proposed: Vec<(String, Vec<&[f32]>)> = Vec::new();
    let mut next_number = 1u64;

    let mut clusters = Vec::with_capacity(clustering.clusters.len());
    for c in &clustering.clusters {
        let compactness = f64::from(c.compactness) / mean;
        let representatives = c
            .representatives
            .iter()
            .map(|&i| Representative {
                sample: pending[i].0,
                features: pending[i].1.to_vec(),
            })
            .collect();
        let nearest =
            nearest_class(&c.centroid, knn, &proposed, metric).map(|(label, d)| Nearest {
                label,
                distance: f64::from(d) / mean,
            });
        let decision = if c.members.len() < config.min_cluster_size {
            Decision::Leave {
                why: Why::TooSmall {
                    size: c.members.len(),
                    min: config.min_cluster_size,
                },
            }
        } else if compactness > config.compactness {
            Decision::Leave {
                why: Why::NotCompact {
                    compactness,
                    limit: config.compactness,
                },
            }
        } else {
            let distance = nearest.as_ref().map_or(f64::INFINITY, |n| n.distance);
            match &nearest {
                Some(n) if distance <= config.near_factor => Decision::PseudoLabel {
                    label: n.label.clone(),
                },
                _ if distance > config.far_factor => {
                    if new_budget == 0 {
                        Decision::Leave {
                            why: Why::NewClassLimit { max: max_new },
                        }
                    } else {
                        new_budget -= 1;
                        let label = loop {
                            let name = format!("{prefix}{next_number}");
                            next_number += 1;
                            if knn.labels().get(&name).is_none() {
                                break name;
                            }
                        };
                        let reps = c.representatives.iter().map(|&i| points[i]).collect();
                        proposed.push((label.clone(), reps));
                        Decision::NewClass { label }
                    }
                }
                _ => Decision::Leave {
                    why: Why::Ambiguous {
                        distance,
                        near: config.near_factor,
                        far: config.far_factor,
                    },
                },
            }
        };
        tracing::debug!(
            members = c.members.len(),
            compactness,
            nearest = ?nearest,
            decision = ?decision,
            "planned cluster"
        );
        clusters.push(PlannedCluster {
            members: c.members.iter().map(|&i| pending[i].0).collect(),
            compactness,
            nearest,
            representatives,
            decision,
        });
    }
    let plan = Plan {
        dim: knn.dim(),
        clusters,
        unclustered: clustering.noise.iter().map(|&i| pending[i].0).collect(),
        deferred: None,
        scenes: Vec::new(),
    };
    let count = |f: fn(&Decision) -> bool| plan.clusters.iter().filter(|c| f(&c.decision)).count();
    tracing::info!(
        pending = pending.len(),
        clusters = plan.clusters.len(),
        pseudo_labels = count(|d| matches!(d, Decision::PseudoLabel { .. })),
        new_classes = count(|d| matches!(d, Decision::NewClass { .. })),
        left = count(|d| matches!(d, Decision::Leave { .. })),
        unclustered = plan.unclustered.len(),
        "adaptation planned"
    );
    Ok(plan)
}

/// Everything [`plan`] refuses: configuration, metric, empty or oversized input, bad vectors,
/// duplicate ids.
fn check_input(
    pending: &[(u64, &[f32])],
    knn: &Knn,
    reference: &Reference,
    config: &AdaptationConfig,
) -> Result<(), AdaptError> {
    config.validate()?;
    let metric = knn.config().metric;
    if reference.metric() != metric {
        return Err(AdaptError::MetricMismatch {
            knn: metric,
            reference: reference.metric(),
        });
    }
    if pending.is_empty() {
        return Err(AdaptError::Empty);
    }
    if pending.len() > MAX_POINTS {
        return Err(AdaptError::TooMany {
            got: pending.len(),
            max: MAX_POINTS,
        });
    }
    for (id, v) in pending {
        check_vector(*id, knn.dim(), v)?;
    }
    let mut ids: Vec<u64> = pending.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(AdaptError::DuplicateSample(w[0]));
    }
    Ok(())
}

/// One quarantined sample as a round sees it.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    /// Its pending sample id.
    pub id: u64,
    /// Its feature vector.
    pub features: &'a [f32],
    /// What was measured when it was admitted; `None` (e.g. admitted before a restart)
    /// keeps it out of the round.
    pub evidence: Option<Evidence>,
}

/// Plan a round as the running device does: judge first, per change ([`Evidence::group`]),
/// whether its samples show a change of the whole scene or something new in it
/// ([`scene::judge`]), then
///
/// * [`Scene::Local`] samples are planned by geometry as [`plan`] does (pseudo-label, new
///   class, leave), and so are a [`Scene::Wide`] change's when `scene-agreement` is set and
///   fewer of its samples than that share get the same class from the model's head and the
///   aligned vote ([`Scene::Disputed`]);
/// * [`Scene::Wide`] samples never make a new class unless `wide-far-factor` is set (then a
///   compact cluster of them beyond that factor from every class is proposed first, when
///   the local samples proposed none, and its samples are not pseudo-labelled): those whose
///   aligned vote is a class of the model (`original`) with `pseudo-label-agreement` become
///   one pseudo-label group per class (groups smaller than `min-cluster-size` are left),
///   each adding at most `pseudo-labels-per-class` representatives spread over the round;
///   with `pseudo-label-displacement`, those that would be among the nearest samples of one
///   of the change's shifted samples whose model head names another class are dropped
///   ([`drop_displacing`](super::displace::drop_displacing)).
///
/// Samples without evidence are listed as unclustered and change nothing.
pub fn plan_round(
    samples: &[Sample<'_>],
    knn: &Knn,
    reference: &Reference,
    config: &AdaptationConfig,
    original: impl Fn(LabelId) -> bool,
) -> Result<Plan, AdaptError> {
    let with: Vec<(&Sample<'_>, Evidence)> = samples
        .iter()
        .filter_map(|s| s.evidence.map(|e| (s, e)))
        .collect();
    let pending: Vec<(u64, &[f32])> = with.iter().map(|(s, _)| (s.id, s.features)).collect();
    let all: Vec<u64> = samples.iter().map(|s| s.id).collect();
    let deferred = |pending: usize| Plan {
        dim: knn.dim(),
        clusters: Vec::new(),
        unclustered: all.clone(),
        deferred: Some(if config.enabled {
            Deferred::TooFewPending {
                pending,
                min: config.min_pending,
            }
        } else {
            Deferred::Disabled
        }),
        scenes: Vec::new(),
    };
    if !config.ready(pending.len()) {
        return Ok(deferred(pending.len()));
    }
    check_input(&pending, knn, reference, config)?;

    let mut groups: Vec<u64> = with.iter().map(|(_, e)| e.group).collect();
    groups.sort_unstable();
    groups.dedup();
    let mut scenes = Vec::with_capacity(groups.len());
    let (mut local, mut wide) = (Vec::new(), Vec::new());
    for g in groups {
        let members: Vec<usize> = (0..with.len()).filter(|&i| with[i].1.group == g).collect();
        let evidence: Vec<Evidence> = members.iter().map(|&i| with[i].1).collect();
        let verdict = scene::judge(
            &evidence,
            reference,
            config.local_shift,
            config.min_stream_shift,
        );
        let verdict = match verdict {
            Scene::Wide { shift } if config.scene_agreement > 0.0 => {
                match scene::head_agreement(
                    &evidence,
                    reference,
                    config.min_stream_shift,
                    config.pseudo_label_agreement,
                ) {
                    Some(agreement) if agreement < config.scene_agreement => {
                        Scene::Disputed { shift, agreement }
                    }
                    _ => verdict,
                }
            }
            _ => verdict,
        };
        tracing::debug!(
            group = g,
            samples = members.len(),
            ?verdict,
            "change judged"
        );
        match verdict {
            Scene::Local { .. } | Scene::Disputed { .. } => local.extend(members),
            Scene::Wide { .. } => wide.extend(members),
        }
        scenes.push((g, verdict));
    }

    let mut clusters = Vec::new();
    if config.ready(local.len()) {
        let local_pending: Vec<(u64, &[f32])> = local.iter().map(|&i| pending[i]).collect();
        clusters = plan(&local_pending, knn, reference, config)?.clusters;
    }
    // A new object inside a scene-wide change: its own dense place far from every class.
    // Planned first, so its samples are never pseudo-labelled as a known class.
    let proposes = |c: &PlannedCluster| matches!(c.decision, Decision::NewClass { .. });
    if config.wide_far_factor > 0.0 && config.ready(wide.len()) && !clusters.iter().any(proposes) {
        let wide_pending: Vec<(u64, &[f32])> = wide.iter().map(|&i| pending[i]).collect();
        let strict = AdaptationConfig {
            far_factor: config.wide_far_factor.max(config.far_factor),
            ..config.clone()
        };
        let found: Vec<PlannedCluster> = plan(&wide_pending, knn, reference, &strict)?
            .clusters
            .into_iter()
            .filter(proposes)
            .collect();
        let taken: std::collections::HashSet<u64> = found
            .iter()
            .flat_map(|c| c.members.iter().copied())
            .collect();
        wide.retain(|&i| !taken.contains(&pending[i].0));
        clusters.extend(found);
    }
    let wide_evidence: Vec<Evidence> = wide.iter().map(|&i| with[i].1).collect();
    let rule = scene::PseudoLabelRule {
        agreement: config.pseudo_label_agreement,
        local_shift: config.local_shift,
        min_stream_shift: config.min_stream_shift,
        // Models without a class head give no sample a head class: the vote alone.
        head_agreement: config.pseudo_label_head_agreement
            && wide_evidence.iter().any(|e| e.model_label.is_some()),
    };
    let labelled = scene::pseudo_labels(&wide_evidence, reference, rule, original);
    for (label, members) in labelled {
        let Some(name) = knn.labels().name(label) else {
            continue;
        };
        let members: Vec<usize> = members.iter().map(|&j| wide[j]).collect();
        clusters.push(pseudo_label_group(
            name, &members, &pending, knn, reference, config,
        ));
    }
    if config.pseudo_label_displacement {
        let probes: Vec<Probe<'_>> = wide
            .iter()
            .filter(|&&i| with[i].1.shifted(reference, config.min_stream_shift))
            .filter_map(|&i| {
                with[i].1.model_label.map(|head| Probe {
                    features: pending[i].1,
                    head,
                })
            })
            .collect();
        drop_displacing(&mut clusters, &probes, knn);
    }
    let planned: std::collections::HashSet<u64> = clusters
        .iter()
        .flat_map(|c| c.members.iter().copied())
        .collect();
    let plan = Plan {
        dim: knn.dim(),
        unclustered: all.into_iter().filter(|id| !planned.contains(id)).collect(),
        clusters,
        deferred: None,
        scenes,
    };
    tracing::info!(
        samples = samples.len(),
        with_evidence = pending.len(),
        local = local.len(),
        scene_wide = wide.len(),
        pseudo_labels = plan
            .clusters
            .iter()
            .filter(|c| matches!(c.decision, Decision::PseudoLabel { .. }))
            .count(),
        new_classes = plan
            .clusters
            .iter()
            .filter(|c| matches!(c.decision, Decision::NewClass { .. }))
            .count(),
        "adaptation planned"
    );
    Ok(plan)
}

/// One class's pseudo-label group of a scene-wide round.
fn pseudo_label_group(
    label: &str,
    members: &[usize],
    pending: &[(u64, &[f32])],
    knn: &Knn,
    reference: &Reference,
    config: &AdaptationConfig,
) -> PlannedCluster {
    let dim = knn.dim();
    let mut centroid = vec![0.0f32; dim];
    for &i in members {
        centroid
            .iter_mut()
            .zip(pending[i].1)
            .for_each(|(c, &v)| *c += v / members.len() as f32);
    }
    let metric = knn.config().metric;
    let compactness = members
        .iter()
        .map(|&i| f64::from(metric.distance(&centroid, pending[i].1)))
        .sum::<f64>()
        / members.len().max(1) as f64
        / reference.mean();
    let nearest = nearest_class(&centroid, knn, &[], metric).map(|(label, d)| Nearest {
        label,
        distance: f64::from(d) / reference.mean(),
    });
    let decision = if members.len() < config.min_cluster_size || config.pseudo_labels_per_class == 0
    {
        Decision::Leave {
            why: Why::TooSmall {
                size: members.len(),
                min: config.min_cluster_size,
            },
        }
    } else {
        Decision::PseudoLabel {
            label: label.to_owned(),
        }
    };
    PlannedCluster {
        members: members.iter().map(|&i| pending[i].0).collect(),
        compactness,
        nearest,
        representatives: scene::spread(members, config.pseudo_labels_per_class)
            .into_iter()
            .map(|i| Representative {
                sample: pending[i].0,
                features: pending[i].1.to_vec(),
            })
            .collect(),
        decision,
    }
}

/// The class whose k nearest samples are nearest to `centroid` on average (ties: the lower
/// label id, then earlier proposals), with that mean distance.
fn nearest_class(
    centroid: &[f32],
    knn: &Knn,
    proposed: &[(String, Vec<&[f32]>)],
    metric: Metric,
) -> Option<(String, f32)> {
    let k = knn.config().k;
    // Per class, the k smallest distances, ascending (k ≤ 256, so insertion is cheap).
    let mut best: Vec<Vec<f32>> = vec![Vec::new(); knn.labels().len()];
    for s in knn.samples() {
        if let Some(list) = best.get_mut(usize::from(s.label.0)) {
            insert_k(list, k, metric.distance(centroid, s.features));
        }
    }
    let mut nearest: Option<(String, f32)> = None;
    let mut consider = |name: &str, list: &[f32]| {
        if list.is_empty() {
            return;
        }
        let d = list.iter().sum::<f32>() / list.len() as f32;
        if nearest.as_ref().is_none_or(|(_, b)| d < *b) {
            nearest = Some((name.to_owned(), d));
        }
    };
    for (name, list) in knn.labels().names().iter().zip(&best) {
        consider(name, list);
    }
    for (name, reps) in proposed {
        let mut list = Vec::with_capacity(k);
        for r in reps {
            insert_k(&mut list, k, metric.distance(centroid, r));
        }
        consider(name, &list);
    }
    nearest
}

/// Keep `list` the `k` smallest values seen, ascending.
fn insert_k(list: &mut Vec<f32>, k: usize, d: f32) {
    if list.len() == k {
        match list.last() {
            Some(&worst) if d < worst => {
                list.pop();
            }
            _ => return,
        }
    }
    let at = list.partition_point(|&x| x <= d);
    list.insert(at, d);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_k_keeps_the_smallest() {
        let mut list = Vec::new();
        for d in [5.0, 1.0, 4.0, 2.0, 3.0, 0.5] {
            insert_k(&mut list, 3, d);
        }
        assert_eq!(list, vec![0.5, 1.0, 2.0]);
    }
}
