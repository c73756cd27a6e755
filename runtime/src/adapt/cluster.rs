//! Deterministic, bounded clustering of quarantined feature vectors, so that only groups
//! of samples that are dense together — not a scatter of odd frames — can ever reach the KNN.
//!
//! The algorithm is DBSCAN over the KNN's metric: a sample with at least `min_neighbors`
//! other samples within `radius` is a *core*; clusters are the core samples connected
//! through each other's neighbourhoods plus the non-core samples within `radius` of a core
//! (*border*); the rest is *noise* and stays out of every cluster. Why DBSCAN rather than
//! k-means or a leader pass: it needs no cluster count, it leaves sparse samples
//! unclustered instead of forcing them into the nearest group (sensor noise must never
//! become a class), and its result does not depend on a random start.
//!
//! Determinism: samples are visited in input order and a border sample reachable from two
//! clusters joins the first one found, so the same input always gives the same clusters
//! (members ascending, clusters in order of their first core sample).
//!
//! Cost: each sample's neighbourhood is computed once, so at most n² distance evaluations
//! (n ≤ [`MAX_POINTS`]), and O(n) memory: no distance matrix is kept (2 000² f32 would be
//! 16 MB, too much beside a 40 MB budget). Representatives cost O(r·m) per cluster.

use super::AdaptError;
use super::error::check_vector;
use crate::config_error::ConfigError;
use crate::knn::Metric;

/// Most samples one clustering accepts.
pub const MAX_POINTS: usize = 2_000;

/// Members farther than this multiple of the cluster's compactness from its centroid are
/// never chosen as representatives: spreading the representatives must not mean adding the
/// cluster's outliers to the KNN.
pub const REPRESENTATIVE_REACH: f32 = 1.5;

/// How to cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusterParams {
    /// Two samples closer than or as close as this are neighbours (in `metric` units).
    pub radius: f32,
    /// Other samples within `radius` that make a sample a core.
    pub min_neighbors: usize,
    /// Distance used throughout.
    pub metric: Metric,
    /// Representatives chosen per cluster at most.
    pub representatives: usize,
}

/// One cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// Indices of the members in the input, ascending.
    pub members: Vec<usize>,
    /// Mean of the members.
    pub centroid: Vec<f32>,
    /// Mean member–centroid distance (the smaller, the tighter).
    pub compactness: f32,
    /// Indices of the representatives: the member nearest the centroid first, then each
    /// next one the member farthest from those already chosen (among members within
    /// [`REPRESENTATIVE_REACH`] × compactness of the centroid), stopping early when only
    /// duplicates of chosen ones remain.
    pub representatives: Vec<usize>,
}

/// All clusters of one input.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Clustering {
    /// The clusters, in order of their first core sample.
    pub clusters: Vec<Cluster>,
    /// Indices of samples in no cluster, ascending.
    pub noise: Vec<usize>,
}

const UNVISITED: u32 = u32::MAX;
const NOISE: u32 = u32::MAX - 1;

/// Cluster `points` (1..=[`MAX_POINTS`] vectors of one length, finite values).
pub fn cluster(points: &[&[f32]], params: &ClusterParams) -> Result<Clustering, AdaptError> {
    let Some(first) = points.first() else {
        return Err(AdaptError::Empty);
    };
    if points.len() > MAX_POINTS {
        return Err(AdaptError::TooMany {
            got: points.len(),
            max: MAX_POINTS,
        });
    }
    for (i, p) in points.iter().enumerate() {
        check_vector(i as u64, first.len(), p)?;
    }
    if !params.radius.is_finite() || params.radius <= 0.0 {
        return Err(ConfigError::new(
            "adaptation.radius",
            format!(
                "clustering radius {} is not a positive distance",
                params.radius
            ),
            "use a positive radius factor and a positive reference distance",
        )
        .into());
    }

    let n = points.len();
    let dist = |a: usize, b: usize| params.metric.distance(points[a], points[b]);
    let mut label = vec![UNVISITED; n];
    let mut neighbours = Vec::with_capacity(n);
    let mut queue = Vec::with_capacity(n);
    let region = |i: usize, out: &mut Vec<usize>| {
        out.clear();
        out.extend((0..n).filter(|&j| j != i && dist(i, j) <= params.radius));
    };
    let mut clusters = 0u32;
    for i in 0..n {
        if label[i] != UNVISITED {
            continue;
        }
        region(i, &mut neighbours);
        if neighbours.len() < params.min_neighbors {
            label[i] = NOISE;
            continue;
        }
        let c = clusters;
        clusters += 1;
        label[i] = c;
        queue.clear();
        let mut head = 0;
        let expand = |neighbours: &[usize], label: &mut [u32], queue: &mut Vec<usize>| {
            for &j in neighbours {
                match label[j] {
                    UNVISITED => {
                        label[j] = c;
                        queue.push(j);
                    }
                    // Already known not to be a core: it joins as a border, nothing to expand.
                    NOISE => label[j] = c,
                    _ => {}
                }
            }
        };
        expand(&neighbours, &mut label, &mut queue);
        while head < queue.len() {
            let j = queue[head];
            head += 1;
            region(j, &mut neighbours);
            if neighbours.len() >= params.min_neighbors {
                expand(&neighbours, &mut label, &mut queue);
            }
        }
    }

    let mut members: Vec<Vec<usize>> = vec![Vec::new(); clusters as usize];
    let mut noise = Vec::new();
    for (i, &l) in label.iter().enumerate() {
        match l {
            NOISE => noise.push(i),
            c => members[c as usize].push(i),
        }
    }
    let clusters: Vec<Cluster> = members
        .into_iter()
        .map(|members| describe(points, members, params))
        .collect();
    tracing::debug!(
        samples = n,
        clusters = clusters.len(),
        noise = noise.len(),
        "clustered quarantined samples"
    );
    Ok(Clustering { clusters, noise })
}

/// Centroid, compactness and representatives of one set of members.
fn describe(points: &[&[f32]], members: Vec<usize>, params: &ClusterParams) -> Cluster {
    let dim = points[members[0]].len();
    // f64 sums: a centroid of 2 000 members stays exact to f32 precision.
    let mut sum = vec![0f64; dim];
    for &m in &members {
        for (s, &x) in sum.iter_mut().zip(points[m]) {
            *s += f64::from(x);
        }
    }
    let count = members.len() as f64;
    let centroid: Vec<f32> = sum.iter().map(|s| (s / count) as f32).collect();
    let to_centroid: Vec<f32> = members
        .iter()
        .map(|&m| params.metric.distance(points[m], &centroid))
        .collect();
    let compactness = (to_centroid.iter().map(|&d| f64::from(d)).sum::<f64>() / count) as f32;
    let representatives = spread(
        points,
        &members,
        &to_centroid,
        compactness,
        params.representatives,
        params.metric,
    );
    Cluster {
        members,
        centroid,
        compactness,
        representatives,
    }
}

/// Central member first, then farthest-point selection among the members near enough to
/// the centroid. Ties go to the lower index, so the choice is deterministic.
fn spread(
    points: &[&[f32]],
    members: &[usize],
    to_centroid: &[f32],
    compactness: f32,
    max: usize,
    metric: Metric,
) -> Vec<usize> {
    let mut chosen = Vec::with_capacity(max.min(members.len()));
    if max == 0 {
        return chosen;
    }
    let Some(central) =
        (0..members.len()).min_by(|&a, &b| to_centroid[a].total_cmp(&to_centroid[b]))
    else {
        return chosen;
    };
    let reach = REPRESENTATIVE_REACH * compactness;
    let pool: Vec<usize> = (0..members.len())
        .filter(|&i| i == central || to_centroid[i] <= reach)
        .collect();
    // Distance of each pool member to the nearest chosen representative.
    let mut nearest: Vec<f32> = pool
        .iter()
        .map(|&i| metric.distance(points[members[i]], points[members[central]]))
        .collect();
    chosen.push(members[central]);
    while chosen.len() < max {
        let mut best: Option<(usize, f32)> = None;
        for (slot, &d) in nearest.iter().enumerate() {
            if best.is_none_or(|(_, b)| d > b) {
                best = Some((slot, d));
            }
        }
        // Nothing left but copies of chosen ones (or nothing at all): more would be duplicates.
        let Some((slot, _)) = best.filter(|&(_, d)| d > 0.0) else {
            break;
        };
        let pick = members[pool[slot]];
        chosen.push(pick);
        for (n, &i) in nearest.iter_mut().zip(&pool) {
            *n = n.min(metric.distance(points[members[i]], points[pick]));
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(radius: f32) -> ClusterParams {
        ClusterParams {
            radius,
            min_neighbors: 2,
            metric: Metric::Euclidean,
            representatives: 3,
        }
    }

    fn run(points: &[Vec<f32>], p: &ClusterParams) -> Result<Clustering, AdaptError> {
        let refs: Vec<&[f32]> = points.iter().map(Vec::as_slice).collect();
        cluster(&refs, p)
    }

    #[test]
    fn two_groups_and_an_isolated_point() {
        let points = vec![
            vec![0.0, 0.0],
            vec![10.0, 10.0],
            vec![0.5, 0.0],
            vec![100.0, 0.0],
            vec![0.0, 0.5],
            vec![10.5, 10.0],
            vec![10.0, 10.5],
            vec![0.5, 0.5],
        ];
        let c = run(&points, &params(1.0)).unwrap();
        assert_eq!(c.clusters.len(), 2);
        assert_eq!(c.clusters[0].members, vec![0, 2, 4, 7]);
        assert_eq!(c.clusters[1].members, vec![1, 5, 6]);
        assert_eq!(c.noise, vec![3]);
        assert_eq!(c.clusters[0].centroid, vec![0.25, 0.25]);
        let expected = (0.125f32).sqrt();
        assert!((c.clusters[0].compactness - expected).abs() < 1e-6);
        // Four members equally central: the first wins; then the farthest from it.
        assert_eq!(c.clusters[0].representatives, vec![0, 7, 2]);
    }

    #[test]
    fn duplicates_are_not_chosen_twice() {
        let points = vec![vec![1.0, 1.0]; 20];
        let c = run(&points, &params(0.1)).unwrap();
        assert_eq!(c.clusters.len(), 1);
        assert_eq!(c.clusters[0].representatives, vec![0]);
        assert_eq!(c.clusters[0].compactness, 0.0);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(run(&[], &params(1.0)), Err(AdaptError::Empty));
        assert!(matches!(
            run(&[vec![0.0; 2], vec![0.0; 3]], &params(1.0)),
            Err(AdaptError::Dimension {
                sample: 1,
                expected: 2,
                got: 3
            })
        ));
        assert!(matches!(
            run(&[vec![0.0, f32::NAN]], &params(1.0)),
            Err(AdaptError::NonFinite {
                sample: 0,
                index: 1
            })
        ));
        assert!(matches!(
            run(&vec![vec![0.0]; MAX_POINTS + 1], &params(1.0)),
            Err(AdaptError::TooMany { .. })
        ));
        assert!(matches!(
            run(&[vec![0.0]], &params(f32::NAN)),
            Err(AdaptError::Config(_))
        ));
        assert!(matches!(
            run(&[vec![0.0]], &params(0.0)),
            Err(AdaptError::Config(_))
        ));
    }
}
